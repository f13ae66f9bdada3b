"""Which API path a request addresses, and what it does in authorization terms.

Pure functions over the raw request path (``request.path``: still
percent-encoded, no query) so that the ``proxy`` sub-path reaches the proxy
byte for byte — ``%2F`` included — while object names are decoded like the
apiserver decodes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import unquote

import attrs

from clustergateway.api.types import GroupVersion
from clustergateway.auth.guard import RequestAttributes

__all__ = [
    "Discovery",
    "ResourcePath",
    "first_arg",
    "parse_apis_path",
    "query_flag",
    "request_attributes",
]

SERVED_RESOURCES = frozenset({"clustergateways", "virtualclusters"})
SUBRESOURCES = {"clustergateways": frozenset({"proxy", "health"})}


@attrs.frozen
class Discovery:
    """A discovery document: ``/apis``, ``/apis/<g>`` or ``/apis/<g>/<v>``."""

    document: Literal["group_list", "group", "resource_list"]


@attrs.frozen
class ResourcePath:
    """A request on a served resource.

    ``subpath`` is set for ``proxy`` only: the raw rest of the path after
    ``/proxy`` (empty, or starting with ``/``).  ``legacy_watch`` marks the
    deprecated ``/watch/<resource>`` form.
    """

    resource: str
    name: str = ""
    subresource: str = ""
    subpath: bytes = b""
    legacy_watch: bool = False


def _decode(segment: bytes) -> str:
    return unquote(segment.decode("utf-8", "surrogateescape"))


def parse_apis_path(raw_path: bytes, gv: GroupVersion) -> Discovery | ResourcePath | None:
    """Route a raw path under ``/apis``; None means 404.

    ``.../clustergateways/c1/proxy/api%2Fx`` gives
    ``ResourcePath("clustergateways", "c1", "proxy", b"/api%2Fx")``.
    """
    if not raw_path.startswith(b"/apis"):
        return None
    rest = raw_path[len(b"/apis") :]
    if rest in (b"", b"/"):
        return Discovery("group_list")
    if not rest.startswith(b"/"):
        return None
    parts = rest[1:].split(b"/", 5)
    group = _decode(parts[0])
    if group != gv.group:
        return None
    if len(parts) == 1 or (len(parts) == 2 and parts[1] == b""):
        return Discovery("group")
    if _decode(parts[1]) != gv.version:
        return None
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == b""):
        return Discovery("resource_list")
    return _parse_resource(parts[2:])


def _parse_resource(parts: Sequence[bytes]) -> ResourcePath | None:
    """``parts``: the path segments after ``/apis/<g>/<v>/`` (the last one unsplit)."""
    legacy_watch = False
    if parts[0] == b"watch":
        legacy_watch = True
        parts = b"/".join(parts[1:]).split(b"/")
    resource = _decode(parts[0])
    if resource not in SERVED_RESOURCES:
        return None
    if len(parts) == 1 or (len(parts) == 2 and parts[1] == b""):
        return ResourcePath(resource, legacy_watch=legacy_watch)
    name = _decode(parts[1])
    if not name:
        return None
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == b"" and not legacy_watch):
        return ResourcePath(resource, name, legacy_watch=legacy_watch)
    if legacy_watch:
        return None
    subresource = _decode(parts[2])
    if subresource not in SUBRESOURCES.get(resource, ()):
        return None
    tail = b"/".join(parts[3:])
    if subresource == "proxy":
        return ResourcePath(resource, name, subresource, b"/" + tail if len(parts) > 3 else b"")
    if tail:
        return None
    return ResourcePath(resource, name, subresource)


def first_arg(args: Mapping[bytes, Sequence[bytes]], name: bytes) -> str | None:
    """The first value of query parameter ``name``, decoded, or None."""
    values = args.get(name)
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def query_flag(args: Mapping[bytes, Sequence[bytes]], name: bytes) -> bool:
    """A boolean query parameter as Go's ``strconv.ParseBool`` reads it (``1``, ``true`` ...)."""
    value = first_arg(args, name)
    return value is not None and value.lower() in ("1", "t", "true")


_PROXY_VERBS = {
    b"GET": "get",
    b"HEAD": "get",
    b"OPTIONS": "get",
    b"POST": "create",
    b"PUT": "update",
    b"PATCH": "patch",
    b"DELETE": "delete",
}

_OBJECT_VERBS = {
    b"GET": "get",
    b"HEAD": "get",
    b"POST": "create",
    b"PUT": "update",
    b"PATCH": "patch",
    b"DELETE": "delete",
}


def _name_from_field_selector(selector: str | None) -> str:
    """``metadata.name=X`` (alone) names the object a list/watch is about, as in kube."""
    if not selector or "," in selector:
        return ""
    for op in ("==", "="):
        key, sep, value = selector.partition(op)
        if sep and key.strip() == "metadata.name" and "!" not in key:
            return value.strip()
    return ""


def request_attributes(
    method: bytes,
    raw_path: bytes,
    route: Discovery | ResourcePath | None,
    args: Mapping[bytes, Sequence[bytes]],
    gv: GroupVersion,
) -> RequestAttributes:
    """The authorization attributes of a request (kube's ``RequestInfoFactory``).

    * collection GET → ``list``, or ``watch`` with ``watch=true``/the ``/watch/`` path;
      a ``fieldSelector`` of ``metadata.name=X`` sets ``name``;
    * named GET → ``get`` (``watch`` on the legacy path); POST ``create``, PUT
      ``update``, PATCH ``patch``, DELETE ``delete`` (``deletecollection`` on a collection);
    * ``proxy``: GET/HEAD/OPTIONS → ``get`` (OPTIONS is read-only; Go passed an empty
      verb that no role grants), POST ``create``, PUT ``update``, PATCH ``patch``,
      DELETE ``delete``;
    * anything else is a non-resource request whose verb is the lower-case method.
    """
    path = raw_path.decode("utf-8", "replace")
    if not isinstance(route, ResourcePath):
        return RequestAttributes(verb=method.decode("ascii", "replace").lower(), path=path)
    if route.subresource == "proxy":
        verb = _PROXY_VERBS.get(method, method.decode("ascii", "replace").lower())
    else:
        verb = _OBJECT_VERBS.get(method, method.decode("ascii", "replace").lower())
    name = route.name
    if verb == "get" and not route.subresource:
        if route.legacy_watch:
            verb = "watch"
        elif not name:
            verb = "watch" if query_flag(args, b"watch") else "list"
    elif verb == "delete" and not name:
        verb = "deletecollection"
    if verb in ("list", "watch") and not name:
        name = _name_from_field_selector(first_arg(args, b"fieldSelector"))
    return RequestAttributes(
        verb=verb,
        path=path,
        resource_request=True,
        api_group=gv.group,
        api_version=gv.version,
        resource=route.resource,
        subresource=route.subresource,
        name=name,
    )
