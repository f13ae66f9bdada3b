"""Decode the Kubernetes protobuf encoding of the few kinds clients send that way.

kubectl ≥ 1.32's typed clients (``create configmap``, ``create secret``,
``create namespace``, ``run``) POST bodies as ``application/vnd.kubernetes.protobuf``:
the magic ``k8s\\x00`` then a ``runtime.Unknown`` envelope (type meta + raw
message).  There is no protobuf runtime for the Kubernetes types in Python, so
this module carries a hand-written schema of the fields the simulator stores
(field numbers from ``k8s.io/api`` and ``k8s.io/apimachinery`` ``generated.proto``)
and a minimal wire-format reader.  Fields outside the schema are skipped; the
result is the object's JSON form.  Responses are always JSON, which every client
that offers protobuf also accepts.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

__all__ = ["PROTOBUF", "ProtobufError", "UnsupportedProtobufKind", "decode_object"]

PROTOBUF = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """A body that is not a well-formed Kubernetes protobuf object."""


class UnsupportedProtobufKind(ProtobufError):
    """A well-formed envelope around a kind this module has no schema for."""


# field number -> (JSON name, type).  Types: "string", "bytes", "bool", "int",
# "time", "quantity", a message name, "[]T" for repeated, "{}T" for map<string, T>.
_SCHEMA: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {
        1: ("typeMeta", "TypeMeta"),
        2: ("raw", "bytes"),
        3: ("contentEncoding", "string"),
        4: ("contentType", "string"),
    },
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        4: ("selfLink", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int"),
        8: ("creationTimestamp", "time"),
        9: ("deletionTimestamp", "time"),
        10: ("deletionGracePeriodSeconds", "int"),
        11: ("labels", "{}string"),
        12: ("annotations", "{}string"),
        13: ("ownerReferences", "[]OwnerReference"),
        14: ("finalizers", "[]string"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "{}string"),
        3: ("binaryData", "{}bytes"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "{}bytes"),
        3: ("type", "string"),
        4: ("stringData", "{}string"),
        5: ("immutable", "bool"),
    },
    "Namespace": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "NamespaceSpec"),
        3: ("status", "NamespaceStatus"),
    },
    "NamespaceSpec": {1: ("finalizers", "[]string")},
    "NamespaceStatus": {1: ("phase", "string")},
    "Pod": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {
        2: ("containers", "[]Container"),
        3: ("restartPolicy", "string"),
        4: ("terminationGracePeriodSeconds", "int"),
        5: ("activeDeadlineSeconds", "int"),
        6: ("dnsPolicy", "string"),
        7: ("nodeSelector", "{}string"),
        8: ("serviceAccountName", "string"),
        9: ("serviceAccount", "string"),
        10: ("nodeName", "string"),
        11: ("hostNetwork", "bool"),
        16: ("hostname", "string"),
        19: ("schedulerName", "string"),
        20: ("initContainers", "[]Container"),
        21: ("automountServiceAccountToken", "bool"),
        24: ("priorityClassName", "string"),
        30: ("enableServiceLinks", "bool"),
    },
    "Container": {
        1: ("name", "string"),
        2: ("image", "string"),
        3: ("command", "[]string"),
        4: ("args", "[]string"),
        5: ("workingDir", "string"),
        6: ("ports", "[]ContainerPort"),
        7: ("env", "[]EnvVar"),
        8: ("resources", "ResourceRequirements"),
        13: ("terminationMessagePath", "string"),
        14: ("imagePullPolicy", "string"),
        16: ("stdin", "bool"),
        17: ("stdinOnce", "bool"),
        18: ("tty", "bool"),
        20: ("terminationMessagePolicy", "string"),
    },
    "ContainerPort": {
        1: ("name", "string"),
        2: ("hostPort", "int"),
        3: ("containerPort", "int"),
        4: ("protocol", "string"),
        5: ("hostIP", "string"),
    },
    "EnvVar": {1: ("name", "string"), 2: ("value", "string")},
    "ResourceRequirements": {1: ("limits", "{}quantity"), 2: ("requests", "{}quantity")},
    "Quantity": {1: ("string", "string")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int"),
        2: ("preconditions", "Preconditions"),
        3: ("orphanDependents", "bool"),
        4: ("propagationPolicy", "string"),
        5: ("dryRun", "[]string"),
    },
    "Preconditions": {1: ("uid", "string"), 2: ("resourceVersion", "string")},
    "TokenReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenReviewSpec")},
    "TokenReviewSpec": {1: ("token", "string"), 2: ("audiences", "[]string")},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta")},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SubjectAccessReviewSpec")},
    "SubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes"),
        2: ("nonResourceAttributes", "NonResourceAttributes"),
        3: ("user", "string"),
        4: ("groups", "[]string"),
        5: ("extra", "{}extra"),
        6: ("uid", "string"),
    },
    "SelfSubjectAccessReview": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "SelfSubjectAccessReviewSpec"),
    },
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes"),
        2: ("nonResourceAttributes", "NonResourceAttributes"),
    },
    "ResourceAttributes": {
        1: ("namespace", "string"),
        2: ("verb", "string"),
        3: ("group", "string"),
        4: ("version", "string"),
        5: ("resource", "string"),
        6: ("subresource", "string"),
        7: ("name", "string"),
    },
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "ExtraValue": {1: ("items", "[]string")},
}

#: Kinds whose body this module decodes (by ``kind`` in the envelope).
KINDS = frozenset(
    {
        "ConfigMap",
        "Secret",
        "Namespace",
        "Pod",
        "DeleteOptions",
        "TokenReview",
        "SelfSubjectReview",
        "SubjectAccessReview",
        "SelfSubjectAccessReview",
    }
)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """``(field number, wire type, value)``; value is an int or the raw bytes."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated length-delimited field")
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ProtobufError("truncated field")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, wire: int, value: Any) -> Any:
    if kind in ("bool", "int"):
        if wire != 0:
            raise ProtobufError(f"expected a varint for a {kind} field")
    elif wire != 2:
        raise ProtobufError(f"expected a length-delimited {kind} field")
    if kind == "string":
        return value.decode("utf-8")
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return _signed(value)
    if kind == "time":
        seconds = decode_message("Time", value).get("seconds", 0)
        if not seconds:
            return None
        try:
            moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
        except (OverflowError, OSError, ValueError) as e:
            raise ProtobufError(f"timestamp out of range: {seconds}") from e
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "extra":
        return decode_message("ExtraValue", value).get("items", [])
    if kind == "quantity":
        return decode_message("Quantity", value).get("string", "")
    return decode_message(kind, value)


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    """The JSON form of message ``name`` (fields outside the schema are skipped)."""
    schema = _SCHEMA[name]
    result: dict[str, Any] = {}
    for number, wire, value in _fields(data):
        if number not in schema:
            continue
        json_name, kind = schema[number]
        if kind.startswith("[]"):
            result.setdefault(json_name, []).append(_scalar(kind[2:], wire, value))
        elif kind.startswith("{}"):
            if wire != 2:
                raise ProtobufError(f"expected a map entry for {json_name}")
            entry = {n: (w, v) for n, w, v in _fields(value)}
            key = _scalar("string", *entry.get(1, (2, b"")))
            value_wire, raw_value = entry.get(2, (2, b""))
            result.setdefault(json_name, {})[key] = _scalar(kind[2:], value_wire, raw_value)
        else:
            scalar = _scalar(kind, wire, value)
            # gogo-protobuf writes every optional field; JSON omits empty ones.
            if scalar not in ("", 0, False, None) or isinstance(scalar, dict):
                result[json_name] = scalar
    return result


def decode_object(body: bytes) -> dict[str, Any]:
    """Decode a ``k8s\\x00``-prefixed protobuf object into its JSON form."""
    if not body.startswith(_MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic")
    try:
        envelope = decode_message("Unknown", body[len(_MAGIC) :])
    except (ProtobufError, UnicodeDecodeError, ValueError) as e:
        raise ProtobufError(f"malformed protobuf envelope: {e}") from e
    type_meta = envelope.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    if kind not in KINDS:
        raise UnsupportedProtobufKind(
            f"protobuf bodies of kind {kind!r} are not supported; send JSON"
        )
    raw = base64.b64decode(envelope.get("raw", ""))
    try:
        obj = decode_message(kind, raw)
    except (ProtobufError, UnicodeDecodeError, ValueError) as e:
        raise ProtobufError(f"malformed protobuf {kind}: {e}") from e
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}
