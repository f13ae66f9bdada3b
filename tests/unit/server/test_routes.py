"""Routing raw paths and computing authorization attributes (kube's RequestInfo)."""

from __future__ import annotations

import pytest

from clustergateway.api.types import GroupVersion
from clustergateway.server.routes import (
    Discovery,
    ResourcePath,
    parse_apis_path,
    request_attributes,
)

GV = GroupVersion()
B = b"/apis/cluster.core.oam.dev/v1alpha1"


@pytest.mark.parametrize(
    ("path", "route"),
    [
        (b"/apis", Discovery("group_list")),
        (b"/apis/cluster.core.oam.dev/", Discovery("group")),
        (B, Discovery("resource_list")),
        (B + b"/clustergateways", ResourcePath("clustergateways")),
        (B + b"/clustergateways/", ResourcePath("clustergateways")),
        (B + b"/virtualclusters/c1", ResourcePath("virtualclusters", "c1")),
        (B + b"/clustergateways/c%2D1", ResourcePath("clustergateways", "c-1")),
        (B + b"/clustergateways/c1/health", ResourcePath("clustergateways", "c1", "health")),
        (B + b"/clustergateways/c1/proxy", ResourcePath("clustergateways", "c1", "proxy", b"")),
        (B + b"/clustergateways/c1/proxy/", ResourcePath("clustergateways", "c1", "proxy", b"/")),
        (
            B + b"/clustergateways/c1/proxy/api/v1/namespaces/a%2Fb/pods",
            ResourcePath("clustergateways", "c1", "proxy", b"/api/v1/namespaces/a%2Fb/pods"),
        ),
        (
            B + b"/clustergateways/c1/proxy//double",
            ResourcePath("clustergateways", "c1", "proxy", b"//double"),
        ),
        (B + b"/watch/clustergateways", ResourcePath("clustergateways", legacy_watch=True)),
        (
            B + b"/watch/virtualclusters/c1",
            ResourcePath("virtualclusters", "c1", legacy_watch=True),
        ),
        (B + b"/secrets", None),
        (B + b"/clustergateways/c1/health/x", None),
        (B + b"/virtualclusters/c1/proxy", None),
        (B + b"/watch/clustergateways/c1/proxy", None),
        (b"/apis/other.io/v1alpha1/clustergateways", None),
        (b"/apisx", None),
    ],
)
def test_parse_apis_path(path: bytes, route: object) -> None:
    """Raw paths to routes; the proxy sub-path stays percent-encoded."""
    assert parse_apis_path(path, GV) == route


@pytest.mark.parametrize(
    ("method", "path", "query", "verb", "name", "subresource"),
    [
        (b"GET", B + b"/clustergateways", {}, "list", "", ""),
        (b"GET", B + b"/clustergateways", {b"watch": [b"true"]}, "watch", "", ""),
        (b"GET", B + b"/clustergateways", {b"watch": [b"false"]}, "list", "", ""),
        (
            b"GET",
            B + b"/clustergateways",
            {b"fieldSelector": [b"metadata.name=c1"]},
            "list",
            "c1",
            "",
        ),
        (b"GET", B + b"/watch/clustergateways/c1", {}, "watch", "c1", ""),
        (b"HEAD", B + b"/clustergateways/c1", {}, "get", "c1", ""),
        (b"DELETE", B + b"/clustergateways", {}, "deletecollection", "", ""),
        (b"PUT", B + b"/clustergateways/c1/health", {}, "update", "c1", "health"),
        (b"PATCH", B + b"/clustergateways/c1/health", {}, "patch", "c1", "health"),
        (b"GET", B + b"/clustergateways/c1/proxy/x", {b"watch": [b"1"]}, "get", "c1", "proxy"),
        (b"OPTIONS", B + b"/clustergateways/c1/proxy", {}, "get", "c1", "proxy"),
        (b"POST", B + b"/clustergateways/c1/proxy/x", {}, "create", "c1", "proxy"),
        (b"PUT", B + b"/clustergateways/c1/proxy/x", {}, "update", "c1", "proxy"),
        (b"PATCH", B + b"/clustergateways/c1/proxy/x", {}, "patch", "c1", "proxy"),
        (b"DELETE", B + b"/clustergateways/c1/proxy/x", {}, "delete", "c1", "proxy"),
    ],
)
def test_resource_attributes(
    method: bytes, path: bytes, query: dict, verb: str, name: str, subresource: str
) -> None:
    """Verbs as the apiserver computes them, proxy verbs by HTTP method."""
    attributes = request_attributes(method, path, parse_apis_path(path, GV), query, GV)
    assert attributes.resource_request
    assert (attributes.verb, attributes.name, attributes.subresource) == (verb, name, subresource)
    assert (attributes.api_group, attributes.api_version) == ("cluster.core.oam.dev", "v1alpha1")


def test_non_resource_attributes() -> None:
    """Discovery and other paths are non-resource requests with the lower-case method."""
    attributes = request_attributes(b"GET", b"/apis", parse_apis_path(b"/apis", GV), {}, GV)
    assert (attributes.verb, attributes.path, attributes.resource_request) == (
        "get",
        "/apis",
        False,
    )
    other = request_attributes(b"POST", b"/openapi/v2", None, {}, GV)
    assert (other.verb, other.path) == ("post", "/openapi/v2")
