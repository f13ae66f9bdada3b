"""Request paths classified like kube-apiserver's RequestInfoFactory."""

from __future__ import annotations

import pytest

from clustergateway.testing.requestinfo import parse_request_info


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces", {}, ("list", "", "v1", "", "namespaces", "", "")),
        ("GET", "/api/v1/namespaces/foo", {}, ("get", "", "v1", "foo", "namespaces", "foo", "")),
        (
            "PUT",
            "/api/v1/namespaces/foo/status",
            {},
            ("update", "", "v1", "foo", "namespaces", "foo", "status"),
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods",
            {"watch": ["true"]},
            ("watch", "", "v1", "default", "pods", "", ""),
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods",
            {"watch": ["false"]},
            ("list", "", "v1", "default", "pods", "", ""),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods/demo/exec",
            {},
            ("create", "", "v1", "default", "pods", "demo", "exec"),
        ),
        (
            "GET",
            "/api/v1/watch/namespaces/default/configmaps/x",
            {},
            ("watch", "", "v1", "default", "configmaps", "x", ""),
        ),
        ("GET", "/api/v1/pods", {}, ("list", "", "v1", "", "pods", "", "")),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps",
            {},
            ("deletecollection", "", "v1", "default", "configmaps", "", ""),
        ),
        (
            "PATCH",
            "/apis/cluster.open-cluster-management.io/v1/managedclusters/c1",
            {},
            ("patch", "cluster.open-cluster-management.io", "v1", "", "managedclusters", "c1", ""),
        ),
        (
            "GET",
            "/api/v1/namespaces/a%2Fb/configmaps",
            {},
            ("list", "", "v1", "a/b", "configmaps", "", ""),
        ),
    ],
)
def test_resource_requests(method, path, query, expected):
    """verb, group, version, namespace, resource, name and subresource."""
    info = parse_request_info(method, path, query)
    assert info.is_resource and not info.discovery
    got = (
        info.verb,
        info.group,
        info.version,
        info.namespace,
        info.resource,
        info.name,
        info.subresource,
    )
    assert got == expected


def test_proxy_subresource_keeps_the_rest():
    """Segments after a subresource are kept for pods/x/proxy/... paths."""
    info = parse_request_info("GET", "/api/v1/namespaces/d/pods/p/proxy/a/b", {})
    assert (info.subresource, info.rest) == ("proxy", ("a", "b"))


@pytest.mark.parametrize(
    ("path", "group", "version"),
    [
        ("/api", "", ""),
        ("/apis", "", ""),
        ("/apis/g.io", "g.io", ""),
        ("/api/v1", "", "v1"),
        ("/apis/g.io/v1", "g.io", "v1"),
        ("/api/v1/", "", "v1"),
    ],
)
def test_discovery_paths(path, group, version):
    """Prefix-only paths are discovery requests."""
    info = parse_request_info("GET", path, {})
    assert info.discovery
    assert (info.group, info.version) == (group, version)


@pytest.mark.parametrize("path", ["/", "/version", "/healthz/ping", "/openapi/v3", "/apix/v1"])
def test_non_resource_paths(path):
    """Everything outside /api and /apis is a non-resource request."""
    info = parse_request_info("GET", path, {})
    assert not info.is_resource and not info.discovery
    assert info.verb == "get"
