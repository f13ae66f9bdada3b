"""Long-running requests on shared HTTP/2 connections (``proxy.h2client``).

The cluster here is h2's own server-side connection, fed the bytes the
client writes to an in-memory transport; its answers go back the same way.
Everything runs synchronously on a ``Clock``.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    PingReceived,
    RequestReceived,
    StreamReset,
    WindowUpdated,
)
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame
from twisted.internet import error
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from clustergateway.proxy.dial import DialError
from clustergateway.proxy.h1client import ResponseHead, UpstreamProtocolError
from clustergateway.proxy.h2client import (
    CONNECTION_WINDOW,
    PING_TIMEOUT,
    READ_IDLE_TIMEOUT,
    STREAM_WINDOW,
    H2ClientConnection,
    H2Streams,
    h2_request_headers,
    response_head,
)
from tests.unit.proxy.test_h1client_metrics import Recorder

HEADERS = [
    (b"Host", [b"cluster.example:6443"]),
    (b"Accept", [b"application/json"]),
    (b"Connection", [b"keep-alive"]),
    (b"Authorization", [b"Bearer secret"]),
]


class Transport(StringTransport):
    """An in-memory transport with the ALPN result the dial negotiated."""

    def __init__(self, protocol: bytes | None) -> None:
        super().__init__()
        self.negotiatedProtocol = protocol
        self.aborted = False
        self.protocol: Any = None

    def abortConnection(self) -> None:  # noqa: N802
        self.aborted = True
        self.loseConnection()

    def close_by_peer(self) -> None:
        self.disconnecting = True
        self.protocol.connectionLost(Failure(error.ConnectionLost("gone")))


class Cluster:
    """h2's server side of one connection."""

    def __init__(self, client: H2ClientConnection, max_streams: int | None) -> None:
        self.client = client
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.h2.initiate_connection()
        if max_streams is not None:
            self.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
        self.requests: dict[int, dict[bytes, bytes]] = {}
        self.events: list[Any] = []

    def pump(self) -> None:
        """Deliver what each side wrote to the other until both are quiet."""
        transport = self.client.transport
        for _ in range(20):
            sent = transport.value()
            transport.clear()
            if sent:
                for event in self.h2.receive_data(sent):
                    self.events.append(event)
                    if isinstance(event, RequestReceived):
                        self.requests[event.stream_id] = dict(event.headers)
            answer = self.h2.data_to_send()
            if answer and not self.client.closed:
                self.client.dataReceived(answer)
            if not sent and not answer:
                return

    def respond(self, stream_id: int, status: bytes = b"200", **kwargs: Any) -> None:
        headers = [(b":status", status), (b"content-type", b"application/json")]
        headers += list(kwargs.get("extra", []))
        self.h2.send_headers(stream_id, headers, end_stream=kwargs.get("end", False))
        self.pump()

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        self.h2.send_data(stream_id, data, end_stream=end)
        self.pump()

    def window(self, stream_id: int) -> int:
        return self.h2.local_flow_control_window(stream_id)


@attrs.define
class Endpoint:
    """Dials in memory: each connection gets a :class:`Cluster` peer."""

    alpn: bytes | None = b"h2"
    max_streams: int | None = None
    failure: Exception | None = None
    hold: bool = False
    clusters: list[Cluster] = attrs.field(factory=list)
    held: list[Deferred[Any]] = attrs.field(factory=list)
    address: str = "cluster.example:6443"

    def connect(self, factory: Any) -> Deferred[Any]:
        if self.failure is not None:
            return fail(self.failure)
        protocol = factory.buildProtocol(None)
        transport = Transport(self.alpn)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self.clusters.append(Cluster(protocol, self.max_streams))
        if self.hold:
            d: Deferred[Any] = Deferred()
            self.held.append(d)
            d.addCallback(lambda _: protocol)
            return d
        return succeed(protocol)


