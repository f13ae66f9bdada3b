"""The API with clusters from the (simulated) hub: watch latency, health writes, readiness."""

from __future__ import annotations

import json
import time

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.e2e.api_helpers import StreamingKubectl, token_cluster
from tests.fixtures.gateway import wait_until
from tests.fixtures.simulator import run_kubectl

pytestmark = pytest.mark.e2e

HEALTH = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{name}/health"


@pytest_twisted.ensureDeferred
async def test_watch_sees_hub_secret_within_a_second(kubectl, sim, hub_gateway) -> None:
    """``kubectl get clustergateways -w`` shows a cluster within 1 s of its Secret at the hub."""
    sim.store.put(token_cluster("alpha"))
    await wait_until(lambda: hub_gateway.registry.entry("alpha") is not None)
    watch = StreamingKubectl.start(kubectl, hub_gateway.kubeconfig, "get", "clustergateways", "-w")
    try:
        await wait_until(lambda: any("alpha" in line for line in watch.texts()), timeout=30)
        created = time.monotonic()
        sim.store.put(token_cluster("beta"))
        await wait_until(lambda: watch.first_time("beta") is not None, timeout=10)
        seen = watch.first_time("beta")
        assert seen is not None and seen - created < 1.0
    finally:
        watch.stop()
    listed = await run_kubectl(
        kubectl, hub_gateway.kubeconfig, "get", "clustergateways", "-o", "name"
    )
    assert listed.stdout.decode().split() == [
        "clustergateway.cluster.core.oam.dev/alpha",
        "clustergateway.cluster.core.oam.dev/beta",
    ]


def call(gateway, method: str, path: str, body: object, content_type: str) -> dict:
    """One request with the kubernetes client's REST layer (blocking: run in a thread)."""
    response = gateway.api_client().call_api(
        method,
        gateway.url + path,
        header_params={
            "Content-Type": content_type,
            "Accept": "application/json",
            "Authorization": "Bearer standalone",
        },
        body=body,
    )
    assert response.status == 200, response.read()
    return json.loads(response.read())


@pytest_twisted.ensureDeferred
async def test_health_put_and_patch_write_the_secret(sim, hub_gateway) -> None:
    """PUT and PATCH on clustergateways/health record the Go annotations in the hub Secret."""
    sim.store.put(token_cluster("alpha", labels={"keep": "me"}))
    await wait_until(lambda: hub_gateway.registry.entry("alpha") is not None)
    path = HEALTH.format(name="alpha")
    put = await deferToThread(
        call,
        hub_gateway,
        "PUT",
        path,
        {"metadata": {"name": "alpha"}, "status": {"healthy": True}},
        "application/json",
    )
    assert put["status"] == {"healthy": True}
    secret = sim.store.get("secrets", "vela-system", "alpha")
    assert secret["metadata"]["annotations"]["status.cluster.core.oam.dev/healthy"] == "true"
    patched = await deferToThread(
        call,
        hub_gateway,
        "PATCH",
        path,
        {"status": {"healthy": False, "healthyReason": "ConnectionTimeout"}},
        "application/merge-patch+json",
    )
    assert patched["status"] == {"healthy": False, "healthyReason": "ConnectionTimeout"}
    secret = sim.store.get("secrets", "vela-system", "alpha")
    annotations = secret["metadata"]["annotations"]
    assert annotations["status.cluster.core.oam.dev/healthy"] == "false"
    assert annotations["status.cluster.core.oam.dev/healthy-reason"] == "ConnectionTimeout"
    assert secret["metadata"]["labels"]["keep"] == "me"


@pytest_twisted.ensureDeferred
async def test_health_shows_in_status_with_the_gate(sim, gateway_factory) -> None:
    """With HealthinessCheck on, a recorded health comes back in status (via the watch)."""
    from clustergateway.registry.features import FeatureGates

    sim.store.put(token_cluster("alpha"))
    gateway = await gateway_factory(
        mode="hub", hub=sim, feature_gates=FeatureGates(healthiness_check=True)
    )
    await wait_until(lambda: gateway.registry.entry("alpha") is not None)
    await deferToThread(
        call,
        gateway,
        "PATCH",
        HEALTH.format(name="alpha"),
        [{"op": "replace", "path": "/status/healthy", "value": True}],
        "application/json-patch+json",
    )
    await wait_until(lambda: gateway.registry.get("alpha").healthy, timeout=5)


@pytest_twisted.ensureDeferred
async def test_readyz_waits_for_the_first_list(sim, gateway_factory) -> None:
    """/readyz fails while the hub is unreachable and passes once the first list arrived."""
    await sim.stop()
    gateway = await gateway_factory(mode="hub", hub=sim)
    assert not gateway.registry.synced
    readyz = gateway.root.readyz
    assert [c.run() for c in readyz.checks if c.name == "registry-synced"] != [None]
    await sim.start()
    await wait_until(lambda: gateway.registry.synced, timeout=15)
    assert all(c.run() is None for c in readyz.checks)
