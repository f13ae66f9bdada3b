"""Discovery documents: legacy lists, aggregated v2/v2beta1 and their ETags."""

from __future__ import annotations

import json

from clustergateway.api.discovery import (
    AGGREGATED_CONTENT_TYPES,
    DiscoveryDocuments,
    aggregated_discovery,
    api_group_list,
    api_resource_list,
    served_resources,
)
from clustergateway.api.types import GroupVersion

GV = GroupVersion()


def test_api_resource_list() -> None:
    """Both kinds cluster-scoped with get/list/watch; proxy and health listed as subresources."""
    doc = api_resource_list(GV, served_resources())
    assert doc["groupVersion"] == "cluster.core.oam.dev/v1alpha1"
    by_name = {r["name"]: r for r in doc["resources"]}
    assert set(by_name) == {
        "clustergateways",
        "clustergateways/health",
        "clustergateways/proxy",
        "virtualclusters",
    }
    assert by_name["clustergateways"] == {
        "name": "clustergateways",
        "singularName": "clustergateway",
        "namespaced": False,
        "kind": "ClusterGateway",
        "verbs": ["get", "list", "watch"],
    }
    assert by_name["clustergateways/health"]["verbs"] == ["get", "patch", "update"]
    assert by_name["clustergateways/proxy"]["kind"] == "ClusterGatewayProxyOptions"
    assert by_name["virtualclusters"]["shortNames"] == [
        "vc",
        "vcluster",
        "vclusters",
        "virtual-cluster",
        "virtual-clusters",
    ]


def test_group_list() -> None:
    """/apis names the group with its one preferred version."""
    group = api_group_list(GV)["groups"][0]
    assert group["name"] == "cluster.core.oam.dev"
    assert group["preferredVersion"] == {
        "groupVersion": "cluster.core.oam.dev/v1alpha1",
        "version": "v1alpha1",
    }


def test_aggregated_v2() -> None:
    """APIGroupDiscoveryList: responseKind, scope Cluster, subresources, freshness Current."""
    doc = aggregated_discovery(GV, served_resources(), "v2")
    assert doc["apiVersion"] == "apidiscovery.k8s.io/v2"
    version = doc["items"][0]["versions"][0]
    assert version["version"] == "v1alpha1"
    assert version["freshness"] == "Current"
    gateways = version["resources"][0]
    assert gateways["responseKind"] == {
        "group": "cluster.core.oam.dev",
        "version": "v1alpha1",
        "kind": "ClusterGateway",
    }
    assert gateways["scope"] == "Cluster"
    assert [s["subresource"] for s in gateways["subresources"]] == ["health", "proxy"]
    assert version["resources"][1]["shortNames"][0] == "vc"


def test_documents_etags() -> None:
    """Each aggregated version has a quoted ETag over its exact bytes; groups differ."""
    docs = DiscoveryDocuments.build(GV)
    assert set(docs.aggregated) == set(AGGREGATED_CONTENT_TYPES)
    body, etag = docs.aggregated["v2beta1"]
    assert json.loads(body)["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    assert etag.startswith(b'"') and etag.endswith(b'"')
    assert DiscoveryDocuments.build(GV).aggregated["v2"] == docs.aggregated["v2"]
    other = DiscoveryDocuments.build(GroupVersion("example.io"))
    assert other.aggregated["v2"][1] != docs.aggregated["v2"][1]
    assert AGGREGATED_CONTENT_TYPES["v2"] == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
