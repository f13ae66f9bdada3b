"""Bad input never crashes the simulated cluster: every answer is a Kubernetes Status."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.fixtures.simulator import authorized_request, raw_exchange


def _split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        decoded = b""
        while body:
            size_line, _, rest = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded += rest[:size]
            body = rest[size + 2 :]
        body = decoded
    return code, headers, body


def _status(response: bytes) -> tuple[int, dict]:
    code, headers, body = _split(response)
    assert headers["content-type"].startswith("application/json"), headers
    status = json.loads(body)
    assert status["kind"] == "Status"
    assert status["code"] == code
    return code, status


@pytest_twisted.ensureDeferred
async def test_garbage_request_line(sim):
    """Bytes that are not HTTP get a 400 Status, and the cluster keeps serving."""
    answer = await deferToThread(raw_exchange, sim, b"\x16\x03garbage garbage\r\n\r\n")
    code, status = _status(answer)
    assert code == 400
    again = await deferToThread(raw_exchange, sim, authorized_request(sim, "GET", "/version"))
    assert _split(again)[0] == 200


@pytest_twisted.ensureDeferred
async def test_over_long_header_line(sim):
    """A 2 MiB header line gets a 400 Status instead of a silent close."""
    request = b"GET /version HTTP/1.1\r\nX-Big: " + b"a" * (2 * 1024 * 1024) + b"\r\n\r\n"
    answer = await deferToThread(raw_exchange, sim, request)
    assert _status(answer)[0] == 400


@pytest_twisted.ensureDeferred
async def test_long_label_selector_is_served(sim):
    """A 20 KiB URL (past Twisted's 16 KiB default) is answered normally."""
    selector = ",".join(f"k{i}!=v" for i in range(4000))
    request = authorized_request(
        sim, "GET", f"/api/v1/namespaces/default/configmaps?labelSelector={selector}"
    )
    assert len(request) > 20_000
    code, _, body = _split(await deferToThread(raw_exchange, sim, request))
    assert code == 200, body[:300]
    assert json.loads(body)["kind"] == "ConfigMapList"


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "expected"),
    [
        ("GET", "/no/such/thing", b"", {}, 404),
        ("GET", "/api/v1/widgets", b"", {}, 404),
        ("GET", "/apis/unknown.example.com/v1", b"", {}, 404),
        ("GET", "/api/v1/namespaces/default/configmaps/missing", b"", {}, 404),
        ("GET", "/api/v1/namespaces/nowhere/pods/demo", b"", {}, 404),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b"{not json",
            {"Content-Type": "application/json"},
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b"[1, 2]",
            {"Content-Type": "application/json"},
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b"<xml/>",
            {"Content-Type": "application/xml"},
            415,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b'{"metadata":{"name":"Bad_Name"}}',
            {"Content-Type": "application/json"},
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b'{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}',
            {"Content-Type": "application/json"},
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b"k8s\x00\x0a\x02garbage",
            {"Content-Type": "application/vnd.kubernetes.protobuf"},
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/demo",
            b'{"spec":{}}',
            {"Content-Type": "text/plain"},
            415,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/demo",
            b'[{"op":"remove","path":"/nope"}]',
            {"Content-Type": "application/json-patch+json"},
            422,
        ),
        ("GET", "/api/v1/configmaps?labelSelector=a%20in%20(", b"", {}, 400),
        ("GET", "/api/v1/configmaps?fieldSelector=data.secret%3Dx", b"", {}, 400),
        ("GET", "/api/v1/configmaps?limit=many", b"", {}, 400),
        ("GET", "/api/v1/configmaps?continue=%%%", b"", {}, 400),
        ("POST", "/api/v1/namespaces/default/configmaps?dryRun=Some", b"{}", {}, 400),
        ("PUT", "/api/v1/namespaces", b"{}", {}, 405),
        ("GET", "/api/v1/pods", b"", {"Accept": "application/vnd.kubernetes.protobuf"}, 406),
        ("GET", "/api/v1/namespaces/default/pods/demo/binding", b"", {}, 405),
        ("GET", "/api/v1/namespaces/default/pods/demo/nope", b"", {}, 404),
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews", b"{}", {}, 400),
        ("GET", "/apis/authentication.k8s.io/v1/tokenreviews", b"", {}, 405),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_requests_get_status(sim, method, path, body, headers, expected):
    """Malformed bodies, unknown paths and wrong media types answer with the right Status."""
    request = authorized_request(sim, method, path, body=body, headers=headers)
    code, status = _status(await deferToThread(raw_exchange, sim, request))
    assert code == expected, status
    assert status["status"] == "Failure"


@pytest_twisted.ensureDeferred
async def test_oversized_body_is_rejected(sim):
    """Bodies above kube-apiserver's 3 MiB limit get 413."""
    body = b'{"data":{"k":"' + b"x" * (3 * 1024 * 1024 + 10) + b'"}}'
    request = authorized_request(
        sim,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    assert _status(await deferToThread(raw_exchange, sim, request))[0] == 413


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic YWRtaW46YWRtaW4=", "Bearer "],
)
@pytest_twisted.ensureDeferred
async def test_unauthenticated_requests_get_401(sim, authorization):
    """No or wrong credentials: 401 Status; health and version stay public."""
    headers = f"Authorization: {authorization}\r\n" if authorization else ""
    request = (
        f"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    ).encode()
    code, status = _status(await deferToThread(raw_exchange, sim, request))
    assert code == 401
    assert status["reason"] == "Unauthorized"
    assert sim.requests[-1].user is None
    if authorization is None:
        public = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answer = await deferToThread(raw_exchange, sim, public)
        assert _split(answer)[0] == 200
        assert _split(answer)[2] == b"ok"


@pytest_twisted.ensureDeferred
async def test_impersonation_recorded(sim):
    """Impersonate-* headers change the effective user; the impersonator is recorded too."""
    request = authorized_request(
        sim,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        headers={
            "Impersonate-User": "dave",
            "Impersonate-Group": "ops",
            "Impersonate-Extra-Scopes": "view",
        },
    )
    code, _, _ = _split(await deferToThread(raw_exchange, sim, request))
    assert code == 200
    recorded = sim.requests[-1]
    assert recorded.user.name == "dave"
    assert recorded.user.groups == ("ops", "system:authenticated")
    assert recorded.user.extra_dict() == {"scopes": ["view"]}
    assert recorded.impersonated_by.name == "sim-admin"

    lonely = authorized_request(
        sim, "GET", "/api/v1/namespaces", headers={"Impersonate-Group": "ops"}
    )
    assert _status(await deferToThread(raw_exchange, sim, lonely))[0] == 400

    sim.faults.deny.add(("sim-admin", "impersonate", "users"))
    refused = await deferToThread(raw_exchange, sim, request)
    assert _status(refused)[0] == 403
