"""Long-running requests to a cluster on shared HTTP/2 connections.

Why: over HTTP/1.1 every open watch (or followed log) holds an upstream TLS
connection of its own for hours.  With OpenSSL 4.0 such a connection keeps
~30 KiB after its handshake (the ``SSL`` object, its record layers, the
hybrid key shares), every watch costs the cluster's apiserver a socket, and
every new watch pays a TLS handshake.  Go's transport, which ``kubectl
proxy`` and the Go gateway use, multiplexes them as HTTP/2 streams instead.

So :class:`H2Streams` (one per cluster upstream) carries *long-running*
``GET`` requests — the ones without a response-head timeout: watches,
``logs -f``, nested proxies — as streams on a few HTTP/2 connections, opening
another only when the open ones are full (the cluster's
``SETTINGS_MAX_CONCURRENT_STREAMS``; kube-apiserver allows 100–1000).
Everything else stays on the HTTP/1.1 pool (``h1client``), as measured when
these connections were framed by the pure-Python ``h2``; they are now framed by
libnghttp2 (through ``ngh2``, as the listener's HTTP/2), whose per-event cost is
a tenth of it (``bench/HISTORY.md``).

A cluster that does not select ``h2`` in ALPN (an HTTP/1.1-only server or
proxy in front of it) is remembered as such for the upstream's lifetime, and
its long-running requests go to the HTTP/1.1 pool as before.

Backpressure is per stream: a stream's :class:`H2Exchange` is the producer
its client's response registers.  While the client is paused, the stream's
received bytes are not acknowledged, so the cluster stops sending on *that*
stream once its window (:data:`STREAM_WINDOW`) is spent; the other streams on
the connection go on.  The connection window is large
(:data:`CONNECTION_WINDOW`, as Go's client), so paused streams cannot starve
the rest.

The sink side is the one of ``h1client``: :class:`~clustergateway.proxy.h1client.ResponseSink`
hears the head (a :class:`~clustergateway.proxy.h1client.ResponseHead`), the
body pieces and the end or the failure; the exchange's ``cancel`` resets the
stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import ngh2
from ngh2 import events as ev
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clustergateway.proxy.h1client import (
    MAX_HEAD_BYTES,
    ResponseHead,
    ResponseSink,
    UpstreamProtocolError,
)
from clustergateway.proxy.headers import HOP_BY_HOP

if TYPE_CHECKING:
    from clustergateway.observe.metrics import ClusterMetrics

__all__ = [
    "CONNECTION_WINDOW",
    "STREAM_WINDOW",
    "H2ClientConnection",
    "H2Exchange",
    "H2Streams",
    "h2_request_headers",
    "response_head",
]

#: Bytes the cluster may send on one stream before the gateway acknowledges
#: them: what a paused client can cost in memory, and enough to keep a fast
#: ``logs -f`` flowing.
STREAM_WINDOW = 1 << 20
#: The connection's window (Go's client uses 1 GiB too): paused streams can
#: hold at most their own windows, never the whole connection.
CONNECTION_WINDOW = 1 << 30
#: Streams used on a connection before the cluster's SETTINGS say how many it
#: allows (Go's client assumes 100 as well).
INITIAL_STREAM_LIMIT = 100
#: A connection that received nothing for this long is asked for a PING, and
#: closed when no answer comes within ``PING_TIMEOUT`` (client-go's
#: ``ReadIdleTimeout`` and ``PingTimeout``): one dead connection would
#: otherwise hold every watch on it silently, for ever.
READ_IDLE_TIMEOUT = 30.0
PING_TIMEOUT = 15.0
_PING_DATA = b"cg-alive"
#: HTTP/2 error codes (RFC 9113 §7).
_PROTOCOL_ERROR = 0x1
_REFUSED_STREAM = 0x7
_CANCEL = 0x8

#: Request headers that HTTP/2 forbids (connection-specific: the hop-by-hop
#: ones and h2c's upgrade settings) or carries as pseudo-headers (``Host``
#: becomes ``:authority``).
_NOT_SENT = HOP_BY_HOP | {b"host", b"http2-settings"}


def h2_request_headers(
    method: bytes, path: bytes, headers: Sequence[tuple[bytes, Sequence[bytes]]]
) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 header list of an HTTPS request given as the HTTP/1.1 client gets it.

    ``Host`` becomes ``:authority``; connection-specific headers are dropped
    (``TE: trailers`` alone is allowed); names are lowered, as HTTP/2 requires.
    """
    authority = b""
    fields: list[tuple[bytes, bytes]] = []
    for name, values in headers:
        lower = name.lower()
        if lower in _NOT_SENT:
            if lower == b"host" and values:
                authority = values[0]
            elif lower == b"te":
                fields.extend((b"te", v) for v in values if v.strip().lower() == b"trailers")
            continue
        fields.extend((lower, value) for value in values)
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", authority),
        (b":path", path),
        *fields,
    ]


