"""Discovery documents built from the served :class:`ResourceTypes`.

Legacy (``APIVersions``, ``APIGroupList``, ``APIGroup``, ``APIResourceList``)
and aggregated (``APIGroupDiscoveryList``, ``apidiscovery.k8s.io`` v2 and
v2beta1, which kubectl 1.30+ and 1.29 ask for respectively).  Pure functions.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from clustergateway.testing.kinds import ResourceType, ResourceTypes

__all__ = [
    "aggregated_discovery",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "api_versions",
    "etag_of",
    "version_info",
]

Document = dict[str, Any]


def api_versions(server_address: str) -> Document:
    """``GET /api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_entry(group: str, versions: list[str]) -> Document:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def api_group_list(types: ResourceTypes) -> Document:
    """``GET /apis``: every named group."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(g, vs) for g, vs in types.groups() if g],
    }


def api_group(types: ResourceTypes, group: str) -> Document | None:
    """``GET /apis/<group>``, or None for an unknown group."""
    for name, versions in types.groups():
        if name == group and group:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}
    return None


def _storage_hash(rtype: ResourceType) -> str:
    digest = hashlib.sha256(f"{rtype.api_version}/{rtype.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def api_resource_list(types: ResourceTypes, group: str, version: str) -> Document | None:
    """``GET /api/v1`` or ``/apis/<g>/<v>``, or None for an unknown group version."""
    served = types.in_group_version(group, version)
    if not served:
        return None
    resources: list[Document] = []
    for t in served:
        entry: Document = {
            "name": t.resource,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": list(t.verbs),
        }
        if t.short_names:
            entry["shortNames"] = list(t.short_names)
        if t.categories:
            entry["categories"] = list(t.categories)
        if t.stored:
            entry["storageVersionHash"] = _storage_hash(t)
        resources.append(entry)
        for sub in t.subresources:
            sub_entry: Document = {
                "name": f"{t.resource}/{sub.name}",
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": sub.kind,
                "verbs": list(sub.verbs),
            }
            if sub.group != group or sub.version != version:
                sub_entry["group"] = sub.group
                sub_entry["version"] = sub.version
            resources.append(sub_entry)
    document: Document = {
        "kind": "APIResourceList",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
    if group:
        document["apiVersion"] = "v1"
    return document


def _aggregated_resource(t: ResourceType) -> Document:
    entry: Document = {
        "resource": t.resource,
        "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
        "scope": "Namespaced" if t.namespaced else "Cluster",
        "singularResource": t.singular,
        "verbs": list(t.verbs),
    }
    if t.short_names:
        entry["shortNames"] = list(t.short_names)
    if t.categories:
        entry["categories"] = list(t.categories)
    if t.subresources:
        entry["subresources"] = [
            {
                "subresource": s.name,
                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                "verbs": list(s.verbs),
            }
            for s in t.subresources
        ]
    return entry


def aggregated_discovery(types: ResourceTypes, *, core: bool, version: str = "v2") -> Document:
    """``APIGroupDiscoveryList`` for ``/api`` (``core=True``) or ``/apis``."""
    items: list[Document] = []
    for group, versions in types.groups():
        if bool(group) == core:
            continue
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": v,
                        "resources": [
                            _aggregated_resource(t) for t in types.in_group_version(group, v)
                        ],
                        "freshness": "Current",
                    }
                    for v in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


def etag_of(document: Document) -> str:
    """A strong ETag for a document (quoted, as the apiserver sends it)."""
    digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()
    return f'"{digest[:64]}"'


def version_info(minor: str = "31") -> Document:
    """``GET /version``: a kube-apiserver that sits within kubectl 1.29–1.33's skew."""
    return {
        "major": "1",
        "minor": minor,
        "gitVersion": f"v1.{minor}.0-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
