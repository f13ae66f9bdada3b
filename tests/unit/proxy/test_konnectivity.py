"""The konnectivity dialer, channel and tunnel transport (``proxy.konnectivity``), in memory.

The proxy-server here is h2's own server-side connection speaking gRPC with the
codec's packets, fed the bytes the channel writes to a ``StringTransport``; its
answers go back the same way.  Everything runs synchronously on a
``MemoryReactorClock``.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    DataReceived,
    PingReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from clustergateway.proxy.dial import TunnelError, TunnelTimeout
from clustergateway.proxy.konnectivity import (
    KEEPALIVE,
    PING_TIMEOUT,
    GrpcChannel,
    KonnectivityDialer,
    KonnectivityTimeout,
)
from clustergateway.proxy.konnectivity_wire import (
    GrpcMessageReader,
    Packet,
    PacketType,
    decode_packet,
    encode_packet,
    frame_message,
)


@attrs.define
class Call:
    """One ``Proxy`` call as the fake proxy-server sees it."""

    headers: dict[bytes, bytes]
    reader: GrpcMessageReader = attrs.field(factory=GrpcMessageReader)
    packets: list[Packet] = attrs.field(factory=list)
    ended: bool = False
    reset: bool = False


class FakeProxyServer:
    """The server side of the channel: h2 in server mode, gRPC by hand."""

    def __init__(self) -> None:
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.h2.initiate_connection()
        self.calls: dict[int, Call] = {}
        self.pings = 0
        self.auto_ack = True

    def receive(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, RequestReceived):
                self.calls[event.stream_id] = Call(dict(event.headers))
                self.h2.send_headers(
                    event.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")]
                )
            elif isinstance(event, DataReceived):
                call = self.calls[event.stream_id]
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                call.packets += [decode_packet(m) for m in call.reader.feed(event.data)]
            elif isinstance(event, StreamEnded):
                self.calls[event.stream_id].ended = True
            elif isinstance(event, StreamReset):
                self.calls[event.stream_id].reset = True
            elif isinstance(event, PingReceived):
                self.pings += 1

    def send(self, stream_id: int, packet: Packet) -> None:
        data = frame_message(encode_packet(packet))
        size = self.h2.max_outbound_frame_size
        for start in range(0, len(data), size):
            self.h2.send_data(stream_id, data[start : start + size])

    def end(self, stream_id: int, status: bytes = b"0", message: bytes = b"") -> None:
        self.h2.send_headers(
            stream_id, [(b"grpc-status", status), (b"grpc-message", message)], end_stream=True
        )


class Link:
    """The dialer's channel, connected to a fake proxy-server by an in-memory transport.

    The dialer connects for real (``connectTCP`` on the memory reactor, no TLS since
    the creator is None); the test completes that connection here.
    """

    def __init__(self, reactor: MemoryReactorClock, server: FakeProxyServer) -> None:
        self.server = server
        self.transport = StringTransport()
        _host, _port, factory, _timeout, _bind = reactor.tcpClients[-1]
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    @property
    def channel(self) -> GrpcChannel:
        channel = self.protocol._wrappedProtocol  # Twisted's endpoint wrapper
        assert isinstance(channel, GrpcChannel)
        return channel

    def pump(self) -> None:
        """Deliver what each side wrote until both are quiet."""
        for _ in range(50):
            out = self.transport.value()
            self.transport.clear()
            if out:
                self.server.receive(out)
            back = self.server.h2.data_to_send()
            if back:
                self.protocol.dataReceived(back)
            if not out and not back:
                return
        raise AssertionError("the link did not settle")


class Recorder(Protocol):
    """The protocol on top of a dialed connection."""

    def __init__(self) -> None:
        self.received = b""
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data

    def connectionLost(self, reason: Failure = Failure(error.ConnectionDone())) -> None:  # noqa: N802,B008
        self.reason = reason


@attrs.define
class Setup:
    reactor: MemoryReactorClock
    server: FakeProxyServer
    dialer: KonnectivityDialer
    _link: Link | None = None

    @property
    def link(self) -> Link:
        assert self._link is not None
        return self._link

    def dial(self, address: str = "c1:443") -> tuple[Deferred[Any], Recorder, int]:
        protocol = Recorder()
        result = self.dialer.dial(address, Factory.forProtocol(lambda: protocol))
        if self._link is None:
            self._link = Link(self.reactor, self.server)
        self.link.pump()
        stream_id = max(self.server.calls)
        return result, protocol, stream_id

    def connect(self, address: str = "c1:443") -> tuple[Any, Recorder, int]:
        result, protocol, stream_id = self.dial(address)
        random_id = self.server.calls[stream_id].packets[0].random
        self.server.send(stream_id, Packet(PacketType.DIAL_RSP, connect_id=77, random=random_id))
        self.link.pump()
        transport = protocol.transport
        assert result.called and transport is not None
        return transport, protocol, stream_id


@pytest.fixture
def setup() -> Setup:
    reactor = MemoryReactorClock()
    dialer = KonnectivityDialer(reactor, "proxy.example", 8090, creator=None, dial_timeout=10)  # type: ignore[arg-type]
    return Setup(reactor, FakeProxyServer(), dialer)


def test_dial_request_on_its_own_grpc_call(setup: Setup) -> None:
    """A dial is a POST to /ProxyService/Proxy (gRPC headers) whose first packet is
    DIAL_REQ tcp <address> with a positive random id."""
    _result, _protocol, stream_id = setup.dial()
    call = setup.server.calls[stream_id]
    assert call.headers[b":method"] == b"POST"
    assert call.headers[b":path"] == b"/ProxyService/Proxy"
    assert call.headers[b"content-type"] == b"application/grpc"
    assert call.headers[b"te"] == b"trailers"
    assert call.headers[b":authority"] == b"proxy.example:8090"
    [dial] = call.packets
    assert (dial.type, dial.protocol, dial.address) == (PacketType.DIAL_REQ, "tcp", "c1:443")
    assert dial.random > 0


def test_bytes_flow_both_ways_then_close(setup: Setup) -> None:
    """After DIAL_RSP, writes become DATA with the connect id and DATA is delivered;
    loseConnection sends CLOSE_REQ and the CLOSE_RSP ends the connection cleanly."""
    transport, protocol, stream_id = setup.connect()
    transport.write(b"GET / HTTP/1.1\r\n\r\n")
    setup.link.pump()
    call = setup.server.calls[stream_id]
    assert call.packets[-1] == Packet(
        PacketType.DATA, connect_id=77, data=b"GET / HTTP/1.1\r\n\r\n"
    )
    setup.server.send(stream_id, Packet(PacketType.DATA, connect_id=77, data=b"HTTP/1.1 200"))
    setup.link.pump()
    assert protocol.received == b"HTTP/1.1 200"
    transport.loseConnection()
    setup.link.pump()
    assert call.packets[-1] == Packet(PacketType.CLOSE_REQ, connect_id=77)
    assert protocol.reason is None
    setup.server.send(stream_id, Packet(PacketType.CLOSE_RSP, connect_id=77))
    setup.link.pump()
    assert protocol.reason is not None and protocol.reason.check(error.ConnectionDone)
    assert call.ended


def test_many_dials_share_one_channel(setup: Setup) -> None:
    """Each dial is a stream of the same channel; their bytes stay apart."""
    first, p1, s1 = setup.connect()
    second, p2, s2 = setup.connect()
    assert s1 != s2 and setup.dialer.dials == 2
    setup.server.send(s2, Packet(PacketType.DATA, connect_id=77, data=b"two"))
    setup.server.send(s1, Packet(PacketType.DATA, connect_id=77, data=b"one"))
    setup.link.pump()
    assert (p1.received, p2.received) == (b"one", b"two")


def test_refused_dial_names_proxy_server_and_cause(setup: Setup) -> None:
    """A DIAL_RSP with an error fails the dial with a TunnelError naming both."""
    result, _protocol, stream_id = setup.dial()
    setup.server.send(stream_id, Packet(PacketType.DIAL_RSP, error="No agent available"))
    setup.link.pump()
    failure = _failure(result)
    assert failure.check(TunnelError)
    assert str(failure.value) == (
        "via konnectivity proxy-server proxy.example:8090: the proxy-server refused the dial "
        "to c1:443: No agent available"
    )
    assert setup.server.calls[stream_id].ended


def test_window_update_after_half_close_keeps_the_channel(setup: Setup) -> None:
    """A connection WINDOW_UPDATE between our END_STREAM and the server's trailers must
    not send END_STREAM twice (h2 would then close the stream, and the trailers would
    break the whole channel)."""
    result, _protocol, stream_id = setup.dial()
    setup.server.send(stream_id, Packet(PacketType.DIAL_RSP, error="refused"))
    setup.link.pump()
    assert setup.server.calls[stream_id].ended
    setup.server.h2.increment_flow_control_window(1000)
    setup.link.pump()
    setup.server.end(stream_id)
    setup.link.pump()
    _failure(result)
    assert setup.link.channel.usable and not setup.link.transport.disconnecting
    assert setup.dialer.channel is setup.link.channel
    _t, protocol, _s = setup.connect()  # the channel still dials
    assert protocol.reason is None


def test_dial_timeout_sends_dial_cls(setup: Setup) -> None:
    """No DIAL_RSP within the dial timeout: DIAL_CLS with the random id, the call is
    cancelled and the dial fails as a timeout (a 504 upstream)."""
    result, _protocol, stream_id = setup.dial()
    setup.reactor.advance(10)
    setup.link.pump()
    failure = _failure(result)
    assert failure.check(KonnectivityTimeout) and failure.check(TunnelTimeout)
    assert "no dial response within 10s" in str(failure.value)
    call = setup.server.calls[stream_id]
    assert call.packets[-1] == Packet(PacketType.DIAL_CLS, random=call.packets[0].random)
    assert call.reset


def test_cancelled_dial_sends_dial_cls(setup: Setup) -> None:
    """Cancelling the dial (the connect timeout upstream, a client gone) abandons it."""
    result, _protocol, stream_id = setup.dial()
    result.cancel()
    setup.link.pump()
    assert setup.server.calls[stream_id].packets[-1].type is PacketType.DIAL_CLS
    _failure(result)


def test_stream_end_and_lost_channel_end_connections(setup: Setup) -> None:
    """The proxy-server ending a call, or the channel dropping, ends the connection on
    it with ConnectionLost naming the proxy-server; the dialer forgets the channel."""
    _t1, p1, s1 = setup.connect()
    _t2, p2, _s2 = setup.connect()
    setup.server.end(s1, b"14", b"agent gone")
    setup.link.pump()
    assert p1.reason is not None and p1.reason.check(error.ConnectionLost)
    assert "gRPC status 14: agent gone" in str(p1.reason.value)
    assert p2.reason is None
    setup.link.protocol.connectionLost(Failure(error.ConnectionLost("reset")))
    assert p2.reason is not None and p2.reason.check(error.ConnectionLost)
    assert "via konnectivity proxy-server proxy.example:8090" in str(p2.reason.value)
    assert setup.dialer.channel is None


def test_goaway_stops_new_dials_on_the_channel(setup: Setup) -> None:
    """After GOAWAY the channel takes no new calls: the dialer will open another."""
    _t, protocol, _s = setup.connect()
    setup.server.h2.close_connection(last_stream_id=max(setup.server.calls))
    setup.link.pump()
    assert not setup.link.channel.usable and setup.dialer.channel is None
    assert protocol.reason is None  # streams the server accepted carry on


def test_paused_connection_stops_acknowledging(setup: Setup) -> None:
    """While the protocol pauses its transport, the stream's window is not refilled;
    resuming acknowledges what arrived."""
    transport, protocol, stream_id = setup.connect()
    h2 = setup.server.h2
    transport.pauseProducing()
    before = h2.local_flow_control_window(stream_id)
    for _ in range(4):
        setup.server.send(stream_id, Packet(PacketType.DATA, connect_id=77, data=b"x" * 150_000))
        setup.link.pump()
    paused = h2.local_flow_control_window(stream_id)
    assert paused < before - 4 * 150_000
    assert len(protocol.received) == 4 * 150_000  # delivered; only the window waits
    transport.resumeProducing()
    setup.link.pump()
    assert h2.local_flow_control_window(stream_id) > paused + 4 * 150_000 - 1000


def test_writer_paused_when_flow_control_queues(setup: Setup) -> None:
    """Writes beyond the proxy-server's window queue; past the high-water mark the
    registered producer is paused, and resumed once the window opens."""
    transport, _protocol, stream_id = setup.connect()

    @attrs.define
    class Producer:
        paused: int = 0
        resumed: int = 0

        def pauseProducing(self) -> None:  # noqa: N802
            self.paused += 1

        def resumeProducing(self) -> None:  # noqa: N802
            self.resumed += 1

        def stopProducing(self) -> None:  # noqa: N802
            pass

    producer = Producer()
    transport.registerProducer(producer, True)
    for _ in range(12):
        transport.write(b"y" * 65536)
    assert producer.paused == 1
    # The server acknowledges what it receives; the queue drains.
    for _ in range(30):
        setup.link.pump()
    assert producer.resumed == 1
    received = sum(len(p.data) for p in setup.server.calls[stream_id].packets[1:])
    assert received == 12 * 65536


def test_keepalive_ping_and_dead_channel(setup: Setup) -> None:
    """With a stream open, a channel quiet for KEEPALIVE is PINGed; an answered PING
    keeps it, an unanswered one drops it after PING_TIMEOUT."""
    _t, protocol, _s = setup.connect()
    setup.reactor.advance(KEEPALIVE)
    setup.link.pump()
    assert setup.server.pings == 1
    assert not setup.link.transport.disconnecting  # answered by the pump
    setup.reactor.advance(KEEPALIVE)
    setup.reactor.advance(PING_TIMEOUT)
    # Nothing pumped: the PING stays unanswered.
    for _ in range(3):
        setup.reactor.advance(PING_TIMEOUT)
    assert setup.link.transport.disconnecting


def test_no_ping_without_streams(setup: Setup) -> None:
    """An idle channel without calls is not PINGed (servers count such pings as abuse)."""
    transport, _protocol, stream_id = setup.connect()
    transport.abortConnection()
    setup.link.pump()
    for _ in range(5):
        setup.reactor.advance(KEEPALIVE)
    setup.link.pump()
    assert setup.server.pings == 0


def test_failed_connect_backs_off_then_retries() -> None:
    """A proxy-server that cannot be reached fails the dial naming it and the cause;
    dials during the backoff fail fast without connecting; after it, a new connect."""
    from twisted.internet.ssl import CertificateOptions

    reactor = MemoryReactorClock()
    dialer = KonnectivityDialer(
        reactor,
        "127.0.0.1",
        8090,
        creator=CertificateOptions(),
        backoff_initial=1.0,  # type: ignore[arg-type]
    )
    first = dialer.dial("c1:443", Factory.forProtocol(Recorder))
    assert len(reactor.tcpClients) == 1
    host, port, factory, _timeout, _bind = reactor.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 8090)
    factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
    failure = _failure(first)
    assert str(failure.value) == (
        "via konnectivity proxy-server 127.0.0.1:8090: dial tcp 127.0.0.1:8090: connection refused"
    )
    second = dialer.dial("c1:443", Factory.forProtocol(Recorder))
    assert "next attempt in 1.0s" in str(_failure(second).value)
    assert len(reactor.tcpClients) == 1
    reactor.advance(1.0)
    dialer.dial("c1:443", Factory.forProtocol(Recorder))
    assert len(reactor.tcpClients) == 2


def _failure(d: Deferred[Any]) -> Failure:
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert failures, "the Deferred did not fail"
    return failures[0]
