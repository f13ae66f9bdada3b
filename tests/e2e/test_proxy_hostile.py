"""Hostile targets at the real gateway: answered with a Status, never forwarded astray.

The ``prefixed`` cluster's endpoint has a path (``/k8s/clusters/c-abc``, as
Rancher's are) on the echo upstream, which answers with exactly what it
received; so these tests see both what the caller got and what, if anything,
reached the cluster.  Each target goes over HTTP/1.1 (GET: the channel path; POST:
twisted.web's) and as an HTTP/2 stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from clustergateway.certs import issue_cert, make_ca
from clustergateway.registry.samples import cluster_secret
from tests.e2e.test_proxy_raw import exchange, h2_get
from tests.fixtures.gateway import PROXY_PATH, wait_until
from tests.fixtures.proxy import ProxiedCluster
from tests.unit.proxy.upstream import Upstream

pytestmark = pytest.mark.e2e

PREFIX = b"/k8s/clusters/c-abc"
PREFIXED = PROXY_PATH.format(cluster="prefixed").encode()

ESCAPES = [
    b"/.%2e/.%2e/.%2e/k8s/clusters/other/api/v1/namespaces",
    b"/api/v1/../../../other/api/v1/namespaces",
    b"/%2e%2e%2f%2e%2e%2fother",
    b"/%252e%252e/%252e%252e/other",
    b"/..%5c..%5cother",
    b"/%ef%bc%8e%ef%bc%8e/other",
    b"/%c0%ae%c0%ae/other",
    b"/api/v1/namespaces/a%00b",
]


@pytest_twisted.async_yield_fixture
async def prefixed(proxied: ProxiedCluster) -> AsyncIterator[Upstream]:
    """The echo upstream, registered as cluster ``prefixed`` with a path in its endpoint."""
    from twisted.internet import reactor

    ca = make_ca("prefixed-ca")
    upstream = Upstream(reactor, issue_cert(ca, "echo", hosts=("127.0.0.1",), server=True))
    upstream.start()
    registry = proxied.gateway.registry
    endpoint = upstream.url + PREFIX.decode()
    registry.apply(
        "ADDED", cluster_secret("prefixed", endpoint=endpoint, token="t", ca=ca.cert_pem)
    )
    await wait_until(lambda: registry.entry("prefixed") is not None)
    yield upstream
    await upstream.stop()


def request(method: bytes, target: bytes) -> bytes:
    body = b"{}" if method == b"POST" else b""
    length = b"Content-Length: %d\r\n" % len(body) if body else b""
    return (
        method
        + b" "
        + target
        + b" HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer x\r\n"
        + length
        + b"Connection: close\r\n\r\n"
        + body
    )


def assert_bad_request(head: bytes, body: bytes) -> None:
    assert head.startswith(b"HTTP/1.1 400 "), head
    status = json.loads(body)
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 400, "BadRequest")
    assert "cluster prefixed:" in status["message"]
    assert "proxied path" in status["message"], status


@pytest.mark.parametrize("method", [b"GET", b"POST"])
@pytest_twisted.ensureDeferred
async def test_dot_segments_in_any_encoding_are_refused(
    proxied: ProxiedCluster, prefixed: Upstream, method: bytes
) -> None:
    """A path that could climb out of the endpoint's path is a 400 Status; nothing is
    sent to the cluster, so its credential never travels to another cluster's path."""
    for escape in ESCAPES:
        head, body = await exchange(proxied, request(method, PREFIXED + escape))
        assert_bad_request(head, body)
    assert prefixed.requests == []


@pytest_twisted.ensureDeferred
async def test_dot_segments_over_http2_are_refused(
    proxied: ProxiedCluster, prefixed: Upstream
) -> None:
    """The same over HTTP/2 streams, as the hub's aggregator sends requests."""
    port, ca = proxied.gateway.port, str(proxied.gateway.ca_path)
    for escape in ESCAPES:
        headers, body, outcome = await deferToThread(h2_get, port, ca, PREFIXED + escape)
        assert (headers[b":status"], outcome) == (b"400", "ended"), escape
        status = json.loads(body)
        assert status["code"] == 400 and "proxied path" in status["message"]
    assert prefixed.requests == []


@pytest.mark.parametrize("method", [b"GET", b"POST"])
@pytest_twisted.ensureDeferred
async def test_ordinary_paths_and_utf8_queries_are_forwarded_verbatim(
    proxied: ProxiedCluster, prefixed: Upstream, method: bytes
) -> None:
    """Kubernetes paths (``%2F`` kept), and queries with non-ASCII escapes, reach the
    cluster under its endpoint path byte for byte: never the gateway's own 500."""
    targets = [
        b"/api/v1/namespaces/default/configmaps?labelSelector=caf%C3%A9",
        b"/api/v1/namespaces/a%2Fb/pods?fieldSelector=x%3D%FF%FE&watch=0",
        b"/apis/apps/v1/namespaces/x/deployments/a.b-c",
    ]
    for target in targets:
        head, body = await exchange(proxied, request(method, PREFIXED + target))
        assert head.startswith(b"HTTP/1.1 200 "), (target, head, body)
        assert json.loads(body)["uri"] == (PREFIX + target).decode("latin-1")
    assert [r["uri"] for r in prefixed.requests] == [
        (PREFIX + t).decode("latin-1") for t in targets
    ]


@pytest_twisted.ensureDeferred
async def test_utf8_query_over_http2(proxied: ProxiedCluster, prefixed: Upstream) -> None:
    """A non-ASCII percent-escape in the query of an HTTP/2 stream is forwarded as is."""
    port, ca = proxied.gateway.port, str(proxied.gateway.ca_path)
    target = b"/api/v1/configmaps?labelSelector=caf%C3%A9"
    headers, body, outcome = await deferToThread(h2_get, port, ca, PREFIXED + target)
    assert (headers[b":status"], outcome) == (b"200", "ended"), body
    assert json.loads(body)["uri"] == (PREFIX + target).decode()
