"""ClusterProxy clusters through a konnectivity proxy-server: the grpcio stand-in
(``clustergateway.testing.konnectivity``) in front of the simulated cluster, driven
with real kubectl (1.33 WebSocket, 1.29 SPDY) and the ``kubernetes`` client.

The whole kubectl and Python-client suites of the proxy (CRUD, ``get -w``, ``logs -f``,
exec, port-forward, cp, watch) run here again with ``proxied`` overridden: the cluster
is a ``ClusterProxy`` Secret and every byte goes through the stand-in, which must have
seen the dials (checked after each test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from clustergateway.registry.samples import cluster_secret
from clustergateway.testing import SimulatedCluster
from clustergateway.testing.konnectivity import KonnectivityPki, KonnectivityProxyServer
from tests.e2e.api_helpers import StreamingKubectl
from tests.e2e.test_proxy_kubectl import (
    test_configmap_crud as test_kubectl_crud,
)
from tests.e2e.test_proxy_kubectl import (
    test_exec_echo_cat_and_exit_code as test_kubectl_exec,
)
from tests.e2e.test_proxy_kubectl import (
    test_get_watch_sees_event as test_kubectl_get_watch,
)
from tests.e2e.test_proxy_kubectl import (
    test_kubectl_cp,
)
from tests.e2e.test_proxy_kubectl import (
    test_logs_follow as test_kubectl_logs_follow,
)
from tests.e2e.test_proxy_kubectl import (
    test_port_forward_moves_bytes as test_kubectl_port_forward,
)
from tests.e2e.test_proxy_pyclient import test_configmap_crud as test_pyclient_crud
from tests.e2e.test_proxy_pyclient import test_watch as test_pyclient_watch
from tests.fixtures.egress import proxy_get
from tests.fixtures.gateway import RunningGateway, wait_until
from tests.fixtures.konnectivity import cluster_proxy_secret, konnectivity_flags
from tests.fixtures.proxy import ProxiedCluster
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e

__all__ = [
    "test_kubectl_cp",
    "test_kubectl_crud",
    "test_kubectl_exec",
    "test_kubectl_get_watch",
    "test_kubectl_logs_follow",
    "test_kubectl_port_forward",
    "test_pyclient_crud",
    "test_pyclient_watch",
]

GatewayFactory = Callable[..., Awaitable[RunningGateway]]


async def start(
    gateway_factory: GatewayFactory, server: KonnectivityProxyServer, *secrets: Any, **config: Any
) -> RunningGateway:
    gateway = await gateway_factory(
        mode="memory", secrets=list(secrets), **konnectivity_flags(server, **config)
    )
    await wait_until(lambda: gateway.registry.synced)
    return gateway


@pytest_twisted.async_yield_fixture
async def proxied(
    sim: SimulatedCluster, konnectivity: KonnectivityProxyServer, gateway_factory: GatewayFactory
) -> AsyncIterator[ProxiedCluster]:
    """``sim`` as the ClusterProxy cluster ``sim``, reached only through the stand-in
    (the Secret has no endpoint at all)."""
    konnectivity.add_cluster("sim", "127.0.0.1", sim.port)
    gateway = await start(gateway_factory, konnectivity, cluster_proxy_secret(sim, "sim"))
    yield ProxiedCluster(gateway, sim, "sim", gateway.proxy_kubeconfig("sim"))
    assert konnectivity.dials >= 1 and konnectivity.channels == 1


@pytest_twisted.ensureDeferred
async def test_get_through_the_tunnel(
    sim: SimulatedCluster, konnectivity: KonnectivityProxyServer, gateway_factory: GatewayFactory
) -> None:
    """A ClusterProxy cluster answers through the stand-in; Host is the cluster name and
    the cluster's certificate was verified (its CA, tls-server-name localhost)."""
    gateway = await start(gateway_factory, konnectivity, cluster_proxy_secret(sim))
    code, body = await proxy_get(gateway, "c1")
    assert code == 200, body["message"]
    assert body["kind"] == "NamespaceList"
    assert (konnectivity.channels, konnectivity.dials) == (1, 1)
    assert sim.requests[-1].header("host") == "c1"