def response_head(headers: Sequence[tuple[bytes, bytes]]) -> ResponseHead:
    """A :class:`ResponseHead` from an HTTP/2 response header list (``:status`` first).

    Raises :class:`UpstreamProtocolError` for a missing or invalid status or
    ``Content-Length`` (h2 has validated the header block itself).
    """
    code = 0
    length: int | None = None
    fields: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == b":status":
            try:
                code = int(value)
            except ValueError:
                raise UpstreamProtocolError("invalid :status in the cluster's answer") from None
        elif name.startswith(b":"):
            continue
        else:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise UpstreamProtocolError("invalid Content-Length") from None
            fields.append((name, value))
    if not 200 <= code <= 599:
        raise UpstreamProtocolError("invalid :status in the cluster's answer")
    return ResponseHead(code, b"", fields, length)


def _configuration() -> ngh2.Configuration:
    """The client's libnghttp2 options: window updates are ours (per-stream backpressure),
    answers' heads up to :data:`MAX_HEAD_BYTES`, as on HTTP/1.1."""
    return ngh2.Configuration(
        auto_window_update=False,
        peer_max_concurrent_streams=INITIAL_STREAM_LIMIT,
        max_inbound_header_list_size=MAX_HEAD_BYTES,
        max_inbound_header_count=MAX_HEAD_BYTES // 32 + 1,
        max_continuations=64,
        max_send_header_block_length=max(65536, MAX_HEAD_BYTES),
    )


def _code_name(code: int) -> str:
    try:
        return ngh2.ErrorCode(code).name
    except ValueError:
        return f"error code {code:#x}"


@implementer(IPushProducer)
@attrs.define(eq=False)
class H2Exchange:
    """One request on an HTTP/2 stream, and the producer of its response body.

    Falls back to the HTTP/1.1 pool (``fallback``) when the cluster turns out
    not to speak HTTP/2; ``cancel`` then cancels that exchange instead.
    """

    sink: ResponseSink
    headers: list[tuple[bytes, bytes]]
    fallback: Callable[[ResponseSink], Any]
    manager: H2Streams
    connection: H2ClientConnection | None = None
    stream_id: int = 0
    head_received: bool = False
    cancelled: bool = False
    #: Sent again once already (after a lost connection or a refused stream).
    retried: bool = False
    paused: bool = False
    #: Bytes received while paused, acknowledged on resume.
    unacknowledged: int = 0
    #: When the request was written (set only when metrics are on).
    sent_at: float | None = None
    delegate: Any = None

    def fall_back(self) -> None:
        """Send the request on the HTTP/1.1 pool instead."""
        if not self.cancelled:
            self.delegate = self.fallback(self.sink)

    def cancel(self) -> None:
        """Abandon the exchange: its stream is reset (or its fallback cancelled)."""
        if self.cancelled:
            return
        self.cancelled = True
        if self.delegate is not None:
            self.delegate.cancel()
            return
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.reset(self)
        else:
            self.manager.unqueue(self)

    # -- IPushProducer (registered with the client's response) ---------------------

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        pending, self.unacknowledged = self.unacknowledged, 0
        if pending and self.connection is not None:
            self.connection.acknowledge(self, pending)

    def stopProducing(self) -> None:  # noqa: N802
        self.cancel()


