"""SPDY/3.1 framing, header compression, flow control and the server session."""

from __future__ import annotations

import struct
import zlib

import pytest

from clustergateway.testing.spdy import (
    DICTIONARY,
    DataFrame,
    FrameDecoder,
    FrameEncoder,
    GoAwayFrame,
    GoAwayStatus,
    HeadersFrame,
    PingFrame,
    RstStatus,
    RstStreamFrame,
    SettingsFrame,
    SpdySession,
    SpdySessionError,
    SpdyStream,
    SpdyStreamError,
    SynReplyFrame,
    SynStreamFrame,
    UnknownControlFrame,
    WindowUpdateFrame,
    decode_header_block,
    encode_header_block,
)


def decode_all(data: bytes, decoder: FrameDecoder | None = None) -> list[object]:
    decoder = decoder or FrameDecoder()
    decoder.feed(data)
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


ALL_FRAMES = [
    SynStreamFrame(1, {"streamtype": ["error"]}, associated_stream_id=0, priority=3, fin=False),
    SynStreamFrame(3, {"streamtype": ["stdin"], "x": ["a", "b"]}, fin=True, unidirectional=True),
    SynReplyFrame(1, {}),
    SynReplyFrame(3, {"status": ["200"]}, fin=True),
    HeadersFrame(5, {"k": ["v"]}, fin=True),
    RstStreamFrame(7, RstStatus.CANCEL),
    SettingsFrame(((0, 7, 1000), (1, 4, 100)), clear=True),
    PingFrame(1),
    GoAwayFrame(9, GoAwayStatus.OK),
    WindowUpdateFrame(0, 5000),
    WindowUpdateFrame(3, 1),
    DataFrame(1, b"hello"),
    DataFrame(3, b"", fin=True),
    UnknownControlFrame(42, 0, b"xyz"),
]


def test_dictionary_is_the_spdy3_one():
    """The dictionary has the draft's size and the Adler-32 every peer puts in its DICTID."""
    assert len(DICTIONARY) == 1423
    assert zlib.adler32(DICTIONARY) == 0xE3C6A7C2
    assert DICTIONARY.startswith(b"\x00\x00\x00\x07options")
    assert DICTIONARY.endswith(b",*,enq=0.")


def test_every_frame_round_trips():
    """Each frame type encodes and decodes to an equal value, sharing one zlib context."""
    encoder = FrameEncoder()
    wire = b"".join(encoder.encode(frame) for frame in ALL_FRAMES)
    assert decode_all(wire) == ALL_FRAMES


def test_byte_by_byte_feeding_gives_the_same_frames():
    """Frames split at every byte boundary still decode (TCP gives no framing)."""
    encoder = FrameEncoder()
    wire = b"".join(encoder.encode(frame) for frame in ALL_FRAMES)
    decoder = FrameDecoder()
    frames = []
    for i in range(len(wire)):
        decoder.feed(wire[i : i + 1])
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)
    assert frames == ALL_FRAMES
    assert decoder.buffered == 0


def test_header_block_uses_the_dictionary_in_a_zlib_stream():
    """The first header block opens a zlib stream with FDICT set to the dictionary's id."""
    wire = FrameEncoder().encode(SynReplyFrame(1, {"a": ["b"]}))
    compressed = wire[12:]
    cmf, flg = compressed[0], compressed[1]
    assert cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0
    assert flg & 0x20, "FDICT must be set"
    assert struct.unpack(">I", compressed[2:6])[0] == zlib.adler32(DICTIONARY)
    inflate = zlib.decompressobj(zdict=DICTIONARY)
    assert inflate.decompress(compressed) == encode_header_block({"a": ["b"]})


def test_compression_context_spans_the_connection():
    """A later header block depends on the earlier ones: a fresh decoder cannot read it."""
    encoder = FrameEncoder()
    first = encoder.encode(SynStreamFrame(1, {"streamtype": ["stdout"]}))
    second = encoder.encode(SynStreamFrame(3, {"streamtype": ["stdout"]}))
    assert len(second) < len(first)
    with pytest.raises(SpdySessionError):
        decode_all(second)
    decoder = FrameDecoder()
    assert decode_all(first + second, decoder)[1] == SynStreamFrame(3, {"streamtype": ["stdout"]})


