"""A changed cluster Secret (token, certificate, CA, endpoint) takes effect for the next
request without a restart, no request fails while it changes, and the old connections are
drained: idle ones close at once, a watch in flight finishes on its old connection."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from clustergateway.auth.user import UserInfo
from clustergateway.certs import make_ca
from clustergateway.registry.samples import cluster_secret
from clustergateway.testing import SimulatedCluster
from tests.e2e.api_helpers import StreamingKubectl
from tests.fixtures.egress import proxy_get
from tests.fixtures.gateway import RunningGateway, wait_until
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e

GatewayFactory = Callable[..., Awaitable[RunningGateway]]
#: The secrets directory is re-read every 0.1 s in tests; a change must be in effect well
#: within this (generous for a loaded 2-core machine).
RESYNC_WINDOW = 3.0


def open_connections(sim: SimulatedCluster) -> int:
    """Connections the simulated cluster has open right now (its Site tracks them)."""
    site = sim._site
    return len(site.connections) if site is not None else 0


async def dir_gateway(gateway_factory: GatewayFactory, *secrets: Any) -> RunningGateway:
    gateway = await gateway_factory(mode="dir", secrets=list(secrets))
    await wait_until(lambda: gateway.registry.synced)
    return gateway


class RequestLoop:
    """Requests one after the other through the gateway until stopped; every result kept."""

    def __init__(self, gateway: RunningGateway, cluster: str) -> None:
        self.gateway = gateway
        self.cluster = cluster
        self.results: list[tuple[float, int, Any]] = []
        self.running = True
        self.done: Deferred[None] = Deferred.fromCoroutine(self._run())

    async def _run(self) -> None:
        while self.running:
            try:
                code, body = await proxy_get(
                    self.gateway, self.cluster, "/api/v1/namespaces/default"
                )
            except Exception as e:  # the request itself failed: recorded as code 0
                code, body = 0, repr(e)
                self.running = False
            self.results.append((time.monotonic(), code, body))

    async def stop(self) -> None:
        self.running = False
        await self.done


@pytest_twisted.async_yield_fixture
async def second_sim(tmp_path: Path) -> AsyncIterator[SimulatedCluster]:
    """Another simulated cluster (own PKI), for endpoint changes."""
    from twisted.internet import reactor

    cluster = SimulatedCluster.create(tmp_path / "sim2", token="sim2-token", reactor=reactor)
    await cluster.start(port=0, interface="127.0.0.1")
    try:
        yield cluster
    finally:
        await cluster.stop()


@pytest_twisted.ensureDeferred
async def test_token_rotation_without_a_failed_request(
    sim: SimulatedCluster, gateway_factory: GatewayFactory
) -> None:
    """Three request loops run while the Secret's token changes (the cluster accepting
    both for a moment, then only the new one): every request succeeds, the new token is
    used within the resync window, and never the old one after that."""
    sim.add_token("tok-old", UserInfo("old-user"))
    sim.add_token("tok-new", UserInfo("new-user"))
    base = {"endpoint": sim.url, "ca": sim.ca_pem}
    gateway = await dir_gateway(gateway_factory, cluster_secret("c1", token="tok-old", **base))
    loops = [RequestLoop(gateway, "c1") for _ in range(3)]
    await wait_until(lambda: all(len(loop.results) >= 3 for loop in loops), timeout=30)

    changed_at = time.monotonic()
    gateway.write_secrets("initial.yaml", cluster_secret("c1", token="tok-new", **base))
    await wait_until(
        lambda: any(r.user and r.user.name == "new-user" for r in sim.requests),
        timeout=RESYNC_WINDOW,
    )
    switched_at = time.monotonic()
    assert switched_at - changed_at < RESYNC_WINDOW
    first_new = next(i for i, r in enumerate(sim.requests) if r.user and r.user.name == "new-user")
    # Once every loop has finished a request started after the switch, the old token
    # is revoked: nothing may still be using it.
    marks = [len(loop.results) for loop in loops]
    await wait_until(
        lambda: all(len(loop.results) >= mark + 2 for loop, mark in zip(loops, marks, strict=True)),
        timeout=30,
    )
    sim.tokens.remove("tok-old")
    seen = len(sim.requests)
    await wait_until(lambda: len(sim.requests) >= seen + 10, timeout=30)
    await gatherResults([Deferred.fromCoroutine(loop.stop()) for loop in loops])

    codes = [code for loop in loops for _, code, _ in loop.results]
    assert codes.count(200) == len(codes), [
        b for loop in loops for _, c, b in loop.results if c != 200
    ]
    users = [r.user.name if r.user else None for r in sim.requests]
    # Requests already on their way may still carry the old token; none started later does.
    late = [u for u in users[first_new:] if u != "new-user"]
    assert len(late) <= len(loops), late
    assert users[-10:] == ["new-user"] * 10


@pytest_twisted.ensureDeferred
async def test_certificate_and_ca_rotation(
    sim: SimulatedCluster, gateway_factory: GatewayFactory
) -> None:
    """A new client certificate is presented on the next request; a CA bundle that was
    wrong (502) starts working as soon as it is corrected."""
    v1 = sim.issue_client_cert("robot-v1")
    v2 = sim.issue_client_cert("robot-v2")

    def x509(pair: Any, ca: bytes) -> dict[str, Any]:
        return cluster_secret(
            "c1",
            credential_type="X509Certificate",
            endpoint=sim.url,
            ca=ca,
            certificate=pair.cert_pem,
            private_key=pair.key_pem,
        )

    gateway = await dir_gateway(gateway_factory, x509(v1, sim.ca_pem))
    code, _ = await proxy_get(gateway, "c1")
    assert code == 200 and sim.requests[-1].user.name == "robot-v1"  # type: ignore[union-attr]

    gateway.write_secrets("initial.yaml", x509(v2, sim.ca_pem))
    await wait_until(lambda: gateway.registry.get("c1").credential.certificate == v2.cert_pem)
    code, _ = await proxy_get(gateway, "c1")
    assert code == 200 and sim.requests[-1].user.name == "robot-v2"  # type: ignore[union-attr]

    gateway.write_secrets("initial.yaml", x509(v2, make_ca("stale-ca").cert_pem))
    await wait_until(lambda: gateway.registry.get("c1").endpoint.ca_bundle != sim.ca_pem)
    code, status = await proxy_get(gateway, "c1")
    assert code == 502 and "certificate verification failed" in status["message"]

    gateway.write_secrets("initial.yaml", x509(v2, sim.ca_pem))
    await wait_until(lambda: gateway.registry.get("c1").endpoint.ca_bundle == sim.ca_pem)
    code, _ = await proxy_get(gateway, "c1")
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_endpoint_change_drains_the_old_pool(
    sim: SimulatedCluster, second_sim: SimulatedCluster, gateway_factory: GatewayFactory
) -> None:
    """Moving the cluster to another endpoint: the next request goes there, the old idle
    connection closes at once, a watch in flight keeps streaming from the old endpoint and
    its connection closes when it ends."""
    first = cluster_secret("c1", endpoint=sim.url, ca=sim.ca_pem, token=sim.token)
    gateway = await dir_gateway(gateway_factory, first)
    watch = StreamingKubectl.start(
        kubectl_binary("1.33"), gateway.proxy_kubeconfig("c1"), "get", "cm", "-w", "--no-headers"
    )
    try:
        await wait_until(lambda: len(sim.watches) == 1, timeout=30)
        code, _ = await proxy_get(gateway, "c1")
        assert code == 200
        await wait_until(lambda: open_connections(sim) >= 2)  # the watch and an idle one

        gateway.write_secrets(
            "initial.yaml",
            cluster_secret("c1", endpoint=second_sim.url, ca=second_sim.ca_pem, token="sim2-token"),
        )
        await wait_until(
            lambda: gateway.registry.get("c1").endpoint.address == second_sim.url,
            timeout=RESYNC_WINDOW,
        )
        before = len(second_sim.requests)
        code, _ = await proxy_get(gateway, "c1")
        assert code == 200 and len(second_sim.requests) == before + 1
        await wait_until(lambda: open_connections(sim) == 1)  # only the watch's is left

        sim.store.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "after-the-change", "namespace": "default"},
            }
        )
        await wait_until(lambda: watch.first_time("after-the-change") is not None, timeout=30)
    finally:
        watch.stop()
    await wait_until(lambda: open_connections(sim) == 0, timeout=10)
