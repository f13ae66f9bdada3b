"""The connection takeover after a 101 (``fence.takeover``: Twisted internals)."""

from __future__ import annotations

from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from clustergateway.fence.takeover import UpgradeNotPossible, can_take_over, take_over

HEAD = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n"


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost: list[object] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: object = None) -> None:
        self.lost.append(reason)


class UpgradeResource(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.protocol = Recorder()
        self.requests: list[Request] = []

    def render(self, request: Request) -> int:
        self.requests.append(request)
        take_over(request, self.protocol, HEAD)
        return NOT_DONE_YET


def connect(resource: Resource) -> tuple[StringTransport, object]:
    site = Site(resource)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return transport, channel


def test_head_written_verbatim_and_early_bytes_handed_over() -> None:
    """The 101 head reaches the client byte for byte (no chunking, no Content-Type), and
    bytes the client pipelined right after the request head reach the new protocol."""
    resource = UpgradeResource()
    transport, channel = connect(resource)
    channel.dataReceived(
        b"POST /exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        b"Content-Length: 0\r\n\r\nEARLY-BYTES"
    )
    assert transport.value() == HEAD
    assert b"".join(resource.protocol.received) == b"EARLY-BYTES"
    channel.dataReceived(b";LATER")
    assert b"".join(resource.protocol.received) == b"EARLY-BYTES;LATER"
    assert resource.protocol.transport is transport


def test_connection_lost_reaches_protocol_and_request() -> None:
    """When the connection ends, the new protocol hears it and the original request's
    notifyFinish errbacks, so whoever waits on the request can clean up."""
    resource = UpgradeResource()
    transport, channel = connect(resource)
    channel.dataReceived(b"GET /exec HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
    finished: list[object] = []
    resource.requests[0].notifyFinish().addBoth(finished.append)
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    channel.connectionLost(Failure(ConnectionDone()))
    assert len(resource.protocol.lost) == 1
    assert len(finished) == 1


def test_http10_cannot_be_taken_over() -> None:
    """An HTTP/1.0 request (or HTTP/2, which has no per-request transport) is refused."""
    seen: list[bool] = []

    class Probe(Resource):
        isLeaf = True

        def render(self, request: Request) -> bytes:
            seen.append(can_take_over(request))
            try:
                take_over(request, Recorder(), HEAD)
            except UpgradeNotPossible:
                return b"refused"
            return b"taken"

    transport, channel = connect(Probe())
    channel.dataReceived(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    assert seen == [False]
    assert b"refused" in transport.value()
