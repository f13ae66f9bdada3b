"""ClusterProxy clusters through a konnectivity proxy-server: the grpcio stand-in
(``clustergateway.testing.konnectivity``) in front of the simulated cluster, driven
with real kubectl (1.33 WebSocket, 1.29 SPDY) and the ``kubernetes`` client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted

from clustergateway.testing import SimulatedCluster
from clustergateway.testing.konnectivity import KonnectivityProxyServer
from tests.fixtures.egress import proxy_get
from tests.fixtures.gateway import RunningGateway, wait_until
from tests.fixtures.konnectivity import cluster_proxy_secret, konnectivity_flags

pytestmark = pytest.mark.e2e

GatewayFactory = Callable[..., Awaitable[RunningGateway]]


async def start(
    gateway_factory: GatewayFactory, server: KonnectivityProxyServer, *secrets: Any, **config: Any
) -> RunningGateway:
    gateway = await gateway_factory(
        mode="memory", secrets=list(secrets), **konnectivity_flags(server, **config)
    )
    await wait_until(lambda: gateway.registry.synced)
    return gateway


@pytest_twisted.ensureDeferred
async def test_get_through_the_tunnel(
    sim: SimulatedCluster, konnectivity: KonnectivityProxyServer, gateway_factory: GatewayFactory
) -> None:
    """A ClusterProxy cluster answers through the stand-in; Host is the cluster name."""
    gateway = await start(gateway_factory, konnectivity, cluster_proxy_secret(sim))
    code, body = await proxy_get(gateway, "c1")
    assert code == 200, body["message"]
    assert body["kind"] == "NamespaceList"
    assert konnectivity.dials >= 1 and konnectivity.channels == 1
    assert sim.requests[-1].header("host") == "c1"
