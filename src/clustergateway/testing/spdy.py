"""SPDY/3.1 framing and a server-side session, for exec, attach and port-forward.

kubectl up to 1.29 speaks only SPDY/3.1 for ``pods/exec``, ``pods/attach`` and
``pods/portforward``; newer kubectl falls back to it when a WebSocket upgrade is
refused, and kubectl >= 1.31 tunnels it inside WebSocket messages for
port-forward.  There is no maintained Python SPDY library, so the simulated
cluster carries its own, written from the SPDY/3.1 draft and checked against
what Kubernetes' client (``moby/spdystream``) sends and accepts.

Layers, all free of I/O:

- :class:`FrameDecoder` / :class:`FrameEncoder` turn bytes into frame values and
  back.  Header blocks are zlib-compressed with the SPDY/3 dictionary and one
  compression context per direction per connection, so every header block of a
  connection must pass through the same decoder, in order.
- :class:`FlowWindow` keeps a send or receive window.
- :class:`SpdySession` is the server side of one connection: it answers pings,
  tracks streams and windows, and hands each client-opened stream to a callback
  as a :class:`SpdyStream`.  Bytes leave through the ``write`` callable it is
  given, so the same session runs on a TCP/TLS transport and inside a WebSocket.

Flow control, as deployed: ``spdystream`` neither sends WINDOW_UPDATE nor
respects the peer's window (it drops those frames), so a session that held its
sends to the 64 KiB initial window would stall every kubectl after 64 KiB.  The
session therefore enforces its *send* windows only once the peer shows that it
takes part in flow control (it sent a WINDOW_UPDATE or an INITIAL_WINDOW_SIZE
setting), and it never resets a stream for overrunning our *receive* window.
It still announces consumed bytes with WINDOW_UPDATE, as a 3.1 peer expects.
Backpressure towards spdystream is TCP's: the owner pauses reading.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from enum import IntEnum
from typing import Any

import attrs
from twisted.logger import Logger

__all__ = [
    "DEFAULT_INITIAL_WINDOW",
    "DICTIONARY",
    "DataFrame",
    "FlowWindow",
    "Frame",
    "FrameDecoder",
    "FrameEncoder",
    "GoAwayFrame",
    "GoAwayStatus",
    "HeadersFrame",
    "PingFrame",
    "RstStatus",
    "RstStreamFrame",
    "SettingsFrame",
    "SpdySession",
    "SpdySessionError",
    "SpdyStream",
    "SpdyStreamError",
    "SynReplyFrame",
    "SynStreamFrame",
    "UnknownControlFrame",
    "WindowUpdateFrame",
    "decode_header_block",
    "encode_header_block",
]

VERSION = 3

TYPE_SYN_STREAM = 1
TYPE_SYN_REPLY = 2
TYPE_RST_STREAM = 3
TYPE_SETTINGS = 4
TYPE_PING = 6
TYPE_GOAWAY = 7
TYPE_HEADERS = 8
TYPE_WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR = 0x01

SETTINGS_MAX_CONCURRENT_STREAMS = 4
SETTINGS_INITIAL_WINDOW_SIZE = 7

DEFAULT_INITIAL_WINDOW = 64 * 1024
MAX_WINDOW = 2**31 - 1
MAX_FRAME_PAYLOAD = 2**24 - 1
#: Largest decompressed header block accepted (a zlib bomb stops here).
MAX_HEADER_BLOCK = 256 * 1024
#: DATA frames we send carry at most this many bytes, so streams interleave.
DATA_CHUNK = 32 * 1024

_U32 = struct.Struct(">I")
_TWO_U32 = struct.Struct(">II")


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1).

    The draft defines it as length-prefixed header names and values followed by
    one run of common value fragments; building it the same way keeps it
    readable.  Its Adler-32 (the DICTID in every peer's zlib header) is checked
    by the unit tests.
    """
    words = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control "
        "connection content-base content-encoding content-language content-length "
        "content-location content-md5 content-range content-type date etag expect "
        "expires from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma "
        "proxy-authenticate proxy-authorization range referer retry-after server te "
        "trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status"
    ).split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive"]
    words += ["origin"]
    prefixed = b"".join(_U32.pack(len(w)) + w.encode() for w in words)
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct"
        " Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,"
        "image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
        "charset=iso-8859-1,utf-,*,enq=0."
    )
    return prefixed + tail.encode()