@attrs.define
class TimedEndpoint(Endpoint):
    """Reports dial and TLS times, as ``UpstreamEndpoint.connect_timed`` does."""

    def connect_timed(self, factory: Any) -> Deferred[Any]:
        return self.connect(factory).addCallback(lambda p: (p, 0.25, 0.5))


@attrs.define
class Sink:
    heads: list[ResponseHead] = attrs.field(factory=list)
    body: list[bytes] = attrs.field(factory=list)
    done: int = 0
    failures: list[tuple[Failure, bool]] = attrs.field(factory=list)
    producer: Any = None

    def head_received(self, head: ResponseHead, producer: Any) -> None:
        self.heads.append(head)
        self.producer = producer

    def body_received(self, data: bytes) -> None:
        self.body.append(data)

    def body_done(self) -> None:
        self.done += 1

    def failed(self, reason: Failure, head_received: bool) -> None:
        self.failures.append((reason, head_received))


@attrs.define
class Fallback:
    """The HTTP/1.1 pool's stand-in: records what was sent there."""

    sinks: list[Any] = attrs.field(factory=list)
    cancelled: int = 0

    def __call__(self, sink: Any) -> Any:
        self.sinks.append(sink)
        return self

    def cancel(self) -> None:
        self.cancelled += 1


def streams(**kwargs: Any) -> tuple[H2Streams, Endpoint, Clock]:
    clock = Clock()
    endpoint = kwargs.pop("endpoint", None) or Endpoint()
    return H2Streams(clock, endpoint, **kwargs), endpoint, clock


def watch(
    manager: H2Streams, path: bytes = b"/api/v1/pods?watch=true"
) -> tuple[Sink, Any, Fallback]:
    sink, fallback = Sink(), Fallback()
    exchange = manager.request(sink, b"GET", path, HEADERS, fallback)
    for cluster in manager.endpoint.clusters:
        cluster.pump()
    return sink, exchange, fallback


# -- pure conversions ----------------------------------------------------------------


def test_request_headers_carry_host_as_authority_and_drop_connection_headers():
    headers = h2_request_headers(
        b"GET",
        b"/api?watch=1",
        [*HEADERS, (b"TE", [b"trailers"]), (b"Upgrade", [b"h2c"]), (b"X-Many", [b"a", b"b"])],
    )
    assert headers[:4] == [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"cluster.example:6443"),
        (b":path", b"/api?watch=1"),
    ]
    assert headers[4:] == [
        (b"accept", b"application/json"),
        (b"authorization", b"Bearer secret"),
        (b"te", b"trailers"),
        (b"x-many", b"a"),
        (b"x-many", b"b"),
    ]


def test_response_head_from_h2_headers():
    head = response_head([(b":status", b"410"), (b"content-length", b"12"), (b"x-a", b"1")])
    assert (head.code, head.length, head.headers) == (
        410,
        12,
        [(b"content-length", b"12"), (b"x-a", b"1")],
    )
    assert response_head([(b":status", b"200")]).length is None
    for bad in (
        [(b"x", b"y")],
        [(b":status", b"abc")],
        [(b":status", b"200"), (b"content-length", b"x")],
    ):
        with pytest.raises(UpstreamProtocolError):
            response_head(bad)


# -- streams on one connection ---------------------------------------------------------


def test_watches_share_one_connection_and_each_gets_its_own_body():
    manager, endpoint, _ = streams()
    first, _, _ = watch(manager, b"/api/v1/pods?watch=true")
    second, _, _ = watch(manager, b"/api/v1/configmaps?watch=true")
    assert len(endpoint.clusters) == 1
    cluster = endpoint.clusters[0]
    assert sorted(cluster.requests) == [1, 3]
    assert cluster.requests[1][b":path"] == b"/api/v1/pods?watch=true"
    assert cluster.requests[3][b"authorization"] == b"Bearer secret"
    assert b"connection" not in cluster.requests[1]
    cluster.respond(3)
    cluster.respond(1)
    cluster.send(1, b'{"type":"ADDED"}\n')
    cluster.send(3, b'{"type":"MODIFIED"}\n')
    cluster.send(1, b'{"type":"DELETED"}\n', end=True)
    assert [h.code for h in first.heads] == [200]
    assert first.body == [b'{"type":"ADDED"}\n', b'{"type":"DELETED"}\n']
    assert first.done == 1
    assert second.body == [b'{"type":"MODIFIED"}\n'] and second.done == 0
    assert manager.connection_count() == 1


