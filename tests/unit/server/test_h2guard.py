"""Hostile HTTP/2 peers (``server.h2guard``, on ``h2channel``): refused cheaply, others unharmed.

In memory, on a clock: the ``h2`` library (or raw frames) as the client, an
in-memory transport that says ALPN chose ``h2``.  Each attack from the HTTP/2
CVEs of 2019–2024 ends in a GOAWAY with the right error code and a closed
connection, and a well-behaved client's burst of the same frames does not.
"""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from clustergateway.fence.h2 import BoundedFrameBuffer
from clustergateway.server.h2guard import LIMITS, TokenBucket
from tests.unit.fence.test_h2channel import Conn, _get, conn, connect, py_conn  # noqa: F401 - the fixtures

__all__ = ["conn", "py_conn"]


def goaway(c: Conn) -> GoAwayFrame | None:
    frames = [f for f in c.frames() if isinstance(f, GoAwayFrame)]
    return frames[-1] if frames else None


def assert_closed_with(c: Conn, code: ErrorCodes) -> None:
    frame = goaway(c)
    assert frame is not None, "no GOAWAY"
    assert frame.error_code == code
    assert c.transport.disconnecting


def test_a_frame_declared_larger_than_allowed_is_refused_from_its_header(py_conn: Conn) -> None:
    """A 16 MiB DATA frame is refused when its 9-byte header arrives, not buffered."""
    header = (16 * 1024 * 1024 - 1).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
    py_conn.protocol.dataReceived(header + b"x" * 1000)
    assert_closed_with(py_conn, ErrorCodes.FRAME_SIZE_ERROR)
    assert len(py_conn.server.conn.incoming_buffer._data) < 2000


def test_a_frame_declared_larger_than_allowed_is_refused_on_either_engine(conn: Conn) -> None:
    """The same frame, on both engines: FRAME_SIZE_ERROR as its header arrives (libnghttp2
    checks the declared length before reading the body), and nothing more is read."""
    header = (16 * 1024 * 1024 - 1).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
    conn.protocol.dataReceived(header + b"x" * 1000)
    assert_closed_with(conn, ErrorCodes.FRAME_SIZE_ERROR)
    conn.protocol.dataReceived(b"x" * 100_000)  # the peer goes on: ignored, nothing raised
    assert conn.transport.disconnecting


def test_the_frame_buffer_is_ours() -> None:
    """``h2``'s buffer is swapped for the bounded one (pins the private it reads)."""
    buffer = BoundedFrameBuffer(server=False)
    buffer.max_frame_size = 16384
    buffer.add_data(b"\x00\x40\x01" + b"\x00" * 6)
    with pytest.raises(Exception, match="overlong frame: length 16385"):
        next(buffer)


def test_rapid_reset_is_cut_with_enhance_your_calm(conn: Conn) -> None:
    """Streams opened and reset at once (CVE-2023-44487) beyond the bucket end the
    connection (Twisted's own defence, which the guarded connection keeps)."""
    for i in range(1010):  # Twisted's bucket: 1,000 resets
        sid = 2 * i + 1
        conn.client.send_headers(sid, _get("/held"), end_stream=True)
        conn.client.reset_stream(sid)
    raw = conn.client.data_to_send()
    conn.protocol.dataReceived(raw)
    assert_closed_with(conn, ErrorCodes.ENHANCE_YOUR_CALM)


def test_rapid_reset_starts_no_request_on_the_native_engine() -> None:
    """libnghttp2's listener counts the resets before acting on any event: the flood
    that ends the connection never reaches the site."""
    conn = connect("native")
    for i in range(1010):
        sid = 2 * i + 1
        conn.client.send_headers(sid, _get("/held"), end_stream=True)
        conn.client.reset_stream(sid)
    conn.protocol.dataReceived(conn.client.data_to_send())
    assert_closed_with(conn, ErrorCodes.ENHANCE_YOUR_CALM)
    assert conn.resource.held == []
    assert conn.server.flooded == "RST_STREAM frames"