DICTIONARY = _dictionary()


class RstStatus(IntEnum):
    """RST_STREAM status codes."""

    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


class GoAwayStatus(IntEnum):
    """GOAWAY status codes."""

    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class SpdySessionError(Exception):
    """The connection cannot go on: answer with GOAWAY ``status`` and close."""

    def __init__(self, message: str, status: GoAwayStatus = GoAwayStatus.PROTOCOL_ERROR):
        super().__init__(message)
        self.status = status


class SpdyStreamError(Exception):
    """One stream is broken (answer RST_STREAM); the connection goes on.

    Raised by the decoder only after the whole frame was consumed, so decoding
    can continue with the next frame.
    """

    def __init__(self, stream_id: int, status: RstStatus, message: str):
        super().__init__(message)
        self.stream_id = stream_id
        self.status = status


Headers = dict[str, list[str]]


# -- frames -----------------------------------------------------------------


@attrs.frozen
class DataFrame:
    stream_id: int
    data: bytes
    fin: bool = False


@attrs.frozen
class SynStreamFrame:
    stream_id: int
    headers: Headers = attrs.field(factory=dict)
    associated_stream_id: int = 0
    priority: int = 0
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False


@attrs.frozen
class SynReplyFrame:
    stream_id: int
    headers: Headers = attrs.field(factory=dict)
    fin: bool = False


@attrs.frozen
class RstStreamFrame:
    stream_id: int
    status: int


@attrs.frozen
class SettingsFrame:
    #: ``(flags, id, value)`` triples.
    entries: tuple[tuple[int, int, int], ...] = ()
    clear: bool = False


@attrs.frozen
class PingFrame:
    ping_id: int


@attrs.frozen
class GoAwayFrame:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@attrs.frozen
class HeadersFrame:
    stream_id: int
    headers: Headers = attrs.field(factory=dict)
    fin: bool = False


@attrs.frozen
class WindowUpdateFrame:
    stream_id: int
    delta: int


@attrs.frozen
class UnknownControlFrame:
    """A control frame of a type SPDY/3.1 does not define; receivers ignore it."""

    frame_type: int
    flags: int
    payload: bytes


Frame = (
    DataFrame
    | SynStreamFrame
    | SynReplyFrame
    | RstStreamFrame
    | SettingsFrame
    | PingFrame
    | GoAwayFrame
    | HeadersFrame
    | WindowUpdateFrame
    | UnknownControlFrame
)


# -- header blocks ----------------------------------------------------------


def encode_header_block(headers: Mapping[str, str | Iterable[str]]) -> bytes:
    """The uncompressed SPDY/3 name/value block for ``headers``.

    Names are lower-cased (peers reject upper-case names); several values of one
    name travel NUL-separated in one entry, as the protocol requires.
    """
    parts = [_U32.pack(len(headers))]
    for name, value in headers.items():
        raw_name = name.lower().encode("utf-8")
        values = [value] if isinstance(value, str) else list(value)
        raw_value = b"\x00".join(v.encode("utf-8") for v in values)
        parts += [_U32.pack(len(raw_name)), raw_name, _U32.pack(len(raw_value)), raw_value]
    return b"".join(parts)


