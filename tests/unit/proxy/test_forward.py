"""Ordinary requests through ``ClusterProxy`` to a test upstream, over loopback sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.protocol import Protocol
from twisted.web.client import ResponseDone, ResponseFailed

from clustergateway.proxy.resource import ProxySettings
from tests.unit.proxy.conftest import (
    FakeRegistry,
    Harness,
    eventually,
    make_cluster,
    raw_connect,
    sleep,
    start_harness,
    stop_harness,
)
from tests.unit.proxy.upstream import Upstream


def reactor() -> Any:
    from twisted.internet import reactor as r

    return r


def header_pairs(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n.lower(), v) for n, v in record["headers"]]


def header(record: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in header_pairs(record) if n == name.lower()]


@pytest_twisted.ensureDeferred
async def test_get_reaches_cluster_with_its_credential(
    harness: Harness, upstream: Upstream
) -> None:
    """The upstream sees the path and query as sent, the cluster's bearer token instead of
    the caller's, no identity claims, Host with port, X-Forwarded-For, other headers
    verbatim; the client gets the upstream's answer."""
    response, body = await harness.request(
        b"GET",
        "c1",
        "/echo/api/v1/namespaces/a%2Fb/pods?labelSelector=app%3Dx&__dryRun=All&z=1",
        {
            b"Authorization": [b"Bearer caller-token"],
            b"X-Remote-User": [b"root"],
            b"Impersonate-User": [b"root"],
            b"Impersonate-Group": [b"system:masters"],
            b"Accept": [b"application/json;as=Table;v=v1;g=meta.k8s.io"],
            b"User-Agent": [b"kubectl/v1.33.0"],
            b"X-Forwarded-For": [b"203.0.113.9"],
        },
    )
    assert response.code == 200
    record = json.loads(body)
    assert (
        record["uri"] == "/echo/api/v1/namespaces/a%2Fb/pods?labelSelector=app%3Dx&dryRun=All&z=1"
    )
    assert header(record, "authorization") == ["Bearer cluster-token"]
    assert header(record, "host") == [f"127.0.0.1:{upstream.port}"]
    assert header(record, "x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]
    assert header(record, "accept") == ["application/json;as=Table;v=v1;g=meta.k8s.io"]
    assert header(record, "user-agent") == ["kubectl/v1.33.0"]
    names = {n for n, _ in header_pairs(record)}
    assert not any(n.startswith(("x-remote-", "impersonate-")) for n in names)


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"])
@pytest_twisted.ensureDeferred
async def test_methods_and_bodies(harness: Harness, method: bytes) -> None:
    """Every method is forwarded with its body and an exact Content-Length."""
    payload = b'{"kind":"ConfigMap","data":{"k":"' + b"v" * 200_000 + b'"}}'
    response, body = await harness.request(
        method,
        "c1",
        "/echo/api/v1/namespaces/default/configmaps",
        {b"Content-Type": [b"application/json"]},
        payload,
    )
    assert response.code == 200
    record = json.loads(body)
    assert record["method"] == method.decode()
    assert record["body"].encode() == payload
    assert header(record, "content-length") == [str(len(payload))]
    assert header(record, "content-type") == ["application/json"]


@pytest_twisted.ensureDeferred
async def test_empty_post_sends_zero_length(harness: Harness) -> None:
    """A POST without body still tells the cluster its length (0), like Go's client."""
    response, body = await harness.request(b"POST", "c1", "/echo/x", body=b"")
    record = json.loads(body)
    assert header(record, "content-length") == ["0"]


@pytest_twisted.ensureDeferred
async def test_head_keeps_length(harness: Harness) -> None:
    """HEAD answers carry the cluster's Content-Length and no body."""
    response, body = await harness.request(b"HEAD", "c1", "/big?size=12345")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-length") == [b"12345"]
    assert body == b""


@pytest.mark.parametrize("code", [401, 403, 404, 409, 422, 500])
@pytest_twisted.ensureDeferred
async def test_upstream_errors_pass_through(harness: Harness, code: int) -> None:
    """The cluster's own error answers reach the client untouched."""
    response, body = await harness.request(b"GET", "c1", f"/status/{code}")
    assert response.code == code
    assert json.loads(body) == {"kind": "Status", "code": code}
    assert response.headers.getRawHeaders(b"www-authenticate") == [b'Bearer realm="sim"']
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]


