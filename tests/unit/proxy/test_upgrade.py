"""HTTP/1.1 upgrades through ``ClusterProxy``: the splice, non-101 relay, edge cases."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet.protocol import Factory, Protocol

from clustergateway.proxy.resource import ProxySettings
from clustergateway.proxy.upgrade import SpliceSettings
from tests.unit.proxy.conftest import (
    FakeRegistry,
    Harness,
    Pki,
    eventually,
    make_cluster,
    raw_connect,
    sleep,
    start_harness,
    stop_harness,
)
from tests.unit.proxy.upstream import Upstream

SPDY_HEAD = (
    b"POST /clusters/c1/proxy/upgrade/api/v1/namespaces/d/pods/p/exec?command=sh HTTP/1.1\r\n"
    b"Host: gateway\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
    b"X-Stream-Protocol-Version: v3.channel.k8s.io\r\n"
    b"Authorization: Bearer caller-token\r\nImpersonate-User: root\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def reactor() -> Any:
    from twisted.internet import reactor as r

    return r


def head_end(data: bytes) -> int:
    return data.find(b"\r\n\r\n") + 4


@pytest_twisted.ensureDeferred
async def test_splice_relays_head_and_bytes_both_ways(harness: Harness, upstream: Upstream) -> None:
    """The 101 head comes back verbatim; bytes the client sent with the head and bytes
    the cluster sent with its 101 are delivered; later bytes flow both ways; the
    cluster saw its own credential, not the caller's."""
    upstream.upgrade_extra = b"HELLO;"
    client = await raw_connect(reactor(), harness.port)
    client.transport.write(SPDY_HEAD + b"early-bytes;")
    data = await client.wait_contains(b"EARLY-BYTES;")
    expected_head = (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    )
    assert data == expected_head + b"HELLO;EARLY-BYTES;"
    client.transport.write(b"more")
    await client.wait_contains(b"MORE")

    record = upstream.requests[-1]
    headers = [(n.lower(), v) for n, v in record["headers"]]
    assert record["method"] == "POST"
    assert record["uri"] == "/upgrade/api/v1/namespaces/d/pods/p/exec?command=sh"
    assert ("authorization", "Bearer cluster-token") in headers
    assert ("connection", "Upgrade") in headers and ("upgrade", "SPDY/3.1") in headers
    assert [v for n, v in headers if n == "x-stream-protocol-version"] == [
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
    ]
    assert ("host", f"127.0.0.1:{upstream.port}") in headers
    assert not any(n.startswith("impersonate-") for n, _ in headers)

    client.transport.loseConnection()
    await eventually(reactor(), lambda: upstream.upgrades_closed == 1)


@pytest_twisted.ensureDeferred
async def test_cluster_closing_closes_client(harness: Harness, upstream: Upstream) -> None:
    """When the cluster ends the stream, the client connection is closed too."""
    client = await raw_connect(reactor(), harness.port)
    client.transport.write(SPDY_HEAD)
    await client.wait_contains(b"101 Switching")
    await eventually(reactor(), lambda: len(upstream.upgraded) == 1)
    upstream.upgraded[0].close()
    await client.closed


@pytest_twisted.ensureDeferred
async def test_half_written_head(harness: Harness, upstream: Upstream) -> None:
    """A request head that arrives in pieces is upgraded like any other."""
    client = await raw_connect(reactor(), harness.port)
    for i in range(0, len(SPDY_HEAD), 37):
        client.transport.write(SPDY_HEAD[i : i + 37])
        await sleep(reactor(), 0.01)
    await client.wait_contains(b"101 Switching")
    client.transport.write(b"abc")
    await client.wait_contains(b"ABC")
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_refused_upgrade_relayed_verbatim(harness: Harness, upstream: Upstream) -> None:
    """A cluster refusing WebSocket answers 403: relayed as sent, then both sides close."""
    client = await raw_connect(reactor(), harness.port)
    client.transport.write(
        b"GET /clusters/c1/proxy/refuse-upgrade HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
    )
    await client.closed
    head, body = client.data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"kind": "Status", "code": 403, "message": "websocket refused"}
    await eventually(reactor(), lambda: not upstream.connections)
    record = upstream.requests[-1]
    sent = {n.lower(): v for n, v in record["headers"]}
    assert sent["sec-websocket-protocol"] == "v5.channel.k8s.io"
    assert sent["upgrade"] == "websocket"


@pytest_twisted.ensureDeferred
async def test_impersonation_on_upgrade(harness: Harness, upstream: Upstream) -> None:
    """``?impersonate=true`` applies to upgrades as to plain requests."""
    client = await raw_connect(reactor(), harness.port)
    client.transport.write(SPDY_HEAD.replace(b"command=sh", b"command=sh&impersonate=true"))
    await client.wait_contains(b"101 Switching")
    sent = [(n.lower(), v) for n, v in upstream.requests[-1]["headers"]]
    assert ("impersonate-user", "alice") in sent
    assert ("impersonate-user", "root") not in sent
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_upgrade_dial_failure_is_502(upstream: Upstream, pki: Pki) -> None:
    """An upgrade to an unreachable cluster gets a Status, not a hang."""
    port = upstream.port
    await upstream.stop()
    registry = FakeRegistry()
    registry.put(make_cluster(f"https://127.0.0.1:{port}", pki))
    h = start_harness(reactor(), registry)
    try:
        client = await raw_connect(reactor(), h.port)
        client.transport.write(SPDY_HEAD)
        data = await client.wait_for(lambda d: d.endswith(b"}"))
        assert data.startswith(b"HTTP/1.1 502 ")
        status = json.loads(data[head_end(data) :])
        assert "connection refused" in status["message"] and "c1" in status["message"]
        client.transport.loseConnection()
    finally:
        await stop_harness(h)


