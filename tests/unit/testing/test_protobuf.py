"""Decoding Kubernetes protobuf request bodies (clustergateway.testing.protobuf)."""

from __future__ import annotations

import pytest

from clustergateway.testing.protobuf import (
    ProtobufError,
    UnsupportedProtobufKind,
    decode_object,
)


def _varint(n: int) -> bytes:
    out = b""
    n &= (1 << 64) - 1
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def _len(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _str(field: int, text: str) -> bytes:
    return _len(field, text.encode())


def _int(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def _map(field: int, key: str, value: bytes) -> bytes:
    return _len(field, _str(1, key) + _len(2, value))


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _str(1, api_version) + _str(2, kind)
    return b"k8s\x00" + _len(1, type_meta) + _len(2, raw) + _str(3, "") + _str(4, "")


def _meta(name: str, namespace: str = "") -> bytes:
    # gogo-protobuf writes empty optional fields too; the decoder must drop them.
    return (
        _str(1, name)
        + _str(2, "")
        + _str(3, namespace)
        + _int(7, 0)
        + _len(8, b"")
        + _map(11, "app", b"web")
        + _str(14, "f1")
        + _str(99, "unknown field")
    )


def test_configmap():
    """A ConfigMap as kubectl 1.33 sends it decodes to its JSON form."""
    raw = _len(1, _meta("cm", "default")) + _map(2, "a", b"b") + _map(3, "bin", b"\x00\x01")
    raw += _int(4, 1)
    obj = decode_object(_envelope("v1", "ConfigMap", raw))
    assert obj == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "cm",
            "namespace": "default",
            "labels": {"app": "web"},
            "finalizers": ["f1"],
        },
        "data": {"a": "b"},
        "binaryData": {"bin": "AAE="},
        "immutable": True,
    }


def test_secret_bytes_become_base64():
    """Secret data (bytes on the wire) comes out base64, as in JSON."""
    raw = _len(1, _meta("s")) + _map(2, "pw", b"hunter2") + _str(3, "Opaque")
    obj = decode_object(_envelope("v1", "Secret", raw))
    assert obj["data"] == {"pw": "aHVudGVyMg=="}
    assert obj["type"] == "Opaque"


def test_pod_containers_and_time():
    """Nested repeated messages and Time values decode."""
    container = _str(1, "c") + _str(2, "busybox") + _str(3, "sh") + _str(3, "-c") + _int(16, 1)
    meta = _str(1, "p") + _len(8, _int(1, 1_700_000_000))
    raw = _len(1, meta) + _len(2, _len(2, container) + _str(3, "Never"))
    obj = decode_object(_envelope("v1", "Pod", raw))
    assert obj["metadata"]["creationTimestamp"] == "2023-11-14T22:13:20Z"
    assert obj["spec"] == {
        "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c"], "stdin": True}],
        "restartPolicy": "Never",
    }


def test_subject_access_review_extra():
    """map<string, ExtraValue> decodes to lists of strings."""
    spec = _str(3, "alice") + _str(4, "g1") + _len(5, _str(1, "scope") + _len(2, _str(1, "x")))
    spec += _len(1, _str(2, "get") + _str(5, "pods"))
    obj = decode_object(_envelope("authorization.k8s.io/v1", "SubjectAccessReview", _len(2, spec)))
    assert obj["spec"] == {
        "user": "alice",
        "groups": ["g1"],
        "extra": {"scope": ["x"]},
        "resourceAttributes": {"verb": "get", "resource": "pods"},
    }


def test_negative_int64():
    """int64 values are two's complement varints."""
    raw = _int(1, -5)
    obj = decode_object(_envelope("v1", "DeleteOptions", raw))
    assert obj["gracePeriodSeconds"] == -5


@pytest.mark.parametrize(
    "body",
    [
        b"not protobuf",
        b"k8s\x00\x0a",
        b"k8s\x00\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"k8s\x00\x0b",
        _envelope("v1", "ConfigMap", b"\x0a\x05ab"),
    ],
)
def test_malformed(body):
    """Truncated or non-protobuf bodies raise ProtobufError."""
    with pytest.raises(ProtobufError):
        decode_object(body)


def test_unknown_kind():
    """Kinds without a schema are reported as unsupported (the server answers 415)."""
    with pytest.raises(UnsupportedProtobufKind):
        decode_object(_envelope("apps/v1", "Deployment", b""))


def test_random_bytes_only_raise_protobuf_error():
    """Whatever follows the magic, the decoder fails with ProtobufError or decodes."""
    import random

    rng = random.Random(7)
    valid = _envelope("v1", "ConfigMap", _len(1, _meta("x")) + _map(2, "a", b"b"))
    for _ in range(5000):
        body = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(4, len(body))] = rng.randrange(256)
        try:
            decode_object(bytes(body))
        except ProtobufError:
            pass
