"""The HTTP/2 listener on libnghttp2 (ngh2): the gateway's default HTTP/2 engine.

Framing, HPACK, flow control, stream scheduling and the protocol checks are
libnghttp2's, through ngh2's sans-io ``Connection``; what is left in Python
is the glue to Twisted: each request is Twisted's ``H2Stream`` (so
twisted.web's ``Request`` and the proxy entry's ``H2Head`` serve on it
unchanged), and this connection offers the stream the same interface as
:class:`~clustergateway.fence.h2channel.GatewayH2Connection`
(``writeHeaders``, ``writeDataToStream``, ``endRequest``, ``abortRequest``,
``openStreamWindow``, ``remainingOutboundWindow``, the addresses, the 100 and
400 answers).

What the pure-Python engine does that is kept here, by other means:

* **Limits advertised:** 250 concurrent streams, the HTTP/1.1 head limit as
  the header list size; 64 CONTINUATION frames per header block, as ``h2``.
  A single header field is bounded by its block, not by libnghttp2's 64 KiB
  per-field constant, which the wheel we build raises
  (``scripts/ngh2-wheel.sh``); :func:`unfit` finds a library built without
  that, and the gateway then keeps the pure-Python engine.
* **Floods** (``server.h2guard``): PING and SETTINGS floods meet libnghttp2's
  bound on queued acknowledgements, empty DATA frames its "glitch" bucket
  (set to ``h2guard``'s bucket for empty frames), and WINDOW_UPDATE and
  RST_STREAM floods (rapid reset) the same :class:`FloodGuard` token buckets
  as on the pure-Python engine, counted before any event is acted on, so a
  flood starts no request.  Each ends the connection with GOAWAY
  ENHANCE_YOUR_CALM.
* **A fatal error** (a flood libnghttp2 caught, a bad preface, too many
  CONTINUATIONs) leaves ngh2's connection unusable, so the GOAWAY is framed
  here (:func:`goaway_frame`, 17 bytes) and the socket closed; a protocol
  error libnghttp2 answers itself (its GOAWAY, then ``ConnectionClosed``) is
  flushed, then closed.
* **Idle timeout:** a connection with no open stream for the idle timeout is
  closed with GOAWAY; an open stream (a quiet watch) keeps it.
* **Sending:** frames are written in the pass they become ready, at most
  :data:`BYTES_PER_PASS` per pass (the rest in the next, so one connection
  cannot hold the reactor), nothing while the transport pushes back.  A
  stream whose peer window (less what is queued) is spent is told
  ``flowControlBlocked`` and woken by the WINDOW_UPDATE, as on Twisted's
  connection.  Ready streams take turns by bytes sent: every stream is
  given RFC 9218's incremental priority (libnghttp2's default sends one
  response whole before the next), so the pure-Python engine's
  ``RoundRobin`` has no counterpart here.

It touches Twisted's private ``H2Stream`` (``twisted.web._http2``) and the
stream's private hooks (``_send100Continue``, ``_respondToBadRequestAndDisconnect``,
``_isSecure``) as ``fence.h2channel`` does, and overrides the stream's
``_convertHeaders`` (:class:`GatewayH2Stream`); the names are listed in
``fence/__init__.py``.
"""

from __future__ import annotations

import struct
from typing import Any

import ngh2
from ngh2 import events as ev
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import ISSLTransport, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from twisted.web._http2 import H2Stream
from twisted.web.http_headers import InvalidHeaderName

from clustergateway.fence.twisted_web import HEADER_NAME_ENCODER, raw_headers
from clustergateway.server.callers import H2Head
from clustergateway.server.h2guard import LIMITS, FloodGuard, TokenBucket

__all__ = [
    "BYTES_PER_PASS",
    "MAX_CONCURRENT_STREAMS",
    "GatewayH2Stream",
    "Ngh2Connection",
    "goaway_frame",
    "unfit",
]