@pytest.mark.parametrize(
    ("headers", "block"),
    [
        ({}, b"\x00\x00\x00\x00"),
        ({"A": "x"}, b"\x00\x00\x00\x01\x00\x00\x00\x01a\x00\x00\x00\x01x"),
        ({"k": ["1", "2"]}, b"\x00\x00\x00\x01\x00\x00\x00\x01k\x00\x00\x00\x031\x002"),
    ],
)
def test_header_block_layout(headers, block):
    """Names are lower-cased, lengths are 32-bit, several values are NUL-joined."""
    assert encode_header_block(headers) == block


@pytest.mark.parametrize(
    "block",
    [
        b"\x00\x00",
        b"\x00\x00\x00\x01\x00\x00\x00\x05ab",
        b"\x00\x00\x00\x01\x00\x00\x00\x01A\x00\x00\x00\x00",
        b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x00\x00",
        b"\x00\x00\x00\x00junk",
    ],
    ids=["short", "truncated", "uppercase", "empty-name", "duplicate", "trailing"],
)
def test_bad_header_blocks_are_stream_errors(block):
    """Broken header content is a PROTOCOL_ERROR for that stream only."""
    with pytest.raises(SpdyStreamError) as info:
        decode_header_block(block, 5)
    assert info.value.stream_id == 5
    assert info.value.status == RstStatus.PROTOCOL_ERROR


def _control(frame_type: int, payload: bytes, version: int = 3, flags: int = 0) -> bytes:
    return struct.pack(">HHI", 0x8000 | version, frame_type, (flags << 24) | len(payload)) + payload


