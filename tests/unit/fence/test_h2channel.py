"""HTTP/2 serving (``fence.h2channel``): responses leave in the pass they are ready.

Driven by the ``h2`` library as the client, over an in-memory transport that
says ALPN chose ``h2``, on a clock that only moves when told: whatever a test
sees without advancing it was written in the same reactor pass.

The ``conn`` fixture runs each test on both listener engines, libnghttp2's
(``fence.h2engine_ngh2``, the default) and the pure-Python one; ``py_conn``
is for what only the pure-Python engine's own sending loop has (its frame
budget, its scheduler).
"""

from __future__ import annotations

from typing import Any

import attrs
import priority
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, Frame, HeadersFrame
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from clustergateway.fence.h2channel import FRAMES_PER_PASS, GatewayH2Connection, RoundRobin
from clustergateway.fence.h2engine_ngh2 import Ngh2Connection
from clustergateway.server.site import GatewaySite


class H2Transport(StringTransport):
    negotiatedProtocol = b"h2"  # noqa: N815 - Twisted's name


class Body(Resource):
    """``/body?n=N``: N bytes at once; ``/chunks?n=N``: N writes of 10 bytes,
    then finish; ``/held``: the request is kept for the test to write to."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Any] = []

    def render_GET(self, request: Any) -> Any:  # noqa: N802 - Twisted's name
        n = int(request.args[b"n"][0]) if b"n" in request.args else 0
        if request.path == b"/body":
            return b"b" * n
        if request.path == b"/chunks":
            for i in range(n):
                request.write(b"%09d\n" % i)
            request.finish()
            return NOT_DONE_YET
        self.held.append(request)
        return NOT_DONE_YET


@attrs.define
class Conn:
    clock: MemoryReactorClock
    resource: Body
    protocol: Any
    transport: H2Transport
    client: H2Connection
    engine: str

    @property
    def server(self) -> Any:
        channel = self.protocol._channel
        assert isinstance(channel, ENGINES[self.engine])
        return channel

    def send(self) -> None:
        self.protocol.dataReceived(self.client.data_to_send())

    def get(self, path: str, stream_id: int = 1) -> None:
        self.client.send_headers(stream_id, _get(path), end_stream=True)
        self.send()

    def frames(self) -> list[Frame]:
        """The frames written since the last call (and fed to the client)."""
        data = self.transport.value()
        self.transport.clear()
        self.client.receive_data(data)
        return parse_frames(data)

    def sender_pending(self) -> bool:
        """A pass of the sending loop is scheduled on the clock."""
        return any(
            getattr(call.func, "__name__", "") in ("_sendPrioritisedData", "_send_pass")
            for call in self.clock.getDelayedCalls()
        )


def parse_frames(data: bytes) -> list[Frame]:
    """The HTTP/2 frames in ``data``, in order."""
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def _get(path: str) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":scheme", "https"), (":authority", "gw"), (":path", path)]


def _data(frames: list[Frame], stream_id: int = 1) -> list[DataFrame]:
    return [f for f in frames if isinstance(f, DataFrame) and f.stream_id == stream_id]


#: The listener's HTTP/2 engines, by ``GatewaySite.h2_engine``.
ENGINES: dict[str, type] = {"native": Ngh2Connection, "python": GatewayH2Connection}


@pytest.fixture(params=sorted(ENGINES))
def conn(request: pytest.FixtureRequest) -> Conn:
    return connect(request.param)


@pytest.fixture
def py_conn() -> Conn:
    """On the pure-Python engine (``fence.h2channel``) only."""
    return connect("python")


def connect(engine: str) -> Conn:
    clock = MemoryReactorClock()
    resource = Body()
    site = GatewaySite(resource, reactor=clock)
    site.h2_engine = engine
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4321))
    transport = H2Transport()
    protocol.makeConnection(transport)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    c = Conn(clock, resource, protocol, transport, client, engine)
    c.send()
    clock.advance(0)  # Twisted's first pass of the loop, at connection start
    c.frames()  # settings
    c.send()  # settings acknowledged
    return c


def test_a_response_leaves_in_the_pass_it_was_rendered(conn: Conn) -> None:
    """HEADERS, the body and END_STREAM are all written before the clock
    moves, with no timer left behind (Twisted sent the body and the end of
    the stream from two later passes, each its own TLS record and send)."""
    conn.get("/body?n=600")
    frames = conn.frames()
    assert isinstance(frames[0], HeadersFrame)
    data = _data(frames)
    assert b"".join(f.data for f in data) == b"b" * 600
    assert "END_STREAM" in data[-1].flags
    assert not conn.sender_pending()
    assert not conn.server.streams  # the stream's state is gone


def test_a_last_chunk_queued_with_the_end_carries_end_stream(conn: Conn) -> None:
    """When the end of the response is queued behind its last chunk (here:
    both written while the transport pushed back), they leave as one DATA
    frame with END_STREAM, not a data frame and an empty one."""
    conn.server.pauseProducing()
    conn.get("/body?n=600")
    conn.server.resumeProducing()
    (data,) = _data(conn.frames())
    assert data.data == b"b" * 600
    assert "END_STREAM" in data.flags


def test_responses_on_many_streams_all_complete(conn: Conn) -> None:
    """Several streams at once each get their whole body and their end."""
    for stream_id in (1, 3, 5, 7):
        conn.client.send_headers(stream_id, _get("/chunks?n=5"), end_stream=True)
    conn.send()
    frames = conn.frames()
    for stream_id in (1, 3, 5, 7):
        data = _data(frames, stream_id)
        assert b"".join(f.data for f in data) == b"".join(b"%09d\n" % i for i in range(5))
        assert "END_STREAM" in data[-1].flags
    assert not conn.sender_pending()


def test_a_closed_flow_control_window_parks_the_stream_until_window_update(
    conn: Conn,
) -> None:
    """The peer's window bounds what is sent; the loop then sleeps (no timer
    spinning on a stream that cannot send) and the WINDOW_UPDATE wakes it."""
    conn.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 100})
    conn.send()
    conn.frames()
    conn.get("/body?n=250")
    first = _data(conn.frames())
    assert sum(len(f.data) for f in first) == 100
    assert not any("END_STREAM" in f.flags for f in first)
    assert not conn.sender_pending()
    conn.client.increment_flow_control_window(1000, stream_id=1)
    conn.send()
    rest = _data(conn.frames())
    assert sum(len(f.data) for f in rest) == 150
    assert "END_STREAM" in rest[-1].flags


def test_a_paused_transport_holds_the_frames_and_a_budget_bounds_each_pass(
    py_conn: Conn,
) -> None:
    """While the transport pushes back nothing is written; on resume at most
    FRAMES_PER_PASS frames go out in that pass and the rest in the next."""
    py_conn.server.pauseProducing()
    chunks = FRAMES_PER_PASS + 36
    py_conn.get(f"/chunks?n={chunks}")
    assert _data(py_conn.frames()) == []
    py_conn.server.resumeProducing()
    first = _data(py_conn.frames())
    assert len(first) == FRAMES_PER_PASS
    assert py_conn.sender_pending()
    py_conn.clock.advance(0)
    rest = _data(py_conn.frames())
    assert len(first) + len(rest) == chunks
    assert "END_STREAM" in rest[-1].flags
    body = b"".join(f.data for f in first + rest)
    assert body == b"".join(b"%09d\n" % i for i in range(chunks))


def test_a_streamed_response_goes_out_as_it_is_written(conn: Conn) -> None:
    """A held response (a watch) sends each write at once, and its end when
    it finishes; the client sees the whole of it."""
    conn.get("/held")
    assert [type(f) for f in conn.frames()] == []  # nothing written yet
    request = conn.resource.held[0]
    request.write(b"event 1\n")
    first = conn.frames()
    assert b"".join(f.data for f in _data(first)) == b"event 1\n"
    request.write(b"event 2\n")
    request.finish()
    second = _data(conn.frames())
    assert b"".join(f.data for f in second) == b"event 2\n"
    assert "END_STREAM" in second[-1].flags


def test_the_client_sees_a_well_formed_response(conn: Conn) -> None:
    """Seen through h2's own client state machine: status, body, end."""
    conn.get("/body?n=10")
    data = conn.transport.value()
    conn.transport.clear()
    events = conn.client.receive_data(data)
    kinds = [type(e) for e in events]
    assert ResponseReceived in kinds
    assert StreamEnded in kinds
    body = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert body == b"b" * 10
    status = next(e for e in events if isinstance(e, ResponseReceived)).headers
    assert (b":status", b"200") in status


