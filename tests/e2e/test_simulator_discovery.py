"""Discovery, version, health and the hub's authentication ConfigMap, read off the wire."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.fixtures.simulator import authorized_request, raw_exchange

AGGREGATED = (
    "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList,application/json"
)


async def _get(sim, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = authorized_request(sim, "GET", path, headers=headers)
    answer = await deferToThread(raw_exchange, sim, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), fields, body


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
@pytest_twisted.ensureDeferred
async def test_aggregated_discovery_with_etag(sim, version):
    """/apis answers aggregated discovery in the asked version, with an ETag and 304."""
    code, headers, body = await _get(sim, "/apis", Accept=AGGREGATED.format(v=version))
    assert code == 200
    assert headers["content-type"] == (
        f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    )
    document = json.loads(body)
    assert document["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    names = [item["metadata"]["name"] for item in document["items"]]
    assert "cluster.open-cluster-management.io" in names
    etag = headers["etag"]
    again, again_headers, again_body = await _get(
        sim, "/apis", Accept=AGGREGATED.format(v=version), **{"If-None-Match": etag}
    )
    assert again == 304 and again_body == b""
    assert again_headers["etag"] == etag


@pytest_twisted.ensureDeferred
async def test_legacy_discovery(sim):
    """Without the aggregated Accept, /api and /apis answer the legacy documents."""
    code, _, body = await _get(sim, "/api")
    assert code == 200
    versions = json.loads(body)
    assert versions["kind"] == "APIVersions"
    assert versions["serverAddressByClientCIDRs"][0]["serverAddress"] == sim.server_address
    code, _, body = await _get(sim, "/apis/authorization.k8s.io")
    assert json.loads(body)["kind"] == "APIGroup"
    code, _, body = await _get(sim, "/apis/cluster.open-cluster-management.io/v1")
    resources = json.loads(body)
    assert resources["groupVersion"] == "cluster.open-cluster-management.io/v1"
    assert {r["name"] for r in resources["resources"]} == {
        "managedclusters",
        "managedclusters/status",
    }


@pytest.mark.parametrize(
    ("path", "code", "body"),
    [
        ("/healthz", 200, b"ok"),
        ("/livez", 200, b"ok"),
        ("/readyz", 200, b"ok"),
        ("/readyz/ping", 200, b"ok"),
        ("/openapi/v2", 404, None),
        ("/openapi/v3/apis/nope/v1", 404, None),
    ],
)
@pytest_twisted.ensureDeferred
async def test_non_resource_paths(sim, path, code, body):
    """Health endpoints answer plain 'ok'; OpenAPI v2 is absent (kubectl copes)."""
    got_code, _, got_body = await _get(sim, path)
    assert got_code == code
    if body is not None:
        assert got_body == body
    else:
        assert json.loads(got_body)["kind"] == "Status"


@pytest_twisted.ensureDeferred
async def test_extension_apiserver_authentication(sim):
    """kube-system/extension-apiserver-authentication carries the generated CAs."""
    code, _, body = await _get(
        sim, "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
    )
    assert code == 200
    data = json.loads(body)["data"]
    assert data["client-ca-file"].encode() == (sim.cert_dir / "client-ca.crt").read_bytes()
    assert (
        data["requestheader-client-ca-file"].encode()
        == (sim.cert_dir / "front-proxy-ca.crt").read_bytes()
    )
    assert json.loads(data["requestheader-allowed-names"]) == ["front-proxy-client"]
    assert json.loads(data["requestheader-username-headers"]) == ["X-Remote-User"]
    assert json.loads(data["requestheader-group-headers"]) == ["X-Remote-Group"]
    assert json.loads(data["requestheader-extra-headers-prefix"]) == ["X-Remote-Extra-"]
    front_proxy = sim.pki.front_proxy_client.certificate()
    assert front_proxy.subject.rfc4514_string() == "CN=front-proxy-client"
    assert front_proxy.issuer == sim.pki.front_proxy_ca.certificate().subject