@pytest.mark.filterwarnings("ignore:Using readBody with a transport")
@pytest_twisted.ensureDeferred
async def test_thousand_requests_one_channel(
    sim: SimulatedCluster, konnectivity: KonnectivityProxyServer, gateway_factory: GatewayFactory
) -> None:
    """1,000 sequential GETs (kept-alive client) use one gRPC channel and one dial: the
    dialed connection is pooled like a Const cluster's TCP connection."""
    from twisted.internet import reactor, ssl
    from twisted.web.client import Agent, HTTPConnectionPool, readBody
    from twisted.web.http_headers import Headers
    from twisted.web.iweb import IPolicyForHTTPS
    from zope.interface import implementer

    gateway = await start(gateway_factory, konnectivity, cluster_proxy_secret(sim))
    trust = ssl.Certificate.loadPEM(gateway.ca_path.read_bytes())

    @implementer(IPolicyForHTTPS)
    class TrustGateway:
        def creatorForNetloc(self, hostname: bytes, port: int) -> Any:  # noqa: N802
            return ssl.optionsForClientTLS("127.0.0.1", trustRoot=trust)

    pool = HTTPConnectionPool(reactor)
    agent = Agent(reactor, contextFactory=TrustGateway(), pool=pool)
    url = (
        gateway.url + "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy"
        "/api/v1/namespaces/default/configmaps"
    ).encode()
    headers = Headers({b"authorization": [b"Bearer standalone"]})
    try:
        for _ in range(1000):
            response = await agent.request(b"GET", url, headers)
            await readBody(response)
            assert response.code == 200
    finally:
        await pool.closeCachedConnections()
    assert konnectivity.channels == 1
    assert konnectivity.dials == 1, konnectivity.dials
    assert len([r for r in sim.requests if r.path.endswith("/configmaps")]) == 1000


@pytest_twisted.ensureDeferred
async def test_killed_proxy_server_ends_watch_then_reconnects(
    sim: SimulatedCluster, konnectivity: KonnectivityProxyServer, gateway_factory: GatewayFactory
) -> None:
    """Killing the proxy-server mid-watch ends kubectl's watch cleanly; once it is back,
    the next request opens a new channel and succeeds."""
    gateway = await start(gateway_factory, konnectivity, cluster_proxy_secret(sim))
    kubectl = kubectl_binary("1.33")
    kc = gateway.proxy_kubeconfig("c1")
    watch = StreamingKubectl.start(kubectl, kc, "get", "configmaps", "-w", "--no-headers")
    try:
        await wait_until(lambda: len(sim.watches) >= 1, timeout=30)
        assert sim.connection_protocols().count("h2") == 1  # the watch: an HTTP/2 stream
        # The watch's head and an event reached kubectl through the tunnel: only then
        # is it a watch to end (a request still waiting for its head is retried on a
        # new connection, and with the proxy-server gone that is a 502).
        sim.store.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "after-watch", "namespace": "default"},
                "data": {},
            }
        )
        await wait_until(lambda: watch.first_time("after-watch") is not None, timeout=30)
        await deferToThread(konnectivity.stop)
        await wait_until(lambda: watch.process.poll() is not None, timeout=30)
        assert watch.process.returncode == 0, watch.stop()
    finally:
        watch.stop()
    code, status = await proxy_get(gateway, "c1")
    assert code == 502 and status["reason"] == "BadGateway", status
    assert f"via konnectivity proxy-server 127.0.0.1:{konnectivity.port}" in status["message"]
    await deferToThread(konnectivity.start)
    await _until_ok(gateway)
    result = await run_kubectl(kubectl, kc, "get", "configmaps", "-o", "name")
    assert result.returncode == 0, result.stderr
    assert konnectivity.channels == 2