def test_a_lost_connection_leaves_no_timer(py_conn: Conn) -> None:
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    py_conn.server.pauseProducing()
    py_conn.get(f"/chunks?n={FRAMES_PER_PASS * 2}")
    py_conn.server.resumeProducing()
    assert py_conn.sender_pending()
    py_conn.protocol.connectionLost(Failure(ConnectionLost()))
    assert not py_conn.sender_pending()


def test_the_local_address_is_asked_of_the_transport_once(conn: Conn) -> None:
    """Twisted's requests ask for it per stream (a getsockname each time)."""
    asked: list[int] = []
    real = conn.transport.getHost

    def get_host() -> Any:
        asked.append(1)
        return real()

    conn.transport.getHost = get_host  # type: ignore[method-assign]
    conn.server._host = None
    for stream_id in (1, 3, 5):
        conn.get("/body?n=1", stream_id)
        assert conn.server.getHost() == real()
    assert len(asked) == 1


def test_the_settings_match_the_go_apiserver_and_the_http1_limits(conn: Conn) -> None:
    """250 concurrent streams per connection (Go's HTTP/2 server default, which
    the Go gateway advertises; h2's default is 100), and a header list as
    large as HTTP/1.1 accepts (1 MiB; h2's default, 64 KiB, is below the
    20 KiB-plus label selectors kubectl users send)."""
    remote = conn.client.remote_settings
    assert remote.max_concurrent_streams == 250
    assert remote.max_header_list_size == conn.protocol._site.max_header_bytes + 64 * 1024


