"""ClusterGateway / VirtualCluster JSON: the exact shapes of spec §1.2 and §1.4."""

from __future__ import annotations

import base64

import pytest

from clustergateway.api.types import (
    GroupVersion,
    cluster_gateway_list,
    cluster_gateway_object,
    virtual_cluster_list,
    virtual_cluster_object,
)
from clustergateway.registry.model import ClusterGateway, CredentialSpec, EndpointSpec
from clustergateway.registry.virtualcluster import VirtualCluster

GV = GroupVersion()


def gateway(**changes: object) -> ClusterGateway:
    values: dict[str, object] = {
        "name": "c1",
        "endpoint": EndpointSpec("Const", "https://1.2.3.4:6443", ca_bundle=b"CA PEM"),
        "credential": CredentialSpec("ServiceAccountToken", token="tok"),
        "creation_timestamp": "2026-01-02T03:04:05Z",
        "labels": {"env": "prod"},
        "annotations": {"a": "b"},
    }
    values.update(changes)
    return ClusterGateway(**values)  # type: ignore[arg-type]


def test_full_object_shape() -> None:
    """A token cluster with a CA: base64 caBundle, no insecure, labels/annotations not shown."""
    assert cluster_gateway_object(gateway(), GV) == {
        "kind": "ClusterGateway",
        "apiVersion": "cluster.core.oam.dev/v1alpha1",
        "metadata": {"name": "c1", "creationTimestamp": "2026-01-02T03:04:05Z"},
        "spec": {
            "provider": "",
            "access": {
                "endpoint": {
                    "type": "Const",
                    "const": {
                        "address": "https://1.2.3.4:6443",
                        "caBundle": base64.b64encode(b"CA PEM").decode(),
                    },
                },
                "credential": {"type": "ServiceAccountToken", "serviceAccountToken": "tok"},
            },
        },
        "status": {"healthy": False},
    }


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (
            EndpointSpec("Const", "https://h:1", insecure=True),
            {"type": "Const", "const": {"address": "https://h:1", "insecure": True}},
        ),
        (
            EndpointSpec("Const", "https://h:1", ca_bundle=b"", proxy_url="socks5://p:1080"),
            {"type": "Const", "const": {"address": "https://h:1", "proxy-url": "socks5://p:1080"}},
        ),
        (EndpointSpec("ClusterProxy"), {"type": "ClusterProxy"}),
        (
            EndpointSpec("Const", "https://h:1", tls_server_name="other"),
            {"type": "Const", "const": {"address": "https://h:1"}},
        ),
    ],
    ids=[
        "insecure",
        "proxy-url-hyphenated-empty-ca-omitted",
        "clusterproxy-no-const",
        "sni-hidden",
    ],
)
def test_endpoint_omitempty(endpoint: EndpointSpec, expected: dict[str, object]) -> None:
    """``const`` fields are omitempty; the proxy key is ``proxy-url``; ClusterProxy has no const."""
    obj = cluster_gateway_object(gateway(endpoint=endpoint), GV)
    assert obj["spec"]["access"]["endpoint"] == expected


@pytest.mark.parametrize(
    ("credential", "expected"),
    [
        (
            CredentialSpec("X509Certificate", certificate=b"CERT", private_key=b"KEY"),
            {
                "type": "X509Certificate",
                "x509": {
                    "certificate": base64.b64encode(b"CERT").decode(),
                    "privateKey": base64.b64encode(b"KEY").decode(),
                },
            },
        ),
        (CredentialSpec("Dynamic", exec_config="{}"), {"type": "Dynamic"}),
    ],
    ids=["x509-base64", "dynamic-never-shows-exec"],
)
def test_credential_shapes(credential: CredentialSpec, expected: dict[str, object]) -> None:
    """x509 bytes are base64; a Dynamic credential shows only its type (no exec config)."""
    obj = cluster_gateway_object(gateway(credential=credential), GV)
    assert obj["spec"]["access"]["credential"] == expected


def test_no_credential_and_unhealthy_reason() -> None:
    """``credential`` is omitted when absent; ``healthyReason`` shows only when set."""
    obj = cluster_gateway_object(
        gateway(credential=None, healthy=True, healthy_reason="", creation_timestamp=None), GV
    )
    assert "credential" not in obj["spec"]["access"]
    assert obj["status"] == {"healthy": True}
    assert obj["metadata"] == {"name": "c1", "creationTimestamp": None}
    reason = cluster_gateway_object(gateway(healthy_reason="ConnectionTimeout"), GV)["status"]
    assert reason == {"healthy": False, "healthyReason": "ConnectionTimeout"}


def test_resource_version_only_when_asked() -> None:
    """Objects of watch events carry metadata.resourceVersion; GET/LIST objects do not."""
    assert cluster_gateway_object(gateway(), GV, resource_version=7)["metadata"] == {
        "name": "c1",
        "creationTimestamp": "2026-01-02T03:04:05Z",
        "resourceVersion": "7",
    }


def test_list_and_group_override() -> None:
    """A list reports the registry version; --api-group changes every apiVersion."""
    gv = GroupVersion("cluster.example.io")
    doc = cluster_gateway_list([gateway()], gv, 42)
    assert doc["kind"] == "ClusterGatewayList"
    assert doc["apiVersion"] == "cluster.example.io/v1alpha1"
    assert doc["metadata"] == {"resourceVersion": "42"}
    assert doc["items"][0]["apiVersion"] == "cluster.example.io/v1alpha1"


def test_virtual_cluster_shape() -> None:
    """labels in metadata; alias/accepted/endpoint/credential-type omitempty; no status."""
    vc = VirtualCluster(
        name="c1",
        labels={"env": "prod"},
        alias="prod-1",
        accepted=True,
        endpoint="https://1.2.3.4:6443",
        credential_type="X509Certificate",
        creation_timestamp="2026-01-02T03:04:05Z",
    )
    assert virtual_cluster_object(vc, GV) == {
        "kind": "VirtualCluster",
        "apiVersion": "cluster.core.oam.dev/v1alpha1",
        "metadata": {
            "name": "c1",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"env": "prod"},
        },
        "spec": {
            "alias": "prod-1",
            "accepted": True,
            "endpoint": "https://1.2.3.4:6443",
            "credential-type": "X509Certificate",
        },
    }
    bare = virtual_cluster_object(VirtualCluster(name="x"), GV)
    assert bare["spec"] == {}
    assert "labels" not in bare["metadata"]
    assert virtual_cluster_list([vc], GV, 3)["kind"] == "VirtualClusterList"
