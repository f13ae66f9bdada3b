"""Table responses: the Go columns, cells and ``includeObject`` handling."""

from __future__ import annotations

import pytest

from clustergateway.api.tables import (
    CLUSTER_GATEWAY_COLUMNS,
    VIRTUAL_CLUSTER_COLUMNS,
    cluster_gateway_row,
    table,
    virtual_cluster_row,
)
from clustergateway.api.types import GroupVersion
from clustergateway.registry.model import ClusterGateway, CredentialSpec, EndpointSpec
from clustergateway.registry.virtualcluster import VirtualCluster

GV = GroupVersion()
GATEWAY = ClusterGateway(
    "c1",
    EndpointSpec("ClusterProxy"),
    CredentialSpec("X509Certificate", certificate=b"C", private_key=b"K"),
    creation_timestamp="2026-01-01T00:00:00Z",
    healthy=True,
)


def test_cluster_gateway_columns() -> None:
    """Name, Provider, Credential-Type, Endpoint-Type, Healthy — all strings, Name formatted."""
    assert [(c.name, c.type, c.format, c.priority) for c in CLUSTER_GATEWAY_COLUMNS] == [
        ("Name", "string", "name", 0),
        ("Provider", "string", "", 0),
        ("Credential-Type", "string", "", 0),
        ("Endpoint-Type", "string", "", 0),
        ("Healthy", "string", "", 0),
    ]
    assert CLUSTER_GATEWAY_COLUMNS[4].description == "the healthiness of the gateway"


def test_virtual_cluster_columns() -> None:
    """Creation_Timestamp is a wide-only dateTime column; Accepted is boolean."""
    assert [(c.name, c.type, c.priority) for c in VIRTUAL_CLUSTER_COLUMNS] == [
        ("Name", "string", 0),
        ("Alias", "string", 0),
        ("Credential_Type", "string", 0),
        ("Endpoint", "string", 0),
        ("Accepted", "boolean", 0),
        ("Labels", "string", 0),
        ("Creation_Timestamp", "dateTime", 10),
    ]


def test_cluster_gateway_cells() -> None:
    """Provider is always empty; healthy is the string "true"; no credential shows <none>."""
    assert cluster_gateway_row(GATEWAY, GV)["cells"] == [
        "c1",
        "",
        "X509Certificate",
        "ClusterProxy",
        "true",
    ]
    bare = ClusterGateway("c2", EndpointSpec("Const", "https://h"), None)
    assert cluster_gateway_row(bare, GV)["cells"][2:] == ["<none>", "Const", "false"]


@pytest.mark.parametrize(
    ("include", "expected_kind"),
    [("Object", "ClusterGateway"), ("Metadata", "PartialObjectMetadata"), ("None", None)],
)
def test_include_object(include: str, expected_kind: str | None) -> None:
    """Rows embed the object, its metadata only (default), or nothing."""
    row = cluster_gateway_row(GATEWAY, GV, include, "v1beta1")  # type: ignore[arg-type]
    if expected_kind is None:
        assert "object" not in row
    else:
        assert row["object"]["kind"] == expected_kind
        assert row["object"]["metadata"]["name"] == "c1"
    if expected_kind == "PartialObjectMetadata":
        assert row["object"]["apiVersion"] == "meta.k8s.io/v1beta1"


def test_virtual_cluster_cells() -> None:
    """Labels are k=v joined by "," (sorted); the timestamp cell is the raw value or None."""
    vc = VirtualCluster(
        "c1",
        labels={"b": "2", "a": "1"},
        alias="x",
        accepted=True,
        endpoint="-",
        credential_type="Internal",
    )
    assert virtual_cluster_row(vc, GV)["cells"] == [
        "c1",
        "x",
        "Internal",
        "-",
        True,
        "a=1,b=2",
        None,
    ]


def test_table_document() -> None:
    """A meta.k8s.io Table with its version, resourceVersion and column definitions."""
    doc = table(CLUSTER_GATEWAY_COLUMNS, [cluster_gateway_row(GATEWAY, GV)], resource_version=5)
    assert doc["kind"] == "Table"
    assert doc["apiVersion"] == "meta.k8s.io/v1"
    assert doc["metadata"] == {"resourceVersion": "5"}
    assert doc["columnDefinitions"][0] == {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": "the name of the cluster",
        "priority": 0,
    }
    assert len(doc["rows"]) == 1
    assert table((), [], resource_version=None, table_version="v1beta1")["metadata"] == {}
