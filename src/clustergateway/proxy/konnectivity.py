"""Reaching ``ClusterProxy`` clusters through a konnectivity (apiserver-network-proxy) proxy-server.

OCM's cluster-proxy addon runs a proxy-server on the hub; an agent in each
managed cluster dials *out* to it, so clusters behind NAT are reachable.  A
client asks the proxy-server for a TCP connection with the gRPC method
``ProxyService.Proxy`` (a bidirectional stream of ``Packet``;
:mod:`~clustergateway.proxy.konnectivity_wire`): ``DIAL_REQ`` (``tcp``,
``<cluster-name>:443``, a random id) → ``DIAL_RSP`` (a connect id, or an
error) → ``DATA`` both ways → ``CLOSE_REQ``/``CLOSE_RSP``; ``DIAL_CLS``
abandons a pending dial.  The agent routes by the host name.

What this module keeps from Go and what it changes:

- Go opens a new mTLS gRPC connection and a single-use tunnel for every
  proxied request.  Here :class:`KonnectivityDialer` keeps **one** channel
  (an HTTP/2 connection, mTLS, server name = the proxy host) per
  proxy-server and opens one ``Proxy`` stream per dialed connection; the
  dialed connections are ordinary byte streams to the pools
  (:mod:`~clustergateway.proxy.pools`), which put TLS to the cluster, the
  HTTP/1.1 keep-alive pool and the HTTP/2 streams of watches on top, exactly
  as for ``Const`` clusters.  So one channel carries many dials and each dial
  many requests.
- gRPC is spoken over the project's own use of ``h2`` on the reactor (no
  threads, one flow-control model with ``h2client``): HEADERS for the call,
  length-prefixed messages in DATA frames, ``grpc-status`` in the trailers.
  ``grpcio`` would run its own threads and hand every chunk across to the
  reactor; this way a tunnelled byte costs one DATA frame and a paused client
  stops acknowledging its stream (per-stream backpressure, as ``h2client``).
  Measured (``python -m bench.konnectivity_client``: 600-byte echo round trips
  through the stand-in, 2,000 each, two runs on the shared 2-CPU machine): this
  client p50 534/547 µs and 244/255 µs CPU per round trip; ``grpcio``'s client
  with the reactor hand-off p50 338/480 µs and 195/283 µs CPU — the same within
  this machine's noise, so the choice is by fit: no threads, cancellation and
  flow control per stream in the reactor's terms, one HTTP/2 stack to maintain.
- The channel is watched with HTTP/2 PINGs while streams are open
  (:data:`KEEPALIVE`, Go's 20 s) and dropped when one goes unanswered; a lost
  channel ends every stream on it (a watch ends cleanly) and the next dial
  opens a new one.  A failed connect backs off (doubling, capped) and dials
  meanwhile fail fast with the last cause.
- Every failure is a :class:`~clustergateway.proxy.dial.TunnelError` whose
  text names the proxy-server (``via konnectivity proxy-server host:port``)
  and the cause; the dial wrapper turns it into a 502 naming the cluster.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings
from twisted.internet import error
from twisted.internet.address import HostnameAddress
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import (
    IConsumer,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clustergateway.proxy.dial import (
    DialError,
    DialTimeout,
    DirectDialer,
    TunnelError,
    TunnelLost,
    TunnelTimeout,
    UpstreamEndpoint,
    describe_failure,
)
from clustergateway.proxy.konnectivity_wire import (
    GrpcMessageReader,
    GrpcWireError,
    Packet,
    PacketType,
    decode_packet,
    encode_data,
    encode_packet,
    frame_message,
)

__all__ = [
    "KEEPALIVE",
    "GrpcChannel",
    "KonnectivityDialer",
    "KonnectivityTimeout",
    "TunnelTransport",
]

#: The gRPC method (the proto declares no package).
PROXY_METHOD = b"/ProxyService/Proxy"
#: A channel with open streams that received nothing for this long is PINGed
#: (Go's konnectivity client uses 20 s) ...
KEEPALIVE = 20.0
#: ... and dropped when the PING is not answered within this.
PING_TIMEOUT = 15.0
#: What the proxy-server may send on one stream before it is acknowledged.
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 1 << 30
_DEFAULT_WINDOW = 65535
#: Tunnelled bytes queued on a stream (flow control) before its writer is paused.
_HIGH_WATER = 512 * 1024
_LOW_WATER = 64 * 1024
#: The largest DATA packet sent (bigger writes are split).
_MAX_CHUNK = 256 * 1024
#: How long a closed tunnel waits for the proxy-server's CLOSE_RSP.
_CLOSE_WAIT = 5.0
_PING_DATA = b"cg-konn."


class KonnectivityTimeout(TunnelTimeout):
    """The proxy-server did not answer a dial (or let the channel up) in time: a 504."""


def _now(reactor: Any) -> float:
    return float(reactor.seconds())


# -- the channel: one HTTP/2 connection to the proxy-server ------------------------------


@attrs.define(eq=False)
class _Stream:
    """Send and receive state of one ``Proxy`` call on the channel."""

    tunnel: TunnelTransport
    reader: GrpcMessageReader = attrs.field(factory=GrpcMessageReader)
    out: bytearray = attrs.field(factory=bytearray)
    ending: bool = False
    #: END_STREAM went out (sending it twice makes h2 close the stream for good).
    end_sent: bool = False
    paused: bool = False
    unacknowledged: int = 0
    blocked: bool = False
    grpc_status: bytes | None = None
    grpc_message: bytes = b""
    http_status: bytes | None = None


class GrpcChannel(TwistedProtocol):
    """The client side of one gRPC channel: ``Proxy`` calls as HTTP/2 streams.

    Built connected (TLS done) by :class:`KonnectivityDialer`; ``on_lost`` is
    told when the channel can no longer open streams (GOAWAY or closed).
    """

    _log = Logger()
    transport: Any

    def __init__(
        self,
        reactor: Any,
        authority: bytes,
        on_lost: Callable[[GrpcChannel], None],
        keepalive: float = KEEPALIVE,
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        self.reactor = reactor
        self.authority = authority
        self.on_lost = on_lost
        self.keepalive = keepalive
        self.ping_timeout = ping_timeout
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.streams: dict[int, _Stream] = {}
        self.closed = False
        self.going_away = False
        #: Streams opened over the channel's life (for tests and the bench).
        self.streams_opened = 0
        self._last_read = 0.0
        self._ping_sent: float | None = None
        self._health: Any = None

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        h2 = self.h2
        h2.local_settings = Settings(
            client=True,
            initial_values={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        h2.initiate_connection()
        h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self._flush()
        self._last_read = _now(self.reactor)
        self._schedule_health()

    @property
    def usable(self) -> bool:
        """Can new ``Proxy`` calls start here?"""
        return not self.closed and not self.going_away

    # -- streams -----------------------------------------------------------------------

    def open_stream(self, tunnel: TunnelTransport) -> int:
        """Start a ``Proxy`` call for ``tunnel``; raises :class:`TunnelError` when the
        channel cannot take another stream."""
        h2 = self.h2
        try:
            stream_id = h2.get_next_available_stream_id()
            h2.send_headers(
                stream_id,
                [
                    (b":method", b"POST"),
                    (b":scheme", b"https"),
                    (b":path", PROXY_METHOD),
                    (b":authority", self.authority),
                    (b"content-type", b"application/grpc"),
                    (b"te", b"trailers"),
                    (b"user-agent", b"clustergateway-konnectivity"),
                ],
            )
        except H2Error as e:
            raise TunnelError(f"the channel cannot open another stream ({e})") from None
        self.streams[stream_id] = _Stream(tunnel)
        self.streams_opened += 1
        self._flush()
        return stream_id

    def send(self, stream_id: int, packet: bytes) -> None:
        """Queue one encoded ``Packet`` on the stream (framed as a gRPC message)."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.ending:
            return
        stream.out += frame_message(packet)
        self._send_queued(stream_id, stream)
        if not stream.blocked and len(stream.out) > _HIGH_WATER:
            stream.blocked = True
            stream.tunnel.writes_blocked()
        self._flush()

    def end_stream(self, stream_id: int) -> None:
        """Half-close the call once its queued messages are sent."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.ending:
            return
        stream.ending = True
        self._send_queued(stream_id, stream)
        self._flush()

    def reset_stream(self, stream_id: int) -> None:
        """Cancel the call (RST_STREAM CANCEL); the tunnel is not told."""
        if self.streams.pop(stream_id, None) is None or self.closed:
            return
        try:
            self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        except H2Error:
            pass
        self._flush()
        self._maybe_close()

    def pause_stream(self, stream_id: int) -> None:
        """Stop acknowledging the stream's data: the proxy-server stops once its window is spent."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.paused = True

    def resume_stream(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.paused:
            return
        stream.paused = False
        if stream.unacknowledged:
            owed, stream.unacknowledged = stream.unacknowledged, 0
            try:
                self.h2.acknowledge_received_data(owed, stream_id)
            except H2Error:
                return
            self._flush()

    def _send_queued(self, stream_id: int, stream: _Stream) -> None:
        h2 = self.h2
        try:
            while stream.out:
                room = min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk = bytes(stream.out[:room])
                del stream.out[:room]
                h2.send_data(stream_id, chunk)
            if stream.ending and not stream.out and not stream.end_sent:
                stream.end_sent = True
                h2.end_stream(stream_id)
        except H2Error:
            return  # the stream is closing; its end event tells the tunnel
        if stream.blocked and len(stream.out) < _LOW_WATER:
            stream.blocked = False
            stream.tunnel.writes_unblocked()

    def _send_all_queued(self) -> None:
        for stream_id, stream in list(self.streams.items()):
            if stream.out or (stream.ending and not stream.end_sent):
                self._send_queued(stream_id, stream)

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    # -- receiving ---------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self._last_read = _now(self.reactor)
        self._ping_sent = None
        try:
            events = self.h2.receive_data(data)
        except H2Error as e:
            self._log.warn(
                "konnectivity proxy-server {authority} broke HTTP/2: {why}",
                authority=self.authority.decode(),
                why=str(e),
            )
            self._flush()
            self.transport.abortConnection()
            return
        for event in events:
            self._event(event)
        self._flush()

    def _event(self, event: Any) -> None:
        if isinstance(event, DataReceived):
            self._data(event)
        elif isinstance(event, ResponseReceived | TrailersReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                for name, value in event.headers:
                    if name == b":status":
                        stream.http_status = value
                    elif name == b"grpc-status":
                        stream.grpc_status = value
                    elif name == b"grpc-message":
                        stream.grpc_message = value
        elif isinstance(event, StreamEnded):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.tunnel.stream_closed(_call_end(stream))
                self._maybe_close()
        elif isinstance(event, StreamReset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                code = _error_name(event.error_code)
                stream.tunnel.stream_closed(f"the proxy-server reset the stream ({code})")
                self._maybe_close()
        elif isinstance(event, WindowUpdated | RemoteSettingsChanged):
            self._send_all_queued()
        elif isinstance(event, PingAckReceived):
            self._ping_sent = None
        elif isinstance(event, ConnectionTerminated):
            self.going_away = True
            self.on_lost(self)
            if event.last_stream_id is not None:
                for stream_id in [s for s in self.streams if s > event.last_stream_id]:
                    stream = self.streams.pop(stream_id)
                    stream.tunnel.stream_closed("the proxy-server is going away (GOAWAY)")
            self._maybe_close()

    def _data(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if stream.paused:
            stream.unacknowledged += event.flow_controlled_length
        elif event.flow_controlled_length:
            try:
                self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
            except H2Error:
                pass
        try:
            messages = stream.reader.feed(event.data)
            packets = [decode_packet(m) for m in messages]
        except GrpcWireError as e:
            self.streams.pop(stream_id, None)
            try:
                self.h2.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            except H2Error:
                pass
            stream.tunnel.stream_closed(f"the proxy-server sent an invalid message ({e})")
            return
        for packet in packets:
            if self.streams.get(stream_id) is not stream:
                return  # closed by an earlier packet
            stream.tunnel.packet_received(packet)

    def _maybe_close(self) -> None:
        if self.going_away and not self.streams and not self.closed:
            self.transport.loseConnection()

    # -- health ------------------------------------------------------------------------

    def _schedule_health(self) -> None:
        self._health = self.reactor.callLater(
            min(self.keepalive, self.ping_timeout), self._check_health
        )

    def _check_health(self) -> None:
        self._health = None
        if self.closed:
            return
        now = _now(self.reactor)
        if self._ping_sent is not None and now - self._ping_sent >= self.ping_timeout:
            self._log.warn(
                "konnectivity proxy-server {authority} did not answer a PING in {timeout}s; "
                "dropping the channel",
                authority=self.authority.decode(),
                timeout=self.ping_timeout,
            )
            self.transport.abortConnection()
            return
        if self._ping_sent is None and self.streams and now - self._last_read >= self.keepalive:
            self._ping_sent = now
            self.h2.ping(_PING_DATA)
            self._flush()
        self._schedule_health()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.closed = True
        if self._health is not None and self._health.active():
            self._health.cancel()
        self._health = None
        self.on_lost(self)
        why = f"the connection to the proxy-server was lost ({describe_failure(reason.value)})"
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.tunnel.stream_closed(why)


def _error_name(code: Any) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"error {code}"


def _call_end(stream: _Stream) -> str:
    """Why a call ended, from its HTTP status and trailers."""
    if stream.http_status not in (None, b"200"):
        return f"the proxy-server answered HTTP {stream.http_status.decode(errors='replace')}"
    status = stream.grpc_status
    if status is None or status == b"0":
        return "the proxy-server ended the stream"
    message = stream.grpc_message.decode("utf-8", errors="replace")[:200]
    return f"the proxy-server ended the stream with gRPC status {status.decode()}: {message}"


@implementer(IProtocolFactory)
class _ChannelFactory(Factory[GrpcChannel]):
    noisy = False

    def __init__(self, build: Callable[[], GrpcChannel]) -> None:
        self.build = build

    def buildProtocol(self, addr: Any) -> GrpcChannel:  # noqa: N802 - Twisted's name
        return self.build()


# -- a dialed connection ----------------------------------------------------------------


@implementer(ITransport, IPushProducer, IConsumer)
@attrs.define(eq=False)
class TunnelTransport:
    """A TCP connection dialed through the proxy-server, as a transport for a protocol.

    Until ``DIAL_RSP`` it is a pending dial (``result`` fires with the
    connected protocol, or fails); afterwards ``write`` sends ``DATA``,
    received ``DATA`` goes to the protocol, and the protocol may pause it
    (the stream's data then goes unacknowledged).
    """

    reactor: Any
    channel: GrpcChannel
    proxy: str
    address: str
    factory: IProtocolFactory
    result: Deferred[IProtocol]
    random_id: int
    #: Seconds left for the answer (the dial's limit less the channel's setup).
    timeout: float | None
    #: The dial's limit, for the message.
    limit: float = 0.0
    stream_id: int = 0
    connect_id: int = 0
    protocol: IProtocol | None = None
    connected: bool = False
    disconnecting: bool = False
    disconnected: bool = False
    producer: IPushProducer | None = None
    _timer: Any = None
    _log = Logger()

    # -- dialing -----------------------------------------------------------------------

    def start(self) -> None:
        self.stream_id = self.channel.open_stream(self)
        self.channel.send(
            self.stream_id,
            encode_packet(
                Packet(
                    PacketType.DIAL_REQ, protocol="tcp", address=self.address, random=self.random_id
                )
            ),
        )
        if self.timeout is not None and self.timeout > 0:
            self._timer = self.reactor.callLater(self.timeout, self._dial_timed_out)

    def _failure(self, why: str, cls: type[TunnelError] = TunnelError) -> Failure:
        return Failure(cls(f"via konnectivity proxy-server {self.proxy}: {why}"))

    def _dial_timed_out(self) -> None:
        self._timer = None
        self.cancel_dial()
        if not self.result.called:
            self.result.errback(
                self._failure(f"no dial response within {self.limit:g}s", KonnectivityTimeout)
            )

    def cancel_dial(self) -> None:
        """Abandon a pending dial: ``DIAL_CLS``, then the call is cancelled."""
        self._stop_timer()
        if self.connected or self.disconnected:
            return
        self.disconnected = True
        self.channel.send(
            self.stream_id, encode_packet(Packet(PacketType.DIAL_CLS, random=self.random_id))
        )
        self.channel.end_stream(self.stream_id)
        self.channel.reset_stream(self.stream_id)

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- from the channel ----------------------------------------------------------------

    def packet_received(self, packet: Packet) -> None:
        kind = packet.type
        if kind is PacketType.DATA:
            if packet.error:
                self._close(f"the agent reported: {packet.error}")
            elif self.protocol is not None and packet.data and not self.disconnected:
                self.protocol.dataReceived(packet.data)
        elif kind is PacketType.DIAL_RSP:
            self._dial_answered(packet)
        elif kind is PacketType.CLOSE_RSP:
            self._close(None)
        elif kind is PacketType.DIAL_CLS:
            self._close("the proxy-server closed the pending dial")

    def _dial_answered(self, packet: Packet) -> None:
        self._stop_timer()
        if self.connected or self.disconnected or self.result.called:
            return
        if packet.error:
            self.disconnected = True
            self.channel.end_stream(self.stream_id)
            self.result.errback(
                self._failure(
                    f"the proxy-server refused the dial to {self.address}: {packet.error[:300]}"
                )
            )
            return
        self.connect_id = packet.connect_id
        self.connected = True
        host, _, port = self.address.rpartition(":")
        protocol = self.factory.buildProtocol(HostnameAddress(host.encode(), int(port or 0)))
        if protocol is None:
            self.loseConnection()
            self.result.errback(self._failure("the connection was refused locally"))
            return
        self.protocol = protocol
        protocol.makeConnection(self)
        if not self.result.called:
            self.result.callback(protocol)

    def stream_closed(self, why: str) -> None:
        """The call ended (the channel says why)."""
        self._close(why, stream_gone=True)

    def writes_blocked(self) -> None:
        if self.producer is not None:
            self.producer.pauseProducing()

    def writes_unblocked(self) -> None:
        if self.producer is not None:
            self.producer.resumeProducing()

    def _close(self, why: str | None, stream_gone: bool = False) -> None:
        self._stop_timer()
        if not stream_gone:
            self.channel.end_stream(self.stream_id)
        if not self.connected:
            if not self.result.called:
                self.disconnected = True
                self.result.errback(self._failure(why or "the dial ended without an answer"))
            return
        if self.disconnected:
            return
        self.disconnected = True
        protocol = self.protocol
        if protocol is not None:
            if why is None or self.disconnecting and stream_gone:
                protocol.connectionLost(Failure(error.ConnectionDone()))
            else:
                protocol.connectionLost(
                    Failure(TunnelLost(f"via konnectivity proxy-server {self.proxy}: {why}"))
                )

    # -- ITransport ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.connected or self.disconnected or self.disconnecting or not data:
            return
        for start in range(0, len(data), _MAX_CHUNK):
            self.channel.send(
                self.stream_id, encode_data(self.connect_id, data[start : start + _MAX_CHUNK])
            )

    def writeSequence(self, data: Any) -> None:  # noqa: N802 - Twisted's name
        self.write(b"".join(data))

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        """``CLOSE_REQ``; the connection ends at the proxy-server's ``CLOSE_RSP``."""
        if self.disconnecting or self.disconnected:
            return
        self.disconnecting = True
        if not self.connected:
            self.cancel_dial()
            return
        self.channel.send(
            self.stream_id, encode_packet(Packet(PacketType.CLOSE_REQ, connect_id=self.connect_id))
        )
        self._timer = self.reactor.callLater(_CLOSE_WAIT, self.abortConnection)

    def abortConnection(self) -> None:  # noqa: N802 - Twisted's name
        if self.disconnected:
            return
        if not self.connected:
            self.cancel_dial()
            return
        self._stop_timer()
        self.channel.send(
            self.stream_id, encode_packet(Packet(PacketType.CLOSE_REQ, connect_id=self.connect_id))
        )
        self.channel.end_stream(self.stream_id)
        self.channel.reset_stream(self.stream_id)
        self.disconnected = True
        if self.protocol is not None:
            self.protocol.connectionLost(Failure(error.ConnectionAborted()))

    def getPeer(self) -> HostnameAddress:  # noqa: N802 - Twisted's name
        host, _, port = self.address.rpartition(":")
        return HostnameAddress(host.encode(), int(port or 0))

    def getHost(self) -> HostnameAddress:  # noqa: N802 - Twisted's name
        return HostnameAddress(self.proxy.encode(), 0)

    # -- IPushProducer (the protocol pauses what it receives) -----------------------------

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        self.channel.pause_stream(self.stream_id)

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        self.channel.resume_stream(self.stream_id)

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name
        self.abortConnection()

    # -- IConsumer (what the protocol writes may be paused) ------------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802 - Twisted's name
        self.producer = None


# -- the dialer ----------------------------------------------------------------------------


@implementer(IStreamClientEndpoint)
@attrs.frozen
class _KonnectivityEndpoint:
    """Byte streams to ``address`` (``<cluster-name>:443``) through the proxy-server."""

    dialer: KonnectivityDialer
    address: str

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:  # noqa: N803
        return self.dialer.dial(self.address, protocolFactory)


@attrs.define(eq=False)
class KonnectivityDialer:
    """One channel per proxy-server, one ``Proxy`` call per dialed connection.

    ``creator``: mTLS to the proxy-server (its CA, the gateway's client
    certificate, server name = ``host``, ALPN ``h2``).  ``dial_timeout``
    bounds the whole dial (the channel's connect and TLS included).
    """

    reactor: Any
    host: str
    port: int
    creator: IOpenSSLClientConnectionCreator
    connect_timeout: float = 10.0
    dial_timeout: float = 10.0
    keepalive: float = KEEPALIVE
    ping_timeout: float = PING_TIMEOUT
    backoff_initial: float = 0.25
    backoff_max: float = 5.0
    channel: GrpcChannel | None = attrs.field(default=None, init=False)
    #: Channels opened and dials made over the dialer's life (tests, bench, logs).
    channels_opened: int = attrs.field(default=0, init=False)
    dials: int = attrs.field(default=0, init=False)
    _connecting: Deferred[GrpcChannel] | None = attrs.field(default=None, init=False)
    _waiters: list[Deferred[GrpcChannel]] = attrs.field(factory=list, init=False)
    _failures: int = attrs.field(default=0, init=False)
    _retry_at: float = attrs.field(default=0.0, init=False)
    _last_error: str = attrs.field(default="", init=False)
    _log = Logger()

    @property
    def display(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def stream_endpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        """``StreamDialer``: streams to ``host:port`` as the proxy-server's agents route it."""
        return _KonnectivityEndpoint(self, f"{host}:{port}")

    # -- dialing -------------------------------------------------------------------------

    def dial(self, address: str, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Dial ``address``; fires with ``factory``'s protocol, connected to the tunnel."""
        tunnel: list[TunnelTransport] = []
        started = _now(self.reactor)

        def cancel(_d: Deferred[IProtocol]) -> None:
            if tunnel:
                tunnel[0].cancel_dial()
            elif not pending.called:
                pending.cancel()

        result: Deferred[IProtocol] = Deferred(cancel)
        pending = self._channel()

        def with_channel(channel: GrpcChannel) -> None:
            if result.called:
                return
            left = self.dial_timeout - (_now(self.reactor) - started)
            transport = TunnelTransport(
                self.reactor,
                channel,
                self.display,
                address,
                factory,
                result,
                random.getrandbits(62) + 1,
                max(left, 0.001) if self.dial_timeout else None,
                self.dial_timeout,
            )
            tunnel.append(transport)
            self.dials += 1
            try:
                transport.start()
            except TunnelError as e:
                result.errback(
                    Failure(TunnelError(f"via konnectivity proxy-server {self.display}: {e}"))
                )

        def without_channel(failure: Failure) -> None:
            if result.called or failure.check(CancelledError):
                return
            result.errback(failure)

        pending.addCallbacks(with_channel, without_channel)
        return result

    # -- the channel ---------------------------------------------------------------------

    def _channel(self) -> Deferred[GrpcChannel]:
        channel = self.channel
        if channel is not None and channel.usable:
            return succeed(channel)
        now = _now(self.reactor)
        if self._connecting is None and now < self._retry_at:
            return fail(
                TunnelError(
                    f"via konnectivity proxy-server {self.display}: {self._last_error} "
                    f"(next attempt in {self._retry_at - now:.1f}s)"
                )
            )
        waiter: Deferred[GrpcChannel] = Deferred(self._waiters_remove)
        self._waiters.append(waiter)
        if self._connecting is None:
            self._connect()
        return waiter

    def _waiters_remove(self, waiter: Deferred[GrpcChannel]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def _connect(self) -> None:
        endpoint = UpstreamEndpoint(
            self.reactor,
            DirectDialer(self.reactor).stream_endpoint(self.host, self.port),
            self.display,
            self.creator,
            self.connect_timeout,
            self.connect_timeout,
        )
        authority = self.display.encode("idna")

        def build() -> GrpcChannel:
            return GrpcChannel(
                self.reactor, authority, self._lost, self.keepalive, self.ping_timeout
            )

        connecting: Deferred[Any] = endpoint.connect(_ChannelFactory(build))
        self._connecting = connecting
        connecting.addCallbacks(self._connected, self._not_connected)

    def _connected(self, channel: GrpcChannel) -> None:
        self._connecting = None
        self._failures = 0
        self.channel = channel
        self.channels_opened += 1
        self._log.info(
            "konnectivity proxy-server {proxy}: channel open (channel {number})",
            proxy=self.display,
            number=self.channels_opened,
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(channel)

    def _not_connected(self, failure: Failure) -> None:
        self._connecting = None
        self._failures += 1
        delay = min(self.backoff_initial * 2 ** (self._failures - 1), self.backoff_max)
        self._retry_at = _now(self.reactor) + delay
        cause = str(failure.value) if failure.check(DialError) else describe_failure(failure.value)
        self._last_error = cause
        self._log.warn(
            "konnectivity proxy-server {proxy} unreachable: {cause} (next attempt in {delay}s)",
            proxy=self.display,
            cause=cause,
            delay=delay,
        )
        timed_out = failure.check(DialTimeout, error.TimeoutError)
        cls = KonnectivityTimeout if timed_out else TunnelError
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.errback(
                    Failure(cls(f"via konnectivity proxy-server {self.display}: {cause}"))
                )

    def _lost(self, channel: GrpcChannel) -> None:
        if self.channel is channel:
            self.channel = None
            self._log.info("konnectivity proxy-server {proxy}: channel closed", proxy=self.display)

    def close(self) -> None:
        """Close the channel (service stop); its streams end."""
        channel, self.channel = self.channel, None
        if channel is not None and not channel.closed:
            channel.transport.loseConnection()
