"""OCM-managed clusters and cluster health, end to end.

The ``sim`` fixture is the hub (Secrets, ManagedClusters with conditions);
members ``a`` and ``b`` are two more simulated clusters that accept the same
token.  Real kubectl 1.29 (SPDY) and 1.33 (WebSocket) and the ``kubernetes``
client drive the gateway.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from clustergateway.registry.features import FeatureGates
from clustergateway.registry.samples import cluster_secret, managed_cluster
from clustergateway.testing import SimulatedCluster
from tests.e2e.api_helpers import StreamingKubectl
from tests.e2e.test_simulator_streams import _echo_server, _exchange
from tests.fixtures.gateway import RunningGateway, wait_until
from tests.fixtures.simulator import run_kubectl

pytestmark = pytest.mark.e2e

GROUP = "cluster.core.oam.dev"
TOKEN = "member-token"
GATED = FeatureGates(healthiness_check=True)
PROXY = f"/apis/{GROUP}/v1alpha1/clustergateways/c1/proxy"


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@attrs.define
class Members:
    hub: SimulatedCluster
    a: SimulatedCluster
    b: SimulatedCluster


@pytest_twisted.async_yield_fixture
async def members(sim: SimulatedCluster, tmp_path: Path) -> AsyncIterator[Members]:
    """Two running member clusters, each holding ConfigMap ``who`` naming itself."""
    started = []
    for name in ("a", "b"):
        member = SimulatedCluster.create(tmp_path / name, TOKEN, _reactor(), name=name)
        member.store.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "who", "namespace": "default"},
                "data": {"cluster": name},
            }
        )
        await member.start(port=0, interface="127.0.0.1")
        started.append(member)
    try:
        yield Members(sim, *started)
    finally:
        for member in started:
            await member.stop()


def ocm_secret(name: str = "c1", member: SimulatedCluster | None = None) -> dict[str, Any]:
    """What OCM's addon-manager copies: ``token`` and ``ca.crt`` only, no endpoint."""
    return cluster_secret(
        name, token=TOKEN, endpoint=None, ca=member.ca_pem if member is not None else b""
    )


def mc_for(member: SimulatedCluster, name: str = "c1", **changes: Any) -> dict[str, Any]:
    return managed_cluster(name, url=member.url, ca=member.ca_pem, **changes)


async def ocm_gateway(gateway_factory: Any, members: Members, **config: Any) -> RunningGateway:
    members.hub.store.put(mc_for(members.a))
    gateway = await gateway_factory(
        mode="hub",
        hub=members.hub,
        secrets=[ocm_secret(member=members.a)],
        ocm_integration=True,
        feature_gates=GATED,
        **config,
    )
    await wait_until(lambda: _gateway_of(gateway, "c1") is not None, timeout=10)
    return gateway


def _gateway_of(gateway: RunningGateway, name: str) -> Any:
    entry = gateway.registry.entry(name)
    return entry.gateway if entry is not None else None


def _address(gateway: RunningGateway, name: str = "c1") -> str | None:
    found = _gateway_of(gateway, name)
    return found.endpoint.address if found is not None else None


async def refused_to_kubectl(kubectl: str, gateway: RunningGateway, message: bytes) -> None:
    """kubectl's GET through the proxy fails with ``message`` (``--raw``: one request, since
    kubectl retries a 503 with Retry-After ten times, ~10 s at 1 s each)."""
    result = await run_kubectl(
        kubectl,
        gateway.kubeconfig,
        "get",
        "--raw",
        PROXY + "/api/v1/namespaces/default/configmaps/who",
    )
    assert result.returncode == 1
    assert message in result.stderr, result.stderr


