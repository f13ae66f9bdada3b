"""A minimal OpenAPI v3 publication: enough for kubectl's ``apply`` and ``create -f``.

kubectl (1.27+) downloads ``/openapi/v3`` and the per-group-version documents to
learn whether the server validates fields itself (the ``fieldValidation`` query
parameter of each kind's PATCH operation); without them it refuses to send
objects ("failed to download openapi").  The documents here declare the
operations and parameters of every served kind but carry no schemas, so kubectl
computes strategic merge patches from its built-in types and merge patches for
the rest, exactly as it does when a server's schema lacks a kind.  ``/openapi/v2``
stays 404, which kubectl tolerates.
"""

from __future__ import annotations

from typing import Any

from clustergateway.testing.discovery import etag_of
from clustergateway.testing.kinds import ResourceType, ResourceTypes

__all__ = ["group_version_document", "openapi_v3_root", "gv_path"]

Document = dict[str, Any]

_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def gv_path(group: str, version: str) -> str:
    """``api/v1`` or ``apis/<group>/<version>`` (the keys of the v3 root)."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _query(name: str) -> Document:
    return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}


def _operation(
    t: ResourceType,
    action: str,
    operation_id: str,
    parameters: list[Document] | None = None,
    body_types: tuple[str, ...] = (),
) -> Document:
    operation: Document = {
        "operationId": f"{operation_id}{t.kind}",
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
    }
    if parameters:
        operation["parameters"] = parameters
    if body_types:
        operation["requestBody"] = {"content": {p: {"schema": {}} for p in body_types}}
    return operation


def _operations(t: ResourceType) -> dict[str, Document]:
    base = f"/{gv_path(t.group, t.version)}"
    scope = f"{base}/namespaces/{{namespace}}" if t.namespaced else base
    collection = f"{scope}/{t.resource}"
    item = f"{collection}/{{name}}"
    writes = [_query(p) for p in ("dryRun", "fieldManager", "fieldValidation")]
    listing = [_query(p) for p in ("labelSelector", "fieldSelector", "limit", "continue", "watch")]
    # CRD-served kinds (OCM) take no strategic merge patch, like on a real cluster.
    patch_types = tuple(p for p in _PATCH_TYPES if t.group == "" or "strategic" not in p)
    table: list[tuple[str, str, str, str, Document]] = [
        ("create", collection, "post", "post", _operation(t, "post", "create", writes, ("*/*",))),
        ("list", collection, "get", "list", _operation(t, "list", "list", listing)),
        ("get", item, "get", "get", _operation(t, "get", "read")),
        ("update", item, "put", "put", _operation(t, "put", "replace", writes, ("*/*",))),
        (
            "patch",
            item,
            "patch",
            "patch",
            _operation(t, "patch", "patch", [*writes, _query("force")], patch_types),
        ),
        (
            "delete",
            item,
            "delete",
            "delete",
            _operation(t, "delete", "delete", [_query("dryRun"), _query("gracePeriodSeconds")]),
        ),
    ]
    paths: dict[str, Document] = {}
    for verb, path, method, _action, operation in table:
        if verb in t.verbs:
            paths.setdefault(path, {})[method] = operation
    return paths


def group_version_document(types: ResourceTypes, group: str, version: str) -> Document | None:
    """``/openapi/v3/<gv_path>``, or None for an unknown group version."""
    served = types.in_group_version(group, version)
    if not served:
        return None
    paths: dict[str, Document] = {}
    for t in served:
        paths.update(_operations(t))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def openapi_v3_root(types: ResourceTypes) -> Document:
    """``/openapi/v3``: where each group version's document lives (with a content hash)."""
    paths: dict[str, Document] = {}
    for group, versions in types.groups():
        for version in versions:
            document = group_version_document(types, group, version)
            digest = etag_of(document or {}).strip('"')[:32].upper()
            key = gv_path(group, version)
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}
