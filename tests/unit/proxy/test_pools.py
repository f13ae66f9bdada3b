"""Connection pools per cluster credential, and their rebuild when a Secret changes."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest_twisted
from twisted.internet.testing import MemoryReactorClock

from clustergateway.proxy.credentials import ResolvedCredential
from clustergateway.proxy.pools import ClusterPools
from clustergateway.registry.model import (
    ClusterGateway,
    CredentialSpec,
    EndpointSpec,
    RegistryEntry,
)
from tests.unit.proxy.conftest import (
    FakeRegistry,
    Harness,
    Pki,
    eventually,
    make_cluster,
    raw_connect,
)
from tests.unit.proxy.upstream import Upstream

TOKEN = ResolvedCredential(authorization=b"Bearer t")


def cluster(
    address: str = "https://127.0.0.1:6443", token: str = "t", name: str = "c1"
) -> ClusterGateway:
    return ClusterGateway(
        name,
        EndpointSpec(address=address, insecure=True),
        CredentialSpec("ServiceAccountToken", token=token),
    )


def test_same_cluster_same_upstream() -> None:
    """The same cluster (object or equal value) keeps its upstream; others get their own."""
    pools = ClusterPools(MemoryReactorClock())
    c1 = cluster()
    first = pools.upstream_for(c1, TOKEN)
    assert pools.upstream_for(c1, TOKEN) is first
    assert pools.upstream_for(attrs.evolve(c1, labels={"a": "b"}), TOKEN) is first
    other = pools.upstream_for(cluster(name="c2"), TOKEN)
    assert other is not first and other.pool is not first.pool
    assert not first.pool.retired


def test_changed_access_retires_old_pool(pki: Pki) -> None:
    """A new endpoint, token or client certificate gives a new upstream; the old one is retired."""
    pools = ClusterPools(MemoryReactorClock())
    first = pools.upstream_for(cluster(), TOKEN)
    second = pools.upstream_for(cluster(token="rotated"), TOKEN)
    assert second is not first and first.pool.retired and not second.pool.retired
    cert = ResolvedCredential(client_certificate=pki.client.cert_pem, client_key=pki.client.key_pem)
    with_cert = pools.upstream_for(cluster(token="rotated"), cert)
    assert with_cert is not second and second.pool.retired


def test_registry_events_retire() -> None:
    """Deleting a cluster, or changing how it is reached, retires its pool at once;
    a change that does not affect access keeps it."""
    pools = ClusterPools(MemoryReactorClock())
    c1 = cluster()
    up = pools.upstream_for(c1, TOKEN)
    pools.on_registry_event("MODIFIED", RegistryEntry("c1", {}, attrs.evolve(c1, healthy=True)), 2)
    assert not up.pool.retired
    pools.on_registry_event("MODIFIED", RegistryEntry("c1", {}, cluster(token="x")), 3)
    assert up.pool.retired
    up = pools.upstream_for(c1, TOKEN)
    pools.on_registry_event("DELETED", RegistryEntry("c1", {}, c1), 4)
    assert up.pool.retired
    up = pools.upstream_for(c1, TOKEN)
    pools.on_registry_event("MODIFIED", RegistryEntry("c1", {}, None, error="bad"), 5)
    assert up.pool.retired


@pytest_twisted.ensureDeferred
async def test_secret_change_closes_idle_keeps_streams(
    harness: Harness, upstream: Upstream, pki: Pki
) -> None:
    """When the Secret changes, idle connections close at once, a watch in flight keeps
    streaming on its old connection (closed when it ends), and new requests use the new
    credential on a new connection."""
    from twisted.internet import reactor

    watch = await raw_connect(reactor, harness.port)
    watch.transport.write(b"GET /clusters/c1/proxy/watch?watch=true HTTP/1.1\r\nHost: g\r\n\r\n")
    await watch.wait_contains(b'"ADDED"')
    response, _ = await harness.request(b"GET", "c1", "/echo/idle")
    assert response.code == 200
    assert len(upstream.connections) == 2  # the watch's and an idle pooled one

    harness.registry.put(make_cluster(upstream, pki, token="rotated"))
    await eventually(reactor, lambda: len(upstream.connections) == 1)
    upstream.push(b'{"type":"MODIFIED"}\n')
    await watch.wait_contains(b'"MODIFIED"')

    _, body = await harness.request(b"GET", "c1", "/echo/after")
    headers = {n.lower(): v for n, v in json.loads(body)["headers"]}
    assert headers["authorization"] == "Bearer rotated"
    assert len(upstream.connections) == 2

    for request in list(upstream.watches):
        request.finish()
    await watch.wait_contains(b"\r\n0\r\n\r\n")
    await eventually(reactor, lambda: len(upstream.connections) == 1)
    watch.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_cluster_deleted_is_404_and_closes(harness: Harness, upstream: Upstream) -> None:
    """A deleted cluster answers 404 and its pooled connections close."""
    from twisted.internet import reactor

    response, _ = await harness.request(b"GET", "c1", "/echo/x")
    assert response.code == 200 and len(upstream.connections) == 1
    harness.registry.delete("c1")
    await eventually(reactor, lambda: not upstream.connections)
    response, body = await harness.request(b"GET", "c1", "/echo/x")
    status = json.loads(body)
    assert response.code == 404
    assert status["reason"] == "NotFound"
    assert status["message"] == 'clustergateways.cluster.core.oam.dev "c1" not found'


@pytest_twisted.ensureDeferred
async def test_unusable_clusters_are_503(pki: Pki) -> None:
    """Clusters that cannot be used answer 503 naming the cluster and the cause."""
    from twisted.internet import reactor

    from clustergateway.errors import ServiceUnavailable
    from tests.unit.proxy.conftest import start_harness, stop_harness

    registry = FakeRegistry()
    registry.clusters["broken"] = ServiceUnavailable(
        'secret vela-system/broken: missing data key "endpoint"'
    )
    for name, spec in {
        "tunnel": EndpointSpec(type="ClusterProxy"),
        "badca": EndpointSpec(address="https://127.0.0.1:1", ca_bundle=b"garbage"),
    }.items():
        registry.put(ClusterGateway(name, spec, CredentialSpec("ServiceAccountToken", token="t")))
    registry.put(
        ClusterGateway(
            "exec",
            EndpointSpec(address="https://127.0.0.1:1", insecure=True),
            CredentialSpec("Dynamic", exec_config="{}"),
        )
    )
    h = start_harness(reactor, registry)
    try:
        expected = {
            "broken": 'missing data key "endpoint"',
            "tunnel": "ClusterProxy",
            "badca": "CA bundle",
            "exec": "exec credentials not yet supported",
        }
        for name, text in expected.items():
            response, body = await h.request(b"GET", name, "/api")
            status: dict[str, Any] = json.loads(body)
            assert response.code == 503, name
            assert status["kind"] == "Status" and status["reason"] == "ServiceUnavailable"
            assert text in status["message"]
            assert name in status["message"]
    finally:
        await stop_harness(h)


@pytest_twisted.ensureDeferred
async def test_target_authorization_hook(upstream: Upstream, pki: Pki) -> None:
    """With a target authorizer (``--authorize-proxy-subpath``) it sees the caller and
    the raw target, and its Forbidden reaches the client before anything is sent."""
    from twisted.internet import reactor

    from clustergateway.errors import Forbidden
    from tests.unit.proxy.conftest import CALLER, start_harness, stop_harness

    seen: list[tuple[Any, ...]] = []

    async def authorize(user: Any, cluster: str, method: str, subpath: str, query: str) -> None:
        seen.append((user, cluster, method, subpath, query))
        if "secrets" in subpath:
            raise Forbidden(f'proxying to cluster "{cluster}" is forbidden')

    registry = FakeRegistry()
    registry.put(make_cluster(upstream, pki))
    h = start_harness(reactor, registry)
    h.proxy.authorize_target = authorize
    try:
        response, _ = await h.request(b"GET", "c1", "/echo/api/v1/configmaps?watch=1")
        assert response.code == 200
        response, body = await h.request(b"DELETE", "c1", "/api/v1/namespaces/d/secrets/s")
        assert response.code == 403 and json.loads(body)["reason"] == "Forbidden"
        assert seen == [
            (CALLER, "c1", "GET", "/echo/api/v1/configmaps", "watch=1"),
            (CALLER, "c1", "DELETE", "/api/v1/namespaces/d/secrets/s", ""),
        ]
        assert len(upstream.requests) == 1
    finally:
        await stop_harness(h)


@pytest_twisted.ensureDeferred
async def test_new_upstream_connections_log_nothing() -> None:
    """Opening upstream connections does not log (no "Starting factory" line per
    connection), plain HTTP clusters included."""
    from twisted.internet import reactor
    from twisted.logger import globalLogPublisher

    from tests.unit.proxy.conftest import start_harness, stop_harness

    plain = Upstream(reactor).start()
    registry = FakeRegistry()
    registry.put(make_cluster(plain))
    h = start_harness(reactor, registry)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for token in ("one", "two"):  # the second is a new pool, hence a new connection
            registry.put(make_cluster(plain, token=token))
            response, _ = await h.request(b"GET", "c1", "/echo/x")
            assert response.code == 200
    finally:
        globalLogPublisher.removeObserver(events.append)
        await stop_harness(h)
        await plain.stop()
    # The test's own client (an Agent too) still logs; the gateway's pools must not.
    client_endpoint = f"127.0.0.1:{h.port}>"
    ours = [e for e in events if "factory" in e and client_endpoint not in repr(e["factory"])]
    assert len(ours) == 0
    assert len(plain.requests) == 2


@attrs.define
class _Recorded:
    """Stands in for a pool or the HTTP/2 streams: records what it was asked to send."""

    calls: list[tuple[Any, ...]] = attrs.field(factory=list)
    retired: bool = False

    def request(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((*args, *sorted(kwargs.items())))
        return "exchange"

    def close(self) -> None:
        self.retired = True


def _outbound(upstream: Any, method: bytes, body: bytes | None, timeout: float | None) -> Any:
    from clustergateway.proxy.resource import Outbound

    headers = [(b"Host", [b"127.0.0.1:6443"]), (b"Authorization", [b"Bearer t"])]
    return Outbound(upstream, method, b"/api/v1/pods?watch=1", headers, body, False, timeout)


def test_send_puts_long_running_gets_on_http2_streams_and_the_rest_on_the_pool() -> None:
    """``ClusterUpstream.send``: a GET without a response-head timeout (a watch, ``logs
    -f``) goes to the HTTP/2 streams; a timed GET, a body or another method to the
    HTTP/1.1 pool; with HTTP/2 off (``http2_long_running``) everything to the pool."""
    from clustergateway.proxy.pools import PoolSettings

    pools = ClusterPools(MemoryReactorClock())
    upstream = pools.upstream_for(cluster(), TOKEN)
    assert upstream.streams is not None  # https cluster: HTTP/2 for long-running requests
    pool, streams = _Recorded(), _Recorded()
    upstream.pool, upstream.streams = pool, streams  # type: ignore[assignment]
    assert upstream.send("sink", _outbound(upstream, b"GET", None, None)) == "exchange"
    assert len(streams.calls) == 1 and pool.calls == []
    sink, method, path, headers, fallback = streams.calls[0]
    assert (sink, method, path) == ("sink", b"GET", b"/api/v1/pods?watch=1")
    fallback("sink")  # the HTTP/1.1 way, should the cluster not speak h2
    assert pool.calls[-1][0] == "sink" and b"watch=1" in pool.calls[-1][1]
    pool.calls.clear()
    upstream.send("sink", _outbound(upstream, b"GET", None, 75.0))
    upstream.send("sink", _outbound(upstream, b"DELETE", None, None))
    upstream.send("sink", _outbound(upstream, b"GET", b"{}", None))
    assert len(streams.calls) == 1 and len(pool.calls) == 3
    assert [c[-1] for c in pool.calls] == [
        ("method", b"GET"),
        ("method", b"DELETE"),
        ("method", b"GET"),
    ]
    upstream.retire()
    assert pool.retired and streams.retired

    off = ClusterPools(MemoryReactorClock(), PoolSettings(http2_long_running=False))
    assert off.upstream_for(cluster(), TOKEN).streams is None
    plain = pools.upstream_for(cluster("http://127.0.0.1:8080", name="plain"), TOKEN)
    assert plain.streams is None  # no TLS, no ALPN: HTTP/1.1


def test_cluster_proxy_needs_the_konnectivity_dialer() -> None:
    """Without --proxy-host a ClusterProxy cluster cannot be dialled: the error (a 503
    naming the cluster upstream) says which flags are missing."""
    import pytest

    from clustergateway.proxy.paths import UnsupportedEndpoint

    pools = ClusterPools(MemoryReactorClock())
    tunnelled = ClusterGateway("c9", EndpointSpec(type="ClusterProxy", insecure=True), None)
    with pytest.raises(UnsupportedEndpoint, match="start the gateway with --proxy-host"):
        pools.upstream_for(tunnelled, TOKEN)


def test_cluster_proxy_dials_name_443_through_konnectivity(pki: Pki) -> None:
    """A ClusterProxy cluster's streams come from the konnectivity dialer for
    ``<name>:443``; Host is the name; TLS checks tls-server-name against the Secret's CA;
    the pool and the HTTP/2 streams sit on top as for Const."""
    from clustergateway.proxy.konnectivity import KonnectivityDialer

    reactor = MemoryReactorClock()
    dialer = KonnectivityDialer(reactor, "proxy.example", 8090, creator=None)  # type: ignore[arg-type]
    pools = ClusterPools(reactor, konnectivity=dialer)
    spec = EndpointSpec(type="ClusterProxy", ca_bundle=pki.ca.cert_pem, tls_server_name="api.in")
    upstream = pools.upstream_for(ClusterGateway("c9", spec, None), TOKEN)
    target = upstream.target
    assert (target.host, target.port, target.host_header, target.server_name) == (
        "c9",
        443,
        b"c9",
        "api.in",
    )
    stream = upstream.endpoint.stream  # type: ignore[attr-defined]
    assert (stream.dialer, stream.address) == (dialer, "c9:443")
    assert upstream.streams is not None
    assert upstream.endpoint.connect_timeout is None  # type: ignore[attr-defined]  # the dialer's own