class H2ClientConnection(TwistedProtocol):
    """One HTTP/2 connection to a cluster, carrying many :class:`H2Exchange` streams.

    Speaks only once :meth:`start` is called (by :class:`H2Streams`, after
    checking that ALPN selected ``h2``).
    """

    _log = Logger()
    transport: Any

    def __init__(self) -> None:
        self.manager: H2Streams | None = None
        self.h2 = ngh2.Connection(ngh2.Role.CLIENT, _configuration())
        self.exchanges: dict[int, H2Exchange] = {}
        #: What the cluster sent before :meth:`start` (its SETTINGS, typically).
        self._early: list[bytes] = []
        self.started = False
        self.closed = False
        self.going_away = False
        self.settings_seen = False
        #: Not yet used by a request (its first counts as a new connection in the metrics).
        self.fresh = True
        self.counted = False
        self.metrics: ClusterMetrics | None = None
        self.dial_s: float | None = None
        self.tls_s: float | None = None
        self._idle_timer: Any = None
        #: The health check (see READ_IDLE_TIMEOUT): when data last arrived,
        #: when the unanswered PING was sent, and the timer.
        self._last_read = 0.0
        self._ping_sent: float | None = None
        self._health: Any = None

    # -- setup ------------------------------------------------------------------------

    def start(self, manager: H2Streams) -> None:
        """Send the connection preface, this side's SETTINGS and the connection window."""
        self.manager = manager
        self.started = True
        h2 = self.h2
        h2.initiate_connection(
            {
                ngh2.Setting.ENABLE_PUSH: 0,
                ngh2.Setting.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                ngh2.Setting.MAX_HEADER_LIST_SIZE: MAX_HEAD_BYTES,
            }
        )
        h2.set_local_window_size(CONNECTION_WINDOW)
        self._flush()
        self._idle()
        self._last_read = manager.reactor.seconds()
        self._health = manager.reactor.callLater(READ_IDLE_TIMEOUT, self._check_health)
        early, self._early = self._early, []
        if early:
            self.dataReceived(b"".join(early))

    def has_room(self) -> bool:
        """Can another stream be opened here now?"""
        if self.closed or self.going_away or not self.started:
            return False
        limit = self.h2.remote_settings.get(ngh2.Setting.MAX_CONCURRENT_STREAMS, 1 << 31)
        if not self.settings_seen:
            limit = min(limit, INITIAL_STREAM_LIMIT)
        return len(self.exchanges) < limit

    # -- streams -----------------------------------------------------------------------

    def open(self, exchange: H2Exchange) -> bool:
        """Start ``exchange``'s stream; False if it could not be (nothing was sent)."""
        try:
            stream_id = self.h2.send_request(exchange.headers, end_stream=True)
        except (ngh2.NGH2Error, TypeError, ValueError):
            return False
        self._stop_idle()
        exchange.connection = self
        exchange.stream_id = stream_id
        self.exchanges[stream_id] = exchange
        metrics = self.metrics
        if metrics is not None and self.manager is not None:
            if self.fresh:
                # Counted open from its first request until it closes, as in h1client.
                metrics.upstream_connected(self.dial_s, self.tls_s, False)
                self.counted = True
            else:
                metrics.upstream_connected(None, None, True)
            exchange.sent_at = self.manager.reactor.seconds()
        self.fresh = False
        self._flush()
        return True

    def reset(self, exchange: H2Exchange) -> None:
        """Cancel ``exchange``'s stream (the client left, or a timeout)."""
        if self.exchanges.pop(exchange.stream_id, None) is None or self.closed:
            return
        try:
            self.h2.reset_stream(exchange.stream_id, _CANCEL)
        except ngh2.NGH2Error:
            pass
        self._flush()
        self._stream_closed()

    def acknowledge(self, exchange: H2Exchange, size: int) -> None:
        """The client took ``size`` more bytes of ``exchange``'s body: open its window."""
        if self.closed or self.exchanges.get(exchange.stream_id) is not exchange:
            return
        self._consumed(size, exchange.stream_id)
        self._flush()

    # -- Protocol ------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.closed:
            return
        if not self.started:
            # The cluster may send its SETTINGS as soon as TLS is up (Go's server
            # does), before ALPN is checked and :meth:`start` runs: kept for it.
            self._early.append(data)
            return
        self._last_read = self.manager.reactor.seconds()  # type: ignore[union-attr]
        try:
            self.h2.receive_data(data)
        except ngh2.NGH2Error as e:
            # libnghttp2 failed the connection (a flood, a bad frame it cannot recover from).
            self._abort(UpstreamProtocolError(f"invalid HTTP/2 from the cluster: {e}"))
            return
        self._handle(self.h2.events())
        self._flush()
        if not self.closed:
            # A session libnghttp2 ended (its GOAWAY now written) says so only now.
            self._handle(self.h2.events())

    def _handle(self, events: list[Any]) -> None:
        event: Any
        for event in events:
            if self.closed:
                return
            kind = type(event)
            if kind is ev.DataReceived:
                self._data(event.stream_id, event.data)
                if event.end_stream:
                    self._ended(event.stream_id)
            elif kind is ev.ResponseReceived:
                self._head(event.stream_id, event.headers)
                if event.end_stream:
                    self._ended(event.stream_id)
            elif kind is ev.TrailersReceived:
                self._ended(event.stream_id)
            elif kind is ev.StreamReset:
                self._reset_by_peer(event.stream_id, event.error_code)
            elif kind is ev.StreamClosed:
                self._closed_stream(event)
            elif kind is ev.SettingsReceived:
                self._settings()
            elif kind is ev.GoAwayReceived:
                self._goaway(event.last_stream_id)
            elif kind is ev.ConnectionClosed:
                self._connection_closed(event)
            elif kind is ev.PingAcknowledged:
                self._ping_sent = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.closed = True
        self._stop_idle()
        self._stop_health()
        metrics, self.metrics = self.metrics, None
        if metrics is not None and self.counted:
            metrics.upstream_closed()
        manager = self.manager
        if manager is not None:
            manager.forget(self)
        exchanges, self.exchanges = self.exchanges, {}
        for exchange in exchanges.values():
            exchange.connection = None
            if exchange.cancelled:
                continue
            if not exchange.head_received and not exchange.retried and manager is not None:
                # Nothing of the answer came: a GET may go again on another connection.
                exchange.retried = True
                manager.place(exchange)
            else:
                exchange.sink.failed(reason, exchange.head_received)

    # -- events ------------------------------------------------------------------------

    def _head(self, stream_id: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        exchange = self.exchanges.get(stream_id)
        if exchange is None:
            return
        try:
            head = response_head(headers)
        except UpstreamProtocolError as e:
            self._fail_stream(exchange, e)
            return
        exchange.head_received = True
        metrics = self.metrics
        if metrics is not None and exchange.sent_at is not None and self.manager is not None:
            metrics.first_byte(self.manager.reactor.seconds() - exchange.sent_at)
        exchange.sink.head_received(head, exchange)

    def _data(self, stream_id: int, data: bytes) -> None:
        # libnghttp2 accounts for padding and for DATA on streams it already closed.
        size = len(data)
        exchange = self.exchanges.get(stream_id)
        if exchange is None or not exchange.head_received:
            # A stream this side reset: give the connection its window back.
            if size:
                self._consumed(size, stream_id)
            return
        if data:
            exchange.sink.body_received(data)
        if not size:
            return
        if exchange.paused or exchange.cancelled:
            exchange.unacknowledged += size
        elif self.exchanges.get(stream_id) is exchange:
            self._consumed(size, stream_id)

    def _consumed(self, size: int, stream_id: int) -> None:
        """Open ``size`` bytes of window on the stream and the connection."""
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except ngh2.NGH2Error:
            pass  # the stream is already closed: libnghttp2 gave the connection's back

    def _ended(self, stream_id: int) -> None:
        exchange = self.exchanges.pop(stream_id, None)
        if exchange is None:
            return
        exchange.connection = None
        self._stream_closed()
        if not exchange.head_received:
            exchange.sink.failed(
                Failure(UpstreamProtocolError("the cluster ended the stream without an answer")),
                False,
            )
            return
        exchange.sink.body_done()

    def _reset_by_peer(self, stream_id: int, code: int) -> None:
        exchange = self.exchanges.pop(stream_id, None)
        if exchange is None:
            return
        exchange.connection = None
        self._stream_closed()
        if (
            code == _REFUSED_STREAM
            and not exchange.head_received
            and not exchange.retried
            and self.manager is not None
        ):
            # Not processed by the cluster (RFC 9113 §8.7): safe to send again.
            exchange.retried = True
            self.manager.place(exchange)
            return
        exchange.sink.failed(
            Failure(
                UpstreamProtocolError(f"the cluster reset the HTTP/2 stream ({_code_name(code)})")
            ),
            exchange.head_received,
        )

    def _closed_stream(self, event: Any) -> None:
        """A stream closed without its end or a reset from the cluster: libnghttp2 reset
        it (a malformed answer, RFC 9113 §8.1.1)."""
        exchange = self.exchanges.get(event.stream_id)
        if exchange is None:
            return
        why = event.local_error or _code_name(event.error_code)
        self._fail_stream(exchange, UpstreamProtocolError(f"invalid HTTP/2 answer: {why}"))

    def _settings(self) -> None:
        self.settings_seen = True
        if self.manager is not None:
            self.manager.room_changed()

    def _goaway(self, last_stream_id: int) -> None:
        """The cluster is closing the connection: no new streams; unprocessed ones go again.

        The streams up to ``last_stream_id`` are still answered (RFC 9113 §6.8;
        Go's server announces a graceful shutdown with a GOAWAY first), and
        libnghttp2 receives them; ``going_away`` keeps new ones off.
        """
        self.going_away = True
        manager = self.manager
        for stream_id in [s for s in self.exchanges if s > last_stream_id]:
            exchange = self.exchanges.pop(stream_id)
            exchange.connection = None
            if manager is not None and not exchange.cancelled:
                manager.place(exchange)
        if manager is not None:
            manager.forget(self)
        if not self.exchanges:
            self._close()

    def _connection_closed(self, event: Any) -> None:
        """libnghttp2 ended the session: a protocol error it answered with GOAWAY (the
        streams hear why), or the end of a connection both sides are done with."""
        if event.error_code == 0 and not self.exchanges:
            self._close()
            return
        self._flush()
        detail = event.debug_data.decode("utf-8", "replace")
        if event.error_code == 0:
            why = "the cluster closed the HTTP/2 connection before the answer ended"
        else:
            why = f"invalid HTTP/2 from the cluster: {_code_name(event.error_code)}"
        self._abort(UpstreamProtocolError(why + (f" ({detail})" if detail else "")))

    # -- endings ---------------------------------------------------------------------

    def _fail_stream(self, exchange: H2Exchange, error: Exception) -> None:
        self.exchanges.pop(exchange.stream_id, None)
        exchange.connection = None
        try:
            self.h2.reset_stream(exchange.stream_id, _PROTOCOL_ERROR)
        except ngh2.NGH2Error:
            pass
        self._stream_closed()
        exchange.sink.failed(Failure(error), exchange.head_received)

    def _stream_closed(self) -> None:
        manager = self.manager
        if manager is not None and manager.has_waiting():
            manager.room_changed()
        if self.exchanges:
            return
        if self.going_away or (manager is not None and manager.retired):
            self._close()
        else:
            self._idle()

    def _idle(self) -> None:
        """No streams: close after the upstream's idle timeout unless one opens."""
        manager = self.manager
        if manager is None or self._idle_timer is not None:
            return
        self._idle_timer = manager.reactor.callLater(manager.idle_timeout, self._idle_expired)

    def _stop_idle(self) -> None:
        timer, self._idle_timer = self._idle_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _check_health(self) -> None:
        """PING a connection that has been silent; abort it when the PING goes unanswered."""
        self._health = None
        manager = self.manager
        if self.closed or manager is None:
            return
        now = manager.reactor.seconds()
        if self._ping_sent is not None and now - self._ping_sent >= PING_TIMEOUT:
            self._abort(
                UpstreamProtocolError(
                    f"the cluster did not answer an HTTP/2 PING within {PING_TIMEOUT:g}s "
                    f"after {READ_IDLE_TIMEOUT:g}s without data: the connection is gone"
                )
            )
            return
        if self._ping_sent is None and now - self._last_read >= READ_IDLE_TIMEOUT:
            self._ping_sent = now
            self.h2.ping(_PING_DATA)
            self._flush()
            wait = PING_TIMEOUT
        elif self._ping_sent is not None:
            wait = self._ping_sent + PING_TIMEOUT - now
        else:
            wait = self._last_read + READ_IDLE_TIMEOUT - now
        self._health = manager.reactor.callLater(max(wait, 0.0), self._check_health)

    def _stop_health(self) -> None:
        timer, self._health = self._health, None
        if timer is not None and timer.active():
            timer.cancel()

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if not self.exchanges:
            self._close()

    def _close(self) -> None:
        """Say goodbye (GOAWAY) and close once written."""
        if self.closed:
            return
        self.closed = True
        self._stop_idle()
        self._stop_health()
        manager = self.manager
        if manager is not None:
            manager.forget(self)
        try:
            self.h2.send_goaway(0)
        except ngh2.NGH2Error:
            pass
        self._flush()
        self.transport.loseConnection()

    def _abort(self, error: Exception) -> None:
        self._stop_idle()
        self._stop_health()
        if not self.closed:
            self.closed = True
            self.transport.abortConnection()
        # connectionLost (which fails the streams with the cause) follows; the
        # streams hear this error rather than "connection lost".
        for exchange in list(self.exchanges.values()):
            self.exchanges.pop(exchange.stream_id, None)
            exchange.connection = None
            if not exchange.cancelled:
                exchange.sink.failed(Failure(error), exchange.head_received)

    def _flush(self) -> None:
        try:
            data = self.h2.data_to_send()
        except ngh2.NGH2Error:
            return  # libnghttp2 failed the connection: nothing more can be framed
        if data:
            self.transport.write(data)


class _ConnectionFactory(Factory):
    noisy = False
    protocol = H2ClientConnection


def _ignore_cancelled(failure: Failure) -> None:
    failure.trap(CancelledError)


@attrs.define(eq=False)
class H2Streams:
    """The HTTP/2 connections of one cluster upstream, for long-running requests.

    ``endpoint`` must offer ``h2`` in ALPN; a connection that comes back
    without it makes ``supported`` False and every request (this one and
    later ones) goes through its ``fallback``.  ``retired``: the upstream was
    replaced; idle connections close now, busy ones after their last stream.
    """

    reactor: Any
    endpoint: Any  # an IStreamClientEndpoint (``dial.UpstreamEndpoint``) offering h2
    idle_timeout: float = 55.0
    metrics: ClusterMetrics | None = None
    supported: bool | None = None
    retired: bool = False
    _connections: list[H2ClientConnection] = attrs.field(factory=list)
    _waiting: list[H2Exchange] = attrs.field(factory=list)
    _dialing: Deferred[Any] | None = None
    _factory: _ConnectionFactory = attrs.field(factory=_ConnectionFactory)
    _log = Logger()

    def request(
        self,
        sink: ResponseSink,
        method: bytes,
        path: bytes,
        headers: Sequence[tuple[bytes, Sequence[bytes]]],
        fallback: Callable[[ResponseSink], Any],
    ) -> Any:
        """Send a body-less request on a stream; returns what ``cancel``s it."""
        if self.supported is False or self.retired:
            return fallback(sink)
        exchange = H2Exchange(sink, h2_request_headers(method, path, headers), fallback, self)
        self.place(exchange)
        return exchange

    def place(self, exchange: H2Exchange) -> None:
        """Open ``exchange`` on a connection with room, or queue it for the next one."""
        if self.supported is False or self.retired:
            exchange.fall_back()
            return
        for connection in reversed(self._connections):
            if connection.has_room():
                if not connection.open(exchange):
                    exchange.fall_back()  # headers HTTP/2 cannot carry
                return
        self._waiting.append(exchange)
        if self._dialing is None:
            self._dial()

    def unqueue(self, exchange: H2Exchange) -> None:
        """A queued exchange was cancelled before it got a stream."""
        try:
            self._waiting.remove(exchange)
        except ValueError:
            pass

    def room_changed(self) -> None:
        """A connection's stream limit changed, or a stream ended: place the queue."""
        waiting, self._waiting = self._waiting, []
        for exchange in waiting:
            if not exchange.cancelled:
                self.place(exchange)

    def has_waiting(self) -> bool:
        """Are requests queued for a stream?"""
        return bool(self._waiting)

    def forget(self, connection: H2ClientConnection) -> None:
        """``connection`` takes no new streams any more (closing, or GOAWAY)."""
        try:
            self._connections.remove(connection)
        except ValueError:
            pass

    def _dial(self) -> None:
        metrics = self.metrics
        timed = getattr(self.endpoint, "connect_timed", None) if metrics is not None else None
        d: Deferred[Any]
        if timed is not None:
            d = timed(self._factory)
        else:
            d = self.endpoint.connect(self._factory).addCallback(lambda p: (p, None, None))
        self._dialing = d
        d.addCallbacks(self._connected, self._dial_failed)

    def _connected(self, result: tuple[H2ClientConnection, float | None, float | None]) -> None:
        self._dialing = None
        connection, dial_s, tls_s = result
        if getattr(connection.transport, "negotiatedProtocol", None) != b"h2":
            if self.supported is None:
                self._log.info(
                    "The cluster at {address} does not offer HTTP/2: long-running "
                    "requests use HTTP/1.1 connections",
                    address=getattr(self.endpoint, "address", "?"),
                )
            self.supported = False
        else:
            self.supported = True
        if not self.supported or self.retired:
            connection.closed = True
            connection.transport.loseConnection()
            waiting, self._waiting = self._waiting, []
            for exchange in waiting:
                exchange.fall_back()
            return
        connection.metrics = self.metrics
        connection.dial_s, connection.tls_s = dial_s, tls_s
        self._connections.append(connection)
        connection.start(self)
        self.room_changed()

    def _dial_failed(self, reason: Failure) -> None:
        self._dialing = None
        waiting, self._waiting = self._waiting, []
        for exchange in waiting:
            if not exchange.cancelled:
                exchange.sink.failed(reason, False)

    def connection_count(self) -> int:
        """Open HTTP/2 connections that take new streams (for tests)."""
        return len(self._connections)

    def idle_count(self) -> int:
        """Open HTTP/2 connections without a stream (for tests and metrics)."""
        return sum(1 for c in self._connections if not c.exchanges)

    def close(self) -> None:
        """Retire: idle connections close now, busy ones after their last stream."""
        self.retired = True
        dialing, self._dialing = self._dialing, None
        if dialing is not None:
            dialing.addErrback(_ignore_cancelled)
            dialing.cancel()
        for connection in list(self._connections):
            if not connection.exchanges:
                connection._close()