# -- ManagedCluster merge ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ocm_cluster_get_watch_exec_port_forward(
    members: Members, gateway_factory: Any, kubectl: str
) -> None:
    """A token+CA Secret and a ManagedCluster pointing at member ``a``: get, watch,
    exec and port-forward reach it through the gateway."""
    gateway = await ocm_gateway(gateway_factory, members)
    kc = gateway.proxy_kubeconfig("c1")
    result = await run_kubectl(kubectl, kc, "get", "cm", "who", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == {"cluster": "a"}

    watching = StreamingKubectl.start(kubectl, kc, "get", "cm", "-w", "--no-headers")
    try:
        await wait_until(lambda: len(members.a.watches) >= 1, timeout=30)
        members.a.store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}})
        await wait_until(lambda: watching.first_time("late") is not None, timeout=30)
    finally:
        watching.stop()

    result = await run_kubectl(kubectl, kc, "exec", "demo", "--", "echo", "through-ocm")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"through-ocm\n"

    server: Any = _echo_server()
    command = [
        kubectl,
        "--kubeconfig",
        str(kc),
        "port-forward",
        "pod/demo",
        f":{server.getHost().port}",
    ]

    def forward() -> bytes | None:
        env = {**os.environ, "HOME": str(kc.parent)}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
        try:
            assert process.stdout is not None
            match = re.search(r"127\.0\.0\.1:(\d+) ->", process.stdout.readline().decode())
            assert match
            return _exchange(int(match.group(1)), b"ping over ocm")
        finally:
            process.kill()
            process.wait(10)

    try:
        assert await deferToThread(forward) == b"ping over ocm"
    finally:
        await server.stopListening()


@pytest_twisted.ensureDeferred
async def test_url_move_under_load_then_delete(members: Members, gateway_factory: Any) -> None:
    """Moving the ManagedCluster's URL to member ``b`` during a loop of requests (the
    ``kubernetes`` client): the new cluster serves within 2 s, no request fails, and a
    ``clustergateways`` watch sees MODIFIED.  Deleting the ManagedCluster then gives a
    Status naming the cause."""
    import kubernetes.client
    import kubernetes.watch

    gateway = await ocm_gateway(gateway_factory, members)
    api = gateway.api_client()
    proxied = gateway.api_client()
    proxied.configuration.host = gateway.url + f"/apis/{GROUP}/v1alpha1/clustergateways/c1/proxy"
    core = kubernetes.client.CoreV1Api(proxied)
    custom = kubernetes.client.CustomObjectsApi(api)

    def watch_for_b() -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        stream = kubernetes.watch.Watch()
        for event in stream.stream(
            custom.list_cluster_custom_object,
            GROUP,
            "v1alpha1",
            "clustergateways",
            timeout_seconds=10,
        ):
            address = event["object"]["spec"]["access"]["endpoint"]["const"]["address"]
            seen.append((event["type"], address))
            if address == members.b.url:
                stream.stop()
        return seen

    moved_at: list[float] = []

    def loop() -> tuple[list[tuple[float, str]], list[str]]:
        answers: list[tuple[float, str]] = []
        failures: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                cm = core.read_namespaced_config_map("who", "default")
                answers.append((time.monotonic(), cm.data["cluster"]))
            except Exception as e:  # any failure fails the test below
                failures.append(repr(e))
            if moved_at and answers[-1][1] == "b" and answers[-1][0] > moved_at[0] + 0.5:
                break
        return answers, failures

    def move() -> None:
        moved_at.append(time.monotonic())
        members.hub.store.put(mc_for(members.b))

    watched = deferToThread(watch_for_b)
    running = deferToThread(loop)
    _reactor().callLater(0.5, move)
    answers, failures = await running
    assert failures == []
    first_b = next(at for at, who in answers if who == "b")
    assert first_b - moved_at[0] < 2.0
    assert all(who == "a" for at, who in answers if at < moved_at[0])
    events = await watched
    assert events[0] == ("ADDED", members.a.url)
    assert ("MODIFIED", members.b.url) in events

    members.hub.store.delete("managedclusters.cluster.open-cluster-management.io", None, "c1")
    await wait_until(lambda: _gateway_of(gateway, "c1") is None, timeout=5)
    with pytest.raises(kubernetes.client.ApiException) as caught:
        await deferToThread(core.read_namespaced_config_map, "who", "default")
    assert caught.value.status == 503
    message = json.loads(caught.value.body)["message"]
    assert message == (
        f'clustergateways.{GROUP} "c1" is unavailable: secret vela-system/c1: missing data key '
        '"endpoint" (the cluster\'s apiserver URL) and there is no OCM ManagedCluster "c1" to '
        "take it from"
    )


