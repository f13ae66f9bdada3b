"""The three patch formats of the Kubernetes API, as pure functions on dicts.

- JSON merge patch (RFC 7386, ``application/merge-patch+json``);
- strategic merge patch (``application/strategic-merge-patch+json``): maps merge
  like a merge patch; lists of objects that carry a ``name`` (containers, env,
  ports, volumes...) merge by that key, the apiserver's most common patch
  strategy; ``$patch: delete``/``replace`` directives and ``$retainKeys`` are honoured
  for maps; other lists are replaced;
- JSON patch (RFC 6902, ``application/json-patch+json``).

Errors raise :class:`PatchError`; the server answers it with a 422 or 400 ``Status``.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "MalformedPatch",
    "PatchError",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
]


class PatchError(ValueError):
    """A patch that cannot be applied to the object."""


class MalformedPatch(PatchError):
    """A patch document that is not a patch at all (bad shape, unknown operation)."""


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _merge_key(items: list[Any]) -> str | None:
    """The field a list of objects merges on, when every element carries it."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for candidate in ("name", "containerPort", "mountPath", "ip", "type"):
        if all(candidate in i for i in items):
            return candidate
    return None


def _strategic_list(target: list[Any], patch: list[Any]) -> list[Any]:
    directives = [p for p in patch if isinstance(p, dict) and "$patch" in p]
    if any(p.get("$patch") == "replace" for p in directives):
        return [copy.deepcopy(p) for p in patch if p not in directives]
    key = _merge_key([p for p in patch if p not in directives] or directives)
    if key is None or not all(isinstance(t, dict) and key in t for t in target):
        return copy.deepcopy([p for p in patch if p not in directives])
    result = [copy.deepcopy(t) for t in target]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"list element without merge key {key!r}")
        index = next((i for i, t in enumerate(result) if t.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = apply_strategic_merge_patch(result[index], item)
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def apply_strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge: merge patch semantics plus keyed list merges and directives."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip_directives(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _strategic_list(result[key], value)
        elif isinstance(value, dict):
            merged = apply_strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = _strip_directives(value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise PatchError(f"invalid array index {token!r}")
    index = int(token)
    limit = len(container) + (1 if allow_end else 0)
    if index >= limit:
        raise PatchError(f"array index {index} out of range")
    return index


def _walk(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path segment {token!r} not found")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise PatchError(f"cannot descend into {type(node).__name__} at {token!r}")
    return node


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return copy.deepcopy(value)
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), copy.deepcopy(value))
    else:
        raise PatchError(f"cannot add to {type(parent).__name__}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path segment {last!r} not found")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, allow_end=False))
    raise PatchError(f"cannot remove from {type(parent).__name__}")


def apply_json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 operations ``add``, ``remove``, ``replace``, ``move``, ``copy``, ``test``."""
    if not isinstance(operations, list):
        raise MalformedPatch("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise MalformedPatch("each JSON patch operation needs 'op' and 'path'")
        kind = op["op"]
        tokens = _pointer(op["path"])
        if kind == "add":
            if "value" not in op:
                raise MalformedPatch("'add' needs a 'value'")
            doc = _add(doc, tokens, op["value"])
        elif kind == "remove":
            doc, _ = _remove(doc, tokens)
        elif kind == "replace":
            if "value" not in op:
                raise MalformedPatch("'replace' needs a 'value'")
            doc, _ = _remove(doc, tokens)
            doc = _add(doc, tokens, op["value"])
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            if kind == "move":
                doc, value = _remove(doc, source)
            else:
                value = copy.deepcopy(_walk(doc, source))
            doc = _add(doc, tokens, value)
        elif kind == "test":
            if _walk(doc, tokens) != op.get("value"):
                raise PatchError(f"test operation failed at {op['path']!r}")
        else:
            raise MalformedPatch(f"unknown JSON patch operation {kind!r}")
    return doc
