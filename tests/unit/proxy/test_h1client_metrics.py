"""What the lean HTTP/1.1 client records through its pool's cluster recorder: each new
connection with its dial and TLS times, each reuse, each close, and per request the time
from writing it to the response head (``proxy.h1client`` with ``H1Pool.metrics``)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock

from clustergateway.observe.metrics import GatewayMetrics
from clustergateway.proxy.dial import UpstreamEndpoint
from clustergateway.proxy.h1client import H1Pool
from tests.unit.proxy.conftest import Harness, eventually
from tests.unit.proxy.test_h1client import GET, Endpoint, Sink, make_pool, transport_of
from tests.unit.proxy.test_tls_dial import PendingEndpoint

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@attrs.define
class Recorder:
    """Stands in for ``ClusterMetrics``: remembers every call."""

    connected: list[tuple[float | None, float | None, bool]] = attrs.field(factory=list)
    first_bytes: list[float] = attrs.field(factory=list)
    closed: int = 0

    def upstream_connected(self, dial_s: float | None, tls_s: float | None, reused: bool) -> None:
        self.connected.append((dial_s, tls_s, reused))

    def upstream_closed(self) -> None:
        self.closed += 1

    def first_byte(self, seconds: float) -> None:
        self.first_bytes.append(seconds)


@attrs.define
class TimedEndpoint(Endpoint):
    """An endpoint that, like ``UpstreamEndpoint``, reports its dial and TLS times."""

    times: tuple[float | None, float | None] = (0.25, 0.5)

    def connect_timed(self, factory: Any) -> Deferred[Any]:
        return self.connect(factory).addCallback(lambda p: (p, *self.times))


def recorded_pool(endpoint: Endpoint | None = None) -> tuple[H1Pool, Endpoint, Clock, Recorder]:
    recorder = Recorder()
    pool, endpoint, clock = make_pool(endpoint=endpoint, metrics=recorder)
    return pool, endpoint, clock, recorder


def test_new_then_reused_connections_and_a_first_byte_per_request() -> None:
    """Three sequential GETs: one new connection (with the endpoint's dial and TLS
    times), two reuses, and three first-byte times measured from the write."""
    pool, endpoint, clock, recorder = recorded_pool(TimedEndpoint())
    for wait in (0.125, 0.5, 2.0):
        sink = Sink()
        pool.request(sink, GET, method=b"GET", has_body=False)
        clock.advance(wait)
        endpoint.made[-1].dataReceived(OK)
        assert sink.done == 1
    assert len(endpoint.made) == 1
    assert recorder.connected == [(0.25, 0.5, False), (None, None, True), (None, None, True)]
    assert recorder.first_bytes == [0.125, 0.5, 2.0]
    assert recorder.closed == 0

    transport_of(endpoint.made[0]).close_by_peer()
    assert recorder.closed == 1


def test_endpoint_without_timings_counts_the_whole_connect_as_dial() -> None:
    """Any other endpoint: the pool times the connect itself (no TLS time)."""
    pool, endpoint, _, recorder = recorded_pool(Endpoint())
    pool.request(Sink(), GET, method=b"GET", has_body=False)
    assert recorder.connected == [(0.0, None, False)]


def test_interim_answers_do_not_count_as_the_first_byte() -> None:
    """A 100 Continue before the answer: one first-byte time, at the real head."""
    pool, endpoint, clock, recorder = recorded_pool()
    sink = Sink()
    pool.request(sink, GET, method=b"GET", has_body=False)
    clock.advance(1.0)
    endpoint.made[0].dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert recorder.first_bytes == []
    clock.advance(2.0)
    endpoint.made[0].dataReceived(OK)
    assert recorder.first_bytes == [3.0] and sink.done == 1


def test_stale_reused_connection_retried_counts_reuse_new_and_close() -> None:
    """A pooled connection the cluster closed as it was reused: the reuse, its close and
    the fresh connection of the retry are all counted; each closes exactly once."""
    pool, endpoint, _, recorder = recorded_pool()
    pool.request(Sink(), GET, method=b"GET", has_body=False)
    stale = endpoint.made[0]
    stale.dataReceived(OK)
    sink = Sink()
    pool.request(sink, GET, method=b"GET", has_body=False)
    transport_of(stale).close_by_peer()
    fresh = endpoint.made[1]
    fresh.dataReceived(OK)
    assert sink.done == 1
    assert [reused for _, _, reused in recorder.connected] == [False, True, False]
    assert recorder.closed == 1 and recorder.first_bytes == [0.0, 0.0]
    transport_of(fresh).close_by_peer()
    transport_of(stale).close_by_peer()  # a second connectionLost is not a second close
    assert recorder.closed == 2


def test_cancel_while_connecting_records_nothing() -> None:
    """A dial abandoned before it produced a connection: no connection counted, none closed."""
    pool, endpoint, _, recorder = recorded_pool(TimedEndpoint(hold=True))
    exchange = pool.request(Sink(), GET, method=b"GET", has_body=False)
    exchange.cancel()
    assert endpoint.cancelled == 1
    assert (recorder.connected, recorder.closed, recorder.first_bytes) == ([], 0, [])


@attrs.define
class UntimedOnly(TimedEndpoint):
    """Fails the test if the pool asks for timings."""

    def connect_timed(self, factory: Any) -> Deferred[Any]:
        raise AssertionError("timed connect without a recorder")


def test_no_recorder_records_nothing_and_uses_plain_connect() -> None:
    """Metrics off: the endpoint's plain ``connect`` is used, the connection carries no
    recorder (so nothing is recorded on its close either)."""
    pool, endpoint, _ = make_pool(endpoint=UntimedOnly())
    sink = Sink()
    pool.request(sink, GET, method=b"GET", has_body=False)
    endpoint.made[0].dataReceived(OK)
    pool.request(Sink(), GET, method=b"GET", has_body=False)
    assert sink.done == 1 and len(endpoint.made) == 1
    assert endpoint.made[0].metrics is None


def test_upstream_endpoint_reports_dial_time_without_tls() -> None:
    """``UpstreamEndpoint.connect_timed``: the time until the stream is up, no TLS time."""
    clock = Clock()
    stream = PendingEndpoint()
    endpoint = UpstreamEndpoint(clock, stream, "10.0.0.1:6443", None, 5.0, 5.0)
    results: list[Any] = []
    endpoint.connect_timed(Factory.forProtocol(Protocol)).addCallback(results.append)
    clock.advance(0.75)
    protocol = Protocol()
    stream.attempts[0].callback(protocol)
    assert results == [(protocol, 0.75, None)]
    assert not clock.getDelayedCalls()


def _sample(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"cluster": "c1", **labels})


@pytest_twisted.ensureDeferred
async def test_proxy_records_through_the_cluster_pool(harness: Harness) -> None:
    """Through the proxy, to the TLS upstream, with the real recorder: N sequential GETs
    open one connection (one dial and one handshake observed), reuse it N - 1 times, and
    observe N first-byte times; retiring the pool closes it (open gauge back to 0)."""
    from twisted.internet import reactor

    metrics = GatewayMetrics.build(is_known_cluster=lambda name: True, process_metrics=False)
    harness.proxy.metrics = metrics
    n = 4
    for _ in range(n):
        response, _body = await harness.request(b"GET", "c1", "/echo/x")
        assert response.code == 200
    assert _sample(metrics, "ocm_proxy_upstream_dial_duration_seconds_count") == 1
    assert _sample(metrics, "ocm_proxy_upstream_tls_handshake_duration_seconds_count") == 1
    assert _sample(metrics, "ocm_proxy_upstream_connections_total", reused="false") == 1
    assert _sample(metrics, "ocm_proxy_upstream_connections_total", reused="true") == n - 1
    assert _sample(metrics, "ocm_proxy_upstream_first_byte_duration_seconds_count") == n
    assert _sample(metrics, "ocm_proxy_upstream_open_connections") == 1

    await harness.proxy.close()
    await eventually(reactor, lambda: _sample(metrics, "ocm_proxy_upstream_open_connections") == 0)
