"""Accept-header negotiation (clustergateway.testing.media)."""

from __future__ import annotations

import pytest

from clustergateway.testing.media import choose_representation, parse_accept

KUBECTL_GET = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)
AGGREGATED_133 = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)
AGGREGATED_129 = (
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


@pytest.mark.parametrize(
    ("accept", "discovery", "kind", "version"),
    [
        ("", False, "", ""),
        ("*/*", False, "", ""),
        ("application/json", False, "", ""),
        ("application/vnd.kubernetes.protobuf,application/json", False, "", ""),
        (KUBECTL_GET, False, "Table", "v1"),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", False, "Table", "v1beta1"),
        (
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            False,
            "PartialObjectMetadata",
            "v1",
        ),
        (AGGREGATED_133, True, "APIGroupDiscoveryList", "v2"),
        (AGGREGATED_129, True, "APIGroupDiscoveryList", "v2beta1"),
        (AGGREGATED_133, False, "", ""),
        ("application/json;as=Unknown;v=v1;g=x,application/json", False, "", ""),
    ],
)
def test_choose(accept, discovery, kind, version):
    """The first acceptable media range decides the representation."""
    chosen = choose_representation(accept, discovery=discovery)
    assert chosen is not None
    assert (chosen.as_kind, chosen.version) == (kind, version)


@pytest.mark.parametrize("accept", ["application/vnd.kubernetes.protobuf", "text/html"])
def test_unacceptable(accept):
    """Nothing servable offered: None (the server answers 406)."""
    assert choose_representation(accept) is None


def test_content_type_of_table():
    """A Table answer names itself in Content-Type."""
    chosen = choose_representation(KUBECTL_GET)
    assert chosen.content_type == "application/json;as=Table;g=meta.k8s.io;v=v1"


def test_parse_accept_params():
    """Parameters are split and keyed by lower-case name."""
    (media,) = parse_accept('application/json; AS="Table" ;v=v1')
    assert media.mime == "application/json"
    assert media.param("as") == "Table"