#: As ``h2channel.MAX_CONCURRENT_STREAMS``: Go's HTTP/2 server default.
MAX_CONCURRENT_STREAMS = 250
#: As ``h2``: CONTINUATION frames accepted after one HEADERS frame.
MAX_CONTINUATIONS = 64
#: Bytes one pass may write before yielding the reactor (h2channel: 64 frames).
BYTES_PER_PASS = 256 * 1024

# Error codes (RFC 9113 §7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB

#: Every stream's RFC 9218 priority: the default urgency, incremental (module docs).
_TURNS = ngh2.Priority(urgency=3, incremental=True)

#: RST_STREAM frames: Twisted's rapid-reset bucket (1,000 resets, 33 a second),
#: which the pure-Python engine inherits.
RESETS = "RST_STREAM frames"
_RESET_LIMIT = (1000.0, 33.0)
#: libnghttp2's own reset limiter answers with a graceful GOAWAY (INTERNAL_ERROR)
#: and keeps serving; ours ends the connection, so theirs is set out of reach.
_UNREACHED = (10**12, 10**12)


def goaway_frame(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    """A GOAWAY frame (RFC 9113 §6.8), for a connection ngh2 can no longer frame for."""
    payload = struct.pack(">II", last_stream_id & 0x7FFFFFFF, error_code) + debug
    return struct.pack(">I", len(payload))[1:] + b"\x07\x00\x00\x00\x00\x00" + payload


def fatal_error_code(error: Exception) -> int:
    """The GOAWAY code for an error that made ngh2 fail the connection.

    A flood libnghttp2 caught is ENHANCE_YOUR_CALM, except a header block that
    never ends (too many CONTINUATION frames), which ``h2``, and so the
    pure-Python engine, call malformed: PROTOCOL_ERROR, kept the same here.
    """
    if isinstance(error, ngh2.DenialOfServiceError) and "CONTINUATION" not in str(error):
        return ENHANCE_YOUR_CALM
    return PROTOCOL_ERROR


def configuration(header_list_size: int) -> ngh2.Configuration:
    """The listener's libnghttp2 options (see the module docs for each)."""
    empty_capacity, empty_rate = LIMITS["empty frames"]
    return ngh2.Configuration(
        auto_window_update=False,  # the streams acknowledge what they consumed
        max_inbound_header_list_size=header_list_size,
        # Each field costs at least 32 bytes of the list (RFC 9113 §6.5.2): the list size bounds it.
        max_inbound_header_count=header_list_size // 32 + 1,
        max_send_header_block_length=max(65536, header_list_size),
        max_continuations=MAX_CONTINUATIONS,
        stream_reset_rate_limit=_UNREACHED,
        glitch_rate_limit=(int(empty_capacity), int(empty_rate)),
    )


def unfit(header_list_size: int) -> str | None:
    """Why the installed libnghttp2 cannot serve as the listener, or None if it can.

    A stock build refuses a header field over 64 KiB for the whole connection;
    the pure-Python engine (and Go) take one as long as the header list. One
    field of 256 KiB is sent from an ngh2 client to a server configured as the
    listener is, in memory.
    """
    field = min(256 * 1024, max(header_list_size - 1024, 0))
    try:
        client = ngh2.Connection(
            ngh2.Role.CLIENT, ngh2.Configuration(max_send_header_block_length=1 << 24)
        )
        server = ngh2.Connection(ngh2.Role.SERVER, configuration(header_list_size))
        client.initiate_connection()
        server.initiate_connection({ngh2.Setting.MAX_HEADER_LIST_SIZE: header_list_size})
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        client.send_request(
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"gateway"),
                (b":path", b"/"),
                (b"x-probe", b"~" * field),  # '~' is 13 bits in Huffman: sent as a literal
            ],
            end_stream=True,
        )
        server.receive_data(client.data_to_send())
        received = [e for e in server.events() if type(e) is ev.RequestReceived]
    except Exception as error:  # noqa: BLE001 - any failure means: do not use it
        return f"libnghttp2 failed a {field}-byte header field: {error!r}"
    if not received:
        return (
            f"libnghttp2 refuses a {field}-byte header field (a stock build: 64 KiB per "
            "field); install the ngh2 wheel scripts/ngh2-wheel.sh builds"
        )
    return None


