"""The libnghttp2 listener connection: what it does that the pure-Python engine does otherwise.

Driven as ``bench.h2listener`` drives it: a ``GatewaySite`` on a
``StringTransport`` with a ``MemoryReactorClock``, and an ngh2 client.  What
both engines share is asserted on both by ``test_h2channel``, ``test_h2guard``
and ``tests/unit/server/test_callers_h2.py``.
"""

from __future__ import annotations

from typing import Any

import attrs
import ngh2
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock

from clustergateway.fence import h2engine_ngh2
from clustergateway.fence.h2engine_ngh2 import (
    BYTES_PER_PASS,
    MAX_CONCURRENT_STREAMS,
    Ngh2Connection,
    goaway_frame,
    unfit,
)
from clustergateway.server.site import GatewaySite
from clustergateway.testing.clock import PassEndClock
from tests.unit.fence.test_h2channel import Body as ChannelBody
from tests.unit.fence.test_h2channel import H2Transport, parse_frames

HEAD_LIMIT = 32768


class Body(ChannelBody):
    """The h2channel tests' resource (``/body``, ``/chunks``, ``/held``), plus uploads:
    ``POST`` answers the length of the body it read."""

    def render_POST(self, request: Any) -> bytes:  # noqa: N802 - Twisted's name
        return b"%d" % len(request.content.read())


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
    return connect()


def connect(window: int | None = None, clock: MemoryReactorClock | None = None) -> Conn:
    """``window``: the client's receive window, on the connection and each stream."""
    clock = clock or MemoryReactorClock()
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
    if window is None:
        client.initiate_connection()
    else:
        client.initiate_connection({ngh2.Setting.INITIAL_WINDOW_SIZE: window})
        client.set_local_window_size(window)
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


def _pass_pending(conn: Conn) -> bool:
    return any(
        getattr(call.func, "__name__", "") == "_send_pass" for call in conn.clock.getDelayedCalls()
    )


def test_a_pass_writes_at_most_its_budget_and_the_rest_follows() -> None:
    """A 1 MiB body the peer's window allows at once: one pass writes at most
    BYTES_PER_PASS (the reactor is not held by one connection), the next passes the rest."""
    conn = connect(window=1 << 24)
    conn.pump()
    conn.get("/body?n=1048576")
    conn.server.dataReceived(conn.client.data_to_send())
    first = conn.transport.value()
    conn.transport.clear()
    assert BYTES_PER_PASS <= len(first) < BYTES_PER_PASS + 16 * 1024
    assert _pass_pending(conn)
    received = len(first)
    for _ in range(10):
        conn.clock.advance(0)
        received += len(conn.transport.value())
        conn.transport.clear()
    assert received > 1 << 20
    assert not _pass_pending(conn)


def test_a_paused_transport_holds_everything_until_resumed() -> None:
    conn = connect(window=1 << 24)
    conn.pump()
    conn.server.pauseProducing()
    conn.get("/body?n=1000")
    conn.server.dataReceived(conn.client.data_to_send())
    assert conn.transport.value() == b""
    conn.server.resumeProducing()
    conn.client.receive_data(conn.transport.value())
    body = _of(conn.client.events(), ngh2.DataReceived)
    assert b"".join(d.data for d in body) == b"b" * 1000 and body[-1].end_stream


def test_a_lost_connection_leaves_no_timer() -> None:
    conn = connect(window=1 << 24)
    conn.pump()
    conn.get("/body?n=1048576")
    conn.server.dataReceived(conn.client.data_to_send())
    assert _pass_pending(conn)
    conn.server.connectionLost()
    assert not _pass_pending(conn)
    conn.clock.advance(0)  # nothing runs, nothing raises


def test_a_bad_preface_gets_a_goaway_of_our_own() -> None:
    """ngh2 writes nothing once it failed a connection: the GOAWAY is ours."""
    conn = connect()
    conn.transport.clear()
    conn.server.dataReceived(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64)
    frames = [f for f in parse_frames(conn.transport.value()) if isinstance(f, GoAwayFrame)]
    assert frames and frames[-1].error_code == 0x1
    assert conn.transport.disconnecting


def test_goaway_frame_is_well_formed() -> None:
    (frame,) = parse_frames(goaway_frame(7, 0xB, b"why"))
    assert isinstance(frame, GoAwayFrame)
    assert (frame.last_stream_id, frame.error_code, frame.additional_data) == (7, 0xB, b"why")


