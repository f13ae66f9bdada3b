"""HTTP/2 serving: Twisted's ``H2Connection`` with a sending loop that drains.

kubectl (by default) and the kube-aggregator speak HTTP/2 to the gateway, so
this is the path most production requests take.  Twisted's connection sends
one frame per reactor pass: every response is a HEADERS frame, a DATA frame
and an empty END_STREAM frame, each written from its own ``callLater(0)``
pass, so each reaches the socket as its own TLS record and ``send``, and
each pass pays for a timer and a walk of the priority tree.

:class:`GatewayH2Connection` sends what is ready in the pass in which it
became ready, in priority order, until the ready streams are drained, the
peer's flow-control windows or the transport's backpressure stop it, or a
budget of frames per pass is spent (then the rest goes out in the next pass,
so one busy stream cannot hold the reactor).  A response's last chunk still
queued when its end arrives goes out with it, as one DATA frame with
END_STREAM set.

Ready streams take turns (:class:`RoundRobin`) instead of walking
Twisted's priority tree: HTTP/2's priority scheme is deprecated (RFC 9113
§5.3.2: servers may ignore it, and Go's clients never send it), and the tree
costs time linear in the open streams at every block and unblock — with a
few hundred multiplexed watches (the aggregator's, or the gateway's own
upstream connections to a cluster) it took a third of the CPU of sending an
event to all of them.
Everything else — stream state, flow control, priorities, resets, control
frames, timeouts — is Twisted's.  Proxied requests without a body go to the
channel's own answers (``server.callers``, :class:`~clustergateway.server.callers.H2Head`)
instead of twisted.web's ``Request``, as on HTTP/1.1.

:class:`ChannelSwitch` is Twisted's ALPN switch (``_GenericHTTPChannelProtocol``)
building this connection, on the site's reactor, when ``h2`` was negotiated.

Both override private parts of ``twisted.web._http2`` and ``twisted.web.http``
(the sending loop, its queues and sentinel, the switch's fields): Twisted
has no public hook for either.  ``tests/unit/server/test_h2channel.py`` pins
the behaviour, and fails on Twisted's own loop.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import priority
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from twisted.internet.defer import Deferred
from twisted.web._http2 import _END_STREAM_SENTINEL, H2Connection
from twisted.web.http import _GenericHTTPChannelProtocol

from clustergateway.fence.h2 import goaway_after_pending
from clustergateway.fence.h2engine_ngh2 import Ngh2Connection
from clustergateway.fence.twisted_web import header_names_valid
from clustergateway.server.callers import H2Head
from clustergateway.server.h2guard import FloodGuard, GuardedH2Connection

__all__ = ["ChannelSwitch", "GatewayH2Connection", "RoundRobin"]

#: Frames one wake of the sending loop may write before yielding the reactor.
FRAMES_PER_PASS = 64
#: Streams a caller may have open on one connection: Go's HTTP/2 server
#: default, which the Go gateway (a generic apiserver) advertises; h2's is 100.
MAX_CONCURRENT_STREAMS = 250


class RoundRobin:
    """Ready streams in turn: the part of ``priority.PriorityTree``'s interface that
    Twisted's ``H2Connection`` uses, each operation O(1).

    ``next()`` answers the ready stream that waited longest and puts it last;
    it raises ``priority.DeadlockError`` when no stream is ready.  Priority
    information (weights, dependencies) is accepted and ignored.
    """

    def __init__(self) -> None:
        self._known: set[int] = set()
        self._ready: set[int] = set()
        #: Ready streams in turn order; may hold streams blocked or removed
        #: since (dropped when their turn comes), never one twice.
        self._turns: deque[int] = deque()
        self._queued: set[int] = set()

    def insert_stream(
        self, stream_id: int, depends_on: Any = None, weight: int = 16, exclusive: bool = False
    ) -> None:
        if stream_id in self._known:
            raise priority.DuplicateStreamError(stream_id)
        self._known.add(stream_id)

    def reprioritize(
        self, stream_id: int, depends_on: Any = None, weight: int = 16, exclusive: bool = False
    ) -> None:
        if stream_id not in self._known:
            raise priority.MissingStreamError(stream_id)

    def remove_stream(self, stream_id: int) -> None:
        if stream_id not in self._known:
            raise priority.MissingStreamError(stream_id)
        self._known.discard(stream_id)
        self._ready.discard(stream_id)

    def block(self, stream_id: int) -> None:
        if stream_id not in self._known:
            raise priority.MissingStreamError(stream_id)
        self._ready.discard(stream_id)

    def unblock(self, stream_id: int) -> None:
        if stream_id not in self._known:
            raise priority.MissingStreamError(stream_id)
        self._ready.add(stream_id)
        if stream_id not in self._queued:
            self._queued.add(stream_id)
            self._turns.append(stream_id)

    def __iter__(self) -> RoundRobin:
        return self

    def __next__(self) -> int:
        turns = self._turns
        ready = self._ready
        while turns:
            stream_id = turns.popleft()
            if stream_id in ready:
                turns.append(stream_id)
                return stream_id
            self._queued.discard(stream_id)
        raise priority.DeadlockError("no stream is ready")


class GatewayH2Connection(H2Connection):
    """An HTTP/2 server connection whose sending loop drains (see module docs)."""

    #: A ``callLater(0)`` for the loop's next pass is pending.
    _next_pass: Any = None
    #: This side's address, asked of the socket once (Twisted asks per stream).
    _host: Any = None
    _flood_logged = False

    #: Proxied requests without a body are taken by this
    #: (``server.callers.ProxyEntry``) rather than twisted.web; None: all by twisted.web.
    proxy_entry: Any = None

    def __init__(self, reactor: Any, header_list_size: int) -> None:
        """``header_list_size``: the largest request head accepted, the HTTP/1.1
        channel's (h2's default of 64 KiB would end the whole connection, every
        stream on it, at a long label selector)."""
        super().__init__(reactor)  # type: ignore[no-untyped-call]
        this: Any = self
        self.conn = GuardedH2Connection(self.conn.config, FloodGuard(this._reactor))
        self.priority = RoundRobin()
        # Sent in the connection's first SETTINGS frame (connectionMade).
        self.conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.MAX_HEADER_LIST_SIZE: header_list_size,
            },
        )
        self.conn.decoder.max_header_list_size = header_list_size

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        super().dataReceived(data)  # type: ignore[no-untyped-call]
        conn: Any = self.conn
        if conn.flooded is not None and not self._flood_logged:
            self._flood_logged = True
            this: Any = self
            self._log.warn(
                "HTTP/2 client {peer} sent too many {what}: connection closed (ENHANCE_YOUR_CALM)",
                peer=str(this.transport.getPeer()) if this.transport is not None else "?",
                what=conn.flooded,
            )

    def timeoutConnection(self) -> None:  # noqa: N802 - Twisted's name
        """The idle timer fired: close only a connection with no open stream.

        Twisted's timer runs while streams are open too, so it would cut a
        quiet watch; here it is re-armed instead, and a connection that has
        carried no stream for the idle timeout (or never opened one after its
        preface) is closed with GOAWAY.
        """
        if self.streams:
            self.setTimeout(self.timeOut)  # type: ignore[no-untyped-call]
            return
        super().timeoutConnection()  # type: ignore[no-untyped-call]

    def _requestReceived(self, event: Any) -> None:  # noqa: N802 - Twisted's name
        if not header_names_valid(event.headers):
            # Twisted's stream would raise InvalidHeaderName while being built
            # (h2 lets '/', '#' … through): the request is malformed, a stream
            # error (RFC 9113 §8.2.1), as Go's server answers it.
            self.conn.reset_stream(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        entry = self.proxy_entry
        if entry is None or event.stream_ended is None:
            super()._requestReceived(event)  # type: ignore[no-untyped-call]
            return
        # The stream builds its request from ``requestFactory`` as it is made:
        # for a request that ended with its headers, that is an ``H2Head``,
        # which hands it to the proxy entry or to twisted.web once complete.
        this: Any = self
        factory = this.requestFactory
        this.requestFactory = lambda stream, queued=False: H2Head(entry, stream)
        try:
            super()._requestReceived(event)  # type: ignore[no-untyped-call]
        finally:
            this.requestFactory = factory

    # Twisted looks a frame's stream up unguarded: one it refused, or that
    # already answered, would raise KeyError out of ``dataReceived``.

    def _requestDataReceived(self, event: Any) -> None:  # noqa: N802 - Twisted's name
        if event.stream_id in self.streams:
            super()._requestDataReceived(event)  # type: ignore[no-untyped-call]

    def _requestEnded(self, event: Any) -> None:  # noqa: N802 - Twisted's name
        if event.stream_id in self.streams:
            super()._requestEnded(event)  # type: ignore[no-untyped-call]

    def _requestAborted(self, event: Any) -> None:  # noqa: N802 - Twisted's name
        if event.stream_id in self.streams:
            super()._requestAborted(event)  # type: ignore[no-untyped-call]

    def go_away(self) -> None:
        """Drain (``server.shutdown``): GOAWAY NO_ERROR naming the last stream that will be
        answered; the open streams go on to their ends."""
        this: Any = self
        if this.transport is not None:
            this.transport.write(goaway_after_pending(self.conn))

    def getHost(self) -> Any:  # noqa: N802 - Twisted's name
        host = self._host
        if host is None:
            host = self._host = self.transport.getHost()  # type: ignore[union-attr]
        return host

    def _sendPrioritisedData(self, *args: Any) -> None:  # noqa: N802 - Twisted's name
        self._next_pass = None
        if not self._stillProducing:
            return
        for _ in range(FRAMES_PER_PASS):
            try:
                stream_id = next(self.priority)
            except priority.DeadlockError:
                # Nothing can go now: wake when a stream unblocks (Twisted's
                # writeDataToStream and endRequest fire this Deferred).
                if self._sendingDeferred is None:
                    self._sendingDeferred = self._park()
                return
            if self._consumerBlocked is not None:
                self._consumerBlocked.addCallback(self._sendPrioritisedData)
                return
            self._send_one(stream_id)
        self._next_pass = self._reactor.callLater(0, self._sendPrioritisedData)

    def _park(self) -> Deferred[Any]:
        parked: Deferred[Any] = Deferred()
        parked.addCallback(self._sendPrioritisedData)
        return parked

    def _send_one(self, stream_id: int) -> None:
        """Write the next frame of ``stream_id`` (the priority tree's choice)."""
        this: Any = self  # Twisted's H2Connection is unannotated
        this.resetTimeout()
        queue = self._outboundStreamQueues[stream_id]
        data = queue.popleft()
        if data is _END_STREAM_SENTINEL:
            self.conn.end_stream(stream_id)
            this.transport.write(self.conn.data_to_send())
            this._requestDone(stream_id)
            return
        window = self.conn.local_flow_control_window(stream_id)
        if window <= 0:
            # Wait for the peer's WINDOW_UPDATE (which wakes the loop) rather
            # than choosing this stream again and again with nothing to send.
            queue.appendleft(data)
            self.priority.block(stream_id)
            self.streams[stream_id].flowControlBlocked()
            return
        limit = min(self.conn.max_outbound_frame_size, window)
        if len(data) > limit:
            queue.appendleft(data[limit:])
            data = data[:limit]
        last = bool(queue) and queue[0] is _END_STREAM_SENTINEL
        if data:
            self.conn.send_data(stream_id, data, end_stream=last)
            this.transport.write(self.conn.data_to_send())
            if last:
                queue.popleft()
                this._requestDone(stream_id)
                return
        if not queue:
            self.priority.block(stream_id)
        if this.remainingOutboundWindow(stream_id) <= 0:
            self.streams[stream_id].flowControlBlocked()

    def _handleWindowUpdate(self, event: Any) -> None:  # noqa: N802 - Twisted's name
        # Twisted unblocks the streams that may send again but relies on its
        # loop spinning to notice; this loop sleeps when nothing is ready.
        super()._handleWindowUpdate(event)  # type: ignore[no-untyped-call]
        parked = self._sendingDeferred
        if parked is not None:
            self._sendingDeferred = None
            parked.callback(None)

    def connectionLost(  # type: ignore[override]  # Twisted's own extra argument
        self,
        reason: Any,
        _cancelTimeouts: bool = True,  # noqa: N803 - Twisted's name
    ) -> None:  # noqa: N802 - Twisted's name
        if self._next_pass is not None and self._next_pass.active():
            self._next_pass.cancel()
        self._next_pass = None
        super().connectionLost(reason, _cancelTimeouts=_cancelTimeouts)  # type: ignore[no-untyped-call]


class ChannelSwitch(_GenericHTTPChannelProtocol):
    """Twisted's ALPN switch, building the site's HTTP/2 engine for ``h2``: the libnghttp2
    one (``fence.h2engine_ngh2``) or :class:`GatewayH2Connection` (``site.h2_engine``)."""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        this: Any = self  # Twisted's switch is unannotated
        if this._negotiatedProtocol is None:
            protocol = getattr(this._channel.transport, "negotiatedProtocol", None)
            if protocol == b"h2":
                self._switch_to_h2()
            this._negotiatedProtocol = protocol or b"http/1.1"
        this._channel.dataReceived(data)

    def _switch_to_h2(self) -> None:
        this: Any = self
        old = this._channel
        producer = old._networkProducer
        producer.unregisterProducer()
        old.setTimeout(None)
        transport = old.transport
        # The site gave the HTTP/1.1 channel its head limit; HTTP/2 keeps it.
        native = getattr(this._site, "h2_engine", "python") == "native"
        engine = Ngh2Connection if native else GatewayH2Connection
        channel: Any = engine(getattr(this._site, "reactor", None), old.totalHeadersSize)
        channel.requestFactory = this._requestFactory
        channel.site = this._site
        channel.factory = this._factory
        channel.timeOut = this._timeOut
        channel.callLater = this._callLater
        channel.proxy_entry = getattr(old, "proxy_entry", None)
        this._channel = channel
        channel.makeConnection(transport)
        producer.registerProducer(channel, True)