@pytest_twisted.ensureDeferred
async def test_nothing_invented(harness: Harness) -> None:
    """No Content-Type, Server or Date that the cluster did not send; a close-delimited
    body ends cleanly."""
    client = await raw_connect(reactor(), harness.port)
    client.transport.write(b"GET /clusters/c1/proxy/nolength HTTP/1.1\r\nHost: g\r\n\r\n")
    data = await client.wait_for(lambda d: d.endswith(b"until-close\r\n0\r\n\r\n"))
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200 ok")
    assert b"content-type" not in head
    assert b"\r\nserver:" not in head
    assert b"\r\ndate:" not in head
    assert b"transfer-encoding: chunked" in head
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_content_length_passthrough_and_chunked(harness: Harness) -> None:
    """A length the cluster sent is kept (no re-chunking); a chunked body stays chunked."""
    client = await raw_connect(reactor(), harness.port)
    client.transport.write(b"GET /clusters/c1/proxy/big?size=300000 HTTP/1.1\r\nHost: g\r\n\r\n")
    data = await client.wait_for(
        lambda d: b"\r\n\r\n" in d and len(d.split(b"\r\n\r\n", 1)[1]) >= 300000
    )
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"content-length: 300000" in head.lower()
    assert b"chunked" not in head.lower()
    assert body == b"x" * 300000
    client.transport.write(b"GET /clusters/c1/proxy/chunked?size=5000 HTTP/1.1\r\nHost: g\r\n\r\n")
    data = await client.wait_for(lambda d: d.endswith(b"\r\n0\r\n\r\n"))
    second = data[len(head) + 4 + 300000 :]
    assert b"transfer-encoding: chunked" in second.lower()
    assert b"content-length" not in second.lower().split(b"\r\n\r\n")[0]
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_truncated_body_is_not_a_clean_end(harness: Harness) -> None:
    """A body the cluster cut short reaches the client as a broken response."""
    response = await harness.open(b"GET", "c1", "/truncate")
    assert response.code == 200
    assert response.length == 100

    class Collect(Protocol):
        def __init__(self) -> None:
            from twisted.internet.defer import Deferred

            self.done: Any = Deferred()
            self.data = b""

        def dataReceived(self, data: bytes) -> None:
            self.data += data

        def connectionLost(self, reason: Any = None) -> None:
            self.done.callback([reason])

    collect = Collect()
    response.deliverBody(collect)
    [reason] = await collect.done
    assert collect.data == b"0123456789"
    assert not reason.check(ResponseDone)
    assert reason.check(ResponseFailed)


@pytest_twisted.ensureDeferred
async def test_watch_events_stream_at_once_and_disconnect_closes_upstream(
    harness: Harness, upstream: Upstream
) -> None:
    """Each event is written as it arrives; when the client leaves, the upstream
    connection closes."""
    client = await raw_connect(reactor(), harness.port)
    client.transport.write(b"GET /clusters/c1/proxy/watch?watch=true HTTP/1.1\r\nHost: g\r\n\r\n")
    await client.wait_contains(b'"ADDED"')
    upstream.push(b'{"type":"MODIFIED","object":{"n":1}}\n')
    await client.wait_contains(b'"MODIFIED"')
    upstream.push(b'{"type":"DELETED","object":{"n":1}}\n')
    await client.wait_contains(b'"DELETED"')
    assert len(upstream.watches) == 1
    client.transport.loseConnection()
    await eventually(reactor(), lambda: not upstream.watches and not upstream.connections)


@pytest_twisted.ensureDeferred
async def test_watch_head_is_relayed_before_the_first_event(
    harness: Harness, upstream: Upstream
) -> None:
    """The head of a watch reaches the client as soon as the cluster sends it, not with the
    first event."""
    client = await raw_connect(reactor(), harness.port)
    client.transport.write(
        b"GET /clusters/c1/proxy/watch?watch=true&quiet=1 HTTP/1.1\r\nHost: g\r\n\r\n"
    )
    await client.wait_contains(b"\r\n\r\n")
    head, body = client.data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    assert body == b""
    upstream.push(b'{"type":"ADDED","object":{"n":1}}\n')
    await client.wait_contains(b'"ADDED"')
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_disconnect_before_answer_closes_upstream(
    harness: Harness, upstream: Upstream
) -> None:
    """A client that leaves while the cluster has not answered cancels the upstream request."""
    client = await raw_connect(reactor(), harness.port)
    client.transport.write(b"GET /clusters/c1/proxy/hang HTTP/1.1\r\nHost: g\r\n\r\n")
    await eventually(reactor(), lambda: len(upstream.hanging) == 1)
    client.transport.loseConnection()
    await eventually(reactor(), lambda: not upstream.connections)


