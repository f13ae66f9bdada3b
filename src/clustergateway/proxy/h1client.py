"""A lean pooled HTTP/1.1 client for the proxy's plain (non-upgrade) requests.

Why not ``twisted.web.client.Agent``: on the small-GET hot path Agent costs
more than the rest of the proxy together — a URI parse, a ``Headers`` object
each way, a ``Request``/``Response`` pair, a chain of Deferreds, the retrying
protocol wrapper, a pure-Python line parser and a ``TransportProxyProducer``
per request.  This module does one request per connection at a time with:

* the request head and body written with **one** ``transport.write``;
* the response parsed by ``httptools`` (llhttp, in C): ``Content-Length``,
  chunked and close-delimited framing, 1xx interim answers skipped;
* each body chunk handed to the :class:`ResponseSink` as it is parsed (no
  buffering), and the connection itself as the ``IPushProducer`` the sink
  registers with its consumer, so a slow client pauses reads from the cluster;
* its own idle pool per cluster upstream (LIFO, capped, idle timeout, closed
  on retirement);
* one retry, on a fresh connection, for an idempotent request without a body
  whose *pooled* connection closed before any byte of the response (the
  cluster closed an idle connection just as it was reused).

Connecting (TCP, egress proxy, TLS handshake, with their time limits) is the
:class:`~clustergateway.proxy.dial.UpstreamEndpoint`'s job; its
``DialError``/``DialTimeout`` reach the sink unchanged.

With a recorder (``H1Pool.metrics``: the pool's cluster's
:class:`~clustergateway.observe.metrics.ClusterMetrics`, resolved once when
the pool is built) the pool records each new connection with its dial and TLS
handshake times, each reuse, each close, and per request the time from writing
it to its response head.  That time is taken here, not by the proxy side,
because only the connection knows when the request was written (after any
dial): first-byte time then means the cluster's answer time alone.  Without a
recorder the only cost is one ``is None`` test per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import httptools
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from clustergateway.observe.metrics import ClusterMetrics

__all__ = [
    "H1Connection",
    "H1Pool",
    "NO_BODY_CODES",
    "ResponseHead",
    "ResponseSink",
    "UpstreamProtocolError",
    "request_head",
]

#: Methods retried once on a fresh connection when a reused one closed before
#: answering (with no body: the same set as Agent's ``_shouldRetry``).
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"DELETE", b"TRACE"})

#: Answers that never have a body, whatever their framing headers say.
NO_BODY_CODES = frozenset({204, 304})

#: A response head larger than this is refused (Go's ``MaxResponseHeaderBytes`` is 1 MiB).
MAX_HEAD_BYTES = 1 << 20


class UpstreamProtocolError(Exception):
    """The cluster's answer is not valid HTTP/1.1 (the message is safe to show)."""


@attrs.frozen
class ResponseHead:
    """The status line and headers of a response, as the cluster sent them.

    ``length`` is the ``Content-Length`` when the body is delimited by it
    (None for chunked or close-delimited bodies, and for answers without a
    body such as 204/304 or a response to HEAD, where it is the announced one).
    """

    code: int
    phrase: bytes
    headers: list[tuple[bytes, bytes]]
    length: int | None


class ResponseSink(Protocol):
    """Who receives one response: the proxy's side of an exchange."""

    def head_received(self, head: ResponseHead, producer: Any) -> None:
        """The head arrived; ``producer`` (an ``IPushProducer``) pauses/resumes the body."""

    def body_received(self, data: bytes) -> None:
        """A piece of the body, in order, as soon as it was parsed."""

    def body_done(self) -> None:
        """The response ended cleanly (its framing says it is complete)."""

    def failed(self, reason: Failure, head_received: bool) -> None:
        """No clean end: before the head (nothing was relayed yet) or a truncated body."""


def request_head(
    method: bytes,
    target: bytes,
    headers: Sequence[tuple[bytes, Sequence[bytes]]],
    body_length: int | None,
) -> bytes:
    """An HTTP/1.1 request head; ``Content-Length`` when there is a body.

    Header values must be free of CR/LF (Twisted's server parser and the
    gateway's own headers guarantee it).
    """
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, values in headers:
        for value in values:
            parts += (name, b": ", value, b"\r\n")
    if body_length is not None:
        parts.append(b"Content-Length: %d\r\n" % body_length)
    parts.append(b"\r\n")
    return b"".join(parts)


