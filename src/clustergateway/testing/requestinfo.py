"""Parse a request path the way kube-apiserver's ``RequestInfoFactory`` does.

``/api/v1/namespaces/default/pods/demo/exec`` becomes a :class:`RequestInfo`
with group ``""``, version ``v1``, namespace ``default``, resource ``pods``,
name ``demo``, subresource ``exec`` and verb ``create``/``get``.  Pure and
table-tested; the server routes on the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import unquote

import attrs

__all__ = ["RequestInfo", "parse_request_info"]

_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@attrs.frozen
class RequestInfo:
    """What a request addresses; ``is_resource`` is False for ``/version``, ``/healthz``..."""

    path: str
    verb: str
    is_resource: bool = False
    api_prefix: str = ""
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    #: Path segments after the subresource (``pods/x/proxy/a/b``).
    rest: tuple[str, ...] = ()
    #: The path named only a prefix (``/api``, ``/apis/<group>``, ``/apis/<g>/<v>``).
    discovery: bool = False


def _truthy(query: Mapping[str, Sequence[str]], key: str) -> bool:
    values = query.get(key) or []
    return bool(values) and values[-1].lower() in ("true", "1")


def parse_request_info(method: str, path: str, query: Mapping[str, Sequence[str]]) -> RequestInfo:
    """Classify ``method path?query`` (``query`` maps names to all their values)."""
    method = method.upper()
    parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
    if not parts or parts[0] not in ("api", "apis"):
        return RequestInfo(path=path, verb=method.lower())
    prefix = parts[0]
    rest = parts[1:]
    if prefix == "api":
        group = ""
        if not rest:
            return RequestInfo(path, "get", api_prefix=prefix, discovery=True)
        version, rest = rest[0], rest[1:]
    else:
        if len(rest) < 2:
            return RequestInfo(
                path, "get", api_prefix=prefix, group=rest[0] if rest else "", discovery=True
            )
        group, version, rest = rest[0], rest[1], rest[2:]
    if not rest:
        return RequestInfo(
            path, "get", api_prefix=prefix, group=group, version=version, discovery=True
        )

    legacy_watch = False
    if rest[0] == "watch":
        legacy_watch = True
        rest = rest[1:]

    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]

    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    extra = tuple(rest[3:])

    if legacy_watch:
        verb = "watch"
    elif method in ("GET", "HEAD"):
        if name:
            verb = "get"
        else:
            verb = "watch" if _truthy(query, "watch") else "list"
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = method.lower()
    return RequestInfo(
        path=path,
        verb=verb,
        is_resource=True,
        api_prefix=prefix,
        group=group,
        version=version,
        namespace=namespace,
        resource=resource,
        name=name,
        subresource=subresource,
        rest=extra,
    )