def test_a_burst_of_resets_like_an_aggregator_cancelling_watches_is_fine(conn: Conn) -> None:
    """200 watches cancelled at once stay within the limits: the connection serves on."""
    for i in range(200):
        conn.client.send_headers(2 * i + 1, _get("/held"), end_stream=True)
    conn.send()
    for i in range(200):
        conn.client.reset_stream(2 * i + 1)
    conn.send()
    conn.get("/body?n=3", stream_id=401)
    assert not conn.transport.disconnecting
    assert [f for f in conn.frames() if isinstance(f, DataFrame) and f.stream_id == 401]


@pytest.mark.parametrize(
    "frame",
    [
        PingFrame(0, opaque_data=b"12345678"),
        SettingsFrame(0),
        WindowUpdateFrame(0, window_increment=1),
        DataFrame(1),  # empty, no END_STREAM
    ],
    ids=["ping", "settings", "window-update", "empty-data"],
)
def test_control_frame_floods_are_cut(conn: Conn, frame: object) -> None:
    """PING/SETTINGS/WINDOW_UPDATE/empty-DATA floods (CVE-2019-9512, -9515, -9518)."""
    if isinstance(frame, DataFrame):
        conn.client.send_headers(1, _get("/held"), end_stream=False)
        conn.send()
    burst = frame.serialize() * (int(max(cap for cap, _ in LIMITS.values())) + 10)  # type: ignore[attr-defined]
    conn.protocol.dataReceived(burst)
    assert_closed_with(conn, ErrorCodes.ENHANCE_YOUR_CALM)


def test_pings_at_a_clients_pace_are_answered(conn: Conn) -> None:
    """A ping every second for a long time never meets the limit."""
    for _ in range(2000):
        conn.client.ping(b"12345678")
        conn.send()
        conn.clock.advance(1)
    assert not conn.transport.disconnecting


def test_continuation_flood_is_cut(conn: Conn) -> None:
    """A header block that never ends (CONTINUATION flood, 2024) is refused after 64 frames."""
    block = conn.client.encoder.encode(_get("/x"))
    raw = HeadersFrame(1, data=block[:1]).serialize()
    for _ in range(100):
        raw += ContinuationFrame(1, data=b"\x00").serialize()
    conn.protocol.dataReceived(raw)
    assert_closed_with(conn, ErrorCodes.PROTOCOL_ERROR)


def test_a_connection_with_no_stream_is_closed_after_the_idle_timeout(conn: Conn) -> None:
    """A peer that sends its preface and then nothing is closed with GOAWAY at 60 s."""
    conn.clock.advance(59)
    assert not conn.transport.disconnecting
    conn.clock.advance(2)
    assert_closed_with(conn, ErrorCodes.NO_ERROR)


def test_a_quiet_watch_keeps_its_connection(conn: Conn) -> None:
    """An open stream (a watch with no event for minutes) is never timed out; once it
    ends, the idle timeout applies again."""
    conn.get("/held")
    conn.clock.advance(600)
    assert not conn.transport.disconnecting
    request = conn.resource.held.pop()
    request.write(b"event\n")
    request.finish()
    conn.clock.advance(0)
    conn.frames()
    conn.clock.advance(61)
    assert conn.transport.disconnecting


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(2, 1)
    assert bucket.take(0) and bucket.take(0)
    assert not bucket.take(0)
    assert bucket.take(2.5)
    events = [ConnectionTerminated()]
    assert events  # events of other kinds are not counted


def test_an_invalid_header_name_resets_its_stream_only(conn: Conn) -> None:
    """A header name Twisted cannot hold (h2 lets ``/`` and ``#`` through) is a stream
    error, PROTOCOL_ERROR, not an exception out of the connection: the next stream on it
    is served."""
    from hyperframe.frame import RstStreamFrame

    conn.client.config.validate_outbound_headers = False
    conn.client.send_headers(1, [*_get("/body?n=1"), ("autho/izat#ion", "x")], end_stream=True)
    conn.send()
    frames = conn.frames()
    assert [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)] == [
        (1, ErrorCodes.PROTOCOL_ERROR)
    ]
    conn.get("/body?n=3", stream_id=3)
    assert [f for f in conn.frames() if isinstance(f, DataFrame) and f.stream_id == 3]
    assert not conn.transport.disconnecting
