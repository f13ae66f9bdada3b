"""Long-running requests share HTTP/2 connections to the cluster (``proxy.h2client``).

The simulated cluster offers ``h2`` in ALPN, as kube-apiserver does.  Watches
and followed logs through the gateway become streams on one HTTP/2 connection
instead of holding an HTTP/1.1 connection each; short requests stay on the
HTTP/1.1 pool.  A cluster that does not offer ``h2`` gets HTTP/1.1 for all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from clustergateway.testing import SimulatedCluster
from tests.e2e.api_helpers import StreamingKubectl
from tests.e2e.test_proxy_load import WATCH, configmap, connect, sockets_on
from tests.fixtures.gateway import RunningGateway, wait_until
from tests.fixtures.proxy import ProxiedCluster, sim_secret
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["1.33", "1.29"], ids=lambda v: f"kubectl{v}")
def kubectl(request: pytest.FixtureRequest) -> str:
    return kubectl_binary(request.param)


def big_configmap(name: str, size: int) -> dict[str, Any]:
    return {**configmap(name), "data": {"blob": "x" * size}}


@pytest_twisted.ensureDeferred
async def test_kubectl_watches_share_one_http2_connection(
    proxied: ProxiedCluster, kubectl: str
) -> None:
    """Three `kubectl get -w` through the gateway: one HTTP/2 connection carries all
    three watches to the cluster, and each sees the new object."""
    sim = proxied.sim
    watchers = [
        StreamingKubectl.start(kubectl, proxied.kubeconfig, "get", "cm", "-w", "--no-headers")
        for _ in range(3)
    ]
    try:
        await wait_until(lambda: len(sim.watches) == 3, timeout=30)
        assert sim.connection_protocols().count("h2") == 1
        sim.store.put(configmap("seen-by-all"))
        await wait_until(
            lambda: all(w.first_time("seen-by-all") is not None for w in watchers), timeout=30
        )
    finally:
        for watcher in watchers:
            watcher.stop()
    await wait_until(lambda: not sim.watches, timeout=10)


@pytest_twisted.ensureDeferred
async def test_followed_logs_and_a_watch_share_the_connection(proxied: ProxiedCluster) -> None:
    """`kubectl logs -f` and `get -w` at once: streams of the same HTTP/2 connection."""
    kubectl = kubectl_binary("1.33")
    proxied.sim.pod_logs[("default", "demo", "main")] = ["first"]
    logs = StreamingKubectl.start(kubectl, proxied.kubeconfig, "logs", "-f", "demo")
    watch = StreamingKubectl.start(kubectl, proxied.kubeconfig, "get", "cm", "-w", "--no-headers")
    sim = proxied.sim
    try:
        await wait_until(lambda: len(logs.texts()) >= 3 and len(sim.watches) == 1, timeout=30)
        assert logs.texts()[:3] == ["first", "main: follow line 2", "main: follow line 3"]
        assert sim.connection_protocols().count("h2") == 1
    finally:
        logs.stop()
        watch.stop()


@pytest_twisted.ensureDeferred
async def test_a_stalled_watcher_does_not_hold_back_another_on_the_same_connection(
    proxied: ProxiedCluster,
) -> None:
    """One client stops reading its watch while ~20 MiB of events go out. The other
    watch on the same HTTP/2 connection still gets every event at once (flow control
    is per stream); the stalled one gets all of them, in order, once it reads again."""
    sim = proxied.sim
    stalled = await connect(proxied)
    reading = await connect(proxied)
    for client in (stalled, reading):
        client.transport.write(WATCH)
    await wait_until(lambda: len(sim.watches) == 2, timeout=30)
    assert sim.connection_protocols().count("h2") == 1
    stalled.transport.pauseProducing()
    names = [f"big-{i:03d}" for i in range(80)]
    for name in names:
        sim.store.put(big_configmap(name, 256 * 1024))
    await wait_until(lambda: names[-1].encode() in reading.data, timeout=60)
    assert names[-1].encode() not in stalled.data
    stalled.transport.resumeProducing()
    await wait_until(lambda: names[-1].encode() in stalled.data, timeout=60)
    seen = [n for n in names if n.encode() in stalled.data]
    assert seen == names
    positions = [stalled.data.index(n.encode()) for n in names]
    assert positions == sorted(positions)


@pytest_twisted.async_yield_fixture
async def http1_cluster(
    tmp_path: Path, gateway_factory: Callable[..., Awaitable[RunningGateway]]
) -> AsyncIterator[ProxiedCluster]:
    """A cluster that offers only HTTP/1.1 (as behind an HTTP/1.1-only proxy)."""
    from twisted.internet import reactor

    sim = SimulatedCluster.create(tmp_path / "sim1", reactor=reactor)
    sim.http2 = False
    await sim.start(port=0, interface="127.0.0.1")
    try:
        gateway = await gateway_factory(mode="memory", secrets=[sim_secret(sim)])
        await wait_until(lambda: gateway.registry.synced)
        yield ProxiedCluster(gateway, sim, "sim", gateway.proxy_kubeconfig("sim"))
    finally:
        await sim.stop()


@pytest_twisted.ensureDeferred
async def test_a_cluster_without_http2_gets_watches_over_http1(
    http1_cluster: ProxiedCluster,
) -> None:
    """Watches still work against an HTTP/1.1-only cluster, one connection each."""
    sim = http1_cluster.sim
    kubectl = kubectl_binary("1.33")
    watchers = [
        StreamingKubectl.start(kubectl, http1_cluster.kubeconfig, "get", "cm", "-w", "--no-headers")
        for _ in range(2)
    ]
    try:
        await wait_until(lambda: len(sim.watches) == 2, timeout=30)
        protocols = sim.connection_protocols()
        assert "h2" not in protocols and len(protocols) >= 2
        sim.store.put(configmap("over-http1"))
        await wait_until(
            lambda: all(w.first_time("over-http1") is not None for w in watchers), timeout=30
        )
    finally:
        for watcher in watchers:
            watcher.stop()


@pytest_twisted.ensureDeferred
async def test_python_client_watch_and_list_through_the_gateway(proxied: ProxiedCluster) -> None:
    """The kubernetes Python client: a list (HTTP/1.1 upstream) and a watch (HTTP/2
    upstream) agree on the objects."""
    from kubernetes import client, watch
    from twisted.internet.threads import deferToThread

    sim = proxied.sim
    sim.store.put(configmap("listed"))
    api = client.CoreV1Api(proxied.api_client())

    def list_then_watch() -> list[str]:
        listed = api.list_namespaced_config_map("default")
        names = []
        for event in watch.Watch().stream(
            api.list_namespaced_config_map,
            "default",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=5,
        ):
            names.append(event["object"].metadata.name)
            if event["object"].metadata.name == "after-list":
                break
        return names

    done = deferToThread(list_then_watch)
    await wait_until(lambda: len(sim.watches) == 1, timeout=30)
    assert "h2" in sim.connection_protocols()
    sim.store.put(configmap("after-list"))
    names = await done
    assert names == ["after-list"]


@pytest_twisted.ensureDeferred
async def test_upstream_http1_only_gives_each_watch_its_own_connection(
    sim: SimulatedCluster, gateway_factory: Callable[..., Awaitable[RunningGateway]]
) -> None:
    """``--upstream-http1-only``: the cluster offers h2, yet two raw watches through the
    gateway hold an HTTP/1.1 connection each."""
    gateway = await gateway_factory(
        mode="memory", secrets=[sim_secret(sim)], upstream_http1_only=True
    )
    await wait_until(lambda: gateway.registry.synced)
    proxied = ProxiedCluster(gateway, sim, "sim", gateway.proxy_kubeconfig("sim"))
    clients = [await connect(proxied) for _ in range(2)]
    for client in clients:
        client.transport.write(WATCH)
    await wait_until(lambda: len(sim.watches) == 2, timeout=30)
    assert sim.connection_protocols() == ["http/1.1", "http/1.1"]
    assert sockets_on(sim.port) == 2
    sim.store.put(configmap("one-each"))
    await wait_until(lambda: all(b"one-each" in c.data for c in clients), timeout=30)
    for client in clients:
        client.transport.loseConnection()