class GatewayH2Stream(H2Stream):
    """Twisted's ``H2Stream``, its request's headers filled straight into ``Headers``.

    Twisted adds each header through ``getRawHeaders``/``setRawHeaders``,
    which encode the name twice and check every value; libnghttp2 has
    already refused a request whose names or values HTTP/2 forbids (upper
    case, CR, LF, NUL, edge whitespace; RFC 9113 §8.2.1), so what is left
    is the canonical name and the same list Twisted builds, ``Host`` from
    ``:authority`` and the length from ``content-length`` included.
    """

    def _convertHeaders(self, headers: Any) -> None:  # noqa: N802 - Twisted's name
        this: Any = self
        request = this._request
        raw = raw_headers(request.requestHeaders)
        encode = HEADER_NAME_ENCODER.encode
        length: int | None = None
        for name, value in headers:
            if name[:1] != b":":
                key = encode(name)
                if name == b"content-length":
                    length = int(value)
            elif name == b":method":
                this.command = value
                continue
            elif name == b":path":
                this.path = value
                continue
            elif name == b":authority":
                key = b"Host"
            else:
                continue
            values = raw.get(key)
            if values is None:
                raw[key] = [value]
            else:
                values.append(value)
        if length is not None:
            request.gotLength(length)
        elif this.command in (b"GET", b"HEAD"):
            request.gotLength(0)
        else:
            request.gotLength(None)
        request.parseCookies()
        expect = raw.get(b"Expect")
        if expect and expect[0].lower() == b"100-continue":
            this._send100Continue()


