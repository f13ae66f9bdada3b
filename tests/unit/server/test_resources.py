"""clustergateways and virtualclusters through the in-memory Site: get, list, tables, errors."""

from __future__ import annotations

import json

import pytest
import yaml

from clustergateway.certs import KeyPair
from tests.unit.server.conftest import BASE, Served, token_secret

TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


def seed(served: Served, *secrets: dict) -> None:
    served.registry.replace_all(list(secrets))


def test_get_cluster_gateway_json(served: Served) -> None:
    """GET returns the exact object; metadata is name + creationTimestamp only."""
    seed(served, token_secret("c1", labels={"env": "prod"}))
    response = served.get(f"{BASE}/clustergateways/c1")
    assert response.code == 200
    assert response.header("content-type") == "application/json"
    obj = response.json()
    assert obj["metadata"] == {"name": "c1", "creationTimestamp": "2026-01-01T00:00:00Z"}
    assert obj["spec"]["access"]["credential"] == {
        "type": "ServiceAccountToken",
        "serviceAccountToken": "token-c1",
    }


def test_get_unknown_is_404_status(served: Served) -> None:
    """An unknown cluster is a 404 NotFound Status in the apiserver's wording."""
    seed(served)
    response = served.get(f"{BASE}/clustergateways/nope")
    assert response.code == 404
    status = response.json()
    assert status["kind"] == "Status"
    assert status["reason"] == "NotFound"
    assert status["message"] == 'clustergateways.cluster.core.oam.dev "nope" not found'


def test_get_unconvertible_is_503_naming_the_secret(served: Served) -> None:
    """A Secret that cannot be converted: 503 naming the Secret and the missing key."""
    seed(served, token_secret("broken", endpoint=None))
    response = served.get(f"{BASE}/clustergateways/broken")
    assert response.code == 503
    message = response.json()["message"]
    assert "vela-system/broken" in message
    assert '"endpoint"' in message


def test_list_skips_broken_and_reports_resource_version(served: Served) -> None:
    """LIST leaves unconvertible Secrets out and reports the registry's version."""
    seed(served, token_secret("b"), token_secret("a"), token_secret("broken", endpoint=None))
    doc = served.get(f"{BASE}/clustergateways").json()
    assert doc["kind"] == "ClusterGatewayList"
    assert [i["metadata"]["name"] for i in doc["items"]] == ["a", "b"]
    assert doc["metadata"]["resourceVersion"] == str(served.registry.resource_version)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("env=prod", ["a"]),
        ("env!=prod", ["b"]),
        ("env", ["a"]),
        ("env in (prod,dev)", ["a"]),
    ],
)
def test_list_label_selector(served: Served, selector: str, expected: list[str]) -> None:
    """labelSelector applies to the Secret's labels."""
    seed(served, token_secret("a", labels={"env": "prod"}), token_secret("b"))
    from urllib.parse import quote

    doc = served.get(f"{BASE}/clustergateways?labelSelector={quote(selector)}").json()
    assert [i["metadata"]["name"] for i in doc["items"]] == expected


def test_list_field_selector_and_bad_selectors(served: Served) -> None:
    """metadata.name field selectors work; unsupported fields and bad selectors are 400."""
    seed(served, token_secret("a"), token_secret("b"))
    doc = served.get(f"{BASE}/clustergateways?fieldSelector=metadata.name%3Db").json()
    assert [i["metadata"]["name"] for i in doc["items"]] == ["b"]
    assert served.get(f"{BASE}/clustergateways?fieldSelector=spec.x%3D1").code == 400
    assert served.get(f"{BASE}/clustergateways?labelSelector=%3D%3D%3D").code == 400
    assert served.get(f"{BASE}/clustergateways?continue=abc").code == 400


def test_table_list(served: Served) -> None:
    """kubectl's Accept gets a Table with the Go columns and PartialObjectMetadata rows."""
    seed(served, token_secret("a"))
    response = served.get(f"{BASE}/clustergateways", accept=TABLE)
    assert response.header("content-type") == "application/json;as=Table;v=v1;g=meta.k8s.io"
    doc = response.json()
    assert [c["name"] for c in doc["columnDefinitions"]] == [
        "Name",
        "Provider",
        "Credential-Type",
        "Endpoint-Type",
        "Healthy",
    ]
    assert doc["rows"][0]["cells"] == ["a", "", "ServiceAccountToken", "Const", "true"]
    assert doc["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    full = served.get(f"{BASE}/clustergateways/a?includeObject=Object", accept=TABLE).json()
    assert full["rows"][0]["object"]["kind"] == "ClusterGateway"
    assert served.get(f"{BASE}/clustergateways?includeObject=All", accept=TABLE).code == 400


def test_partial_object_metadata_list(served: Served) -> None:
    """Metadata informers get a PartialObjectMetadataList."""
    seed(served, token_secret("a"))
    accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    doc = served.get(f"{BASE}/clustergateways", accept=accept).json()
    assert doc["kind"] == "PartialObjectMetadataList"
    assert doc["items"][0] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
    }


def test_yaml_and_not_acceptable(served: Served) -> None:
    """application/yaml is served; protobuf-only clients get 406."""
    seed(served, token_secret("a"))
    response = served.get(f"{BASE}/clustergateways/a", accept="application/yaml")
    assert response.header("content-type") == "application/yaml"
    assert yaml.safe_load(response.body)["metadata"]["name"] == "a"
    protobuf = served.get(f"{BASE}/clustergateways/a", accept="application/vnd.kubernetes.protobuf")
    assert protobuf.code == 406
    assert protobuf.json()["reason"] == "NotAcceptable"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_write_verbs_are_405(served: Served, method: str) -> None:
    """The resources are read-only: writes are 405 MethodNotAllowed Status objects."""
    seed(served, token_secret("a"))
    path = f"{BASE}/clustergateways" + ("" if method == "POST" else "/a")
    response = served.call(method, path, {"Content-Type": "application/json"}, b"{}")
    assert response.code == 405
    assert response.json()["reason"] == "MethodNotAllowed"


