"""Applying a PATCH body to an object: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

Used by ``clustergateways/health`` (spec quirk 14.15 fixed: PATCH works).  The
object has no lists worth merging by key, so a strategic merge patch is applied
as a merge patch, which is what it means for plain maps.
"""

from __future__ import annotations

import copy
from typing import Any

from clustergateway import errors

__all__ = ["apply_json_patch", "apply_merge_patch"]


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise errors.UnprocessableEntity(f"invalid JSON pointer {path!r}")
    return [_unescape(t) for t in path.split("/")[1:]] if path else []


def _parent(doc: Any, tokens: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node, tokens[-1]


def _child(node: Any, token: str, path: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise errors.UnprocessableEntity(f"path {path!r} does not exist")


def _get(doc: Any, path: str) -> Any:
    node = doc
    for token in _pointer(path):
        node = _child(node, token, path)
    return node


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        index = len(parent) if last == "-" else _index(last, len(parent) + 1, path)
        parent.insert(index, value)
    else:
        raise errors.UnprocessableEntity(f"path {path!r} does not exist")
    return doc


def _index(token: str, limit: int, path: str) -> int:
    if not token.isdigit() or int(token) >= limit:
        raise errors.UnprocessableEntity(f"path {path!r} does not exist")
    return int(token)


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise errors.UnprocessableEntity("cannot remove the whole document")
    parent, last = _parent(doc, tokens, path)
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(last, len(parent), path))
    raise errors.UnprocessableEntity(f"path {path!r} does not exist")


def apply_json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 on a copy of ``target``: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise errors.BadRequest("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict):
            raise errors.BadRequest("a JSON patch operation must be an object")
        kind: Any = op.get("op")
        path: Any = op.get("path")
        source: Any = op.get("from")
        if kind in ("add", "replace", "test") and "value" not in op:
            raise errors.UnprocessableEntity(f'JSON patch "{kind}" at {path!r} needs a value')
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            doc, _ = _remove(doc, path) if _pointer(path) else (doc, None)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "move":
            doc, value = _remove(doc, source)
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, source)))
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise errors.UnprocessableEntity(f"JSON patch test failed at {path!r}")
        else:
            raise errors.UnprocessableEntity(f"unsupported JSON patch operation {kind!r}")
    return doc