def decode_header_block(block: bytes, stream_id: int = 0) -> Headers:
    """Parse an uncompressed name/value block; stream-level errors for bad content."""

    def fail(reason: str) -> SpdyStreamError:
        return SpdyStreamError(stream_id, RstStatus.PROTOCOL_ERROR, reason)

    if len(block) < 4:
        raise fail("header block shorter than its count")
    (count,) = _U32.unpack_from(block, 0)
    offset = 4
    headers: Headers = {}
    for _ in range(count):
        fields: list[bytes] = []
        for _part in ("name", "value"):
            if offset + 4 > len(block):
                raise fail("header block truncated")
            (length,) = _U32.unpack_from(block, offset)
            offset += 4
            if offset + length > len(block):
                raise fail("header block truncated")
            fields.append(block[offset : offset + length])
            offset += length
        raw_name, raw_value = fields
        if not raw_name:
            raise fail("empty header name")
        try:
            name = raw_name.decode("utf-8")
            values = raw_value.decode("utf-8").split("\x00")
        except UnicodeDecodeError:
            raise fail("header is not UTF-8") from None
        if name != name.lower():
            raise fail(f"header name {name!r} is not lower case")
        if name in headers:
            raise fail(f"header {name!r} appears twice")
        headers[name] = values
    if offset != len(block):
        raise fail("trailing bytes after the header block")
    return headers


# -- decoder ----------------------------------------------------------------