def test_a_full_connection_makes_the_next_request_dial_another():
    manager, endpoint, _ = streams(endpoint=Endpoint(max_streams=2))
    watch(manager)  # the first request dials; the cluster's SETTINGS arrive
    watch(manager)
    assert len(endpoint.clusters) == 1
    _, _, _ = watch(manager)
    assert len(endpoint.clusters) == 2
    assert sorted(endpoint.clusters[1].requests) == [1]


def test_requests_while_dialing_share_the_dial():
    manager, endpoint, _ = streams(endpoint=Endpoint(hold=True))
    sinks = [watch(manager)[0] for _ in range(3)]
    assert len(endpoint.clusters) == 1
    endpoint.held[0].callback(None)
    cluster = endpoint.clusters[0]
    cluster.pump()
    assert sorted(cluster.requests) == [1, 3, 5]
    for stream_id in (1, 3, 5):
        cluster.respond(stream_id, end=True)
    assert [s.done for s in sinks] == [1, 1, 1]


def test_a_cluster_without_h2_gets_every_long_running_request_over_http1():
    manager, endpoint, _ = streams(endpoint=Endpoint(alpn=b"http/1.1"))
    sink, exchange, fallback = watch(manager)
    assert fallback.sinks == [sink]
    assert manager.supported is False
    assert endpoint.clusters[0].client.transport.disconnecting
    # Later requests go straight to HTTP/1.1, without another dial.
    later, _, later_fallback = watch(manager)
    assert later_fallback.sinks == [later]
    assert len(endpoint.clusters) == 1
    exchange.cancel()
    assert fallback.cancelled == 1


def test_a_failed_dial_reaches_every_waiting_sink():
    manager, _, _ = streams(endpoint=Endpoint(failure=DialError("dial tcp c:6443: refused")))
    sink, _, _ = watch(manager)
    assert len(sink.failures) == 1
    reason, head_received = sink.failures[0]
    assert reason.check(DialError) and not head_received


# -- flow control and backpressure ---------------------------------------------------


def test_windows_are_large_and_acknowledged_as_the_client_reads():
    manager, endpoint, _ = streams()
    sink, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    assert cluster.h2.outbound_flow_control_window == CONNECTION_WINDOW
    assert cluster.h2.remote_settings.initial_window_size == STREAM_WINDOW
    cluster.respond(1)
    for _ in range(40):
        cluster.send(1, b"x" * 16384)
    # 640 KiB passed: without acknowledgements 384 KiB of window would be left.
    # The client acknowledges in batches (once half the window is spent).
    assert cluster.h2.local_flow_control_window(1) >= STREAM_WINDOW // 2
    assert cluster.h2.local_flow_control_window(1) > STREAM_WINDOW - 40 * 16384
    assert sum(map(len, sink.body)) == 40 * 16384


def test_a_paused_client_stops_its_stream_only_and_resume_reopens_it():
    manager, endpoint, _ = streams()
    slow, _, _ = watch(manager)
    fast, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    cluster.respond(1)
    cluster.respond(3)
    slow.producer.pauseProducing()
    chunk = b"y" * 16384
    while cluster.h2.local_flow_control_window(1) >= len(chunk):
        cluster.send(1, chunk)
    assert cluster.h2.local_flow_control_window(1) < len(chunk)  # the slow stream is stopped
    for _ in range(80):  # more than a stream window on the other stream
        cluster.send(3, chunk)
    assert sum(map(len, fast.body)) == 80 * len(chunk)
    assert cluster.h2.local_flow_control_window(3) >= STREAM_WINDOW // 2
    cluster.events.clear()
    slow.producer.resumeProducing()
    cluster.pump()
    updates = [e for e in cluster.events if isinstance(e, WindowUpdated) and e.stream_id == 1]
    assert updates
    assert cluster.h2.local_flow_control_window(1) >= STREAM_WINDOW // 2


