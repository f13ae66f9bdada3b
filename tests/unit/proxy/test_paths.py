"""Target address, path and query computation (pure functions)."""

from __future__ import annotations

import pytest

from clustergateway.proxy.paths import (
    UnsupportedEndpoint,
    UpstreamTarget,
    ip_version,
    is_long_running,
    join_path,
    query_flag,
    rewrite_query,
    split_uri,
)
from clustergateway.registry.model import EndpointSpec


@pytest.mark.parametrize(
    ("base", "subpath", "expected"),
    [
        (b"", b"", b"/"),
        (b"", b"/", b"/"),
        (b"", b"/api/v1/pods", b"/api/v1/pods"),
        (b"/extra", b"/foo", b"/extra/foo"),
        (b"/extra", b"", b"/extra"),
        (b"/extra", b"/", b"/extra/"),
        (b"", b"/api/v1/namespaces/a%2Fb/configmaps", b"/api/v1/namespaces/a%2Fb/configmaps"),
        (b"", b"/a//b/../c/", b"/a//b/../c/"),
        (b"/k8s/clusters/c-1", b"api", b"/k8s/clusters/c-1/api"),
    ],
)
def test_join_path_is_exact(base: bytes, subpath: bytes, expected: bytes) -> None:
    """The subpath is appended byte for byte under the endpoint path: no cleaning,
    no decoding (``%2F`` stays), trailing slash kept, empty subpath → no redirect."""
    assert join_path(base, subpath) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", b""),
        (b"watch=true&labelSelector=a%3Db", b"watch=true&labelSelector=a%3Db"),
        (b"__dryRun=All", b"dryRun=All"),
        (b"fieldManager=x&__dryRun=All&b=1", b"fieldManager=x&dryRun=All&b=1"),
        (b"dryRun=All", b"dryRun=All"),
        (b"x__dryRun=1", b"x__dryRun=1"),
        (b"impersonate=true&z=1&a=2", b"impersonate=true&z=1&a=2"),
    ],
)
def test_rewrite_query_renames_only_escaped_dry_run(query: bytes, expected: bytes) -> None:
    """Only the ``__dryRun`` key is renamed; order, encoding and other keys stay."""
    assert rewrite_query(query) == expected


def test_split_uri() -> None:
    """The raw URI splits at the first ``?``; the query keeps later ``?`` characters."""
    assert split_uri(b"/a/b?x=1?y") == (b"/a/b", b"x=1?y")
    assert split_uri(b"/a") == (b"/a", b"")


@pytest.mark.parametrize(
    ("query", "value"),
    [
        (b"watch=true", True),
        (b"watch=1", True),
        (b"watch", True),
        (b"watch=false", False),
        (b"watch=0", False),
        (b"watch=False", False),
        (b"a=1&watch=true", True),
        (b"watchy=true", False),
        (b"", False),
    ],
)
def test_query_flag(query: bytes, value: bool) -> None:
    """Boolean query parameters are read like the apiserver reads them."""
    assert query_flag(query, b"watch") is value


@pytest.mark.parametrize(
    ("subpath", "query", "long"),
    [
        (b"/api/v1/configmaps", b"watch=true", True),
        (b"/api/v1/configmaps", b"watch=false", False),
        (b"/api/v1/watch/configmaps", b"", True),
        (b"/api/v1/namespaces/d/pods/p/log", b"follow=true&container=c", True),
        (b"/api/v1/namespaces/d/pods/p/log", b"container=c", False),
        (b"/api/v1/namespaces/d/services/s:80/proxy/x", b"", True),
        (b"/api/v1/nodes/n/proxy/metrics", b"", True),
        (b"/api/v1/namespaces/proxy/configmaps", b"", False),
        (b"/apis/apps/v1/namespaces/proxy/deployments/proxy", b"", False),
        (b"/api/v1/namespaces/d/configmaps/c", b"labelSelector=watch%3Dtrue", False),
    ],
)
def test_long_running(subpath: bytes, query: bytes, long: bool) -> None:
    """Watches, followed logs and nested proxies get no response timeout; others do."""
    assert is_long_running(subpath, query) is long


def test_target_from_endpoint() -> None:
    """Host header keeps the port as written; default ports fill in; path kept."""
    t = UpstreamTarget.from_endpoint(EndpointSpec(address="https://10.0.0.1:6443/extra/"))
    assert (t.scheme, t.host, t.port) == ("https", "10.0.0.1", 6443)
    assert t.host_header == b"10.0.0.1:6443"
    assert t.base_path == b"/extra"
    assert t.url_prefix == b"https://10.0.0.1:6443"
    assert t.server_name == "10.0.0.1"
    assert t.address == "10.0.0.1:6443"
    t = UpstreamTarget.from_endpoint(EndpointSpec(address="kube.example.com"))
    assert (t.scheme, t.host, t.port, t.host_header) == (
        "https",
        "kube.example.com",
        443,
        b"kube.example.com",
    )
    t = UpstreamTarget.from_endpoint(EndpointSpec(address="http://[::1]:8080"))
    assert (t.host, t.port, t.host_header, t.address) == ("::1", 8080, b"[::1]:8080", "[::1]:8080")
    t = UpstreamTarget.from_endpoint(
        EndpointSpec(address="https://127.0.0.1:1", tls_server_name="kubernetes")
    )
    assert t.server_name == "kubernetes"


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (EndpointSpec(type="ClusterProxy"), "ClusterProxy"),
        (EndpointSpec(type="Weird", address="https://a"), "unsupported cluster gateway endpoint"),
        (EndpointSpec(address=""), "empty"),
        (EndpointSpec(address="ftp://a"), "scheme"),
        (EndpointSpec(address="https://a:99999"), "invalid endpoint address"),
        (EndpointSpec(address="https://u:p@a"), "user info"),
    ],
)
def test_unsupported_endpoints(endpoint: EndpointSpec, message: str) -> None:
    """Endpoints that cannot be dialled are refused with a reason (later a 503)."""
    with pytest.raises(UnsupportedEndpoint, match=message) as info:
        UpstreamTarget.from_endpoint(endpoint)
    assert ":p@" not in str(info.value)


def test_ip_version() -> None:
    """IP literals are recognised (they skip name resolution and SNI)."""
    assert ip_version("127.0.0.1") == 4
    assert ip_version("::1") == 6
    assert ip_version("localhost") is None
