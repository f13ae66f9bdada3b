"""Edge cases of the proxy subresource over raw TLS sockets to the real gateway.

Two clusters sit behind the gateway: ``sim`` (the simulated Kubernetes cluster)
and ``echo`` (a tiny upstream that answers with exactly what it received, see
``tests/unit/proxy/upstream.py``), so the tests can check bytes on both sides.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted

from clustergateway.certs import issue_cert, make_ca
from clustergateway.registry.samples import cluster_secret
from tests.fixtures.gateway import PROXY_PATH, wait_until
from tests.fixtures.proxy import ProxiedCluster, RawClient, raw_tls_connect
from tests.fixtures.simulator import _complete
from tests.unit.proxy.upstream import Upstream

pytestmark = pytest.mark.e2e

ECHO = PROXY_PATH.format(cluster="echo").encode()
SIM = PROXY_PATH.format(cluster="sim").encode()


@pytest_twisted.async_yield_fixture
async def echo(proxied: ProxiedCluster) -> AsyncIterator[Upstream]:
    """An upstream registered in the gateway as cluster ``echo`` (its CA, a token)."""
    from twisted.internet import reactor

    ca = make_ca("echo-ca")
    upstream = Upstream(reactor, issue_cert(ca, "echo", hosts=("127.0.0.1",), server=True))
    upstream.start()
    registry = proxied.gateway.registry
    registry.apply(
        "ADDED", cluster_secret("echo", endpoint=upstream.url, token="echo-token", ca=ca.cert_pem)
    )
    await wait_until(lambda: registry.entry("echo") is not None)
    yield upstream
    await upstream.stop()


async def connect(proxied: ProxiedCluster) -> RawClient:
    return await raw_tls_connect(proxied.gateway.port, proxied.gateway.ca_path.read_bytes())


def body_of(data: bytes) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        return out
    return body


async def exchange(proxied: ProxiedCluster, request: bytes) -> tuple[bytes, bytes]:
    client = await connect(proxied)
    client.transport.write(request)
    data = await client.wait_for(_complete)
    client.transport.loseConnection()
    head, _, _ = data.partition(b"\r\n\r\n")
    return head, body_of(data)


@pytest_twisted.ensureDeferred
async def test_spoofed_and_hop_by_hop_headers_stripped(proxied: ProxiedCluster) -> None:
    """The cluster sees its own credential and identity only: the caller's token,
    X-Remote-*, Impersonate-* and hop-by-hop headers (and those Connection names) are
    dropped; X-Forwarded-For names the caller; other headers arrive verbatim."""
    head, body = await exchange(
        proxied,
        b"GET " + SIM + b"/api/v1/namespaces/default/configmaps HTTP/1.1\r\n"
        b"Host: gateway\r\nAuthorization: Bearer stolen\r\nX-Remote-User: root\r\n"
        b"X-Remote-Group: system:masters\r\nImpersonate-User: root\r\n"
        b"Impersonate-Group: system:masters\r\nConnection: keep-alive, X-Private\r\n"
        b"X-Private: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
        b"Proxy-Authorization: Basic eDp5\r\nX-Custom: kept\r\nAccept: application/json\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["kind"] == "ConfigMapList"
    seen = proxied.sim.requests[-1]
    assert seen.header("authorization") == f"Bearer {proxied.sim.token}"
    assert seen.user is not None and seen.user.name == "sim-admin"
    assert seen.impersonated_by is None
    for name in ("x-remote-user", "x-remote-group", "impersonate-user", "impersonate-group"):
        assert seen.header(name) is None, name
    for name in ("x-private", "keep-alive", "te", "proxy-authorization"):
        assert seen.header(name) is None, name
    assert seen.header("x-custom") == "kept"
    assert seen.header("x-forwarded-for") == "127.0.0.1"
    assert seen.header("host") == proxied.sim.server_address


@pytest_twisted.ensureDeferred
async def test_raw_path_query_and_long_selector(proxied: ProxiedCluster, echo: Upstream) -> None:
    """``%2F`` and the query reach the cluster byte for byte (``__dryRun`` renamed), also
    with a 20 KiB labelSelector; an empty subpath addresses ``/`` without a redirect."""
    selector = quote("app in (" + ",".join(f"v{i:05d}" for i in range(3000)) + ")", safe="")
    assert len(selector) > 20 * 1024
    target = b"/echo/api/v1/namespaces/a%2Fb/configmaps?__dryRun=All&labelSelector=" + (
        selector.encode()
    )
    head, body = await exchange(
        proxied, b"GET " + ECHO + target + b" HTTP/1.1\r\nHost: gateway\r\n\r\n"
    )
    assert head.startswith(b"HTTP/1.1 200 ")
    record = json.loads(body)
    assert record["uri"].encode() == target.replace(b"__dryRun", b"dryRun")
    headers = {n.lower(): v for n, v in record["headers"]}
    assert headers["authorization"] == "Bearer echo-token"
    assert headers["host"] == f"127.0.0.1:{echo.port}"

    head, body = await exchange(proxied, b"GET " + ECHO + b" HTTP/1.1\r\nHost: gateway\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["uri"] == "/"

    head, body = await exchange(
        proxied,
        b"GET "
        + SIM
        + b"/api/v1/namespaces/default/configmaps?labelSelector="
        + selector.encode()
        + b" HTTP/1.1\r\nHost: gateway\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert json.loads(body)["items"] == []


@pytest_twisted.ensureDeferred
async def test_upgrade_with_early_bytes_and_half_written_head(
    proxied: ProxiedCluster, echo: Upstream
) -> None:
    """A head written in pieces, followed in the same packet by stream bytes: the 101 is
    relayed verbatim and the early bytes reach the cluster first."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    request = (
        b"POST " + ECHO + b"/upgrade/exec HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\n"
        b"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    client = await connect(proxied)
    client.transport.write(request[:30])
    await deferLater(reactor, 0.05, lambda: None)
    client.transport.write(request[30:90])
    await deferLater(reactor, 0.05, lambda: None)
    client.transport.write(request[90:] + b"early;")
    data = await client.wait_contains(b"EARLY;")
    assert data.startswith(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    )
    assert data.endswith(b"\r\n\r\nEARLY;")
    client.transport.write(b"later")
    await client.wait_contains(b"LATER")
    client.transport.loseConnection()
    await wait_until(lambda: echo.upgrades_closed == 1)


