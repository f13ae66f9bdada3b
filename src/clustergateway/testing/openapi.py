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


def _operations(t: ResourceType) -> dict[str, Document]:
    gvk = {"group": t.group, "version": t.version, "kind": t.kind}
    base = f"/{gv_path(t.group, t.version)}"
    scope = f"{base}/namespaces/{{namespace}}" if t.namespaced else base
    collection = f"{scope}/{t.resource}"
    item = f"{collection}/{{name}}"
    ok = {"200": {"description": "OK"}}
    write_params = [_query(p) for p in ("dryRun", "fieldManager", "fieldValidation")]
    paths: dict[str, Document] = {collection: {}, item: {}}
    if "create" in t.verbs:
        paths[collection]["post"] = {
            "operationId": f"create{t.kind}",
            "parameters": write_params,
            "requestBody": {"content": {"*/*": {"schema": {}}}},
            "responses": ok,
            "x-kubernetes-action": "post",
            "x-kubernetes-group-version-kind": gvk,
        }
    if "list" in t.verbs:
        paths[collection]["get"] = {
            "operationId": f"list{t.kind}",
            "parameters": [
                _query(p) for p in ("labelSelector", "fieldSelector", "limit", "continue", "watch")
            ],
            "responses": ok,
            "x-kubernetes-action": "list",
            "x-kubernetes-group-version-kind": gvk,
        }
    if "get" in t.verbs:
        paths[item]["get"] = {
            "operationId": f"read{t.kind}",
            "responses": ok,
            "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": gvk,
        }
    if "update" in t.verbs:
        paths[item]["put"] = {
            "operationId": f"replace{t.kind}",
            "parameters": write_params,
            "requestBody": {"content": {"*/*": {"schema": {}}}},
            "responses": ok,
            "x-kubernetes-action": "put",
            "x-kubernetes-group-version-kind": gvk,
        }
    if "patch" in t.verbs:
        types = (
            _PATCH_TYPES
            if t.group == ""
            else tuple(p for p in _PATCH_TYPES if "strategic" not in p)
        )
        paths[item]["patch"] = {
            "operationId": f"patch{t.kind}",
            "parameters": [*write_params, _query("force")],
            "requestBody": {"content": {p: {"schema": {}} for p in types}},
            "responses": ok,
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
        }
    if "delete" in t.verbs:
        paths[item]["delete"] = {
            "operationId": f"delete{t.kind}",
            "parameters": [_query("dryRun"), _query("gracePeriodSeconds")],
            "responses": ok,
            "x-kubernetes-action": "delete",
            "x-kubernetes-group-version-kind": gvk,
        }
    return {p: ops for p, ops in paths.items() if ops}


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