@attrs.define
class FrameDecoder:
    """Bytes in, frames out; owns the inbound header decompression context.

    Usage: :meth:`feed` what arrived, then call :meth:`next_frame` until it
    returns ``None``.  :class:`SpdySessionError` means the connection is beyond
    repair; :class:`SpdyStreamError` concerns one stream and decoding may go on.
    """

    _buffer: bytearray = attrs.field(factory=bytearray)
    _inflate: Any = attrs.field(factory=lambda: zlib.decompressobj(zdict=DICTIONARY))
    _broken: bool = False

    def feed(self, data: bytes) -> None:
        """Queue received bytes."""
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded into a frame."""
        return len(self._buffer)

    def next_frame(self) -> Frame | None:
        """The next complete frame, or ``None`` when more bytes are needed."""
        if self._broken:
            raise SpdySessionError("decoder already failed")
        buf = self._buffer
        if len(buf) < 8:
            return None
        first, second = _TWO_U32.unpack_from(buf, 0)
        flags = second >> 24
        length = second & 0xFFFFFF
        if first & 0x80000000 and (first >> 16) & 0x7FFF != VERSION:
            # Checked before waiting for the payload: garbage often claims 16 MiB.
            self._broken = True
            raise SpdySessionError(f"unsupported SPDY version {(first >> 16) & 0x7FFF}")
        if len(buf) < 8 + length:
            return None
        payload = bytes(buf[8 : 8 + length])
        del buf[: 8 + length]
        try:
            if first & 0x80000000:
                return self._control(first & 0xFFFF, flags, payload)
            stream_id = first & 0x7FFFFFFF
            if stream_id == 0:
                raise SpdySessionError("DATA frame on stream 0")
            return DataFrame(stream_id, payload, bool(flags & FLAG_FIN))
        except SpdySessionError:
            self._broken = True
            raise

    def _headers(self, compressed: bytes, stream_id: int) -> Headers:
        try:
            block = self._inflate.decompress(compressed, MAX_HEADER_BLOCK + 1)
        except zlib.error as exc:
            raise SpdySessionError(f"header block does not decompress: {exc}") from None
        if len(block) > MAX_HEADER_BLOCK or self._inflate.unconsumed_tail:
            raise SpdySessionError("header block too large")
        return decode_header_block(block, stream_id)

    def _control(self, frame_type: int, flags: int, payload: bytes) -> Frame:
        size = len(payload)

        def need(condition: bool, what: str) -> None:
            if not condition:
                raise SpdySessionError(f"malformed {what} frame ({size} bytes)")

        if frame_type == TYPE_SYN_STREAM:
            need(size >= 10, "SYN_STREAM")
            stream_id, assoc = (v & 0x7FFFFFFF for v in _TWO_U32.unpack_from(payload, 0))
            if stream_id == 0:
                raise SpdySessionError("SYN_STREAM for stream 0")
            headers = self._headers(payload[10:], stream_id)
            return SynStreamFrame(
                stream_id,
                headers,
                associated_stream_id=assoc,
                priority=payload[8] >> 5,
                slot=payload[9],
                fin=bool(flags & FLAG_FIN),
                unidirectional=bool(flags & FLAG_UNIDIRECTIONAL),
            )
        if frame_type in (TYPE_SYN_REPLY, TYPE_HEADERS):
            need(size >= 4, "SYN_REPLY/HEADERS")
            stream_id = _U32.unpack_from(payload, 0)[0] & 0x7FFFFFFF
            if stream_id == 0:
                raise SpdySessionError("header frame for stream 0")
            headers = self._headers(payload[4:], stream_id)
            cls = SynReplyFrame if frame_type == TYPE_SYN_REPLY else HeadersFrame
            return cls(stream_id, headers, fin=bool(flags & FLAG_FIN))
        if frame_type == TYPE_RST_STREAM:
            need(size == 8, "RST_STREAM")
            stream_id, status = _TWO_U32.unpack(payload)
            stream_id &= 0x7FFFFFFF
            if stream_id == 0 or status == 0:
                raise SpdySessionError("RST_STREAM with stream 0 or status 0")
            return RstStreamFrame(stream_id, status)
        if frame_type == TYPE_SETTINGS:
            need(size >= 4, "SETTINGS")
            (count,) = _U32.unpack_from(payload, 0)
            need(size == 4 + 8 * count, "SETTINGS")
            entries = tuple(
                (word >> 24, word & 0xFFFFFF, value)
                for word, value in (_TWO_U32.unpack_from(payload, 4 + 8 * i) for i in range(count))
            )
            return SettingsFrame(entries, clear=bool(flags & FLAG_SETTINGS_CLEAR))
        if frame_type == TYPE_PING:
            need(size == 4, "PING")
            return PingFrame(_U32.unpack(payload)[0])
        if frame_type == TYPE_GOAWAY:
            need(size in (4, 8), "GOAWAY")
            last = _U32.unpack_from(payload, 0)[0] & 0x7FFFFFFF
            status = _U32.unpack_from(payload, 4)[0] if size == 8 else 0
            return GoAwayFrame(last, status)
        if frame_type == TYPE_WINDOW_UPDATE:
            need(size == 8, "WINDOW_UPDATE")
            stream_id, delta = (v & 0x7FFFFFFF for v in _TWO_U32.unpack(payload))
            if delta == 0:
                if stream_id == 0:
                    raise SpdySessionError("WINDOW_UPDATE of 0 for the session")
                raise SpdyStreamError(stream_id, RstStatus.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            return WindowUpdateFrame(stream_id, delta)
        return UnknownControlFrame(frame_type, flags, payload)


# -- encoder ----------------------------------------------------------------


def _control_header(frame_type: int, flags: int, length: int) -> bytes:
    return _TWO_U32.pack(0x80000000 | (VERSION << 16) | frame_type, (flags << 24) | length)


@attrs.define
class FrameEncoder:
    """Frames in, bytes out; owns the outbound header compression context."""

    _deflate: Any = attrs.field(
        factory=lambda: zlib.compressobj(
            6, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
        )
    )

    def _compress(self, headers: Mapping[str, str | Iterable[str]]) -> bytes:
        block = encode_header_block(headers)
        compressed: bytes = self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        return compressed

    def encode(self, frame: Frame) -> bytes:
        """The wire bytes of ``frame`` (header blocks compressed in order)."""
        if isinstance(frame, DataFrame):
            if len(frame.data) > MAX_FRAME_PAYLOAD or not 0 < frame.stream_id <= MAX_WINDOW:
                raise ValueError("DATA frame too large or bad stream id")
            flags = FLAG_FIN if frame.fin else 0
            return _TWO_U32.pack(frame.stream_id, (flags << 24) | len(frame.data)) + frame.data
        if isinstance(frame, SynStreamFrame):
            body = (
                _TWO_U32.pack(frame.stream_id, frame.associated_stream_id)
                + bytes([(frame.priority & 7) << 5, frame.slot])
                + self._compress(frame.headers)
            )
            flags = (FLAG_FIN if frame.fin else 0) | (
                FLAG_UNIDIRECTIONAL if frame.unidirectional else 0
            )
            return _control_header(TYPE_SYN_STREAM, flags, len(body)) + body
        if isinstance(frame, (SynReplyFrame, HeadersFrame)):
            body = _U32.pack(frame.stream_id) + self._compress(frame.headers)
            frame_type = TYPE_SYN_REPLY if isinstance(frame, SynReplyFrame) else TYPE_HEADERS
            flags = FLAG_FIN if frame.fin else 0
            return _control_header(frame_type, flags, len(body)) + body
        if isinstance(frame, RstStreamFrame):
            return _control_header(TYPE_RST_STREAM, 0, 8) + _TWO_U32.pack(
                frame.stream_id, frame.status
            )
        if isinstance(frame, SettingsFrame):
            body = _U32.pack(len(frame.entries)) + b"".join(
                _TWO_U32.pack((flags << 24) | ident, value) for flags, ident, value in frame.entries
            )
            flags = FLAG_SETTINGS_CLEAR if frame.clear else 0
            return _control_header(TYPE_SETTINGS, flags, len(body)) + body
        if isinstance(frame, PingFrame):
            return _control_header(TYPE_PING, 0, 4) + _U32.pack(frame.ping_id)
        if isinstance(frame, GoAwayFrame):
            return _control_header(TYPE_GOAWAY, 0, 8) + _TWO_U32.pack(
                frame.last_good_stream_id, frame.status
            )
        if isinstance(frame, WindowUpdateFrame):
            return _control_header(TYPE_WINDOW_UPDATE, 0, 8) + _TWO_U32.pack(
                frame.stream_id, frame.delta
            )
        if isinstance(frame, UnknownControlFrame):
            return (
                _control_header(frame.frame_type, frame.flags, len(frame.payload)) + frame.payload
            )
        raise TypeError(f"not a SPDY frame: {frame!r}")


# -- flow control -----------------------------------------------------------


@attrs.define
class FlowWindow:
    """One SPDY/3.1 flow-control window (per stream, or the session's)."""

    size: int = DEFAULT_INITIAL_WINDOW

    def consume(self, amount: int) -> None:
        """``amount`` bytes of DATA went (or came) through."""
        self.size -= amount

    def grow(self, delta: int) -> None:
        """Apply a WINDOW_UPDATE (or a change of the initial window)."""
        if self.size + delta > MAX_WINDOW:
            raise OverflowError("flow-control window above 2^31-1")
        self.size += delta


# -- streams and session ----------------------------------------------------


def _ignore(*_args: Any) -> None:
    return None


@attrs.define(eq=False)
class SpdyStream:
    """A client-opened stream, as seen by the server's stream handler.

    The handler sets ``on_data``/``on_end``/``on_reset`` and calls :meth:`reply`
    (or :meth:`reset` to refuse).  ``producer``, when set, is paused while the
    stream cannot send (its peer's window is exhausted).
    """

    session: SpdySession
    stream_id: int
    headers: Headers
    on_data: Callable[[bytes], None] = _ignore
    on_end: Callable[[], None] = _ignore
    on_reset: Callable[[int], None] = _ignore
    producer: Any = None
    replied: bool = False
    local_closed: bool = False
    remote_closed: bool = False
    was_reset: bool = False
    send_window: FlowWindow = attrs.field(factory=FlowWindow)
    unacknowledged: int = 0
    _pending: list[bytes] = attrs.field(factory=list)
    _pending_fin: bool = False
    _producer_paused: bool = False

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (lower case), or ``default``."""
        values = self.headers.get(name)
        return values[0] if values else default

    @property
    def open(self) -> bool:
        """True until both sides finished or the stream was reset."""
        return not self.was_reset and not (self.local_closed and self.remote_closed)

    def reply(self, headers: Mapping[str, str | Iterable[str]] | None = None) -> None:
        """Accept the stream with SYN_REPLY."""
        if self.replied or self.was_reset:
            return
        self.replied = True
        reply: Headers = {
            name.lower(): [value] if isinstance(value, str) else list(value)
            for name, value in (headers or {}).items()
        }
        self.session.send_frame(SynReplyFrame(self.stream_id, reply))

    def write(self, data: bytes) -> None:
        """Send ``data`` on the stream (ignored once closed locally)."""
        if self.local_closed or self.was_reset or not data:
            return
        self._pending.append(bytes(data))
        self._flush()

    def close(self) -> None:
        """Half-close: send FIN once pending data is out."""
        if self.local_closed or self.was_reset:
            return
        self._pending_fin = True
        self._flush()

    def reset(self, status: int = RstStatus.CANCEL) -> None:
        """Abort the stream with RST_STREAM."""
        if self.was_reset or not self.open:
            return
        self.was_reset = True
        self._pending.clear()
        self.session.send_frame(RstStreamFrame(self.stream_id, status))
        self.session.forget(self)

    def _flush(self) -> None:
        session = self.session
        while self._pending:
            chunk = self._pending[0]
            allowed = min(len(chunk), DATA_CHUNK)
            if session.enforcing_send_window:
                allowed = min(allowed, self.send_window.size, session.send_window.size)
                if allowed <= 0:
                    self._pause_producer()
                    return
            piece, rest = chunk[:allowed], chunk[allowed:]
            if rest:
                self._pending[0] = rest
            else:
                self._pending.pop(0)
            self.send_window.consume(len(piece))
            session.send_window.consume(len(piece))
            fin = self._pending_fin and not self._pending
            session.send_frame(DataFrame(self.stream_id, piece, fin))
            if fin:
                self._finish_local()
                return
        if self._pending_fin and not self.local_closed:
            session.send_frame(DataFrame(self.stream_id, b"", True))
            self._finish_local()
            return
        self._resume_producer()

    def _finish_local(self) -> None:
        self.local_closed = True
        self._pending_fin = False
        if self.remote_closed:
            self.session.forget(self)

    def _pause_producer(self) -> None:
        if self.producer is not None and not self._producer_paused:
            self._producer_paused = True
            self.producer.pauseProducing()

    def _resume_producer(self) -> None:
        if self.producer is not None and self._producer_paused:
            self._producer_paused = False
            self.producer.resumeProducing()

    # called by the session
    def _received(self, data: bytes, fin: bool) -> None:
        if data:
            self.on_data(data)
        if fin and not self.remote_closed:
            self.remote_closed = True
            self.on_end()
            if self.local_closed:
                self.session.forget(self)

    def _notify_reset(self, status: int) -> None:
        self.was_reset = True
        self._pending.clear()
        self.on_reset(status)


@attrs.define(eq=False)
class SpdySession:
    """The server side of one SPDY/3.1 connection, free of I/O.

    ``write`` sends bytes to the client; ``close_transport`` ends the
    connection (after writing what is queued); ``on_stream`` receives every new
    client stream.  Feed received bytes to :meth:`data_received`; no exception
    escapes it: protocol errors become RST_STREAM or GOAWAY + close.
    """

    write: Callable[[bytes], None]
    close_transport: Callable[[], None]
    on_stream: Callable[[SpdyStream], None]
    #: ``None``: enforce send windows once the peer takes part in flow control.
    enforce_send_window: bool | None = None
    streams: dict[int, SpdyStream] = attrs.field(factory=dict)
    send_window: FlowWindow = attrs.field(factory=FlowWindow)
    initial_send_window: int = DEFAULT_INITIAL_WINDOW
    receive_window_size: int = DEFAULT_INITIAL_WINDOW
    session_unacknowledged: int = 0
    last_client_stream_id: int = 0
    peer_flow_control: bool = False
    going_away: bool = False
    closed: bool = False
    _decoder: FrameDecoder = attrs.field(factory=FrameDecoder)
    _encoder: FrameEncoder = attrs.field(factory=FrameEncoder)
    _next_ping_id: int = 2

    _log = Logger()

    @property
    def enforcing_send_window(self) -> bool:
        """Whether sends wait for the peer's window (see the module docstring)."""
        if self.enforce_send_window is not None:
            return self.enforce_send_window
        return self.peer_flow_control

    def send_frame(self, frame: Frame) -> None:
        """Encode and write one frame (dropped once the session closed)."""
        if self.closed:
            return
        self.write(self._encoder.encode(frame))

    def ping(self) -> int:
        """Send a server PING (even id); returns its id."""
        ping_id = self._next_ping_id
        self._next_ping_id += 2
        self.send_frame(PingFrame(ping_id))
        return ping_id

    def data_received(self, data: bytes) -> None:
        """Handle received bytes: decode frames and dispatch them."""
        if self.closed:
            return
        self._decoder.feed(data)
        while not self.closed:
            try:
                frame = self._decoder.next_frame()
                if frame is None:
                    return
                self._dispatch(frame)
            except SpdyStreamError as exc:
                self._log.debug(
                    "SPDY stream {stream_id} error: {reason}", stream_id=exc.stream_id, reason=exc
                )
                self._reset_stream(exc.stream_id, exc.status)
            except SpdySessionError as exc:
                self._log.info("SPDY session error: {reason}", reason=str(exc))
                self.go_away(exc.status)
                return
            except Exception:
                self._log.failure("SPDY stream handler failed")
                self.go_away(GoAwayStatus.INTERNAL_ERROR)
                return

    def go_away(self, status: int = GoAwayStatus.OK) -> None:
        """Send GOAWAY, tell every open stream it was reset, close the transport."""
        if self.closed:
            return
        self.send_frame(GoAwayFrame(self.last_client_stream_id, status))
        self._shutdown(RstStatus.CANCEL)
        self.close_transport()

    def connection_lost(self) -> None:
        """The transport is gone: every open stream learns it was reset."""
        if not self.closed:
            self._shutdown(RstStatus.CANCEL)

    def forget(self, stream: SpdyStream) -> None:
        """Drop a finished stream; a session the peer is leaving ends with its last one."""
        self.streams.pop(stream.stream_id, None)
        if self.going_away and not self.streams and not self.closed:
            self.go_away()

    def _shutdown(self, status: int) -> None:
        self.closed = True
        streams, self.streams = list(self.streams.values()), {}
        for stream in streams:
            if stream.open:
                stream._notify_reset(status)

    def _reset_stream(self, stream_id: int, status: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.reset(status)
            stream._notify_reset(status)
        else:
            self.send_frame(RstStreamFrame(stream_id, status))

    def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, DataFrame):
            self._on_data(frame)
        elif isinstance(frame, SynStreamFrame):
            self._on_syn_stream(frame)
        elif isinstance(frame, RstStreamFrame):
            stream = self.streams.pop(frame.stream_id, None)
            if stream is not None:
                stream._notify_reset(frame.status)
        elif isinstance(frame, SettingsFrame):
            self._on_settings(frame)
        elif isinstance(frame, PingFrame):
            if frame.ping_id % 2 == 1:  # client-initiated: echo it
                self.send_frame(frame)
        elif isinstance(frame, GoAwayFrame):
            self.going_away = True
            if not self.streams:
                self.go_away()
        elif isinstance(frame, WindowUpdateFrame):
            self._on_window_update(frame)
        elif isinstance(frame, HeadersFrame):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream.headers.update(frame.headers)
                if frame.fin:
                    stream._received(b"", True)
        elif isinstance(frame, SynReplyFrame):
            # The server opens no streams, so a reply is for nothing of ours.
            self._reset_stream(frame.stream_id, RstStatus.INVALID_STREAM)
        # UnknownControlFrame: ignored, as the protocol requires.

    def _on_syn_stream(self, frame: SynStreamFrame) -> None:
        if frame.stream_id % 2 == 0 or frame.stream_id <= self.last_client_stream_id:
            self.send_frame(RstStreamFrame(frame.stream_id, RstStatus.PROTOCOL_ERROR))
            return
        self.last_client_stream_id = frame.stream_id
        if self.going_away:
            self.send_frame(RstStreamFrame(frame.stream_id, RstStatus.REFUSED_STREAM))
            return
        stream = SpdyStream(self, frame.stream_id, frame.headers)
        stream.send_window.size = self.initial_send_window
        stream.local_closed = frame.unidirectional
        self.streams[frame.stream_id] = stream
        self.on_stream(stream)
        if frame.fin:
            stream._received(b"", True)

    def _on_data(self, frame: DataFrame) -> None:
        stream = self.streams.get(frame.stream_id)
        if stream is None:
            if frame.stream_id > self.last_client_stream_id:
                self.send_frame(RstStreamFrame(frame.stream_id, RstStatus.INVALID_STREAM))
            # else: a stream that already ended; data still in flight is dropped.
            return
        if stream.remote_closed:
            self._reset_stream(frame.stream_id, RstStatus.STREAM_ALREADY_CLOSED)
            return
        stream._received(frame.data, frame.fin)
        self._acknowledge(stream, len(frame.data))

    def _acknowledge(self, stream: SpdyStream, amount: int) -> None:
        """Announce consumed bytes once half a window was used (3.1 peers wait for it)."""
        if amount == 0:
            return
        half = self.receive_window_size // 2
        self.session_unacknowledged += amount
        if self.session_unacknowledged >= half:
            self.send_frame(WindowUpdateFrame(0, self.session_unacknowledged))
            self.session_unacknowledged = 0
        if stream.open and not stream.remote_closed:
            stream.unacknowledged += amount
            if stream.unacknowledged >= half:
                self.send_frame(WindowUpdateFrame(stream.stream_id, stream.unacknowledged))
                stream.unacknowledged = 0

    def _on_settings(self, frame: SettingsFrame) -> None:
        for _flags, ident, value in frame.entries:
            if ident == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise SpdySessionError("INITIAL_WINDOW_SIZE above 2^31-1")
                self.peer_flow_control = True
                delta = value - self.initial_send_window
                self.initial_send_window = value
                for stream in self.streams.values():
                    stream.send_window.size += delta
        self._flush_all()

    def _on_window_update(self, frame: WindowUpdateFrame) -> None:
        self.peer_flow_control = True
        if frame.stream_id == 0:
            try:
                self.send_window.grow(frame.delta)
            except OverflowError:
                raise SpdySessionError(
                    "session window overflow", GoAwayStatus.PROTOCOL_ERROR
                ) from None
            self._flush_all()
            return
        stream = self.streams.get(frame.stream_id)
        if stream is None:
            return
        try:
            stream.send_window.grow(frame.delta)
        except OverflowError:
            raise SpdyStreamError(
                frame.stream_id, RstStatus.FLOW_CONTROL_ERROR, "stream window overflow"
            ) from None
        stream._flush()

    def _flush_all(self) -> None:
        for stream in list(self.streams.values()):
            stream._flush()