@pytest.mark.parametrize(
    "wire",
    [
        _control(1, b"\x00" * 12, version=2),
        _control(3, b"\x00\x00\x00\x01"),
        _control(3, b"\x00\x00\x00\x01\x00\x00\x00\x00"),
        _control(6, b"\x00\x00"),
        _control(1, b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00garbage-not-zlib"),
        _control(1, b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
        _control(4, b"\x00\x00\x00\x02\x00\x00\x00\x07"),
        _control(9, b"\x00\x00\x00\x00\x00\x00\x00\x00"),
        struct.pack(">II", 0, 3) + b"abc",
    ],
    ids=[
        "version",
        "rst-short",
        "rst-status-0",
        "ping-short",
        "bad-zlib",
        "syn-stream-0",
        "settings-count",
        "window-0-session",
        "data-stream-0",
    ],
)
def test_malformed_frames_are_session_errors(wire):
    """Frames that break the connection raise SpdySessionError, and the decoder stays failed."""
    decoder = FrameDecoder()
    decoder.feed(wire)
    with pytest.raises(SpdySessionError):
        decoder.next_frame()
    with pytest.raises(SpdySessionError):
        decoder.next_frame()


def test_header_bomb_is_refused():
    """A header block that inflates past the cap is refused instead of filling memory."""
    encoder = FrameEncoder()
    wire = encoder.encode(SynStreamFrame(1, {"big": "x" * 300_000}))
    with pytest.raises(SpdySessionError, match="too large"):
        decode_all(wire)


def test_stream_error_leaves_the_decoder_usable():
    """After a stream-level error the next frame still decodes (the zlib context stayed in step)."""
    encoder = FrameEncoder()
    bad = encoder.encode(SynStreamFrame(1, {}))
    # Re-encode the same frame with an upper-case name by hand-building the block.
    deflate = zlib.compressobj(zdict=DICTIONARY)
    block = b"\x00\x00\x00\x01\x00\x00\x00\x01K\x00\x00\x00\x01v"
    compressed = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    bad = _control(8, b"\x00\x00\x00\x01" + compressed)
    good = deflate.compress(encode_header_block({"k": "v"})) + deflate.flush(zlib.Z_SYNC_FLUSH)
    decoder = FrameDecoder()
    decoder.feed(bad + _control(8, b"\x00\x00\x00\x03" + good))
    with pytest.raises(SpdyStreamError):
        decoder.next_frame()
    assert decoder.next_frame() == HeadersFrame(3, {"k": ["v"]})


# -- session ----------------------------------------------------------------


class Peer:
    """The client side of a session under test: encodes what it sends, decodes what it gets."""

    def __init__(self, enforce: bool | None = None, handler=None):
        self.encoder = FrameEncoder()
        self.decoder = FrameDecoder()
        self.streams: list[SpdyStream] = []
        self.data: dict[int, list[bytes]] = {}
        self.closed = False
        self.handler = handler or self.accept
        self.session = SpdySession(
            write=self.decoder.feed,
            close_transport=self.close,
            on_stream=self.handler,
            enforce_send_window=enforce,
        )

    def close(self) -> None:
        self.closed = True

    def accept(self, stream: SpdyStream) -> None:
        self.data[stream.stream_id] = []
        stream.on_data = self.data[stream.stream_id].append
        stream.reply()
        self.streams.append(stream)

    def send(self, *frames) -> None:
        self.session.data_received(b"".join(self.encoder.encode(f) for f in frames))

    def received(self) -> list[object]:
        frames = []
        while (frame := self.decoder.next_frame()) is not None:
            frames.append(frame)
        return frames


def test_session_accepts_streams_and_routes_data():
    """A SYN_STREAM reaches the handler with its headers; replies and data flow both ways."""
    peer = Peer()
    peer.send(
        SynStreamFrame(1, {"streamtype": ["error"]}),
        SynStreamFrame(3, {"streamtype": ["stdin"]}),
        DataFrame(3, b"abc"),
        DataFrame(3, b"", fin=True),
    )
    error, stdin = peer.streams
    assert error.header("streamtype") == "error"
    assert peer.data[3] == [b"abc"] and stdin.remote_closed
    error.write(b"{}")
    error.close()
    assert peer.received() == [
        SynReplyFrame(1, {}),
        SynReplyFrame(3, {}),
        DataFrame(1, b"{}"),
        DataFrame(1, b"", fin=True),
    ]
    assert error.local_closed and not stdin.local_closed


def test_fin_after_data_rides_on_the_last_data_frame():
    """Closing with data still queued sends FIN with the last chunk; both-sides-closed forgets."""
    peer = Peer(enforce=True)
    peer.send(SettingsFrame(((0, 7, 4),)), SynStreamFrame(1, {}, fin=True))
    (stream,) = peer.streams
    stream.write(b"abcdef")
    stream.close()
    assert peer.received()[-1] == DataFrame(1, b"abcd")
    peer.send(WindowUpdateFrame(1, 10))
    assert peer.received() == [DataFrame(1, b"ef", fin=True)]
    assert 1 not in peer.session.streams


def test_pings_from_the_client_are_echoed():
    """Odd (client) ping ids come back; even ids are replies to our own pings."""
    peer = Peer()
    peer.send(PingFrame(1), PingFrame(2))
    assert peer.received() == [PingFrame(1)]
    assert peer.session.ping() == 2
    assert peer.received() == [PingFrame(2)]


def test_garbage_ends_the_session_with_goaway():
    """Unparseable input: GOAWAY PROTOCOL_ERROR, transport closed, no exception escapes."""
    peer = Peer()
    peer.send(SynStreamFrame(1, {}))
    peer.session.data_received(b"\xff" * 64)
    frames = peer.received()
    assert frames[-1] == GoAwayFrame(1, GoAwayStatus.PROTOCOL_ERROR)
    assert peer.closed
    assert peer.streams[0].was_reset
    peer.session.data_received(b"more")  # ignored, no exception


def test_failing_handler_is_contained():
    """A stream handler that raises ends the session with INTERNAL_ERROR, never the reactor."""

    def explode(stream):
        raise RuntimeError("boom")

    peer = Peer(handler=explode)
    peer.send(SynStreamFrame(1, {}))
    assert peer.received() == [GoAwayFrame(1, GoAwayStatus.INTERNAL_ERROR)]
    assert peer.closed


def test_stream_ids_must_increase():
    """A reused or even client stream id is refused with RST_STREAM PROTOCOL_ERROR."""
    peer = Peer()
    peer.send(SynStreamFrame(3, {}), SynStreamFrame(1, {}), SynStreamFrame(4, {}))
    assert peer.received() == [
        SynReplyFrame(3, {}),
        RstStreamFrame(1, RstStatus.PROTOCOL_ERROR),
        RstStreamFrame(4, RstStatus.PROTOCOL_ERROR),
    ]
    assert not peer.closed


def test_data_for_unknown_stream_is_refused():
    """DATA for a stream never opened gets INVALID_STREAM; for an ended one it is dropped."""
    peer = Peer()
    peer.send(SynStreamFrame(1, {}))
    peer.streams[0].reset()
    peer.received()
    peer.send(DataFrame(1, b"late"), DataFrame(9, b"x"))
    assert peer.received() == [RstStreamFrame(9, RstStatus.INVALID_STREAM)]


def test_stream_level_header_error_resets_only_that_stream():
    """An upper-case header name resets that stream; the session keeps serving."""
    peer = Peer()
    deflate = peer.encoder._deflate
    block = b"\x00\x00\x00\x01\x00\x00\x00\x01K\x00\x00\x00\x01v"
    compressed = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    peer.session.data_received(
        _control(1, b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + compressed)
    )
    peer.send(SynStreamFrame(3, {}))
    assert peer.received() == [
        RstStreamFrame(1, RstStatus.PROTOCOL_ERROR),
        SynReplyFrame(3, {}),
    ]


def test_peer_reset_reaches_the_handler():
    """RST_STREAM from the client calls on_reset and forgets the stream."""
    peer = Peer()
    peer.send(SynStreamFrame(1, {}))
    seen = []
    peer.streams[0].on_reset = seen.append
    peer.send(RstStreamFrame(1, RstStatus.CANCEL))
    assert seen == [RstStatus.CANCEL]
    assert peer.session.streams == {}


def test_spdystream_peers_get_unthrottled_sends():
    """A peer that never takes part in flow control (spdystream) is not held to 64 KiB."""
    peer = Peer()
    peer.send(SynStreamFrame(1, {}))
    peer.streams[0].write(b"x" * 200_000)
    sent = sum(len(f.data) for f in peer.received() if isinstance(f, DataFrame))
    assert sent == 200_000


class Producer:
    def __init__(self):
        self.paused = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False


def test_send_window_is_enforced_once_the_peer_does_flow_control():
    """After INITIAL_WINDOW_SIZE/WINDOW_UPDATE, sends stop at the window and the producer pauses."""
    peer = Peer()
    peer.send(SettingsFrame(((0, 7, 1000),)), SynStreamFrame(1, {}))
    stream = peer.streams[0]
    stream.producer = Producer()
    stream.write(b"y" * 3000)
    sent = [f for f in peer.received() if isinstance(f, DataFrame)]
    assert sum(len(f.data) for f in sent) == 1000
    assert stream.producer.paused
    peer.send(WindowUpdateFrame(1, 5000))
    sent = [f for f in peer.received() if isinstance(f, DataFrame)]
    assert sum(len(f.data) for f in sent) == 2000
    assert not stream.producer.paused


def test_session_window_limits_all_streams():
    """The SPDY/3.1 session window (stream 0) caps the sum over streams."""
    peer = Peer(enforce=True)
    peer.send(SynStreamFrame(1, {}), SynStreamFrame(3, {}))
    peer.session.send_window.size = 100
    for stream in peer.streams:
        stream.write(b"z" * 80)
    sent = [f for f in peer.received() if isinstance(f, DataFrame)]
    assert [(f.stream_id, len(f.data)) for f in sent] == [(1, 80), (3, 20)]
    peer.send(WindowUpdateFrame(0, 1000))
    sent = [f for f in peer.received() if isinstance(f, DataFrame)]
    assert [(f.stream_id, len(f.data)) for f in sent] == [(3, 60)]


def test_window_overflow_resets_the_stream():
    """A WINDOW_UPDATE pushing a stream window past 2^31-1 is a FLOW_CONTROL_ERROR."""
    peer = Peer()
    peer.send(SynStreamFrame(1, {}))
    peer.received()
    peer.send(WindowUpdateFrame(1, 2**31 - 1))
    assert peer.received() == [RstStreamFrame(1, RstStatus.FLOW_CONTROL_ERROR)]


def test_received_data_is_acknowledged_with_window_updates():
    """After half a window arrives, the session and the stream get WINDOW_UPDATEs."""
    peer = Peer()
    peer.send(SynStreamFrame(1, {}))
    peer.received()
    peer.send(DataFrame(1, b"a" * 20_000), DataFrame(1, b"b" * 20_000))
    assert peer.received() == [WindowUpdateFrame(0, 40_000), WindowUpdateFrame(1, 40_000)]


def test_overrunning_our_window_is_tolerated():
    """spdystream ignores windows; more than 64 KiB unacknowledged is accepted, not reset."""
    peer = Peer()
    peer.send(SynStreamFrame(1, {}))
    peer.send(DataFrame(1, b"q" * 200_000))
    assert peer.data[1] == [b"q" * 200_000]
    assert not any(isinstance(f, RstStreamFrame) for f in peer.received())


def test_client_goaway_closes_when_streams_are_done():
    """GOAWAY from the client: the session closes once its last stream has finished."""
    peer = Peer()
    peer.send(SynStreamFrame(1, {}), GoAwayFrame(0))
    assert not peer.closed
    peer.send(SynStreamFrame(3, {}))
    assert peer.received()[-1] == RstStreamFrame(3, RstStatus.REFUSED_STREAM)
    stream = peer.streams[0]
    peer.send(DataFrame(1, b"", fin=True))
    stream.close()
    assert peer.closed
    assert peer.received()[-1] == GoAwayFrame(3, GoAwayStatus.OK)
