"""Discovery documents: how kubectl, client-go and the hub's aggregator learn the API.

Three generations, all derived from one table of :class:`ResourceInfo`:

* legacy: ``/apis`` (``APIGroupList``), ``/apis/<g>`` (``APIGroup``),
  ``/apis/<g>/<v>`` (``APIResourceList``; the aggregator's availability probe);
* aggregated discovery (``/apis`` with ``Accept:
  application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``, and
  ``v2beta1`` for kubectl ≤ 1.29), served with an ``ETag`` so the aggregator's
  minutely poll is answered ``304 Not Modified``.

Everything here is pure and computed once per group; the serving layer caches
the bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs

from clustergateway.api.types import GroupVersion

__all__ = [
    "AGGREGATED_CONTENT_TYPES",
    "DiscoveryDocuments",
    "ResourceInfo",
    "Subresource",
    "aggregated_discovery",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "served_resources",
]

#: Content-Type per aggregated-discovery version (exactly as kube-apiserver sends it).
AGGREGATED_CONTENT_TYPES: dict[str, str] = {
    "v2": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    "v2beta1": "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
}

VIRTUAL_CLUSTER_SHORT_NAMES = (
    "vc",
    "vcluster",
    "vclusters",
    "virtual-cluster",
    "virtual-clusters",
)

#: Verbs a ``connect`` subresource shows in discovery (kube lists pods/proxy the same way).
PROXY_VERBS = ("create", "delete", "get", "patch", "update")


@attrs.frozen
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]


@attrs.frozen
class ResourceInfo:
    """One served, cluster-scoped resource and its subresources."""

    name: str
    singular: str
    kind: str
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()


def served_resources() -> tuple[ResourceInfo, ...]:
    """``clustergateways`` (with ``proxy`` and ``health``) and ``virtualclusters``."""
    return (
        ResourceInfo(
            name="clustergateways",
            singular="clustergateway",
            kind="ClusterGateway",
            verbs=("get", "list", "watch"),
            subresources=(
                Subresource("health", "ClusterGateway", ("get", "patch", "update")),
                Subresource("proxy", "ClusterGatewayProxyOptions", PROXY_VERBS),
            ),
        ),
        ResourceInfo(
            name="virtualclusters",
            singular="virtualcluster",
            kind="VirtualCluster",
            verbs=("get", "list", "watch"),
            short_names=VIRTUAL_CLUSTER_SHORT_NAMES,
        ),
    )


def _group_version_for_discovery(gv: GroupVersion) -> dict[str, str]:
    return {"groupVersion": gv.api_version, "version": gv.version}


def api_group(gv: GroupVersion) -> dict[str, Any]:
    """``GET /apis/<group>``."""
    version = _group_version_for_discovery(gv)
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": gv.group,
        "versions": [version],
        "preferredVersion": version,
    }


def api_group_list(gv: GroupVersion) -> dict[str, Any]:
    """``GET /apis`` (legacy discovery)."""
    group = api_group(gv)
    del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def api_resource_list(gv: GroupVersion, resources: tuple[ResourceInfo, ...]) -> dict[str, Any]:
    """``GET /apis/<group>/<version>``: the ``APIResourceList``."""
    items: list[dict[str, Any]] = []
    for res in resources:
        item: dict[str, Any] = {
            "name": res.name,
            "singularName": res.singular,
            "namespaced": False,
            "kind": res.kind,
            "verbs": list(res.verbs),
        }
        if res.short_names:
            item["shortNames"] = list(res.short_names)
        items.append(item)
        for sub in res.subresources:
            items.append(
                {
                    "name": f"{res.name}/{sub.name}",
                    "singularName": "",
                    "namespaced": False,
                    "kind": sub.kind,
                    "verbs": list(sub.verbs),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv.api_version,
        "resources": items,
    }


def _gvk(gv: GroupVersion, kind: str) -> dict[str, str]:
    return {"group": gv.group, "version": gv.version, "kind": kind}


def aggregated_discovery(
    gv: GroupVersion, resources: tuple[ResourceInfo, ...], version: str = "v2"
) -> dict[str, Any]:
    """``GET /apis`` as an ``APIGroupDiscoveryList`` (``version``: ``v2`` or ``v2beta1``)."""
    entries: list[dict[str, Any]] = []
    for res in resources:
        entry: dict[str, Any] = {
            "resource": res.name,
            "responseKind": _gvk(gv, res.kind),
            "scope": "Cluster",
            "singularResource": res.singular,
            "verbs": list(res.verbs),
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.subresources:
            entry["subresources"] = [
                {
                    "subresource": sub.name,
                    "responseKind": _gvk(gv, sub.kind),
                    "verbs": list(sub.verbs),
                }
                for sub in res.subresources
            ]
        entries.append(entry)
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": gv.group, "creationTimestamp": None},
                "versions": [{"version": gv.version, "resources": entries, "freshness": "Current"}],
            }
        ],
    }


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


@attrs.frozen
class DiscoveryDocuments:
    """Every discovery document of one group/version, encoded once."""

    group_list: bytes
    group: bytes
    resource_list: bytes
    #: aggregated-discovery version → (body, quoted ETag)
    aggregated: dict[str, tuple[bytes, bytes]]

    @classmethod
    def build(cls, gv: GroupVersion) -> DiscoveryDocuments:
        resources = served_resources()
        aggregated: dict[str, tuple[bytes, bytes]] = {}
        for version in AGGREGATED_CONTENT_TYPES:
            body = _encode(aggregated_discovery(gv, resources, version))
            etag = b'"' + hashlib.sha256(body).hexdigest().encode() + b'"'
            aggregated[version] = (body, etag)
        return cls(
            group_list=_encode(api_group_list(gv)),
            group=_encode(api_group(gv)),
            resource_list=_encode(api_resource_list(gv, resources)),
            aggregated=aggregated,
        )