class Ngh2Connection(Protocol, TimeoutMixin):
    """An HTTP/2 server connection whose protocol engine is libnghttp2."""

    _log = Logger()
    factory: Any = None
    site: Any = None
    requestFactory: Any = None  # noqa: N815 - Twisted's name
    #: ``server.callers.ProxyEntry`` for proxied requests without a body (None: twisted.web).
    proxy_entry: Any = None

    def __init__(self, reactor: Any, header_list_size: int) -> None:
        self._reactor = reactor
        self.header_list_size = header_list_size
        self.conn = ngh2.Connection(ngh2.Role.SERVER, configuration(header_list_size))
        self.guard = FloodGuard(reactor)
        self.guard.buckets[RESETS] = TokenBucket(*_RESET_LIMIT)
        self.streams: dict[int, H2Stream] = {}
        self._last_stream_id = 0
        self._paused = False
        self._pass: Any = None
        #: This turn's pass spent its budget; the next turn's is scheduled.
        self._spent = False
        #: ``fence.reactor``'s hook: frame once at the end of the reactor pass
        #: (None on other reactors, the tests' clocks: frame at each write).
        self._at_pass_end: Any = getattr(reactor, "at_pass_end", None)
        self._end_pending = False
        #: Builds the first request object of a stream without a body (``H2Head``),
        #: when there is a proxy entry.
        self._head_factory: Any = None
        self._host: Any = None
        self._closed = False
        #: What was flooded, when the connection was cut for it.
        self.flooded: str | None = None

    def callLater(self, period: float, func: Any) -> Any:  # noqa: N802 - Twisted's name
        """TimeoutMixin's timer, on this connection's reactor (the ALPN switch may set
        its own, as it does on Twisted's connection)."""
        return self._reactor.callLater(period, func)

    # -- the transport's side ----------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        entry = self.proxy_entry  # set by the ALPN switch before the connection is made
        if entry is not None:

            def head(stream: Any, queued: bool = False) -> H2Head:
                return H2Head(entry, stream)

            self._head_factory = head
        transport: Any = self.transport
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        self.setTimeout(self.timeOut)  # type: ignore[no-untyped-call]
        self.conn.initiate_connection(
            {
                ngh2.Setting.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                ngh2.Setting.MAX_HEADER_LIST_SIZE: self.header_list_size,
                # RFC 9218 scheduling, so that every stream can be made incremental.
                ngh2.Setting.NO_RFC7540_PRIORITIES: 1,
            }
        )
        self._send_pass()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self._closed:
            return
        try:
            self.conn.receive_data(data)
        except ngh2.NGH2Error as error:
            self._fail(fatal_error_code(error), str(error))
            return
        self.resetTimeout()  # type: ignore[no-untyped-call]
        events = self.conn.events()
        flood = self._flood_in(events)
        if flood is not None:
            self._cut_for_flood(flood)
            return
        self._dispatch(events)
        if not self._closed:
            self._send_later()

    def _flood_in(self, events: list[Any]) -> str | None:
        """The kind of frame ``events`` overspent (``h2guard``'s buckets, and resets)."""
        counts: dict[str, int] = {}
        for event in events:
            kind = type(event)
            if kind is ev.WindowUpdated:
                name = "WINDOW_UPDATE frames"
            elif kind is ev.StreamReset:
                name = RESETS
            elif kind is ev.PingReceived or kind is ev.SettingsReceived:
                name = "PING and SETTINGS frames"
            else:
                continue
            counts[name] = counts.get(name, 0) + 1
        if not counts:
            return None
        now = self._reactor.seconds()
        for name, count in counts.items():
            if not self.guard.buckets[name].take(now, count):
                return name
        return None

    def _cut_for_flood(self, flood: str) -> None:
        self.flooded = flood
        self._log.warn(
            "HTTP/2 client {peer} sent too many {what}: connection closed (ENHANCE_YOUR_CALM)",
            peer=self._peer(),
            what=flood,
        )
        self.conn.terminate_connection(ENHANCE_YOUR_CALM)
        self._write(self.conn.data_to_send())
        self._lose(Failure(ConnectionLost(f"HTTP/2 client sent too many {flood}")))

    def _fail(self, code: int, why: str) -> None:
        """ngh2 failed the connection: our own GOAWAY, then close."""
        self._log.warn(
            "HTTP/2 client {peer}: {why}: connection closed (GOAWAY {code})",
            peer=self._peer(),
            why=why,
            code=code,
        )
        if code == ENHANCE_YOUR_CALM:
            self.flooded = why
        self._write(goaway_frame(self._last_stream_id, code))
        self._lose(Failure(ConnectionLost(f"HTTP/2 protocol error: {why}")))

    def _dispatch(self, events: list[Any]) -> None:
        event: Any
        for event in events:
            kind = type(event)
            if kind is ev.RequestReceived:
                self._request_received(event)
            elif kind is ev.DataReceived:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.receiveDataChunk(event.data, len(event.data))
                    if event.end_stream:
                        stream.requestComplete()
            elif kind is ev.TrailersReceived:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.requestComplete()
            elif kind is ev.StreamReset:
                self._stream_gone(event.stream_id, f"Stream reset with code {event.error_code}")
            elif kind is ev.StreamClosed:
                self._stream_gone(event.stream_id, "Stream closed")
            elif kind is ev.WindowUpdated:
                self._window_updated(event.stream_id)
            elif kind is ev.GoAwayReceived:
                # As Twisted's H2Connection: the peer is leaving; close now.
                self._write(self.conn.data_to_send())
                self._lose(Failure(ConnectionLost("Remote peer sent GOAWAY")))
                return
            elif kind is ev.ConnectionClosed:
                # libnghttp2 ended the connection (a protocol error): its GOAWAY goes out first.
                self._write(self.conn.data_to_send())
                self._lose(Failure(ConnectionLost("HTTP/2 connection closed")))
                return

    def _request_received(self, event: Any) -> None:
        stream_id = event.stream_id
        if stream_id > self._last_stream_id:
            self._last_stream_id = stream_id
        factory = self.requestFactory
        if event.end_stream and self._head_factory is not None:
            factory = self._head_factory  # the proxy entry may take it (as on h2channel)
        # Turns by bytes sent: libnghttp2 otherwise sends a stream's whole response
        # before the next one's (RFC 9218's default, non-incremental), so a large list
        # would hold every watch event on the aggregator's connection behind it.
        self.conn.set_stream_priority(stream_id, _TURNS, ignore_client_signal=True)
        try:
            stream: Any = GatewayH2Stream(  # type: ignore[no-untyped-call]  # Twisted's __init__
                stream_id, self, event.headers, factory, self.site, self.factory
            )
        except InvalidHeaderName:
            # libnghttp2 checks names as RFC 9113 asks, Twisted's Headers as RFC 9110
            # does; a name only the first lets through is a malformed request, a
            # stream error (RFC 9113 §8.2.1), never an error out of the connection.
            self.conn.reset_stream(stream_id, PROTOCOL_ERROR)
            return
        self.streams[stream_id] = stream
        if event.end_stream:
            stream.requestComplete()

    def _stream_gone(self, stream_id: int, why: str) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.connectionLost(Failure(ConnectionLost(why)))

    def _window_updated(self, stream_id: int) -> None:
        targets = self.streams.values() if stream_id == 0 else [self.streams.get(stream_id)]
        for stream in list(targets):
            if stream is not None:
                stream.windowUpdated()

    # -- sending -------------------------------------------------------------------

    def _send_pass(self, next_turn: bool = False) -> None:
        """Write what libnghttp2 has framed, up to the pass's budget, unless paused.

        Called as soon as something is ready (a write, an end, a window), so a
        response leaves in the pass it was rendered; once a pass has spent
        :data:`BYTES_PER_PASS`, the rest waits for the pass scheduled on the next
        reactor turn (``next_turn``), however many writes come in between.
        """
        if next_turn:
            self._spent = False
        elif self._spent:
            return
        call, self._pass = self._pass, None
        if call is not None and call.active():
            call.cancel()
        if self._paused or self._closed or self.transport is None:
            return
        data = self.conn.data_to_send(BYTES_PER_PASS)
        if data:
            self.resetTimeout()  # type: ignore[no-untyped-call]  # sending is activity
            self.transport.write(data)
            if len(data) >= BYTES_PER_PASS and self.conn.want_write:
                self._spent = True
                self._pass = self._reactor.callLater(0, self._send_pass, True)
                return
        if not self.conn.want_read and not self.conn.want_write:
            self._lose(Failure(ConnectionLost("HTTP/2 connection finished")))

    def _send_later(self) -> None:
        """Something is ready: frame it at the end of this reactor pass (with all else
        the pass makes ready), or now where the reactor has no such hook."""
        at_pass_end = self._at_pass_end
        if at_pass_end is None:
            self._send_pass()
        elif not self._end_pending:
            self._end_pending = True
            at_pass_end(self._pass_ended)

    def _pass_ended(self) -> None:
        self._end_pending = False
        self._send_pass()

    def _send_soon(self) -> None:
        """As :meth:`_send_later`, but on a reactor without the hook wait for the next
        turn: a response head then leaves with what the same turn writes after it."""
        if self._at_pass_end is not None:
            self._send_later()
        elif self._pass is None:
            self._pass = self._reactor.callLater(0, self._send_pass)

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self._closed:
            self.transport.write(data)

    def _lose(self, reason: Failure) -> None:
        if self.transport is not None:
            self.transport.loseConnection()
        self.connectionLost(reason)

    def connectionLost(self, reason: Failure = Failure(ConnectionLost())) -> None:  # noqa: B008, N802
        self._closed = True
        self.setTimeout(None)  # type: ignore[no-untyped-call]
        call, self._pass = self._pass, None
        if call is not None and call.active():
            call.cancel()
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.connectionLost(reason)

    def timeoutConnection(self) -> None:  # noqa: N802 - Twisted's name
        """Idle: close only a connection with no open stream (see ``h2channel``)."""
        if self.streams:
            self.setTimeout(self.timeOut)  # type: ignore[no-untyped-call]
            return
        self.conn.send_goaway(NO_ERROR)
        self._write(self.conn.data_to_send())
        self._lose(Failure(ConnectionLost("Idle timeout")))

    def go_away(self) -> None:
        """Drain (``server.shutdown``): GOAWAY NO_ERROR naming the last stream that will be
        answered; libnghttp2 serves the open streams to their ends and refuses new ones."""
        if self._closed:
            return
        self.conn.send_goaway(NO_ERROR, last_stream_id=self._last_stream_id)
        self._send_later()

    def _peer(self) -> str:
        return str(self.transport.getPeer()) if self.transport is not None else "?"

    # -- IPushProducer toward the transport --------------------------------------

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._paused = True

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._paused = False
        self._send_pass()
        for stream in list(self.streams.values()):
            stream.windowUpdated()

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name
        self.connectionLost(Failure(ConnectionLost("Producing stopped")))

    # -- what H2Stream (and the proxy entry) call ----------------------------------

    def writeHeaders(  # noqa: N802 - Twisted's name
        self, version: bytes, code: bytes, reason: bytes, headers: Any, streamID: int
    ) -> None:
        if streamID not in self.streams:
            return
        self.conn.send_response(streamID, [(b":status", code), *headers])
        self._send_soon()  # a watch's head goes out even before its first event

    def writeDataToStream(self, streamID: int, data: bytes) -> None:  # noqa: N802
        if streamID not in self.streams:
            return
        self.conn.send_data(streamID, data)
        self._send_later()
        if self.remainingOutboundWindow(streamID) <= 0:
            stream = self.streams.get(streamID)
            if stream is not None:
                stream.flowControlBlocked()

    def endRequest(self, streamID: int) -> None:  # noqa: N802 - Twisted's name
        if self.streams.pop(streamID, None) is None:
            return
        # StreamClosed comes once END_STREAM is on the wire; the stream is done now.
        self.conn.end_stream(streamID)
        self._send_later()

    def abortRequest(self, streamID: int) -> None:  # noqa: N802 - Twisted's name
        if streamID in self.streams:
            self.conn.reset_stream(streamID, CANCEL)
            self._send_later()
        self._stream_gone(streamID, "Stream aborted")

    def remainingOutboundWindow(self, streamID: int) -> int:  # noqa: N802
        conn = self.conn
        try:
            window = min(conn.stream_remote_window_size(streamID), conn.remote_window_size)
            return window - conn.queued_body_size(streamID)
        except ngh2.NGH2Error:
            return 0  # the stream is gone

    def openStreamWindow(self, streamID: int, increment: int) -> None:  # noqa: N802
        if increment and streamID in self.streams:
            try:
                self.conn.acknowledge_received_data(increment, streamID)
            except ngh2.NGH2Error:
                return
            self._send_soon()

    def getPeer(self) -> Any:  # noqa: N802 - Twisted's name
        return self.transport.getPeer()  # type: ignore[union-attr]

    def getHost(self) -> Any:  # noqa: N802 - Twisted's name
        host = self._host
        if host is None:
            host = self._host = self.transport.getHost()  # type: ignore[union-attr]
        return host

    def _isSecure(self) -> bool:  # noqa: N802 - Twisted's name
        return ISSLTransport(self.transport, None) is not None

    def _send100Continue(self, streamID: int) -> None:  # noqa: N802 - Twisted's name
        self.conn.send_informational_response(streamID, [(b":status", b"100")])
        self._send_later()

    def _respondToBadRequestAndDisconnect(self, streamID: int) -> None:  # noqa: N802
        self.conn.send_response(streamID, [(b":status", b"400")], end_stream=True)
        self._send_later()
        self._stream_gone(streamID, "Invalid request")