@pytest_twisted.ensureDeferred
async def test_connections_are_reused(harness: Harness, upstream: Upstream) -> None:
    """Sequential requests share one pooled upstream connection."""
    for _ in range(20):
        response, _ = await harness.request(b"GET", "c1", "/echo/x")
        assert response.code == 200
    assert len(upstream.connections) == 1


@pytest_twisted.ensureDeferred
async def test_impersonation(harness: Harness, upstream: Upstream) -> None:
    """``?impersonate=true`` adds the caller's identity as Impersonate-* headers (the
    parameter itself is forwarded, like the Go gateway); without it none are sent."""
    _, body = await harness.request(b"GET", "c1", "/echo/x?impersonate=true")
    record = json.loads(body)
    assert record["uri"] == "/echo/x?impersonate=true"
    assert header(record, "impersonate-user") == ["alice"]
    assert header(record, "impersonate-group") == ["team-a", "system:authenticated"]
    assert header(record, "impersonate-uid") == ["uid-1"]
    assert header(record, "impersonate-extra-scope") == ["x"]
    assert header(record, "authorization") == ["Bearer cluster-token"]
    _, body = await harness.request(b"GET", "c1", "/echo/x")
    assert not header(json.loads(body), "impersonate-user")


@pytest_twisted.ensureDeferred
async def test_long_request_line(harness: Harness) -> None:
    """A 20 KiB labelSelector is forwarded intact."""
    selector = "app in (" + ",".join(f"v{i:05d}" for i in range(3000)) + ")"
    from urllib.parse import quote

    quoted = quote(selector, safe="")
    assert len(quoted) > 20 * 1024
    response, body = await harness.request(
        b"GET", "c1", f"/echo/api/v1/pods?labelSelector={quoted}"
    )
    assert response.code == 200
    assert json.loads(body)["uri"] == f"/echo/api/v1/pods?labelSelector={quoted}"


@pytest_twisted.ensureDeferred
async def test_concurrent_requests(harness: Harness) -> None:
    """Many requests in flight at once each get their own answer."""
    from twisted.internet.defer import ensureDeferred, gatherResults

    results = await gatherResults(
        [ensureDeferred(harness.request(b"GET", "c1", f"/echo/n/{i}")) for i in range(50)]
    )
    assert [json.loads(body)["uri"] for _, body in results] == [f"/echo/n/{i}" for i in range(50)]


@pytest_twisted.ensureDeferred
async def test_header_timeout_is_504_but_not_for_watches(upstream: Upstream, pki: Any) -> None:
    """An ordinary request whose answer does not come in time gets a 504 Status; a
    watch waiting just as long is left alone."""
    registry = FakeRegistry()
    registry.put(make_cluster(upstream, pki))
    h = start_harness(reactor(), registry, ProxySettings(response_header_timeout=0.3))
    try:
        watch = await raw_connect(reactor(), h.port)
        watch.transport.write(b"GET /clusters/c1/proxy/hang?watch=1 HTTP/1.1\r\nHost: g\r\n\r\n")
        response, body = await h.request(b"GET", "c1", "/hang")
        assert response.code == 504
        status = json.loads(body)
        assert status["kind"] == "Status" and status["reason"] == "Timeout"
        assert "c1" in status["message"]
        await sleep(reactor(), 0.5)
        assert watch.data == b"" and not watch.closed.called
        watch.transport.loseConnection()
    finally:
        await stop_harness(h)


def test_tunnel_cut_is_clean_only_at_a_line_end_of_a_stream() -> None:
    """A lost connection under a tunnelled watch ends it cleanly only for an open-ended
    body cut right after a complete line (or before any byte); a protocol error, a
    body with a length, or a cut inside an event stays a broken response."""
    from twisted.internet import error
    from twisted.python.failure import Failure

    from clustergateway.proxy.dial import TunnelLost
    from clustergateway.proxy.forward import tunnel_cut_is_clean
    from clustergateway.proxy.h1client import UpstreamProtocolError

    lost = Failure(error.ConnectionLost())
    assert tunnel_cut_is_clean(lost, open_ended=True, line_end=True)
    assert tunnel_cut_is_clean(Failure(TunnelLost()), open_ended=True, line_end=True)
    assert tunnel_cut_is_clean(Failure(error.ConnectionDone()), open_ended=True, line_end=True)
    assert not tunnel_cut_is_clean(lost, open_ended=True, line_end=False)
    assert not tunnel_cut_is_clean(lost, open_ended=False, line_end=True)
    protocol = Failure(UpstreamProtocolError("bad chunk"))
    assert not tunnel_cut_is_clean(protocol, open_ended=True, line_end=True)