@pytest_twisted.ensureDeferred
async def test_refused_upgrade_relayed_then_closed(proxied: ProxiedCluster, echo: Upstream) -> None:
    """A non-101 answer to an upgrade arrives as the cluster sent it; then the gateway closes."""
    client = await connect(proxied)
    client.transport.write(
        b"GET " + ECHO + b"/refuse-upgrade HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    await client.closed
    head, _, body = client.data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert json.loads(body)["message"] == "websocket refused"


@pytest_twisted.ensureDeferred
async def test_errors_are_status_objects(proxied: ProxiedCluster) -> None:
    """Unknown cluster 404, unusable Secret 503 naming the cause, refused dial 502: all
    ``Status`` JSON, never HTML."""
    registry = proxied.gateway.registry
    registry.apply("ADDED", cluster_secret("noendpoint", endpoint=None, token="t"))
    registry.apply(
        "ADDED", cluster_secret("down", endpoint="https://127.0.0.1:1", token="t", ca=b"")
    )
    await wait_until(lambda: registry.entry("down") is not None)
    expected: dict[bytes, tuple[int, str, str]] = {
        b"nope": (404, "NotFound", '"nope" not found'),
        b"noendpoint": (503, "ServiceUnavailable", "endpoint"),
        b"down": (502, "BadGateway", "connection refused"),
    }
    for name, (code, reason, text) in expected.items():
        path = PROXY_PATH.format(cluster=name.decode()).encode() + b"/api"
        head, body = await exchange(proxied, b"GET " + path + b" HTTP/1.1\r\nHost: g\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % code), head
        assert b"content-type: application/json" in head.lower()
        status: dict[str, Any] = json.loads(body)
        assert (status["kind"], status["code"], status["reason"]) == ("Status", code, reason)
        assert text in status["message"], status


def h2_get(port: int, ca_path: str, path: bytes, timeout: float = 10) -> tuple[Any, bytes, str]:
    """One HTTP/2 GET (blocking): ``(headers, body, outcome)``; outcome is ``ended``
    (END_STREAM), ``reset`` (RST_STREAM) or ``closed`` (connection closed)."""
    import socket
    import ssl

    import h2.config
    import h2.connection
    import h2.events

    context = ssl.create_default_context(cafile=ca_path)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "h2"
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            request_headers = [
                (":method", "GET"),
                (":path", path.decode()),
                (":scheme", "https"),
                (":authority", "gateway"),
            ]
            conn.send_headers(1, request_headers, end_stream=True)
            tls.sendall(conn.data_to_send())
            headers: Any = None
            body = b""
            outcome = ""
            while not outcome:
                data = tls.recv(65536)
                if not data:
                    outcome = "closed"
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        headers = dict(event.headers)
                    elif isinstance(event, h2.events.DataReceived):
                        body += event.data
                        conn.acknowledge_received_data(len(event.data), event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        outcome = "ended"
                    elif isinstance(event, h2.events.StreamReset):
                        outcome = "reset"
                tls.sendall(conn.data_to_send())
            return headers, body, outcome


@pytest_twisted.ensureDeferred
async def test_http2_streams_and_truncation(proxied: ProxiedCluster, echo: Upstream) -> None:
    """Over HTTP/2 (as the hub's aggregator speaks) answers stream back whole, and a body
    the cluster cut short ends in a stream reset, never a clean END_STREAM."""
    from twisted.internet.threads import deferToThread

    port, ca = proxied.gateway.port, str(proxied.gateway.ca_path)
    headers, body, outcome = await deferToThread(h2_get, port, ca, ECHO + b"/chunked?size=70000")
    assert (headers[b":status"], outcome, body) == (b"200", "ended", b"y" * 70000)
    headers, body, outcome = await deferToThread(h2_get, port, ca, ECHO + b"/cut")
    assert headers[b":status"] == b"200"
    assert body == b'{"type":"ADDED"}\n'
    assert outcome == "reset"