@implementer(IPushProducer)
class H1Connection(TwistedProtocol):
    """One upstream connection; carries one exchange at a time.

    Also the ``IPushProducer`` of the body being relayed: it forwards
    pause/resume to its transport and remembers the state, so a connection
    paused by a slow client is resumed before it goes back to the pool.
    """

    _log = Logger()
    # A TCP or TLS transport; zope interfaces defeat mypy here (as in forward.py).
    transport: Any

    def __init__(self) -> None:
        self.pool: H1Pool | None = None
        #: Set while this connection counts as open in the pool's metrics.
        self.metrics: ClusterMetrics | None = None
        self._sent_at = 0.0
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._paused = False
        self._retry: tuple[bytes, bool] | None = None
        self._start(None, False)

    def _start(self, sink: ResponseSink | None, head_only: bool) -> None:
        """Per-exchange state, fresh for every request on the connection."""
        self.sink = sink
        if sink is None:
            self.parser: Any = None
        elif self.parser is None:
            self.parser = httptools.HttpResponseParser(self)
        self._received = 0
        self._head_bytes = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._phrase = b""
        self._head_sent = False
        self._done = False
        self._keep_alive = False
        self._extra = False
        self._no_body = head_only
        self._length: int | None = None
        self._chunked = False

    # -- the exchange -------------------------------------------------------------

    def send(self, sink: ResponseSink, data: bytes, head_only: bool) -> None:
        """Write one request (head + body in ``data``) and relay its answer to ``sink``."""
        self._start(sink, head_only)
        if self.metrics is not None and self.pool is not None:
            self._sent_at = self.pool.reactor.seconds()
        self.transport.write(data)

    def abort(self) -> None:
        """Drop the connection now (the client left, or a timeout): never pooled again."""
        self.sink = None
        if not self.closed:
            self.closed = True
            self.transport.abortConnection()

    # -- IPushProducer (registered with the client's response) ---------------------

    def pauseProducing(self) -> None:  # noqa: N802
        if not self._paused and not self.closed:
            self._paused = True
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802
        if self._paused and not self.closed:
            self._paused = False
            self.transport.resumeProducing()

    def stopProducing(self) -> None:  # noqa: N802
        self.abort()

    # -- Protocol -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.sink is None:
            # Bytes nobody asked for (an idle connection): it cannot be trusted again.
            self.abort()
            return
        self._received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Failure(UpstreamProtocolError("the cluster answered 101 unasked")))
            return
        except httptools.HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, _SinkGone):
                return
            if isinstance(cause, UpstreamProtocolError):
                self._fail(Failure(cause))
            else:
                self._fail(Failure(UpstreamProtocolError(f"invalid HTTP response: {e}")))
            return
        if self._done:
            self._complete()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.closed = True
        metrics = self.metrics
        if metrics is not None:
            self.metrics = None
            metrics.upstream_closed()
        pool = self.pool
        if pool is not None:
            pool.forget(self)
        sink = self.sink
        if sink is None:
            return
        if self._head_sent and not self._done and self._close_delimited():
            self.sink = None
            sink.body_done()
            return
        if (
            not self._head_sent
            and self._received == 0
            and self.reused
            and self._retry is not None
            and pool is not None
        ):
            self.sink = None
            data, head_only = self._retry
            pool.send_fresh(sink, data, head_only)
            return
        self._fail(reason)

    # -- httptools callbacks ----------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._phrase += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            raise UpstreamProtocolError("the response head is larger than 1 MiB")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        code = self.parser.get_status_code()
        if 100 <= code < 200:
            if code == 101:
                raise UpstreamProtocolError("the cluster answered 101 unasked")
            return  # interim (100 Continue, 102, 103): the real answer follows
        length = None
        chunked = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise UpstreamProtocolError("invalid Content-Length") from None
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        self._chunked = chunked
        self._length = None if chunked else length
        self._head_sent = True
        metrics = self.metrics
        if metrics is not None and self.pool is not None:
            metrics.first_byte(self.pool.reactor.seconds() - self._sent_at)
        sink = self.sink
        if sink is None:
            raise _SinkGone()
        head = ResponseHead(code, self._phrase, self._headers, self._length)
        # The head is the sink's now: a watch lives for hours, and its
        # connection need not hold the parsed header list as long.
        self._headers = []
        self._phrase = b""
        sink.head_received(head, self)
        if self.sink is None:
            raise _SinkGone()
        if self._no_body or code in NO_BODY_CODES:
            self._done = True
            self._keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        sink = self.sink
        if sink is None:
            raise _SinkGone()
        if self._done:
            self._extra = True  # a body after HEAD or 204/304: not relayed, not reused
            return
        sink.body_received(body)

    def on_message_begin(self) -> None:
        if self._done:
            self._extra = True

    def on_message_complete(self) -> None:
        if not self._head_sent:
            # The end of an interim 1xx answer: forget its headers.
            self._headers = []
            self._phrase = b""
            self._head_bytes = 0
            return
        self._done = True
        # Asked now: llhttp clears the framing flags once the message is complete,
        # after which any response without them looks close-delimited.
        self._keep_alive = self.parser.should_keep_alive()

    # -- endings --------------------------------------------------------------------

    def _close_delimited(self) -> bool:
        return self._length is None and not self._chunked and not self._no_body

    def _complete(self) -> None:
        sink = self.sink
        self.sink = None
        # After a HEAD, 204 or 304 answer with a length llhttp would still wait for
        # that many bytes: the parser is replaced for the next request.  After a
        # complete message it is ready for the next one and is kept.
        reusable = not self._extra and self._keep_alive
        parser = self.parser
        if (
            not reusable
            or self._no_body
            or parser is None
            or parser.get_status_code() in NO_BODY_CODES
        ):
            self.parser = None
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        pool = self.pool
        if reusable and pool is not None:
            pool.release(self)
        else:
            self.closed = True
            self.transport.loseConnection()
        if sink is not None:
            sink.body_done()

    def _fail(self, reason: Failure) -> None:
        sink = self.sink
        self.sink = None
        self.parser = None
        if not self.closed:
            self.closed = True
            self.transport.abortConnection()
        if sink is not None:
            sink.failed(reason, self._head_sent)