class Scripted(Protocol):
    """Answers the first request head with ``script(transport)``; echoes afterwards."""

    def __init__(self, script: Callable[[Any], Any], log: list[bytes]) -> None:
        self.script = script
        self.log = log
        self.buffer = b""
        self.answered = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.answered and b"\r\n\r\n" in self.buffer:
            self.answered = True
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.log.append(head)
            self.script(self.transport)
        elif self.answered:
            self.transport.write(data.upper())


async def scripted_harness(
    script: Callable[[Any], Any], settings: ProxySettings | None = None
) -> tuple[Harness, Any, list[bytes]]:
    log: list[bytes] = []
    factory = Factory.forProtocol(lambda: Scripted(script, log))
    listening = reactor().listenTCP(0, factory, interface="127.0.0.1")
    registry = FakeRegistry()
    registry.put(make_cluster(f"http://127.0.0.1:{listening.getHost().port}"))
    return start_harness(reactor(), registry, settings), listening, log


async def run_scripted(
    script: Callable[[Any], Any],
    check: Callable[[bytes], bool],
    settings: ProxySettings | None = None,
) -> bytes:
    h, listening, _ = await scripted_harness(script, settings)
    try:
        client = await raw_connect(reactor(), h.port)
        client.transport.write(SPDY_HEAD)
        data = await client.wait_for(check)
        client.transport.loseConnection()
        return data
    finally:
        await stop_harness(h)
        await listening.stopListening()


HEAD_101 = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n"


@pytest_twisted.ensureDeferred
async def test_cluster_head_in_pieces_and_interim_answer() -> None:
    """A 101 head split across packets (after an interim 100) is reassembled and relayed;
    bytes right behind it follow."""

    def script(transport: Any) -> None:
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        pieces = [HEAD_101[:10], HEAD_101[10:40], HEAD_101[40:] + b"AFTER"]
        for i, piece in enumerate(pieces):
            reactor().callLater(0.02 * i, transport.write, piece)

    data = await run_scripted(script, lambda d: d.endswith(b"AFTER"))
    assert data == HEAD_101 + b"AFTER"


@pytest_twisted.ensureDeferred
async def test_invalid_or_missing_answer_is_502() -> None:
    """Garbage instead of a status line, or a close before any answer: 502 Status."""
    data = await run_scripted(
        lambda t: t.write(b"SSH-2.0-OpenSSH\r\n\r\n"), lambda d: d.endswith(b"}")
    )
    assert data.startswith(b"HTTP/1.1 502 ") and b"invalid response" in data
    data = await run_scripted(lambda t: t.loseConnection(), lambda d: d.endswith(b"}"))
    assert data.startswith(b"HTTP/1.1 502 ") and b"closed before the upgrade" in data


@pytest_twisted.ensureDeferred
async def test_chunked_refusal_relayed_until_its_end() -> None:
    """A chunked non-101 answer is relayed to its terminal chunk, then the client is closed
    even though the cluster keeps the connection open."""
    answer = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    h, listening, _ = await scripted_harness(lambda t: t.write(answer))
    try:
        client = await raw_connect(reactor(), h.port)
        client.transport.write(SPDY_HEAD)
        await client.closed
        assert client.data == answer
    finally:
        await stop_harness(h)
        await listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_idle_watchdog_and_max_lifetime() -> None:
    """A spliced connection with no traffic is closed after the idle limit; one with
    traffic is closed at the maximum lifetime."""
    idle = ProxySettings(splice=SpliceSettings(idle_timeout=0.4, max_lifetime=None))
    h, listening, _ = await scripted_harness(lambda t: t.write(HEAD_101), idle)
    try:
        client = await raw_connect(reactor(), h.port)
        client.transport.write(SPDY_HEAD)
        await client.wait_contains(b"101")
        await client.closed
    finally:
        await stop_harness(h)
        await listening.stopListening()

    lifetime = ProxySettings(splice=SpliceSettings(idle_timeout=None, max_lifetime=0.5))
    h, listening, _ = await scripted_harness(lambda t: t.write(HEAD_101), lifetime)
    try:
        client = await raw_connect(reactor(), h.port)
        client.transport.write(SPDY_HEAD)
        await client.wait_contains(b"101")
        for _ in range(100):
            if client.closed.called:
                break
            client.transport.write(b"x")
            await sleep(reactor(), 0.05)
        assert client.closed.called
    finally:
        await stop_harness(h)
        await listening.stopListening()
