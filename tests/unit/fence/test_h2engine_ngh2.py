"""The libnghttp2 prototype listener connection (not wired): what it must keep doing.

It is driven as ``bench.h2listener`` drives it: a ``GatewaySite`` on a
``StringTransport`` with a ``MemoryReactorClock``, and an ngh2 client.
"""

from __future__ import annotations

from typing import Any

import attrs
import ngh2
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from clustergateway.fence.h2engine_ngh2 import MAX_CONCURRENT_STREAMS, Ngh2Connection
from clustergateway.server.site import GatewaySite

HEAD_LIMIT = 32768


class H2Transport(StringTransport):
    negotiatedProtocol = b"h2"  # noqa: N815 - Twisted's name


class Body(Resource):
    """``/body?n=N``: N bytes; ``/held``: kept for the test to answer."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Any] = []

    def render_GET(self, request: Any) -> Any:  # noqa: N802 - Twisted's name
        if request.path == b"/body":
            return b"b" * int(request.args[b"n"][0])
        self.held.append(request)
        return NOT_DONE_YET


@attrs.define
class Conn:
    clock: MemoryReactorClock
    resource: Body
    server: Ngh2Connection
    transport: H2Transport
    client: ngh2.Connection

    def pump(self) -> list[Any]:
        """Client bytes to the server, a reactor pass, server bytes to the client."""
        self.server.dataReceived(self.client.data_to_send())
        self.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        self.client.receive_data(data)
        return self.client.events()

    def get(self, path: str) -> int:
        return self.client.send_request(
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"gw"),
                (b":path", path.encode()),
            ],
            end_stream=True,
        )


@pytest.fixture
def conn() -> Conn:
    clock = MemoryReactorClock()
    resource = Body()
    site = GatewaySite(resource, reactor=clock)
    server = Ngh2Connection(clock, HEAD_LIMIT)
    server.requestFactory = site.requestFactory
    server.site = site
    server.factory = site
    server.timeOut = None
    transport = H2Transport(
        peerAddress=IPv4Address("TCP", "127.0.0.1", 4321),
        hostAddress=IPv4Address("TCP", "127.0.0.1", 9443),
    )
    server.makeConnection(transport)
    client = ngh2.Connection(ngh2.Role.CLIENT)
    client.initiate_connection()
    return Conn(clock, resource, server, transport, client)


def _of(events: list[Any], kind: type[Any]) -> list[Any]:
    return [e for e in events if type(e) is kind]


def test_settings_advertise_the_gateways_limits(conn: Conn) -> None:
    """250 concurrent streams (Go's server default) and the HTTP/1.1 head limit."""
    (settings,) = _of(conn.pump(), ngh2.SettingsReceived)
    assert settings.settings[ngh2.Setting.MAX_CONCURRENT_STREAMS] == MAX_CONCURRENT_STREAMS
    assert settings.settings[ngh2.Setting.MAX_HEADER_LIST_SIZE] == HEAD_LIMIT


def test_a_get_is_answered_in_one_pass(conn: Conn) -> None:
    """HEADERS and the body with END_STREAM reach the client in the pass of the request."""
    conn.pump()
    stream_id = conn.get("/body?n=616")
    events = conn.pump()
    (head,) = _of(events, ngh2.ResponseReceived)
    assert dict(head.headers)[b":status"] == b"200"
    body = _of(events, ngh2.DataReceived)
    assert b"".join(d.data for d in body) == b"b" * 616
    assert body[-1].end_stream and body[-1].stream_id == stream_id


def test_a_body_larger_than_the_window_waits_for_window_updates(conn: Conn) -> None:
    """1 MiB against a 64 KiB initial window: it arrives whole, as the client
    acknowledges what it read, and no more than a window is outstanding at once."""
    conn.pump()
    conn.get("/body?n=1048576")
    received = 0
    for _ in range(200):
        events = conn.pump()
        chunk = sum(len(d.data) for d in _of(events, ngh2.DataReceived))
        assert chunk <= 65535 * 2
        received += chunk
        if any(d.end_stream for d in _of(events, ngh2.DataReceived)):
            break
    assert received == 1 << 20


def test_a_reset_stream_tells_its_request(conn: Conn) -> None:
    """RST_STREAM from the client: the held request learns the caller left;
    the connection and its other streams go on."""
    conn.pump()
    held = conn.get("/held")
    conn.pump()
    (request,) = conn.resource.held
    lost: list[Any] = []
    request.notifyFinish().addErrback(lost.append)
    conn.client.reset_stream(held, ngh2.ErrorCode.CANCEL)
    conn.pump()
    assert len(lost) == 1
    conn.get("/body?n=3")
    assert _of(conn.pump(), ngh2.ResponseReceived)


def test_goaway_from_the_client_closes_the_connection(conn: Conn) -> None:
    """GOAWAY: the transport is closed and held requests learn it."""
    conn.pump()
    conn.get("/held")
    conn.pump()
    (request,) = conn.resource.held
    lost: list[Any] = []
    request.notifyFinish().addErrback(lost.append)
    conn.client.send_goaway(0)
    conn.pump()
    assert conn.transport.disconnecting
    assert len(lost) == 1


def test_a_protocol_error_ends_the_connection(conn: Conn) -> None:
    """Garbage instead of the connection preface: closed, nothing raised."""
    conn.server.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
    assert conn.transport.disconnecting