async def _until_ok(gateway: RunningGateway, tries: int = 40) -> None:
    """GET until 200: dials fail fast while the dialer backs off after a failed connect."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(tries):
        if (await proxy_get(gateway, "c1"))[0] == 200:
            return
        await deferLater(reactor, 0.25)
    raise AssertionError("the cluster did not answer again through the restarted proxy-server")


@pytest_twisted.ensureDeferred
async def test_tunnel_errors_are_statuses(
    tmp_path: Any,
    sim: SimulatedCluster,
    konnectivity: KonnectivityProxyServer,
    gateway_factory: GatewayFactory,
) -> None:
    """A dial the proxy-server refuses, a cluster no agent serves, a proxy-server with
    another CA and a gateway certificate it does not trust: each a 502 Status naming the
    proxy-server and the cause; a Const cluster on the same gateway is unaffected."""
    const = cluster_secret("direct", endpoint=sim.url, token=sim.token, ca=sim.ca_pem)
    gateway = await start(
        gateway_factory,
        konnectivity,
        cluster_proxy_secret(sim),
        cluster_proxy_secret(sim, "nowhere"),
        const,
    )
    via = f"via konnectivity proxy-server 127.0.0.1:{konnectivity.port}"
    code, status = await proxy_get(gateway, "nowhere")
    assert code == 502 and status["reason"] == "BadGateway", status
    assert status["message"] == (
        f"cluster nowhere: dial tcp nowhere:443 {via}: the proxy-server refused the dial "
        "to nowhere:443: No agent available for nowhere:443"
    ), status["message"]
    konnectivity.refuse_dials = "dial refused for the test"
    code, status = await proxy_get(gateway, "c1")
    assert (
        code == 502
        and "refused the dial to c1:443: dial refused for the test" in (status["message"])
    ), status
    assert (await proxy_get(gateway, "direct"))[0] == 200
    konnectivity.refuse_dials = None

    other = KonnectivityPki.create(tmp_path / "other-pki")
    wrong_ca = await start(
        gateway_factory, konnectivity, cluster_proxy_secret(sim), proxy_ca_cert=other.ca_path
    )
    code, status = await proxy_get(wrong_ca, "c1")
    assert code == 502, status
    assert status["message"].startswith(
        f"cluster c1: dial tcp c1:443 {via}: TLS handshake "
        f"with 127.0.0.1:{konnectivity.port} failed"
    ), status
    untrusted = await start(
        gateway_factory,
        konnectivity,
        cluster_proxy_secret(sim),
        proxy_cert=other.client_cert_path,
        proxy_key=other.client_key_path,
    )
    code, status = await proxy_get(untrusted, "c1")
    assert code == 502, status
    assert via in status["message"], status
    for text in (status["message"],):
        assert "PRIVATE KEY" not in text and "CERTIFICATE" not in text


@pytest_twisted.ensureDeferred
async def test_stalled_proxy_server_times_out_the_dial(
    sim: SimulatedCluster, konnectivity: KonnectivityProxyServer, gateway_factory: GatewayFactory
) -> None:
    """A proxy-server that holds its dial answers: after --proxy-dial-timeout the request
    is a 504 naming the proxy-server, a Const cluster answers meanwhile, and once the
    proxy-server moves again so does the ClusterProxy cluster."""
    const = cluster_secret("direct", endpoint=sim.url, token=sim.token, ca=sim.ca_pem)
    gateway = await start(
        gateway_factory, konnectivity, cluster_proxy_secret(sim), const, proxy_dial_timeout=1.0
    )
    konnectivity.stalled = True
    try:
        code, status = await proxy_get(gateway, "c1")
        assert code == 504 and status["reason"] == "Timeout", status
        assert status["message"] == (
            f"cluster c1: dial tcp c1:443 via konnectivity proxy-server "
            f"127.0.0.1:{konnectivity.port}: no dial response within 1s"
        ), status["message"]
        assert (await proxy_get(gateway, "direct"))[0] == 200
    finally:
        konnectivity.stalled = False
    assert (await proxy_get(gateway, "c1"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_dropped_channel_ends_python_watch_cleanly(
    sim: SimulatedCluster, konnectivity: KonnectivityProxyServer, gateway_factory: GatewayFactory
) -> None:
    """The channel dropped mid-watch (the proxy-server restarts at once): the
    ``kubernetes`` client's watch ends without an error, and the next list works on
    a new channel."""
    from kubernetes import watch
    from kubernetes.client import CoreV1Api

    gateway = await start(gateway_factory, konnectivity, cluster_proxy_secret(sim))
    api = CoreV1Api(ProxiedCluster(gateway, sim, "c1", gateway.kubeconfig).api_client())

    def watch_until_end() -> list[str]:
        seen = []
        for event in watch.Watch().stream(api.list_namespaced_config_map, "default"):
            seen.append(event["object"].metadata.name)
        return seen

    ended = deferToThread(watch_until_end)
    await wait_until(lambda: len(sim.watches) >= 1, timeout=30)
    await deferToThread(konnectivity.drop_channels)
    await ended  # returns: the stream ended cleanly (an error would raise here)
    await _until_ok(gateway)
    names = await deferToThread(lambda: api.list_namespaced_config_map("default"))
    assert names.kind == "ConfigMapList"
    assert konnectivity.channels == 2


@pytest_twisted.ensureDeferred
async def test_cluster_certificate_is_checked_through_the_tunnel(
    tmp_path: Any,
    sim: SimulatedCluster,
    konnectivity: KonnectivityProxyServer,
    gateway_factory: GatewayFactory,
) -> None:
    """The cluster's certificate is verified inside the tunnel with the Secret's CA: a
    CA that did not sign it, or a name it does not carry, is a 502 naming the cluster;
    the same cluster without a CA (not verified, as Go always does) answers."""
    other = KonnectivityPki.create(tmp_path / "not-the-cluster-ca")
    for name in ("wrong-ca", "wrong-name", "no-ca"):
        konnectivity.add_cluster(name, "127.0.0.1", sim.port)
    gateway = await start(
        gateway_factory,
        konnectivity,
        cluster_proxy_secret(sim, "wrong-ca", ca=other.ca.cert_pem),
        cluster_proxy_secret(sim, "wrong-name", extra_data={}),  # checked against "wrong-name"
        cluster_proxy_secret(sim, "no-ca", ca=None, extra_data={}),
    )
    for name in ("wrong-ca", "wrong-name"):
        code, status = await proxy_get(gateway, name)
        assert code == 502, status
        assert status["message"].startswith(
            f"cluster {name}: TLS handshake with {name}:443 failed"
        ), status["message"]
    code, body = await proxy_get(gateway, "no-ca")
    assert code == 200, body
