"""OpenAPI v2/v3: real schemas that kubectl explain can walk."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clustergateway.api.openapi import PKG, OpenAPIDocuments, openapi_v2, openapi_v3
from clustergateway.api.types import GroupVersion

GV = GroupVersion()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize(
    ("doc", "prefix", "schemas"),
    [
        (openapi_v2(GV), "#/definitions/", lambda d: d["definitions"]),
        (openapi_v3(GV), "#/components/schemas/", lambda d: d["components"]["schemas"]),
    ],
    ids=["v2", "v3"],
)
def test_every_reference_resolves(doc: dict[str, Any], prefix: str, schemas: Any) -> None:
    """No dangling $ref anywhere in the document."""
    names = set(schemas(doc))
    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert ref.startswith(prefix)
        assert ref[len(prefix) :] in names


def test_kinds_carry_group_version_kind() -> None:
    """kubectl explain finds the kind by x-kubernetes-group-version-kind."""
    schemas = openapi_v3(GV)["components"]["schemas"]
    for kind in ("ClusterGateway", "ClusterGatewayList", "VirtualCluster", "VirtualClusterList"):
        gvk = schemas[f"{PKG}.{kind}"]["x-kubernetes-group-version-kind"]
        assert gvk == [{"group": "cluster.core.oam.dev", "kind": kind, "version": "v1alpha1"}]


def test_access_schema() -> None:
    """spec.access.endpoint.const has the hyphenated proxy-url and byte-format caBundle."""
    schemas = openapi_v3(GV)["components"]["schemas"]
    const = schemas[f"{PKG}.ClusterEndpointConst"]["properties"]
    assert set(const) == {"address", "caBundle", "insecure", "proxy-url"}
    assert const["caBundle"]["format"] == "byte"
    vc_spec = schemas[f"{PKG}.VirtualClusterSpec"]["properties"]
    assert set(vc_spec) == {"alias", "accepted", "endpoint", "credential-type"}


def test_documents_index_points_at_group_version() -> None:
    """/openapi/v3 lists the per-GV path with a hash that is the document's ETag."""
    docs = OpenAPIDocuments.build(GV)
    index = json.loads(docs.v3_index)
    url = index["paths"]["apis/cluster.core.oam.dev/v1alpha1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/cluster.core.oam.dev/v1alpha1?hash=")
    assert url.split("hash=")[1] == docs.v3_etag.decode().strip('"')
    assert json.loads(docs.v2)["info"] == {"title": "Cluster Gateway", "version": "1.0.0"}
    paths = json.loads(docs.v3)["paths"]
    assert "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{name}/proxy/{path}" in paths
