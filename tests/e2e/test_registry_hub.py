"""The hub source against the simulated hub: list, watch, resync healing, hub restarts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from clustergateway.hubclient import HubClient
from clustergateway.registry.hub_source import Backoff, HubSecretSource
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.store import SecretRegistry
from clustergateway.testing import SimulatedCluster

pytestmark = pytest.mark.e2e

GROUP = "cluster.core.oam.dev"
NAMESPACE = "vela-system"


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll ``predicate`` on the reactor; return the seconds it took to hold."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await deferLater(_reactor(), 0.01)
    return time.monotonic() - start


def cluster(name: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("token", f"token-of-{name}")
    kwargs.setdefault("endpoint", "https://10.1.2.3:6443")
    return cluster_secret(name, namespace=NAMESPACE, **kwargs)


class Source:
    """A registry fed by a HubSecretSource talking to ``sim``; records registry events."""

    def __init__(self, sim: SimulatedCluster, kubeconfig: Path, resync_period: float) -> None:
        self.registry = SecretRegistry(GROUP)
        self.events: list[tuple[str, str]] = []
        self.registry.subscribe(lambda event, entry, rv: self.events.append((event, entry.name)))
        self.client = HubClient.from_kubeconfig(_reactor(), kubeconfig)
        self.service = HubSecretSource(
            _reactor(),
            self.client,
            NAMESPACE,
            self.registry,
            resync_period=resync_period,
            group=GROUP,
            backoff=Backoff(initial=0.1, maximum=0.5),
        )

    def names(self) -> list[str]:
        return [e.name for e in self.registry.entries()]


@pytest_twisted.async_yield_fixture
async def make_source(sim: SimulatedCluster, sim_kubeconfig: Path):
    started: list[Source] = []

    def make(resync_period: float = 30.0) -> Source:
        source = Source(sim, sim_kubeconfig, resync_period)
        source.service.startService()
        started.append(source)
        return source

    yield make
    for source in started:
        await source.service.stopService()
        await source.client.close()


@pytest_twisted.ensureDeferred
async def test_initial_list(sim: SimulatedCluster, make_source) -> None:
    """The first list brings every labelled Secret of the namespace (valid or not) and
    marks the registry synced; unlabelled Secrets and other namespaces stay out."""
    sim.store.put(cluster("c1"))
    sim.store.put(cluster("broken", endpoint=None))
    sim.store.put(cluster("plain", credential_type=None))
    sim.store.put(cluster_secret("elsewhere", namespace="default", token="x"))
    source = make_source()
    await source.registry.when_synced()
    assert source.names() == ["broken", "c1"]
    assert source.registry.get("c1").credential.token == "token-of-c1"
    assert "endpoint" in source.registry.entry("broken").error


@pytest_twisted.ensureDeferred
async def test_created_secret_appears_within_a_second(sim: SimulatedCluster, make_source) -> None:
    """A Secret created at the hub is in the registry within 1 s (through the watch);
    changes and deletions follow, and removing the label removes the cluster."""
    source = make_source()
    await source.registry.when_synced()
    sim.store.put(cluster("new"))
    took = await eventually(lambda: "new" in source.names())
    assert took < 1.0
    sim.store.put(cluster("new", endpoint="https://10.9.9.9:6443"))
    await eventually(lambda: source.registry.get("new").endpoint.address == "https://10.9.9.9:6443")
    sim.store.put(cluster("new", credential_type=None))
    await eventually(lambda: "new" not in source.names())
    sim.store.put(cluster("new"))
    await eventually(lambda: "new" in source.names())
    sim.store.remove("secrets", NAMESPACE, "new")
    await eventually(lambda: "new" not in source.names())
    assert source.events == [
        ("ADDED", "new"),
        ("MODIFIED", "new"),
        ("DELETED", "new"),
        ("ADDED", "new"),
        ("DELETED", "new"),
    ]
    assert source.service.reflector.lists == 1


def _silence_watches(sim: SimulatedCluster) -> int:
    """Make the hub's open watches lose every later event while staying connected.

    There is no fault knob for "the network lost one event", so the test reaches
    into the simulator's watch streams and cancels their store subscriptions.
    """
    silenced = 0
    for stream in list(sim.watches):
        subscription = stream._subscription
        if subscription is not None:
            subscription.cancel()
            silenced += 1
    return silenced


@pytest_twisted.ensureDeferred
async def test_resync_heals_a_dropped_event(sim: SimulatedCluster, make_source) -> None:
    """An event the watch never delivers is healed by the periodic resync (relist)."""
    source = make_source(resync_period=1.0)
    await source.registry.when_synced()
    await eventually(lambda: len(sim.watches) == 1)
    assert _silence_watches(sim) == 1
    sim.store.put(cluster("missed"))
    await deferLater(_reactor(), 0.3)
    assert "missed" not in source.names()  # the watch really lost it
    took = await eventually(lambda: "missed" in source.names(), timeout=5.0)
    assert took < 3.0
    assert source.service.reflector.lists >= 2
    assert source.events == [("ADDED", "missed")]


@pytest_twisted.ensureDeferred
async def test_hub_restart(sim: SimulatedCluster, make_source) -> None:
    """The hub going away and coming back on the same port: the registry keeps serving
    its last state meanwhile, then catches up without a restart and without spurious
    events for clusters that did not change."""
    sim.store.put(cluster("stays"))
    sim.store.put(cluster("goes"))
    source = make_source()
    await source.registry.when_synced()
    del source.events[:]
    port = sim.port
    await sim.stop()
    await deferLater(_reactor(), 0.5)  # a few failed reconnects
    assert source.names() == ["goes", "stays"]
    assert source.registry.get("stays") and source.registry.synced
    sim.store.put(cluster("arrived"))
    sim.store.remove("secrets", NAMESPACE, "goes")
    await sim.start(port=port)
    await eventually(lambda: source.names() == ["arrived", "stays"], timeout=10.0)
    assert source.events == [("DELETED", "goes"), ("ADDED", "arrived")]
    # and the watch works again
    sim.store.put(cluster("after"))
    took = await eventually(lambda: "after" in source.names())
    assert took < 1.0


@pytest_twisted.ensureDeferred
async def test_hub_restart_helper(sim: SimulatedCluster, make_source) -> None:
    """``sim.restart()`` (down and up at once) is survived the same way."""
    source = make_source()
    await source.registry.when_synced()
    await sim.restart()
    sim.store.put(cluster("later"))
    await eventually(lambda: "later" in source.names(), timeout=10.0)
    assert source.events == [("ADDED", "later")]


@pytest_twisted.ensureDeferred
async def test_hub_down_at_start(tmp_path: Path) -> None:
    """Started while the hub is down: not synced, no crash; synced once the hub is up."""
    reactor = _reactor()
    down = SimulatedCluster.create(tmp_path / "pki", reactor=reactor)
    await down.start(port=0)
    port = down.port
    kubeconfig = down.write_kubeconfig(tmp_path / "kc")
    await down.stop()
    source = Source(down, kubeconfig, resync_period=30.0)
    source.service.startService()
    try:
        await deferLater(reactor, 0.4)
        assert not source.registry.synced
        down.store.put(cluster("c1"))
        await down.start(port=port)
        await source.registry.when_synced()
        assert source.names() == ["c1"]
    finally:
        await source.service.stopService()
        await source.client.close()
        await down.stop()


@pytest.fixture
def sim_cert_kubeconfig(sim: SimulatedCluster, tmp_path: Path) -> Path:
    return sim.write_kubeconfig(tmp_path / "cert-kubeconfig", user="cert")


@pytest_twisted.ensureDeferred
async def test_client_certificate_hub(sim: SimulatedCluster, sim_cert_kubeconfig: Path) -> None:
    """The source works with a client-certificate kubeconfig as well."""
    sim.store.put(cluster("c1"))
    source = Source(sim, sim_cert_kubeconfig, resync_period=30.0)
    source.service.startService()
    try:
        await source.registry.when_synced()
        assert source.names() == ["c1"]
    finally:
        await source.service.stopService()
        await source.client.close()


@pytest_twisted.ensureDeferred
async def test_managed_clusters(sim: SimulatedCluster, sim_kubeconfig: Path) -> None:
    """OCM ManagedClusters served by the hub are watched into the registry and show up
    as VirtualClusters (next to the cluster Secrets)."""
    from clustergateway.registry.hub_source import HubManagedClusterSource

    managed = {
        "apiVersion": "cluster.open-cluster-management.io/v1",
        "kind": "ManagedCluster",
        "metadata": {"name": "ocm-1", "labels": {"region": "eu"}},
        "spec": {
            "hubAcceptsClient": True,
            "managedClusterClientConfigs": [{"url": "https://ocm-1:6443"}],
        },
    }
    sim.store.put(managed)
    registry = SecretRegistry(GROUP)
    client = HubClient.from_kubeconfig(_reactor(), sim_kubeconfig)
    source = HubManagedClusterSource(_reactor(), client, registry)
    source.startService()
    try:
        await eventually(lambda: len(registry.managed_clusters()) == 1)
        assert source.served is True
        assert registry.virtual_cluster("ocm-1").endpoint == "https://ocm-1:6443"
        sim.store.put({**managed, "metadata": {"name": "ocm-2"}})
        await eventually(lambda: len(registry.managed_clusters()) == 2)
        assert [vc.name for vc in registry.virtual_clusters()][0] == "local"
    finally:
        await source.stopService()
        await client.close()
