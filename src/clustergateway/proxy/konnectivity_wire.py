"""The konnectivity tunnel's wire format: ``Packet`` messages in gRPC's message framing.

Pure functions and a sans-io reader, no I/O.  The messages are the public
``konnectivity-client`` proto (``proto/client/client.proto`` of
kubernetes-sigs/apiserver-network-proxy; the testing stand-in compiles that
file with ``grpcio-tools``)::

    message Packet { PacketType type = 1;
                     oneof payload { DialRequest dialRequest = 2; DialResponse dialResponse = 3;
                                     Data data = 4; CloseRequest closeRequest = 5;
                                     CloseResponse closeResponse = 6; CloseDial closeDial = 7;
                                     Drain drain = 8; } }

Why a hand-written codec rather than ``protobuf`` generated code: eight small
messages of strings, bytes and int64s, and the hot path is one ``Data``
message per chunk of tunnelled bytes, where building it by hand is a few byte
concatenations (no message objects, no generated code to ship or to build at
install time).  The stand-in proxy-server uses the real protobuf runtime, so a
mistake here fails the end-to-end tests instead of hiding in a shared encoder.

gRPC's framing (``PROTOCOL-HTTP2.md``): each message is a 1-byte compressed
flag (always 0 here: no ``grpc-encoding`` is offered), a 4-byte big-endian
length and the message bytes.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable

import attrs

__all__ = [
    "MAX_MESSAGE",
    "GrpcMessageReader",
    "GrpcWireError",
    "Packet",
    "PacketType",
    "decode_packet",
    "encode_data",
    "encode_packet",
    "frame_message",
]

#: The largest message accepted (gRPC's default receive limit is 4 MiB).
MAX_MESSAGE = 4 * 1024 * 1024
_U64 = 1 << 64
_I64_SIGN = 1 << 63


class GrpcWireError(ValueError):
    """Bytes that are not a valid gRPC message or ``Packet``."""


class PacketType(enum.IntEnum):
    """``PacketType`` of the proto (its numbers are the wire values)."""

    DIAL_REQ = 0
    DIAL_RSP = 1
    CLOSE_REQ = 2
    CLOSE_RSP = 3
    DATA = 4
    DIAL_CLS = 5
    DRAIN = 6


#: The ``payload`` oneof field that each packet type carries.
_PAYLOAD_FIELD = {
    PacketType.DIAL_REQ: 2,
    PacketType.DIAL_RSP: 3,
    PacketType.DATA: 4,
    PacketType.CLOSE_REQ: 5,
    PacketType.CLOSE_RSP: 6,
    PacketType.DIAL_CLS: 7,
    PacketType.DRAIN: 8,
}


@attrs.frozen
class Packet:
    """One ``Packet``, flattened: the fields of its payload message sit beside ``type``.

    ``DIAL_REQ``: ``protocol``, ``address``, ``random``; ``DIAL_RSP``: ``error``,
    ``connect_id``, ``random``; ``DATA``: ``connect_id``, ``error``, ``data``;
    ``CLOSE_REQ``: ``connect_id``; ``CLOSE_RSP``: ``error``, ``connect_id``;
    ``DIAL_CLS``: ``random``; ``DRAIN``: nothing.
    """

    type: PacketType
    protocol: str = ""
    address: str = ""
    random: int = 0
    connect_id: int = 0
    error: str = ""
    data: bytes = attrs.field(default=b"", repr=lambda d: f"<{len(d)} bytes>")


# -- protobuf encoding ---------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:
        value += _U64  # int64: two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return b"" if value == 0 else _varint(number << 3) + _varint(value)


def _len_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _text_field(number: int, value: str) -> bytes:
    return b"" if not value else _len_field(number, value.encode("utf-8"))


def _bytes_field(number: int, value: bytes) -> bytes:
    return b"" if not value else _len_field(number, value)


def _payload(packet: Packet) -> bytes:
    t = packet.type
    if t is PacketType.DIAL_REQ:
        return (
            _text_field(1, packet.protocol)
            + _text_field(2, packet.address)
            + _int_field(3, packet.random)
        )
    if t is PacketType.DIAL_RSP:
        return (
            _text_field(1, packet.error)
            + _int_field(2, packet.connect_id)
            + _int_field(3, packet.random)
        )
    if t is PacketType.DATA:
        return (
            _int_field(1, packet.connect_id)
            + _text_field(2, packet.error)
            + _bytes_field(3, packet.data)
        )
    if t is PacketType.CLOSE_REQ:
        return _int_field(1, packet.connect_id)
    if t is PacketType.CLOSE_RSP:
        return _text_field(1, packet.error) + _int_field(2, packet.connect_id)
    if t is PacketType.DIAL_CLS:
        return _int_field(1, packet.random)
    return b""  # DRAIN


def encode_packet(packet: Packet) -> bytes:
    """The protobuf bytes of ``packet`` (its payload message always present, as a oneof)."""
    return _int_field(1, int(packet.type)) + _len_field(
        _PAYLOAD_FIELD[packet.type], _payload(packet)
    )


def encode_data(connect_id: int, data: bytes) -> bytes:
    """``encode_packet(Packet(DATA, connect_id=…, data=…))``, for the hot path."""
    inner = _int_field(1, connect_id) + _bytes_field(3, data)
    return b"\x08\x04\x22" + _varint(len(inner)) + inner


# -- protobuf decoding ---------------------------------------------------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise GrpcWireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise GrpcWireError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """``(field number, value)`` pairs: ints for varints, bytes for length-delimited;
    fixed-size fields of unknown numbers are skipped."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise GrpcWireError("truncated field")
            out.append((number, buf[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise GrpcWireError(f"unsupported wire type {wire}")
    if pos != len(buf):
        raise GrpcWireError("truncated field")
    return out


def _int64(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise GrpcWireError("expected an integer field")
    value &= _U64 - 1
    return value - _U64 if value & _I64_SIGN else value


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise GrpcWireError("expected a string field")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise GrpcWireError("a string field is not UTF-8") from None


def _blob(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise GrpcWireError("expected a bytes field")
    return value


# Per packet type: payload field number → (Packet attribute, reader).
_Reader = tuple[str, Callable[[int | bytes], object]]
_READERS: dict[PacketType, dict[int, _Reader]] = {
    PacketType.DIAL_REQ: {1: ("protocol", _text), 2: ("address", _text), 3: ("random", _int64)},
    PacketType.DIAL_RSP: {1: ("error", _text), 2: ("connect_id", _int64), 3: ("random", _int64)},
    PacketType.DATA: {1: ("connect_id", _int64), 2: ("error", _text), 3: ("data", _blob)},
    PacketType.CLOSE_REQ: {1: ("connect_id", _int64)},
    PacketType.CLOSE_RSP: {1: ("error", _text), 2: ("connect_id", _int64)},
    PacketType.DIAL_CLS: {1: ("random", _int64)},
    PacketType.DRAIN: {},
}


def decode_packet(buf: bytes) -> Packet:
    """Read one ``Packet``; raises :class:`GrpcWireError` for malformed bytes or an
    unknown packet type.  The payload read is the one ``type`` names (unknown fields
    are skipped, as protobuf does)."""
    type_number = 0
    payloads: dict[int, bytes] = {}
    for number, value in _fields(buf):
        if number == 1:
            type_number = _int64(value)
        elif 2 <= number <= 8:
            payloads[number] = _blob(value)
    try:
        packet_type = PacketType(type_number)
    except ValueError:
        raise GrpcWireError(f"unknown packet type {type_number}") from None
    values: dict[str, object] = {}
    readers = _READERS[packet_type]
    for number, value in _fields(payloads.get(_PAYLOAD_FIELD[packet_type], b"")):
        reader = readers.get(number)
        if reader is not None:
            values[reader[0]] = reader[1](value)
    return Packet(packet_type, **values)  # type: ignore[arg-type]


# -- gRPC message framing ------------------------------------------------------------

_HEADER = struct.Struct(">BI")


def frame_message(message: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed)."""
    return _HEADER.pack(0, len(message)) + message


@attrs.define
class GrpcMessageReader:
    """Splits a stream's DATA bytes into gRPC messages (sans-io).

    ``feed`` returns the messages completed by the bytes given; raises
    :class:`GrpcWireError` for a compressed message (never negotiated) or one
    longer than :data:`MAX_MESSAGE`.
    """

    _buffer: bytearray = attrs.field(factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        buf = self._buffer
        pos = 0
        while len(buf) - pos >= 5:
            compressed, length = _HEADER.unpack_from(buf, pos)
            if compressed:
                raise GrpcWireError("a compressed gRPC message (no compression was offered)")
            if length > MAX_MESSAGE:
                raise GrpcWireError(f"a gRPC message of {length} bytes (limit {MAX_MESSAGE})")
            if len(buf) - pos - 5 < length:
                break
            out.append(bytes(buf[pos + 5 : pos + 5 + length]))
            pos += 5 + length
        if pos:
            del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._buffer)