@pytest_twisted.ensureDeferred
async def test_available_false_refuses_without_dialing(
    members: Members, gateway_factory: Any, kubectl: str
) -> None:
    """ManagedCluster Available=False: HEALTHY false with OCM's reason, proxied requests
    503 with Retry-After and nothing sent to the cluster, its /healthz still forwarded."""
    gateway = await ocm_gateway(gateway_factory, members)
    members.hub.store.put(
        mc_for(
            members.a,
            available="Unknown",
            reason="ManagedClusterLeaseUpdateStopped",
            message="Registration agent stopped updating its lease.",
        )
    )
    await wait_until(lambda: not _gateway_of(gateway, "c1").healthy, timeout=5)
    result = await run_kubectl(kubectl, gateway.kubeconfig, "get", "clustergateways")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[1].split()[-1] == "false"
    result = await run_kubectl(
        kubectl, gateway.kubeconfig, "get", "clustergateway", "c1", "-o", "json"
    )
    reason = json.loads(result.stdout)["status"]["healthyReason"]
    assert reason == (
        'ManagedCluster "c1" is not available: ManagedClusterLeaseUpdateStopped: '
        "Registration agent stopped updating its lease."
    )
    before = len(members.a.requests)
    await refused_to_kubectl(kubectl, gateway, b"cluster c1 is unhealthy: ManagedCluster")
    assert len(members.a.requests) == before
    result = await run_kubectl(kubectl, gateway.kubeconfig, "get", "--raw", PROXY + "/healthz")
    assert result.returncode == 0, result.stderr
    assert [r.path for r in members.a.requests[before:]] == ["/healthz"]


# -- the prober ---------------------------------------------------------------------------


async def probed_gateway(
    gateway_factory: Any, members: Members, interval: float, **config: Any
) -> RunningGateway:
    secret = cluster_secret("c1", token=TOKEN, endpoint=members.a.url, ca=members.a.ca_pem)
    gateway = await gateway_factory(
        mode="hub",
        hub=members.hub,
        secrets=[secret],
        feature_gates=GATED,
        cluster_health_probe_interval=interval,
        cluster_health_probe_failure_threshold=2,
        cluster_health_probe_timeout=1.0,
        **config,
    )
    await wait_until(lambda: _gateway_of(gateway, "c1") is not None, timeout=10)
    return gateway


@pytest_twisted.ensureDeferred
async def test_prober_dark_cluster_refused_then_recovers(
    members: Members, gateway_factory: Any, kubectl: str
) -> None:
    """A stopped cluster is HEALTHY false within three probe intervals; requests then get
    503 with the reason and Retry-After and no connection is made to it (accepts on its
    port are counted), while its /healthz is still forwarded; once it is back, HEALTHY
    true and traffic flows."""
    import kubernetes.client
    from kubernetes.client.rest import ApiException

    interval = 1.0
    gateway = await probed_gateway(gateway_factory, members, interval)
    kc = gateway.proxy_kubeconfig("c1")
    assert (await run_kubectl(kubectl, kc, "get", "cm", "who")).returncode == 0
    await members.a.go_dark()
    stopped = time.monotonic()
    await wait_until(lambda: not _gateway_of(gateway, "c1").healthy, timeout=3 * interval)
    took = time.monotonic() - stopped
    assert took <= 3 * interval
    result = await run_kubectl(kubectl, gateway.kubeconfig, "get", "clustergateways")
    assert result.stdout.decode().splitlines()[1].split()[-1] == "false"
    secret = members.hub.store.get("secrets", "vela-system", "c1")
    assert secret["metadata"]["annotations"]["status.cluster.core.oam.dev/healthy"] == "false"

    prober = gateway.service.prober
    await prober.stopService()  # from here on, only the requests below could dial
    accepts = members.a.dark_accepts
    await refused_to_kubectl(
        kubectl, gateway, b"cluster c1 is unhealthy: GET /healthz: cluster c1:"
    )
    proxied = gateway.api_client()
    proxied.configuration.host = gateway.url + PROXY
    core = kubernetes.client.CoreV1Api(proxied)
    with pytest.raises(ApiException) as caught:
        await deferToThread(core.read_namespaced_config_map, "who", "default")
    assert caught.value.status == 503
    assert caught.value.headers["Retry-After"] == "1"
    assert json.loads(caught.value.body)["details"]["name"] == "c1"
    assert members.a.dark_accepts == accepts
    result = await run_kubectl(kubectl, gateway.kubeconfig, "get", "--raw", PROXY + "/healthz")
    assert result.returncode == 1  # forwarded: the dark cluster drops the connection
    assert members.a.dark_accepts > accepts

    prober.startService()
    await members.a.come_back()
    await wait_until(lambda: _gateway_of(gateway, "c1").healthy, timeout=3 * interval)
    result = await run_kubectl(kubectl, kc, "get", "cm", "who", "-o", "json")
    assert result.returncode == 0, result.stderr
    result = await run_kubectl(kubectl, gateway.kubeconfig, "get", "clustergateways")
    assert result.stdout.decode().splitlines()[1].split()[-1] == "true"


