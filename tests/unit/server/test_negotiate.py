"""Accept header negotiation."""

from __future__ import annotations

import pytest

from clustergateway import errors
from clustergateway.server.negotiate import Representation, negotiate

KUBECTL_GET = (
    b"application/json;as=Table;v=v1;g=meta.k8s.io,"
    b"application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, Representation("json")),
        (b"", Representation("json")),
        (b"*/*", Representation("json")),
        (b"application/json", Representation("json")),
        (b"application/json;stream=watch", Representation("json")),
        (KUBECTL_GET, Representation("table", "v1")),
        (b"application/json;as=Table;v=v1beta1;g=meta.k8s.io", Representation("table", "v1beta1")),
        (
            b"application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            Representation("partial", "v1"),
        ),
        (b"application/vnd.kubernetes.protobuf,application/json", Representation("json")),
        (b"application/yaml", Representation("yaml")),
        (b"application/json;q=0.5,application/yaml", Representation("yaml")),
        (b"application/json;as=Table;v=v2;g=meta.k8s.io,application/json", Representation("json")),
    ],
)
def test_negotiate(accept: bytes | None, expected: Representation) -> None:
    """The first acceptable media range by q, then order; unknown variants are skipped."""
    assert negotiate(accept) == expected


def test_not_allowed_falls_through_or_fails() -> None:
    """A representation the endpoint cannot produce is skipped; nothing left is 406."""
    assert negotiate(KUBECTL_GET, frozenset({"json"})) == Representation("json")
    with pytest.raises(errors.NotAcceptable):
        negotiate(b"application/yaml", frozenset({"json", "table"}))
    with pytest.raises(errors.NotAcceptable):
        negotiate(b"application/vnd.kubernetes.protobuf")


def test_content_types() -> None:
    """The Content-Type sent for each representation."""
    assert (
        Representation("table", "v1").content_type
        == b"application/json;as=Table;v=v1;g=meta.k8s.io"
    )
    assert Representation("yaml").content_type == b"application/yaml"
    assert Representation().content_type == b"application/json"
