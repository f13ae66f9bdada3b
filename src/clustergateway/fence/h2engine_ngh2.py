"""A prototype HTTP/2 server connection on libnghttp2 (ngh2), not wired into the gateway.

Issue 18 asks for the listener's HTTP/2 on a native engine.  This module is
the measured prototype of ``bench/HISTORY.md``'s 2026-12-07 entry: the same
connection-side interface that :class:`~clustergateway.fence.h2channel.GatewayH2Connection`
offers Twisted's ``H2Stream`` (``writeHeaders``, ``writeDataToStream``,
``endRequest``, ``abortRequest``, ``openStreamWindow``,
``remainingOutboundWindow``, ``getPeer``/``getHost``/``_isSecure``, the 100
and 400 answers), so twisted.web requests and the proxy entry.s ``H2Head`` run
on it unchanged, with framing, HPACK, flow control, stream scheduling and
the protocol checks done by libnghttp2 instead of h2/hpack/hyperframe.

What it does not do yet (why it stays off): the flood guard of
``server.h2guard`` (libnghttp2 has its own rapid-reset and glitch limits,
configured through ``ngh2.Configuration``, which this prototype leaves at
their defaults), a frame budget per reactor pass (``data_to_send()`` drains
all that the windows allow), and the header-name check that resets a stream
Twisted's ``Headers`` cannot hold, and a GOAWAY on a protocol error (ngh2
writes nothing once it has failed a connection; the socket is just closed).
Nothing imports it but its tests and ``bench.h2listener``; ``ngh2`` is in
the ``test`` extra only, not a dependency of the package.
"""

from __future__ import annotations

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

from clustergateway.server.callers import H2Head

__all__ = ["Ngh2Connection"]

#: As ``h2channel.MAX_CONCURRENT_STREAMS``: Go's HTTP/2 server default.
MAX_CONCURRENT_STREAMS = 250
_CANCEL = 0x08


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
        self.conn = ngh2.Connection(
            ngh2.Role.SERVER,
            ngh2.Configuration(
                auto_window_update=False,  # the streams acknowledge what they consumed
                max_inbound_header_list_size=header_list_size,
            ),
        )
        self.streams: dict[int, H2Stream] = {}
        self._paused = False
        self._flush_call: Any = None
        self._host: Any = None

    # -- the transport's side ----------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        transport: Any = self.transport
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        self.setTimeout(self.timeOut)  # type: ignore[no-untyped-call]
        self.conn.initiate_connection(
            {
                ngh2.Setting.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                ngh2.Setting.MAX_HEADER_LIST_SIZE: self.header_list_size,
            }
        )
        self._flush()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        try:
            self.conn.receive_data(data)
        except ngh2.NGH2Error:
            # The engine failed the connection: it writes nothing more (no
            # GOAWAY: ngh2 refuses output once failed), the streams are told.
            self._lose(Failure(ConnectionLost("HTTP/2 protocol error")))
            return
        self.resetTimeout()  # type: ignore[no-untyped-call]
        self._dispatch()
        self._flush()

    def _dispatch(self) -> None:
        event: Any
        for event in self.conn.events():
            kind = type(event)
            if kind is ev.RequestReceived:
                self._request_received(event)
            elif kind is ev.DataReceived:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.receiveDataChunk(event.data, len(event.data))  # padding: ngh2's
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
            elif kind is ev.GoAwayReceived or kind is ev.ConnectionClosed:
                self._lose(Failure(ConnectionLost("Remote peer sent GOAWAY")))
                return

    def _request_received(self, event: Any) -> None:
        entry = self.proxy_entry
        factory = self.requestFactory
        if entry is not None and event.end_stream:
            # As GatewayH2Connection: a request without a body may be taken by the proxy entry.
            def factory(stream: Any, queued: bool = False) -> Any:
                return H2Head(entry, stream)

        headers = list(event.headers)
        stream = H2Stream(event.stream_id, self, headers, factory, self.site, self.factory)
        self.streams[event.stream_id] = stream
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

    def _flush(self) -> None:
        """Write what libnghttp2 has framed, unless the transport asked us to pause."""
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()
        if self._paused or self.transport is None:
            return
        data = self.conn.data_to_send()
        if data:
            self.resetTimeout()  # type: ignore[no-untyped-call]  # as h2channel: sending is activity
            self.transport.write(data)
        if not self.conn.want_read and not self.conn.want_write:
            self.transport.loseConnection()

    def _flush_soon(self) -> None:
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)

    def _lose(self, reason: Failure) -> None:
        if self.transport is not None:
            self.transport.loseConnection()
        self.connectionLost(reason)

    def connectionLost(self, reason: Failure = Failure(ConnectionLost())) -> None:  # noqa: B008, N802
        self.setTimeout(None)  # type: ignore[no-untyped-call]
        call, self._flush_call = self._flush_call, None
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
        self.conn.send_goaway(0)
        self._flush()
        if self.transport is not None:
            self.transport.loseConnection()

    # -- IPushProducer toward the transport --------------------------------------

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._paused = True

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._paused = False
        self._flush()
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
        self._flush_soon()  # a watch's head goes out even before its first event

    def writeDataToStream(self, streamID: int, data: bytes) -> None:  # noqa: N802
        self.conn.send_data(streamID, data)
        self._flush()
        if self.remainingOutboundWindow(streamID) <= 0:
            stream = self.streams.get(streamID)
            if stream is not None:
                stream.flowControlBlocked()

    def endRequest(self, streamID: int) -> None:  # noqa: N802 - Twisted's name
        self.conn.end_stream(streamID)
        self._flush()
        # StreamClosed will come once END_STREAM is on the wire; the stream is done.
        self.streams.pop(streamID, None)

    def abortRequest(self, streamID: int) -> None:  # noqa: N802 - Twisted's name
        self.conn.reset_stream(streamID, _CANCEL)
        self._flush()
        self._stream_gone(streamID, "Stream aborted")

    def remainingOutboundWindow(self, streamID: int) -> int:  # noqa: N802
        conn = self.conn
        window = min(conn.stream_remote_window_size(streamID), conn.remote_window_size)
        return window - conn.queued_body_size(streamID)

    def openStreamWindow(self, streamID: int, increment: int) -> None:  # noqa: N802
        if increment:
            self.conn.acknowledge_received_data(increment, streamID)
            self._flush_soon()

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
        self._flush()

    def _respondToBadRequestAndDisconnect(self, streamID: int) -> None:  # noqa: N802
        self.conn.send_response(streamID, [(b":status", b"400")], end_stream=True)
        self._flush()
        self._stream_gone(streamID, "Invalid request")