@pytest_twisted.ensureDeferred
async def test_two_replicas_write_at_most_twice_per_transition(
    members: Members, gateway_factory: Any
) -> None:
    """Two gateways probing one hub: each transition of the cluster costs at most two
    writes of its Secret (resourceVersion preconditions; a conflict re-reads)."""
    interval = 0.5
    first = await probed_gateway(gateway_factory, members, interval)
    second = await probed_gateway(gateway_factory, members, interval)
    secrets = members.hub.store.types.resolve("secrets")
    writes: list[str] = []
    subscription = members.hub.store.subscribe(
        secrets,
        lambda event: (
            writes.append(event.type) if event.object["metadata"]["name"] == "c1" else None
        ),
    )
    try:
        await members.a.go_dark()
        await wait_until(
            lambda: not _gateway_of(first, "c1").healthy and not _gateway_of(second, "c1").healthy,
            timeout=10,
        )
        await _settle(4 * interval)
        down = len(writes)
        await members.a.come_back()
        await wait_until(
            lambda: _gateway_of(first, "c1").healthy and _gateway_of(second, "c1").healthy,
            timeout=10,
        )
        await _settle(4 * interval)
        up = len(writes) - down
    finally:
        subscription.cancel()
    assert 1 <= down <= 2 and 1 <= up <= 2, (down, up)
    recorders = [first.service.prober.recorder, second.service.prober.recorder]
    assert sum(r.writes for r in recorders) == down + up


async def _settle(seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(_reactor(), seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_prober_without_a_hub_records_in_memory(
    members: Members, gateway_factory: Any
) -> None:
    """With --secrets-dir the prober's verdicts live in memory: the API shows them and
    unhealthy clusters are refused; nothing is written anywhere."""
    import kubernetes.client

    secret = cluster_secret("c1", token=TOKEN, endpoint=members.a.url, ca=members.a.ca_pem)
    gateway = await gateway_factory(
        mode="dir",
        secrets=[secret],
        feature_gates=GATED,
        cluster_health_probe_interval=0.5,
        cluster_health_probe_failure_threshold=1,
        cluster_health_probe_timeout=1.0,
    )
    await wait_until(lambda: _gateway_of(gateway, "c1") is not None, timeout=10)
    await members.a.go_dark()
    await wait_until(lambda: not _gateway_of(gateway, "c1").healthy, timeout=5)
    custom = kubernetes.client.CustomObjectsApi(gateway.api_client())
    shown = await deferToThread(
        custom.get_cluster_custom_object, GROUP, "v1alpha1", "clustergateways", "c1"
    )
    assert shown["status"]["healthy"] is False
    assert shown["status"]["healthyReason"].startswith("GET /healthz: cluster c1:")
    await members.a.come_back()
    await wait_until(lambda: _gateway_of(gateway, "c1").healthy, timeout=5)
