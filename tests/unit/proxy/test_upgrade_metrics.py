"""What an upgrade records: an open session from the relayed 101 until the splice closes
(exactly once, however it closes), the spliced bytes, and the request with code 101."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from clustergateway.observe.metrics import GatewayMetrics
from clustergateway.proxy.resource import ProxySettings
from clustergateway.proxy.upgrade import SpliceSettings
from tests.unit.proxy.conftest import Harness, eventually, raw_connect, stop_harness
from tests.unit.proxy.test_upgrade import HEAD_101, SPDY_HEAD, reactor, scripted_harness

REFUSAL = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nnope!"


def _metrics(h: Harness) -> GatewayMetrics:
    metrics = GatewayMetrics.build(is_known_cluster=lambda name: True, process_metrics=False)
    h.proxy.metrics = metrics
    return metrics


def _value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"cluster": "c1", **labels})


def _sessions(metrics: GatewayMetrics) -> float | None:
    return _value(metrics, "ocm_proxy_upgrade_sessions")


def _count(metrics: GatewayMetrics, code: str) -> float | None:
    return _value(metrics, "ocm_proxy_proxied_requests_by_cluster_total", code=code)


async def _switched(
    script: Any, settings: ProxySettings | None = None
) -> tuple[Harness, Any, GatewayMetrics, Any]:
    h, listening, _ = await scripted_harness(script, settings)
    metrics = _metrics(h)
    client = await raw_connect(reactor(), h.port)
    client.transport.write(SPDY_HEAD)
    return h, listening, metrics, client


@pytest_twisted.ensureDeferred
async def test_session_open_while_spliced_closed_once_when_client_leaves() -> None:
    """+1 when the 101 is relayed, back to 0 when the client closes; bytes both ways are
    counted once at the end; the request is counted once with code 101, not in flight."""
    h, listening, metrics, client = await _switched(lambda t: t.write(HEAD_101 + b"hi"))
    try:
        await client.wait_contains(b"hi")
        assert _sessions(metrics) == 1
        assert _value(metrics, "ocm_proxy_inflight_requests") == 1
        client.transport.write(b"abcd")
        await client.wait_contains(b"ABCD")
        client.transport.loseConnection()
        await client.closed
        await eventually(reactor(), lambda: _count(metrics, "101") == 1)
        assert _sessions(metrics) == 0
        assert _value(metrics, "ocm_proxy_inflight_requests") == 0
        assert _value(metrics, "ocm_proxy_upstream_sent_bytes_total") == 4
        # "hi" with the head, then the echo.
        assert _value(metrics, "ocm_proxy_upstream_received_bytes_total") == 6
    finally:
        await stop_harness(h)
        await listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_session_closed_once_when_cluster_leaves() -> None:
    """The cluster hanging up ends the session (and closes the client); the client's
    close that follows does not count it down a second time."""
    cluster: list[Any] = []

    def script(transport: Any) -> None:
        cluster.append(transport)
        transport.write(HEAD_101)

    h, listening, metrics, client = await _switched(script)
    try:
        await client.wait_contains(b"101")
        assert _sessions(metrics) == 1
        cluster[0].loseConnection()
        await client.closed
        await eventually(reactor(), lambda: _count(metrics, "101") == 1)
        assert _sessions(metrics) == 0
        assert _value(metrics, "ocm_proxy_inflight_requests") == 0
    finally:
        await stop_harness(h)
        await listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_refused_upgrade_is_no_session() -> None:
    """A relayed refusal (kubectl then falls back to SPDY) never opens a session; it is
    counted with its own code and its body as received bytes."""
    h, listening, metrics, client = await _switched(lambda t: t.write(REFUSAL))
    try:
        await client.closed
        assert client.data == REFUSAL
        await eventually(reactor(), lambda: _count(metrics, "400") == 1)
        assert _sessions(metrics) in (None, 0)
        assert _count(metrics, "101") is None
        assert _value(metrics, "ocm_proxy_upstream_received_bytes_total") == len(b"nope!")
    finally:
        await stop_harness(h)
        await listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_watchdog_close_ends_the_session() -> None:
    """An idle splice closed by the watchdog (abort) is counted down like any other."""
    idle = ProxySettings(splice=SpliceSettings(idle_timeout=0.4, max_lifetime=None))
    h, listening, metrics, client = await _switched(lambda t: t.write(HEAD_101), idle)
    try:
        await client.wait_contains(b"101")
        assert _sessions(metrics) == 1
        await client.closed
        await eventually(reactor(), lambda: _count(metrics, "101") == 1)
        assert _sessions(metrics) == 0
    finally:
        await stop_harness(h)
        await listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_upgrade_connection_is_a_new_timed_connection(harness: Harness) -> None:
    """An upgrade dials a connection of its own (to the TLS upstream): counted new with
    one dial and one handshake observed, never as a reuse, open while spliced and
    counted closed (once) when the session ends."""
    metrics = _metrics(harness)
    client = await raw_connect(reactor(), harness.port)
    client.transport.write(SPDY_HEAD)
    await client.wait_contains(b"101")
    assert _value(metrics, "ocm_proxy_upstream_connections_total", reused="false") == 1
    assert _value(metrics, "ocm_proxy_upstream_connections_total", reused="true") is None
    assert _value(metrics, "ocm_proxy_upstream_dial_duration_seconds_count") == 1
    assert _value(metrics, "ocm_proxy_upstream_tls_handshake_duration_seconds_count") == 1
    assert _value(metrics, "ocm_proxy_upstream_open_connections") == 1
    client.transport.loseConnection()
    await client.closed
    await eventually(reactor(), lambda: _count(metrics, "101") == 1)
    await eventually(reactor(), lambda: _value(metrics, "ocm_proxy_upstream_open_connections") == 0)
    assert _value(metrics, "ocm_proxy_upstream_connections_total", reused="false") == 1