def test_a_long_path_is_answered_and_the_connection_lives(conn: Conn) -> None:
    """A 200 KiB ``:path`` (a long label selector) is served like any request;
    other streams on the connection go on."""
    selector = ",".join(f"k{i}!=v" for i in range(30_000))
    assert len(selector) > 200_000
    encode = conn.client.encoder.encode  # hpack's pure-Python Huffman coder is slow
    conn.client.encoder.encode = lambda headers, huffman=True: encode(headers, huffman=False)  # type: ignore[method-assign]
    conn.get(f"/body?n=3&labelSelector={selector}")
    conn.get("/body?n=2", 3)
    events = conn.client.receive_data(conn.transport.value())
    conn.transport.clear()
    ended = sorted(e.stream_id for e in events if isinstance(e, StreamEnded))
    assert ended == [1, 3]


def test_round_robin_gives_ready_streams_turns_and_skips_blocked_ones() -> None:
    """The scheduler's contract with Twisted's connection: ``next`` answers ready
    streams in turn, never a blocked or removed one, and raises ``DeadlockError``
    when none is ready; priority signals are accepted and ignored."""
    turns = RoundRobin()
    with pytest.raises(priority.DeadlockError):
        next(turns)
    for stream_id in (1, 3, 5):
        turns.insert_stream(stream_id)
        turns.block(stream_id)
    with pytest.raises(priority.DuplicateStreamError):
        turns.insert_stream(1)
    turns.reprioritize(3, depends_on=1, weight=200, exclusive=True)
    with pytest.raises(priority.MissingStreamError):
        turns.reprioritize(7)
    with pytest.raises(priority.DeadlockError):
        next(turns)
    for stream_id in (1, 3, 5):
        turns.unblock(stream_id)
    assert [next(turns) for _ in range(6)] == [1, 3, 5, 1, 3, 5]
    turns.block(3)
    assert [next(turns) for _ in range(4)] == [1, 5, 1, 5]
    turns.unblock(3)
    turns.unblock(3)  # twice: still one turn per round
    assert sorted(next(turns) for _ in range(3)) == [1, 3, 5]
    turns.remove_stream(1)
    turns.block(5)
    assert [next(turns) for _ in range(2)] == [3, 3]
    turns.block(3)
    with pytest.raises(priority.DeadlockError):
        next(turns)


def test_an_event_to_many_held_streams_reaches_each_once(conn: Conn) -> None:
    """240 held responses (watches multiplexed on one connection) each get a chunk:
    every stream's frame is written, none twice, and the loop only needs the passes
    its frame budget asks for."""
    streams = list(range(1, 481, 2))
    for stream_id in streams:
        conn.client.send_headers(stream_id, _get("/held"), end_stream=True)
    conn.send()
    for request in conn.resource.held:
        request.write(b"")  # the head goes out, as for a watch
    conn.clock.advance(0)
    conn.frames()
    for request in conn.resource.held:
        request.write(b'{"type":"ADDED"}\n')
    for _ in range(len(streams) // FRAMES_PER_PASS + 1):
        conn.clock.advance(0)
    frames = [f for f in conn.frames() if isinstance(f, DataFrame)]
    assert sorted(f.stream_id for f in frames) == streams
    assert all(f.data == b'{"type":"ADDED"}\n' for f in frames)
    assert not conn.sender_pending()
