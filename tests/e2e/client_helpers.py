"""Helpers of the client-tool tests: a second simulated cluster and a gateway over both.

``two_clusters(tmp_path, sim, gateway_factory)`` registers ``sim`` as cluster
``c1`` and a fresh simulated cluster as ``c2`` in the hub ``sim``'s
``vela-system`` and starts a gateway (standalone, clusters from that hub, the
``HealthinessCheck`` gate on).  The gateway serves the aggregated API itself,
so its kubeconfig is what a user's hub kubeconfig is in production.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

from clustergateway.registry.features import FeatureGates
from clustergateway.testing import SimulatedCluster
from tests.fixtures.gateway import RunningGateway, wait_until
from tests.fixtures.proxy import sim_secret

__all__ = ["TwoClusters", "start_second_sim", "two_clusters"]


@attrs.define(eq=False)
class TwoClusters:
    """The gateway and the clusters behind it: ``c1`` is ``sim`` (also the hub), ``c2`` another."""

    gateway: RunningGateway
    c1: SimulatedCluster
    c2: SimulatedCluster

    @property
    def hub_kubeconfig(self) -> Path:
        """A kubeconfig for the API that serves ``clustergateways`` (the gateway here)."""
        return self.gateway.kubeconfig


async def start_second_sim(tmp_path: Path) -> SimulatedCluster:
    """Another running simulated cluster (stop it with ``await cluster.stop()``)."""
    from twisted.internet import reactor

    cluster = SimulatedCluster.create(tmp_path / "sim2", reactor=reactor, name="sim2")
    await cluster.start(port=0, interface="127.0.0.1")
    return cluster


async def two_clusters(
    sim: SimulatedCluster,
    second: SimulatedCluster,
    gateway_factory: Callable[..., Awaitable[RunningGateway]],
) -> TwoClusters:
    """``sim`` as ``c1`` and ``second`` as ``c2`` behind a gateway reading the hub ``sim``."""
    gateway = await gateway_factory(
        mode="hub",
        hub=sim,
        secrets=[sim_secret(sim, "c1"), sim_secret(second, "c2")],
        feature_gates=FeatureGates(healthiness_check=True),
    )
    await wait_until(
        lambda: (
            gateway.registry.synced
            and gateway.registry.entry("c1") is not None
            and gateway.registry.entry("c2") is not None
        ),
        timeout=10,
    )
    return TwoClusters(gateway, sim, second)