def test_go_away_lets_open_streams_finish_then_closes(conn: Conn) -> None:
    """The drain: GOAWAY NO_ERROR naming the last stream; the held request still ends
    with its body; then the connection closes."""
    conn.pump()
    held = conn.get("/held")
    conn.pump()
    conn.server.go_away()
    events = conn.pump()
    (goaway,) = _of(events, ngh2.GoAwayReceived)
    assert (goaway.last_stream_id, goaway.error_code) == (held, 0)
    assert not conn.transport.disconnecting
    (request,) = conn.resource.held
    request.write(b"last")
    request.finish()
    events = conn.pump()
    body = _of(events, ngh2.DataReceived)
    assert b"".join(d.data for d in body) == b"last" and body[-1].end_stream
    assert conn.transport.disconnecting


def test_the_probe_names_a_library_that_drops_a_long_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a stock libnghttp2 does with a field over 64 KiB (the request never arrives) is
    what the probe reports; here a server configured to drop it stands in for one."""
    real = h2engine_ngh2.configuration
    monkeypatch.setattr(h2engine_ngh2, "configuration", lambda size: real(64 * 1024))
    why = unfit(1 << 20)
    assert why is not None and "262144-byte header field" in why


def test_ready_streams_take_turns() -> None:
    """A 10 MiB body does not hold a small one queued behind it: on the wire, the small
    body's end comes within the first two passes' worth of the large body (the first
    pass spent its budget on the large body, rendered first)."""
    conn = connect(window=1 << 24)
    conn.pump()
    conn.get("/body?n=10485760")
    small = conn.get("/body?n=10")
    conn.server.dataReceived(conn.client.data_to_send())
    conn.clock.advance(0)
    big_before_small = 0
    for frame in parse_frames(conn.transport.value()):
        if isinstance(frame, DataFrame):
            if frame.stream_id == small:
                assert "END_STREAM" in frame.flags
                break
            big_before_small += len(frame.data)
    else:
        raise AssertionError("the small body never ended")
    assert big_before_small <= 2 * BYTES_PER_PASS


def test_on_the_gateways_reactor_a_pass_is_framed_once_at_its_end() -> None:
    """With ``at_pass_end`` (``fence.reactor``), nothing is framed while the pass runs;
    at its end a response leaves as one HEADERS and one DATA frame carrying END_STREAM,
    and a held response's last write and its end as one DATA frame."""
    clock = PassEndClock()
    conn = connect(clock=clock)
    conn.server.dataReceived(conn.client.data_to_send())
    clock.end_pass()
    conn.client.receive_data(conn.transport.value())
    conn.transport.clear()
    conn.server.dataReceived(conn.client.data_to_send())  # the SETTINGS ack
    clock.end_pass()
    conn.transport.clear()
    stream_id = conn.get("/body?n=616")
    conn.server.dataReceived(conn.client.data_to_send())
    assert conn.transport.value() == b""
    clock.end_pass()
    frames = [f for f in parse_frames(conn.transport.value()) if f.stream_id == stream_id]
    conn.transport.clear()
    assert [type(f).__name__ for f in frames] == ["HeadersFrame", "DataFrame"]
    assert "END_STREAM" in frames[1].flags and len(frames[1].data) == 616
    held = conn.get("/held")
    conn.server.dataReceived(conn.client.data_to_send())
    (request,) = conn.resource.held
    request.write(b"")  # the head goes out, as a watch's does
    clock.end_pass()
    conn.transport.clear()
    request.write(b"last event")
    request.finish()
    clock.end_pass()
    frames = [f for f in parse_frames(conn.transport.value()) if f.stream_id == held]
    assert [type(f).__name__ for f in frames] == ["DataFrame"]
    assert frames[0].data == b"last event" and "END_STREAM" in frames[0].flags


class _Recorder:
    """What a stream tells its request while building it."""

    def __init__(self, stream: Any, queued: bool = False) -> None:
        from twisted.web.http_headers import Headers

        self.requestHeaders = Headers()
        self.lengths: list[int | None] = []
        self.cookies = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's name
        self.lengths.append(length)

    def parseCookies(self) -> None:  # noqa: N802 - Twisted's name
        self.cookies += 1


