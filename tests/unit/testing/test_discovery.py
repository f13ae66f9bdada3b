"""Discovery and OpenAPI documents built from the served types."""

from __future__ import annotations

from clustergateway.testing import discovery, openapi
from clustergateway.testing.kinds import DEFAULT_TYPES


def test_core_resource_list_has_pod_subresources():
    """/api/v1 lists resources and the pod stream subresources kubectl checks."""
    doc = discovery.api_resource_list(DEFAULT_TYPES, "", "v1")
    names = {r["name"] for r in doc["resources"]}
    assert {"pods", "pods/log", "pods/exec", "pods/attach", "pods/portforward"} <= names
    assert {"namespaces", "namespaces/status", "configmaps", "secrets"} <= names
    assert doc["groupVersion"] == "v1"
    pods = next(r for r in doc["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"] and pods["namespaced"] is True
    assert "watch" in pods["verbs"]


def test_group_list_and_group():
    """/apis names the OCM, APIService and review groups; unknown groups are None."""
    groups = {g["name"] for g in discovery.api_group_list(DEFAULT_TYPES)["groups"]}
    assert groups == {
        "cluster.open-cluster-management.io",
        "apiregistration.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "apps",
        "rbac.authorization.k8s.io",
        "coordination.k8s.io",
        "addon.open-cluster-management.io",
        "authentication.open-cluster-management.io",
        "proxy.open-cluster-management.io",
    }
    group = discovery.api_group(DEFAULT_TYPES, "cluster.open-cluster-management.io")
    assert group["preferredVersion"]["groupVersion"] == "cluster.open-cluster-management.io/v1"
    assert discovery.api_group(DEFAULT_TYPES, "nope.io") is None
    assert discovery.api_resource_list(DEFAULT_TYPES, "nope.io", "v1") is None


def test_aggregated_discovery():
    """Aggregated documents split core (/api) from named groups (/apis) and carry scopes."""
    core = discovery.aggregated_discovery(DEFAULT_TYPES, core=True)
    assert core["apiVersion"] == "apidiscovery.k8s.io/v2"
    assert [i["metadata"]["name"] for i in core["items"]] == [""]
    resources = {r["resource"]: r for r in core["items"][0]["versions"][0]["resources"]}
    assert resources["namespaces"]["scope"] == "Cluster"
    subresources = {s["subresource"] for s in resources["pods"]["subresources"]}
    assert {"exec", "log", "portforward", "attach", "status"} <= subresources
    named = discovery.aggregated_discovery(DEFAULT_TYPES, core=False, version="v2beta1")
    assert named["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    assert "" not in [i["metadata"]["name"] for i in named["items"]]


def test_etag_is_stable_and_content_sensitive():
    """Equal documents share an ETag; any change alters it."""
    doc = discovery.aggregated_discovery(DEFAULT_TYPES, core=True)
    assert discovery.etag_of(doc) == discovery.etag_of(
        discovery.aggregated_discovery(DEFAULT_TYPES, core=True)
    )
    assert discovery.etag_of(doc) != discovery.etag_of({**doc, "x": 1})


def test_openapi_v3_declares_field_validation_on_patch():
    """Each kind's PATCH operation names its GVK and the fieldValidation parameter."""
    root = openapi.openapi_v3_root(DEFAULT_TYPES)
    assert root["paths"]["api/v1"]["serverRelativeURL"].startswith("/openapi/v3/api/v1?hash=")
    doc = openapi.group_version_document(DEFAULT_TYPES, "", "v1")
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "",
        "version": "v1",
        "kind": "ConfigMap",
    }
    assert {
        "name": "fieldValidation",
        "in": "query",
        "schema": {"type": "string", "uniqueItems": True},
    } in patch["parameters"]
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    ocm = openapi.group_version_document(DEFAULT_TYPES, "cluster.open-cluster-management.io", "v1")
    ocm_patch = ocm["paths"]["/apis/cluster.open-cluster-management.io/v1/managedclusters/{name}"][
        "patch"
    ]
    assert "application/strategic-merge-patch+json" not in ocm_patch["requestBody"]["content"]
    assert openapi.group_version_document(DEFAULT_TYPES, "x", "v1") is None


def test_version_info():
    """/version reports a kube-apiserver version within kubectl's skew."""
    info = discovery.version_info("31")
    assert (info["major"], info["minor"]) == ("1", "31")
    assert info["gitVersion"].startswith("v1.31.")
