"""The fence (``clustergateway.fence``): private names of other libraries stay inside it,
and every one it lists still exists in the installed releases."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import clustergateway
from clustergateway import fence

PACKAGE = Path(clustergateway.__file__).parent

#: The libraries whose private names are fenced.
FOREIGN = frozenset(
    {"twisted", "OpenSSL", "prometheus_client", "h2", "hyperframe", "priority", "hpack",
     "cryptography"}
)  # fmt: skip

_ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "hasattr", "setattr", "delattr"})


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        yield relative, ast.parse(path.read_text(), relative)


def listed_names() -> list[str]:
    """The dotted foreign names the fence's docstring lists, e.g.
    ``twisted.web.http_headers.Headers._rawHeaders``."""
    found = re.findall(r"``([A-Za-z_][\w.]*)``", fence.__doc__ or "")
    return sorted(
        {
            name
            for name in found
            if name.split(".")[0] in FOREIGN and any(_private(p) for p in name.split("."))
        }
    )


def _listed_attributes() -> set[str]:
    """The last component of each listed name (``_rawHeaders``, ``_ssl``, ...)."""
    return {name.rsplit(".", 1)[-1] for name in listed_names()}


def _ours() -> set[str]:
    """Private names of our own, without those the fence lists as foreign."""
    return _defined_by_us() - _listed_attributes()


def _defined_by_us() -> set[str]:
    """Private names our own code (outside the fence) assigns or defines."""
    names: set[str] = set()
    for relative, tree in _modules():
        if not relative.startswith("fence/"):
            names |= _defined_in(tree)
    return names


def _defined_in(tree: ast.Module) -> set[str]:
    """Private names ``tree`` assigns or defines."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias) and node.asname:
            names.add(node.asname)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
        ):
            names.add(str(node.args[1].value))
        elif isinstance(node, ast.Assign) and "__slots__" in map(ast.unparse, node.targets):
            names.update(str(c.value) for c in ast.walk(node.value) if isinstance(c, ast.Constant))
    return {name for name in names if _private(name)}


def _foreign_bindings(tree: ast.Module) -> dict[str, str]:
    """Local name -> the foreign dotted name it is bound to by an import."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FOREIGN:
                    local = alias.asname or alias.name.split(".")[0]
                    bound[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in FOREIGN:
                for alias in node.names:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for part in parts[split:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


def _overridden_private_methods(tree: ast.Module, bound: dict[str, str]) -> Iterator[ast.AST]:
    """``def _name`` in a class of ours whose foreign base class has ``_name``."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = []
        for base in node.bases:
            root = _base_name(base)
            if root in bound:
                dotted = ast.unparse(base).replace(root, bound[root], 1)
                try:
                    bases.append(_resolve(dotted))
                except (ImportError, AttributeError):
                    continue
        for item in node.body:
            if (
                isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and _private(item.name)
                and any(hasattr(base, item.name) for base in bases)
            ):
                yield item


def foreign_private_uses(relative: str, tree: ast.Module, ours: set[str]) -> Iterator[str]:
    """Where ``tree`` uses a private name of a fenced library, as ``file:line name``."""
    bound = _foreign_bindings(tree)
    listed = _listed_attributes()
    local = _defined_in(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in FOREIGN and any(_private(p) for p in parts):
                    yield f"{relative}:{node.lineno} import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] in FOREIGN:
                for alias in node.names:
                    if any(_private(p) for p in [*parts, alias.name]):
                        yield f"{relative}:{node.lineno} from {node.module} import {alias.name}"
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            base = ast.unparse(node.value)
            if _base_name(node.value) in bound:
                yield f"{relative}:{node.lineno} {base}.{node.attr}"
            elif base in ("self", "cls"):
                if node.attr not in local and (node.attr in listed or node.attr not in ours):
                    # inherited from a foreign class
                    yield f"{relative}:{node.lineno} {base}.{node.attr}"
            elif node.attr in listed or node.attr not in ours:
                yield f"{relative}:{node.lineno} {base}.{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _ATTRIBUTE_FUNCTIONS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            name = node.args[1].value
            if name in listed or name not in ours:
                yield f'{relative}:{node.lineno} {node.func.id}(..., "{name}")'
    for method in _overridden_private_methods(tree, bound):
        assert isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef)
        yield f"{relative}:{method.lineno} overrides {method.name}"


def test_private_names_of_other_libraries_are_used_inside_the_fence_only() -> None:
    """No module outside ``clustergateway.fence`` (and the listed exceptions) imports,
    reads, overrides or ``getattr``s a private name of Twisted, pyOpenSSL,
    prometheus-client, h2 and the like; each use found is named as file:line."""
    ours = _ours()
    found = []
    for relative, tree in _modules():
        if relative.startswith("fence/"):
            continue
        found.extend(foreign_private_uses(relative, tree, ours))
    assert not found, "private names of other libraries outside clustergateway.fence:\n" + (
        "\n".join(found)
    )


def test_the_scan_finds_what_the_fence_holds() -> None:
    """The scan is not blind: run over the fence's own modules, it finds their uses."""
    ours = _ours()
    found = [
        use
        for relative, tree in _modules()
        if relative.startswith("fence/")
        for use in foreign_private_uses(relative, tree, ours)
    ]
    text = "\n".join(found)
    for expected in (
        "from OpenSSL._util import lib",
        "twistd._SomeApplicationRunner",
        "._rawHeaders",
        "._dataBuffer",
        "self._doReadOrWrite",
        "._postLoseConnection",
        "overrides _respondToBadRequestAndDisconnect",
        "child._sum",
    ):
        assert expected in text, (expected, text)


def _exists(dotted: str) -> bool:
    """``dotted`` names a module, a module attribute, a class attribute, or an instance
    attribute a class of the library assigns (``self.<name> =``) or declares in ``__slots__``."""
    owner, _, name = dotted.rpartition(".")
    try:
        _resolve(dotted)
        return True
    except (ImportError, AttributeError):
        pass
    try:
        cls = _resolve(owner)
    except (ImportError, AttributeError):
        return False
    if not isinstance(cls, type):
        return False
    assigned = re.compile(rf"\bself\.{re.escape(name)}\b\s*(:[^=\n]*)?=[^=]")
    for klass in cls.__mro__:
        if name in getattr(klass, "__slots__", ()):
            return True
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if assigned.search(source):
            return True
    return False


def test_the_fence_lists_names_that_exist_in_the_installed_releases() -> None:
    """Every private name the fence's docstring lists is still in the installed library:
    a release that renames or removes one fails here, naming it."""
    names = listed_names()
    assert len(names) > 40, names  # the docstring is read, not skipped
    missing = [name for name in names if not _exists(name)]
    assert not missing, "no longer in the installed libraries: " + ", ".join(missing)