class _Continued:
    def __init__(self) -> None:
        self.continued: list[int] = []

    def _send100Continue(self, stream_id: int) -> None:  # noqa: N802 - Twisted's name
        self.continued.append(stream_id)


@pytest.mark.parametrize(
    "headers",
    [
        [(b":method", b"GET"), (b":path", b"/a"), (b":authority", b"gw"), (b":scheme", b"https")],
        [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":path", b"/p"),
            (b":authority", b"gw:9443"),
            (b"content-type", b"application/json"),
            (b"content-length", b"12"),
            (b"accept", b"a"),
            (b"accept", b"b"),
            (b"cookie", b"x=1"),
            (b"x-remote-extra-scopes", b"s"),
            (b"expect", b"100-continue"),
        ],
        [(b":method", b"PUT"), (b":path", b"/"), (b"host", b"h"), (b":authority", b"a")],
        [(b":method", b"HEAD"), (b":path", b"/"), (b"content-length", b"0")],
    ],
    ids=["get", "post-with-body", "host-and-authority", "head"],
)
def test_the_stream_builds_its_request_as_twisteds_does(headers: list[Any]) -> None:
    """``GatewayH2Stream``'s fast header filling gives the request exactly what Twisted's
    ``H2Stream`` gives it: the same headers dict, length, method, path, cookies parse
    and 100-continue."""
    from twisted.web._http2 import H2Stream

    from clustergateway.fence.h2engine_ngh2 import GatewayH2Stream

    built = []
    for kind in (H2Stream, GatewayH2Stream):
        connection = _Continued()
        stream = kind(1, connection, headers, _Recorder, None, None)
        request = stream._request
        built.append(
            (
                dict(request.requestHeaders.getAllRawHeaders()),
                request.lengths,
                request.cookies,
                stream.command,
                stream.path,
                connection.continued,
            )
        )
    assert built[0] == built[1]


def test_a_name_twisted_refuses_resets_only_its_stream(
    conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libnghttp2 and Twisted's ``Headers`` both take RFC tokens as names; should a name
    pass the first and not the second, that stream is reset (PROTOCOL_ERROR) and the
    connection serves on (here Twisted's check is made stricter to show it)."""
    from twisted.web.http_headers import InvalidHeaderName

    real = h2engine_ngh2.HEADER_NAME_ENCODER

    class Stricter:
        def encode(self, name: bytes) -> bytes:
            if name == b"x-odd":
                raise InvalidHeaderName(name)
            return bytes(real.encode(name))

    monkeypatch.setattr(h2engine_ngh2, "HEADER_NAME_ENCODER", Stricter())
    conn.pump()
    odd = conn.client.send_request(
        [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"gw"),
            (b":path", b"/body?n=1"),
            (b"x-odd", b"1"),
        ],
        end_stream=True,
    )
    (reset,) = _of(conn.pump(), ngh2.StreamReset)
    assert (reset.stream_id, reset.error_code) == (odd, 0x1)
    conn.get("/body?n=2")
    assert _of(conn.pump(), ngh2.ResponseReceived)
    assert not conn.transport.disconnecting


def test_a_request_body_larger_than_the_window_arrives_whole(conn: Conn) -> None:
    """2 MiB uploaded against libnghttp2's 64 KiB initial window: the stream acknowledges
    what the request consumed (``openStreamWindow``), so the client keeps sending."""
    conn.pump()
    stream_id = conn.client.send_request(
        [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"gw"), (b":path", b"/up")]
    )
    conn.client.send_data(stream_id, b"z" * (2 << 20), end_stream=True)
    body = b""
    for _ in range(500):
        data = _of(conn.pump(), ngh2.DataReceived)
        body += b"".join(d.data for d in data)
        if any(d.end_stream for d in data):
            break
    assert body == b"%d" % (2 << 20)


def test_the_idle_timer_runs_on_the_connections_own_reactor() -> None:
    """Built without the ALPN switch (which sets its own ``callLater``), the idle
    timeout still arms on the reactor the connection was given and closes it."""
    clock = MemoryReactorClock()
    server = Ngh2Connection(clock, HEAD_LIMIT)
    server.timeOut = 60
    transport = H2Transport()
    server.makeConnection(transport)
    clock.advance(59)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting
