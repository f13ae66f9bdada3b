"""The konnectivity ``Packet`` codec and gRPC message framing (``proxy.konnectivity_wire``).

Cross-checked against the real protobuf runtime: the stand-in's classes, compiled
from the vendored public proto, parse what the codec writes and write what it reads.
"""

from __future__ import annotations

from typing import Any

import pytest

from clustergateway.proxy.konnectivity_wire import (
    MAX_MESSAGE,
    GrpcMessageReader,
    GrpcWireError,
    Packet,
    PacketType,
    decode_packet,
    encode_data,
    encode_packet,
    frame_message,
)
from clustergateway.testing.konnectivity import proto_modules

PACKETS = [
    Packet(PacketType.DIAL_REQ, protocol="tcp", address="c1:443", random=(1 << 62) + 5),
    Packet(PacketType.DIAL_REQ, protocol="tcp", address="ünïcode:443", random=-7),
    Packet(PacketType.DIAL_RSP, connect_id=42, random=9),
    Packet(PacketType.DIAL_RSP, error="No agent available", random=9),
    Packet(PacketType.DATA, connect_id=42, data=b"\x00\xff" * 1000),
    Packet(PacketType.DATA, connect_id=42, error="backend closed"),
    Packet(PacketType.CLOSE_REQ, connect_id=42),
    Packet(PacketType.CLOSE_RSP, connect_id=42, error="already closed"),
    Packet(PacketType.DIAL_CLS, random=9),
    Packet(PacketType.DRAIN),
]

_PAYLOAD = {
    PacketType.DIAL_REQ: (
        "dialRequest",
        {"protocol": "protocol", "address": "address", "random": "random"},
    ),
    PacketType.DIAL_RSP: (
        "dialResponse",
        {"error": "error", "connect_id": "connectID", "random": "random"},
    ),
    PacketType.DATA: ("data", {"connect_id": "connectID", "error": "error", "data": "data"}),
    PacketType.CLOSE_REQ: ("closeRequest", {"connect_id": "connectID"}),
    PacketType.CLOSE_RSP: ("closeResponse", {"error": "error", "connect_id": "connectID"}),
    PacketType.DIAL_CLS: ("closeDial", {"random": "random"}),
    PacketType.DRAIN: ("drain", {}),
}


def _as_protobuf(packet: Packet) -> Any:
    pb2, _ = proto_modules()
    field, names = _PAYLOAD[packet.type]
    message = pb2.Packet(type=int(packet.type))
    getattr(message, field).SetInParent()
    for ours, theirs in names.items():
        setattr(getattr(message, field), theirs, getattr(packet, ours))
    return message


@pytest.mark.parametrize("packet", PACKETS, ids=lambda p: f"{p.type.name}")
def test_protobuf_runtime_reads_what_the_codec_writes(packet: Packet) -> None:
    """Every packet type: the real protobuf parser sees the same type, oneof and fields."""
    pb2, _ = proto_modules()
    parsed = pb2.Packet.FromString(encode_packet(packet))
    assert parsed == _as_protobuf(packet)
    assert parsed.WhichOneof("payload") == _PAYLOAD[packet.type][0]


@pytest.mark.parametrize("packet", PACKETS, ids=lambda p: f"{p.type.name}")
def test_codec_reads_what_the_protobuf_runtime_writes(packet: Packet) -> None:
    """Every packet type round-trips from the protobuf runtime's bytes."""
    assert decode_packet(_as_protobuf(packet).SerializeToString()) == packet


def test_encode_data_is_encode_packet() -> None:
    """The hot-path DATA encoder writes the same bytes as the general one."""
    for data in (b"", b"x", b"y" * 300, b"z" * 70000):
        assert encode_data(7, data) == encode_packet(
            Packet(PacketType.DATA, connect_id=7, data=data)
        )


def test_unknown_fields_are_skipped() -> None:
    """Fields a newer proto adds (any wire type) are ignored, as protobuf does."""
    packet = encode_packet(Packet(PacketType.DIAL_RSP, connect_id=3))
    extra = b"\x48\x01" + b"\x51" + b"\x00" * 8 + b"\x5d" + b"\x00" * 4 + b"\x62\x02hi"
    assert decode_packet(packet + extra) == Packet(PacketType.DIAL_RSP, connect_id=3)


@pytest.mark.parametrize(
    "raw",
    [b"\x08", b"\x08\x80", b"\x22\x05ab", b"\x08\x63", b"\x0b", b"\x08" + b"\xff" * 11],
    ids=[
        "no-value",
        "truncated-varint",
        "truncated-bytes",
        "unknown-type",
        "group-wire-type",
        "varint-too-long",
    ],
)
def test_malformed_packets_are_errors(raw: bytes) -> None:
    """Truncated or invalid bytes raise GrpcWireError, never anything else."""
    with pytest.raises(GrpcWireError):
        decode_packet(raw)


def test_message_reader_splits_at_any_boundary() -> None:
    """Messages cut at every byte position come out whole and in order."""
    messages = [b"", b"a", b"b" * 1000]
    stream = b"".join(frame_message(m) for m in messages)
    for cut in range(len(stream) + 1):
        reader = GrpcMessageReader()
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == messages
        assert reader.pending == 0


def test_message_reader_refuses_compressed_and_oversized() -> None:
    """A compressed flag (never negotiated) or a length over the limit is an error."""
    with pytest.raises(GrpcWireError, match="compressed"):
        GrpcMessageReader().feed(b"\x01\x00\x00\x00\x00")
    with pytest.raises(GrpcWireError, match="limit"):
        GrpcMessageReader().feed(b"\x00" + (MAX_MESSAGE + 1).to_bytes(4, "big"))
