"""The local registry source (``--secrets-dir``): a directory of Secret manifests.

For running without a hub (standalone mode, the demo, tests).  Every
``interval`` seconds a ``LoopingCall`` looks at the directory; a file is
re-parsed only when its size, mtime, ctime or inode changed, and the registry
gets a full list only when something changed, so an idle directory costs a
``stat`` per file per tick.  Adding, editing or deleting a file shows up
within one interval.

What is read:

- files directly in the directory (no subdirectories) named ``*.yaml``,
  ``*.yml`` or ``*.json``; hidden files (``.*``, which includes the ``..data``
  links of a mounted volume) are skipped;
- any number of documents per file (YAML ``---``, or concatenated JSON
  values); a ``kind: List`` (or ``SecretList``) contributes its ``items``;
- documents of ``kind: Secret``; other kinds are skipped silently, so a demo
  manifest may hold other objects too;
- Secrets of **any** namespace: the directory is the namespace.  Two Secrets
  with the same name: the one in the first file (by name) wins, the other is
  logged.

A file that cannot be parsed — bad syntax, not UTF-8, larger than
:data:`MAX_FILE_BYTES`, nested deeper than :data:`MAX_DEPTH`, whatever the
parser raises — is logged once (per version of the file, without its content:
it may hold credentials) and contributes no Secrets; the other files are
unaffected and every scan still delivers them.

``on_synced`` (optional, e.g. ``GatewayMetrics.registry_synced``) is called
after every scan that could read the directory, changed or not: the registry
is then known to match it, which is what a "last successful sync" gauge
needs to tell a live source from a stuck one.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs
import yaml
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from clustergateway.registry.store import SecretRegistry

__all__ = ["DirectorySecretSource", "ManifestError", "parse_manifests"]

_EXTENSIONS = (".yaml", ".yml", ".json")
#: A file larger than this is not read (kube-apiserver caps one Secret at 1 MiB).
MAX_FILE_BYTES = 8 * 1024 * 1024
#: Nesting deeper than this is no Secret (theirs is a few levels, managedFields ~10).
MAX_DEPTH = 64


class ManifestError(ValueError):
    """A manifest file that cannot be read as Kubernetes objects; says where, not what."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp type: ``creationTimestamp`` stays a string."""


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_documents(text: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_Loader))  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as e:
        # Never the context snippet: the line may hold a token.
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ManifestError(f"invalid YAML{where}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ManifestError(f"invalid YAML: {type(e).__name__}") from None


def _json_documents(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    documents: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return documents
        try:
            document, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise ManifestError(
                f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
            ) from None
        documents.append(document)


def _secrets_of(document: Any, where: str, out: list[dict[str, Any]]) -> None:
    if document is None:
        return
    if not isinstance(document, dict):
        raise ManifestError(f"{where} is not an object")
    kind = document.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in document:
        items = document.get("items") or []
        if not isinstance(items, list):
            raise ManifestError(f"{where}: items is not a list")
        for index, item in enumerate(items):
            _secrets_of(item, f"{where} item {index}", out)
        return
    if kind != "Secret":
        return
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise ManifestError(f"{where}: Secret without metadata.name")
    out.append(document)


def _too_deep(document: Any, limit: int) -> bool:
    """Whether ``document`` nests deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_manifests(text: str, *, is_json: bool = False) -> list[dict[str, Any]]:
    """The Secrets among the documents of one manifest file; :class:`ManifestError` if bad."""
    try:
        documents = _json_documents(text) if is_json else _yaml_documents(text)
    except RecursionError:
        raise ManifestError("a document is nested too deeply to parse") from None
    for index, document in enumerate(documents):
        if _too_deep(document, MAX_DEPTH):
            raise ManifestError(f"document {index + 1} is nested deeper than {MAX_DEPTH} levels")
    secrets: list[dict[str, Any]] = []
    for index, document in enumerate(documents):
        _secrets_of(document, f"document {index + 1}", secrets)
    return secrets


@attrs.frozen
class _FileState:
    signature: tuple[int, int, int, int]
    secrets: tuple[Mapping[str, Any], ...]


@attrs.define(eq=False)
class DirectorySecretSource(Service):
    """Keeps ``registry`` equal to the cluster Secrets in the directory ``path``."""

    reactor: IReactorTime
    path: Path = attrs.field(converter=Path)
    registry: SecretRegistry
    interval: float = 1.0
    #: Called after each scan that read the directory (see the module docstring).
    on_synced: Callable[[], object] | None = None
    _files: dict[str, _FileState] = attrs.field(factory=dict, init=False)
    _loop: LoopingCall | None = attrs.field(default=None, init=False)
    _unreadable: str | None = attrs.field(default=None, init=False)
    _scanned: bool = attrs.field(default=False, init=False)

    _log: ClassVar[Logger] = Logger()

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        self._loop = LoopingCall(self.scan)
        self._loop.clock = self.reactor
        done = self._loop.start(self.interval, now=True)
        done.addErrback(lambda f: self._log.failure("Secrets directory scan stopped", f))

    def stopService(self) -> None:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def scan(self) -> None:
        """Look at the directory once; push a full list to the registry if anything changed."""
        try:
            changed = self._refresh()
        except Exception:
            self._log.failure("Scanning secrets directory {path} failed", path=str(self.path))
            return
        if changed or not self._scanned:
            self._scanned = True
            secrets = [s for name in sorted(self._files) for s in self._files[name].secrets]
            self.registry.replace_all(secrets)
        if self._unreadable is None and self.on_synced is not None:
            self.on_synced()

    def _refresh(self) -> bool:
        try:
            names = sorted(os.listdir(self.path))
        except OSError as e:
            if self._unreadable != e.strerror:
                self._unreadable = e.strerror
                self._log.error(
                    "Cannot read secrets directory {path}: {error}",
                    path=str(self.path),
                    error=e.strerror,
                )
            names = []
        else:
            self._unreadable = None
        changed = False
        seen: set[str] = set()
        for name in names:
            if name.startswith(".") or not name.endswith(_EXTENSIONS):
                continue
            path = self.path / name
            try:
                st = path.stat()
            except OSError:
                continue  # removed (or a dangling link) since listdir
            if not stat.S_ISREG(st.st_mode):
                continue
            seen.add(name)
            signature = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
            previous = self._files.get(name)
            if previous is not None and previous.signature == signature:
                continue
            changed = True
            self._files[name] = _FileState(signature, self._read(path, st.st_size))
        for name in set(self._files) - seen:
            del self._files[name]
            changed = True
        return changed

    def _read(self, path: Path, size: int) -> tuple[Mapping[str, Any], ...]:
        if size > MAX_FILE_BYTES:
            problem = f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
        else:
            try:
                text = path.read_text(encoding="utf-8")
                return tuple(parse_manifests(text, is_json=path.suffix == ".json"))
            except UnicodeDecodeError:
                problem = "not UTF-8 text"
            except OSError as e:
                problem = e.strerror or type(e).__name__
            except ManifestError as e:
                problem = str(e)
            except Exception as e:  # whatever a parser raises: this file only, never the scan
                problem = f"unreadable ({type(e).__name__})"
        self._log.error("Ignoring secrets file {file}: {problem}", file=str(path), problem=problem)
        return ()