def test_virtual_clusters(served: Served, client_pair: KeyPair) -> None:
    """local first, then newest first; labels, alias and real endpoints; selectors."""
    seed(
        served,
        token_secret("old", creation_timestamp="2026-01-01T00:00:00Z"),
        token_secret(
            "new",
            credential_type="X509Certificate",
            token=None,
            certificate=client_pair.cert_pem,
            private_key=client_pair.key_pem,
            creation_timestamp="2026-02-01T00:00:00Z",
            labels={"env": "prod"},
            annotations={"cluster.core.oam.dev/cluster-alias": "production"},
        ),
    )
    doc = served.get(f"{BASE}/virtualclusters").json()
    assert [i["metadata"]["name"] for i in doc["items"]] == ["local", "new", "old"]
    new = doc["items"][1]
    assert new["spec"] == {
        "alias": "production",
        "accepted": True,
        "endpoint": "https://new.example:6443",
        "credential-type": "X509Certificate",
    }
    assert new["metadata"]["labels"] == {
        "env": "prod",
        "cluster.core.oam.dev/control-plane": "false",
    }
    selected = served.get(
        f"{BASE}/virtualclusters?labelSelector=cluster.core.oam.dev%2Fcontrol-plane%3Dfalse"
    ).json()
    assert [i["metadata"]["name"] for i in selected["items"]] == ["new", "old"]
    local = served.get(f"{BASE}/virtualclusters/local").json()
    assert local["spec"]["credential-type"] == "Internal"
    missing = served.get(f"{BASE}/virtualclusters/nope")
    assert missing.code == 404
    assert missing.json()["message"] == 'virtualclusters.cluster.core.oam.dev "nope" not found'


def test_virtual_cluster_table(served: Served) -> None:
    """The VirtualCluster table: its columns and a boolean Accepted cell."""
    seed(served, token_secret("a"))
    doc = served.get(f"{BASE}/virtualclusters", accept=TABLE).json()
    assert [c["name"] for c in doc["columnDefinitions"]][-1] == "Creation_Timestamp"
    assert doc["rows"][1]["cells"][:5] == [
        "a",
        "",
        "ServiceAccountToken",
        "https://a.example:6443",
        True,
    ]


def test_health_get_put_patch(served: Served) -> None:
    """health: GET is the object; PUT and every PATCH type write through the health writer."""
    seed(served, token_secret("a"))
    assert served.get(f"{BASE}/clustergateways/a/health").json()["metadata"]["name"] == "a"
    put_body = json.dumps(
        {"metadata": {"name": "a"}, "status": {"healthy": True, "healthyReason": ""}}
    ).encode()
    put = served.call(
        "PUT", f"{BASE}/clustergateways/a/health", {"Content-Type": "application/json"}, put_body
    )
    assert put.code == 200, put.body
    assert put.json()["status"] == {"healthy": True}
    merge = served.call(
        "PATCH",
        f"{BASE}/clustergateways/a/health",
        {"Content-Type": "application/merge-patch+json"},
        b'{"status":{"healthy":false,"healthyReason":"ConnectionTimeout"}}',
    )
    assert merge.json()["status"] == {"healthy": False, "healthyReason": "ConnectionTimeout"}
    json_patch = served.call(
        "PATCH",
        f"{BASE}/clustergateways/a/health",
        {"Content-Type": "application/json-patch+json"},
        b'[{"op":"replace","path":"/status/healthy","value":true}]',
    )
    assert json_patch.code == 200, json_patch.body
    assert served.writer is not None
    assert served.writer.written == [
        ("a", True, ""),
        ("a", False, "ConnectionTimeout"),
        ("a", True, ""),
    ]


@pytest.mark.parametrize(
    ("method", "content_type", "body", "code"),
    [
        ("PATCH", "application/apply-patch+yaml", b"{}", 415),
        ("PUT", "application/json", b"not json", 400),
        ("PUT", "application/json", b'{"metadata":{"name":"other"}}', 400),
        ("PUT", "application/json", b'{"status":{"healthy":"yes"}}', 422),
        ("DELETE", "application/json", b"", 405),
    ],
)
def test_health_rejects(
    served: Served, method: str, content_type: str, body: bytes, code: int
) -> None:
    """Bad health updates are Status errors and never reach the writer."""
    seed(served, token_secret("a"))
    response = served.call(
        method, f"{BASE}/clustergateways/a/health", {"Content-Type": content_type}, body
    )
    assert response.code == code
    assert response.json()["kind"] == "Status"
    assert served.writer is not None and served.writer.written == []


def test_health_read_only_without_writer(make_served) -> None:
    """Without a hub (secrets directory), health updates are 405 and say why."""
    served = make_served()
    seed(served, token_secret("a"))
    response = served.call(
        "PATCH",
        f"{BASE}/clustergateways/a/health",
        {"Content-Type": "application/merge-patch+json"},
        b'{"status":{"healthy":true}}',
    )
    assert response.code == 405
    assert "--secrets-dir" in response.json()["message"]


def test_health_of_unknown_cluster(served: Served) -> None:
    """Updating the health of an unknown cluster is 404 before anything is written."""
    seed(served)
    response = served.call(
        "PUT", f"{BASE}/clustergateways/x/health", {"Content-Type": "application/json"}, b"{}"
    )
    assert response.code == 404