class _SinkGone(Exception):
    """Raised inside a parser callback to stop parsing: the exchange was aborted."""


class _ConnectionFactory(Factory):
    noisy = False
    protocol = H1Connection


@attrs.define(eq=False)
class H1Pool:
    """Connections to one cluster upstream: idle ones kept (LIFO), capped, timed out.

    ``retired``: the upstream was replaced (the Secret changed); idle
    connections are closed and busy ones close when their exchange ends.
    ``metrics``: the recorder of the cluster this pool reaches (None: off).
    An endpoint with ``connect_timed`` (``UpstreamEndpoint``) reports dial and
    TLS times separately; with any other the whole connect counts as dial.
    """

    reactor: Any
    endpoint: Any  # an IStreamClientEndpoint (``dial.UpstreamEndpoint``)
    max_idle: int = 32
    idle_timeout: float = 55.0
    retired: bool = False
    metrics: ClusterMetrics | None = None
    _idle: list[H1Connection] = attrs.field(factory=list)
    _sweep: Any = None
    _factory: _ConnectionFactory = attrs.field(factory=_ConnectionFactory)

    def request(
        self, sink: ResponseSink, data: bytes, *, method: bytes, has_body: bool
    ) -> Exchange:
        """Send ``data`` (a whole request) on a pooled or new connection.

        Returns the :class:`Exchange`, whose ``cancel`` aborts it at any point.
        """
        head_only = method == b"HEAD"
        exchange = Exchange(sink)
        retry = (data, head_only) if method in IDEMPOTENT and not has_body else None
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            connection.reused = True
            connection._retry = retry
            if self.metrics is not None:
                self.metrics.upstream_connected(None, None, True)
            exchange.connection = connection
            connection.send(exchange, data, head_only)
            return exchange
        self._connect(exchange, data, head_only)
        return exchange

    def send_fresh(self, sink: ResponseSink, data: bytes, head_only: bool) -> None:
        """Retry on a new connection (a reused one closed before answering)."""
        if isinstance(sink, Exchange):
            if sink.cancelled:
                return
            self._connect(sink, data, head_only)

    def _connect(self, exchange: Exchange, data: bytes, head_only: bool) -> None:
        metrics = self.metrics
        if metrics is None:
            d = self.endpoint.connect(self._factory)
        else:
            d = self._connect_timed(metrics)
        exchange.connecting = d

        def connected(connection: H1Connection) -> None:
            exchange.connecting = None
            if exchange.cancelled:
                connection.closed = True
                connection.transport.loseConnection()
                return
            connection.pool = self
            connection._retry = None
            exchange.connection = connection
            connection.send(exchange, data, head_only)

        def failed(reason: Failure) -> None:
            exchange.connecting = None
            if exchange.cancelled:
                return
            exchange.failed(reason, False)

        d.addCallbacks(connected, failed)

    def _connect_timed(self, metrics: ClusterMetrics) -> Deferred[Any]:
        """Connect and record the new connection (counted open until it closes)."""
        timed = getattr(self.endpoint, "connect_timed", None)
        d: Deferred[Any]
        if timed is not None:
            d = timed(self._factory)
        else:
            started = self.reactor.seconds()
            d = self.endpoint.connect(self._factory)
            d.addCallback(lambda p: (p, self.reactor.seconds() - started, None))

        def record(result: tuple[H1Connection, float | None, float | None]) -> H1Connection:
            connection, dial_s, tls_s = result
            metrics.upstream_connected(dial_s, tls_s, False)
            connection.metrics = metrics
            return connection

        return d.addCallback(record)

    def release(self, connection: H1Connection) -> None:
        """An exchange ended cleanly: keep the connection for the next request."""
        if self.retired or len(self._idle) >= self.max_idle:
            connection.closed = True
            connection.transport.loseConnection()
            return
        connection.idle_since = self.reactor.seconds()
        self._idle.append(connection)
        if self._sweep is None:
            self._sweep = self.reactor.callLater(self.idle_timeout, self._expire)

    def forget(self, connection: H1Connection) -> None:
        """A connection closed: not idle any more."""
        try:
            self._idle.remove(connection)
        except ValueError:
            pass

    def _expire(self) -> None:
        self._sweep = None
        now = self.reactor.seconds()
        idle = self._idle
        while idle and now - idle[0].idle_since >= self.idle_timeout:
            connection = idle.pop(0)
            connection.closed = True
            connection.transport.loseConnection()
        if idle:
            wait = max(0.0, idle[0].idle_since + self.idle_timeout - now)
            self._sweep = self.reactor.callLater(wait, self._expire)

    def idle_count(self) -> int:
        """Idle connections held (for tests and metrics)."""
        return len(self._idle)

    def close(self) -> None:
        """Retire: close idle connections now, busy ones when their exchange ends."""
        self.retired = True
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.closed = True
            connection.transport.loseConnection()


def _ignore_cancelled(failure: Failure) -> None:
    failure.trap(CancelledError)


@attrs.define(eq=False, slots=True)
class Exchange:
    """One request on the pool: forwards the connection's events to the real sink
    and lets the caller cancel at any stage (connecting, waiting, streaming)."""

    sink: ResponseSink
    connection: H1Connection | None = None
    connecting: Deferred[Any] | None = None
    cancelled: bool = False

    def head_received(self, head: ResponseHead, producer: Any) -> None:
        self.sink.head_received(head, producer)

    def body_received(self, data: bytes) -> None:
        self.sink.body_received(data)

    def body_done(self) -> None:
        self.connection = None
        self.sink.body_done()

    def failed(self, reason: Failure, head_received: bool) -> None:
        self.connection = None
        self.sink.failed(reason, head_received)

    def cancel(self) -> None:
        """Abandon the exchange: the connection (if any) is aborted, never reused."""
        if self.cancelled:
            return
        self.cancelled = True
        connecting, self.connecting = self.connecting, None
        if connecting is not None:
            connecting.addErrback(_ignore_cancelled)
            connecting.cancel()
        connection, self.connection = self.connection, None
        if connection is not None and connection.sink is self:
            connection.abort()