# -- endings -------------------------------------------------------------------------


def test_cancel_resets_the_stream_and_keeps_the_connection():
    manager, endpoint, _ = streams()
    sink, exchange, _ = watch(manager)
    other, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    cluster.respond(1)
    exchange.cancel()
    cluster.pump()
    resets = [e for e in cluster.events if isinstance(e, StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [(1, ErrorCodes.CANCEL)]
    cluster.respond(3)
    cluster.send(3, b"still here\n")
    assert other.body == [b"still here\n"]
    assert sink.failures == [] and sink.done == 0


def test_cancel_before_the_connection_is_up_sends_nothing():
    manager, endpoint, _ = streams(endpoint=Endpoint(hold=True))
    _, exchange, _ = watch(manager)
    exchange.cancel()
    endpoint.held[0].callback(None)
    endpoint.clusters[0].pump()
    assert endpoint.clusters[0].requests == {}


def test_a_refused_stream_is_sent_again_once():
    manager, endpoint, _ = streams()
    sink, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    cluster.h2.reset_stream(1, ErrorCodes.REFUSED_STREAM)
    cluster.pump()
    assert sorted(cluster.requests) == [1, 3]
    cluster.h2.reset_stream(3, ErrorCodes.REFUSED_STREAM)
    cluster.pump()
    assert len(sink.failures) == 1
    reason, head_received = sink.failures[0]
    assert "REFUSED_STREAM" in str(reason.value) and not head_received


def test_a_reset_after_the_head_is_a_truncated_body():
    manager, endpoint, _ = streams()
    sink, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    cluster.respond(1)
    cluster.h2.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
    cluster.pump()
    assert len(sink.failures) == 1 and sink.failures[0][1] is True


def test_goaway_moves_unprocessed_streams_to_a_new_connection():
    manager, endpoint, _ = streams()
    answered, _, _ = watch(manager)
    unprocessed, _, _ = watch(manager)
    first = endpoint.clusters[0]
    first.respond(1)
    first.h2.close_connection(last_stream_id=1)
    first.pump()
    assert len(endpoint.clusters) == 2
    second = endpoint.clusters[1]
    second.pump()
    assert sorted(second.requests) == [1]
    second.respond(1, end=True)
    assert unprocessed.done == 1
    # The answered stream goes on to its end on the old connection, which then
    # closes (h2's server side cannot send after its GOAWAY: the frame is made here).
    first.client.dataReceived(DataFrame(1, b"last\n", flags=["END_STREAM"]).serialize())
    assert answered.body == [b"last\n"] and answered.done == 1
    assert first.client.transport.disconnecting


def test_connection_lost_fails_answered_streams_and_retries_the_others_once():
    manager, endpoint, _ = streams()
    answered, _, _ = watch(manager)
    waiting, _, _ = watch(manager)
    first = endpoint.clusters[0]
    first.respond(1)
    first.client.transport.close_by_peer()
    assert len(answered.failures) == 1 and answered.failures[0][1] is True
    assert waiting.failures == []
    second = endpoint.clusters[1]
    second.pump()
    assert sorted(second.requests) == [1]
    second.client.transport.close_by_peer()
    assert len(waiting.failures) == 1 and waiting.failures[0][1] is False


def test_invalid_http2_fails_every_stream_with_the_cause():
    manager, endpoint, _ = streams()
    sink, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    # A DATA frame on stream 0: a connection error (RFC 9113 §6.1).
    cluster.client.dataReceived(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    assert len(sink.failures) == 1
    assert isinstance(sink.failures[0][0].value, UpstreamProtocolError)
    assert cluster.client.transport.aborted


def test_an_invalid_status_resets_only_that_stream():
    manager, endpoint, _ = streams()
    bad, _, _ = watch(manager)
    good, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    cluster.h2.send_headers(1, [(b":status", b"999")])
    cluster.pump()
    cluster.respond(3, end=True)
    assert len(bad.failures) == 1 and good.done == 1


def test_an_idle_connection_closes_after_the_idle_timeout():
    manager, endpoint, clock = streams(idle_timeout=55.0)
    _, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    cluster.respond(1, end=True)
    clock.advance(54)
    assert not cluster.client.transport.disconnecting
    watch(manager)  # reused: the timer stops while a stream is open
    clock.advance(10)
    assert not cluster.client.transport.disconnecting
    cluster.respond(3, end=True)
    clock.advance(55)
    assert cluster.client.transport.disconnecting
    assert manager.connection_count() == 0


def test_retire_closes_idle_connections_now_and_busy_ones_after_their_streams():
    manager, endpoint, _ = streams()
    busy, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    cluster.respond(1)
    manager.close()
    assert not cluster.client.transport.disconnecting
    later, _, fallback = watch(manager)
    assert fallback.sinks == [later]  # a retired upstream opens no new streams
    cluster.send(1, b"end\n", end=True)
    assert busy.done == 1
    assert cluster.client.transport.disconnecting


def test_metrics_count_one_new_connection_then_reuses_and_first_bytes():
    recorder = Recorder()
    manager, endpoint, clock = streams(endpoint=TimedEndpoint(), metrics=recorder)
    for _ in range(3):
        watch(manager)
    assert recorder.connected == [(0.25, 0.5, False), (None, None, True), (None, None, True)]
    clock.advance(0.125)
    cluster = endpoint.clusters[0]
    cluster.respond(1)
    assert recorder.first_bytes == [0.125]
    assert recorder.closed == 0
    cluster.client.transport.close_by_peer()
    assert recorder.closed == 1


def test_a_silent_connection_is_pinged_and_kept_while_the_cluster_answers():
    """After READ_IDLE_TIMEOUT without a frame the client sends a PING (client-go's
    health check); an answered PING keeps the connection and its quiet watch."""
    manager, endpoint, clock = streams()
    sink, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    cluster.respond(1)
    cluster.events.clear()
    clock.advance(READ_IDLE_TIMEOUT - 1)
    cluster.pump()
    assert not [e for e in cluster.events if isinstance(e, PingReceived)]
    clock.advance(1)
    cluster.pump()  # the cluster reads the PING and acknowledges it
    assert [e for e in cluster.events if isinstance(e, PingReceived)]
    clock.advance(PING_TIMEOUT + 1)
    assert not cluster.client.transport.disconnecting
    assert sink.failures == []
    cluster.send(1, b"event\n")  # the watch still works
    assert sink.body == [b"event\n"]


def test_an_unanswered_ping_ends_the_connection_and_the_watch_hears_why():
    """A cluster that stops answering (a dead route): after READ_IDLE_TIMEOUT plus
    PING_TIMEOUT the connection is aborted and each watch on it ends with the cause,
    so its client can watch again."""
    manager, endpoint, clock = streams()
    sink, _, _ = watch(manager)
    cluster = endpoint.clusters[0]
    cluster.respond(1)
    clock.advance(READ_IDLE_TIMEOUT)
    cluster.client.transport.clear()  # the PING is lost on the way
    clock.advance(PING_TIMEOUT)
    assert cluster.client.transport.aborted
    assert len(sink.failures) == 1
    reason, head_received = sink.failures[0]
    assert head_received
    assert "did not answer an HTTP/2 PING" in str(reason.value)
    assert not clock.getDelayedCalls() or all(not c.active() for c in clock.getDelayedCalls())
