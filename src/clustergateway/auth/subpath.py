"""Kubernetes request-info parsing, for authorizing a request by its path.

The apiserver turns every request into authorization attributes with
``RequestInfoFactory.NewRequestInfo`` (``k8s.io/apiserver/pkg/endpoints/request``).
This module is a pure port of it, used twice:

- ``--authorize-proxy-subpath``: the *target* of a proxied request
  (``/api/v1/namespaces/default/pods?watch=true``) is checked at the hub with
  the verb the managed cluster would see.  The Go gateway reused the hub
  request's verb, so a target list or watch was checked as ``get``
  (quirk §14.11); here a collection GET is ``list`` and ``watch=true`` is
  ``watch``, exactly like the apiserver.
- the gateway's own paths (audit lines name the verb, resource and cluster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, unquote

import attrs

__all__ = ["RequestInfo", "parse_request_info", "target_request_info"]

_API_PREFIXES = frozenset({"api", "apis"})
_GROUPLESS_PREFIXES = frozenset({"api"})
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@attrs.frozen
class RequestInfo:
    """What a request asks for, in authorization terms.

    For a non-resource request only ``verb`` (the lower-cased HTTP method)
    and ``path`` matter.
    """

    is_resource_request: bool
    verb: str
    path: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def _go_bool(values: Sequence[str]) -> bool:
    # Convert_Slice_string_To_bool: only "false"/"0" are false; even "" is true.
    return values[0].lower() not in ("false", "0")


def _field_selector_name(selector: str) -> str:
    """The name a ``metadata.name=<n>`` field selector pins, else ''."""
    for term in selector.split(","):
        for operator in ("==", "="):
            key, sep, value = term.partition(operator)
            if sep and key.strip() == "metadata.name" and not value.startswith("="):
                value = value.strip()
                if value and value not in (".", "..") and "/" not in value and "%" not in value:
                    return value
                return ""
    return ""


def parse_request_info(
    method: str, path: str, query: Mapping[str, Sequence[str]] | None = None
) -> RequestInfo:
    """``NewRequestInfo`` for ``method`` on ``path`` (no query string) with ``query``.

    Resource requests: ``/api/<v>/...`` and ``/apis/<g>/<v>/...``, with
    ``namespaces/<ns>/`` and the legacy ``watch/`` and ``proxy/`` verb
    prefixes.  A GET without a name is ``list``, or ``watch`` when the
    ``watch`` parameter is true; a DELETE without a name is
    ``deletecollection``.  Everything else is a non-resource request.
    """
    query = query or {}
    method = method.upper()
    non_resource = RequestInfo(False, method.lower(), path)
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in _API_PREFIXES:
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix not in _GROUPLESS_PREFIXES:
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]

    if parts[0] in _SPECIAL_VERBS:
        if len(parts) < 2:
            # The apiserver answers an error; authorize it as the path it is.
            return non_resource
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method, "")

    namespace = ""
    if parts[0] == "namespaces":
        if len(parts) > 1:
            namespace = parts[1]
            if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
                parts = parts[2:]

    resource = name = subresource = ""
    if len(parts) >= 3 and verb not in _SPECIAL_VERBS_NO_SUBRESOURCES:
        subresource = parts[2]
    if len(parts) >= 2:
        name = parts[1]
    resource = parts[0]

    if not name and verb == "get":
        watch = query.get("watch")
        verb = "watch" if watch and _go_bool(watch) else "list"
        selector = query.get("fieldSelector")
        if selector:
            name = _field_selector_name(selector[0])
    if not name and verb == "delete":
        verb = "deletecollection"

    return RequestInfo(
        True,
        verb,
        path,
        api_prefix=prefix,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


def target_request_info(method: str, subpath: str, query_string: str = "") -> RequestInfo:
    """Request info of a proxy target: ``subpath`` is the raw path after ``…/proxy``.

    ``subpath`` is still percent-encoded; it is decoded first, as Go's
    ``URL.Path`` is, so ``%2F`` separates segments exactly as the cluster
    will see it.  ``query_string`` is the raw query as forwarded
    (``__dryRun`` and the like do not affect the verb).  An empty sub-path
    is the cluster's ``/``.
    """
    subpath = unquote(subpath)
    path = "/" + subpath.lstrip("/") if subpath else "/"
    query = parse_qs(query_string, keep_blank_values=True)
    return parse_request_info(method, path, query)
