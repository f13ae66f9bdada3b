"""One cluster never hurts the others: caps (429) and the circuit breaker (503, no dial),
against simulated clusters, with the real kubectl 1.33 and the ``kubernetes`` client.

kubectl retries a 429/503 that carries ``Retry-After`` up to ten times for ordinary
requests; ``get --raw`` sends one request, so these tests use it to read what kubectl
prints without waiting for the retries.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import attrs
import pytest_twisted
from twisted.internet.threads import deferToThread

from clustergateway.proxy.admission import (
    CONNECT_TIMEOUT_ANNOTATION,
    LONG_RUNNING_ANNOTATION,
    MAX_INFLIGHT_ANNOTATION,
)
from clustergateway.registry.samples import cluster_secret
from clustergateway.testing import SimulatedCluster
from tests.e2e.api_helpers import StreamingKubectl
from tests.fixtures.gateway import RunningGateway, wait_until
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{}/proxy"
CM = "/api/v1/namespaces/default/configmaps"


def _secret(name: str, sim: SimulatedCluster, **annotations: str) -> dict[str, Any]:
    return cluster_secret(
        name, token=sim.token, endpoint=sim.url, ca=sim.ca_pem, annotations=annotations
    )


def _admission(gateway: RunningGateway) -> Any:
    return gateway.service.proxy.admission


@attrs.frozen
class Answer:
    status: int
    headers: Any
    body: bytes


def _call(gateway: RunningGateway, path: str) -> Answer:
    """GET ``path`` once with the kubernetes client's ApiClient (urllib3, HTTP/1.1).

    urllib3 on its own retries a 429/503 carrying Retry-After three times; retries are
    turned off so each call is one request.
    """
    import kubernetes.client

    config = kubernetes.client.Configuration()
    config.host = gateway.url
    config.ssl_ca_cert = str(gateway.ca_path)
    config.retries = False
    api = kubernetes.client.ApiClient(config)
    response = api.call_api(
        "GET", gateway.url + path, header_params={"Authorization": "Bearer standalone"}
    )
    return Answer(response.status, response.headers, response.read())


def _python_get(gateway: RunningGateway, cluster: str) -> Answer:
    """The configmaps of ``cluster`` through the proxy, whatever the answer."""
    return _call(gateway, PROXY.format(cluster) + CM)


def _metrics(gateway: RunningGateway) -> str:
    return _call(gateway, "/metrics").body.decode()


@pytest_twisted.ensureDeferred
async def test_over_the_cluster_cap_is_429_with_retry_after(
    sim: SimulatedCluster, gateway_factory: Any
) -> None:
    """A cluster capped at one request in flight by annotation: while a slow request holds
    the slot, the kubernetes client (HTTP/1.1, lean path) gets 429 TooManyRequests naming
    the cluster and the annotation, with Retry-After; another cluster on the same simulator
    is served meanwhile; once the slot is free the cluster is served; /metrics counts it."""
    gateway = await gateway_factory(
        secrets=[_secret("capped", sim, **{MAX_INFLIGHT_ANNOTATION: "1"}), _secret("free", sim)]
    )
    await wait_until(lambda: gateway.registry.entry("free") is not None, timeout=10)
    sim.faults.latency = 2.0
    holding = deferToThread(_python_get, gateway, "capped")
    await wait_until(lambda: _admission(gateway).in_flight("capped") == (1, 0), timeout=10)

    refused = await deferToThread(_python_get, gateway, "capped")
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    status = json.loads(refused.body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "TooManyRequests", 429)
    assert status["details"]["name"] == "capped"
    assert status["message"].startswith("cluster capped: too many requests")
    assert f"annotation {MAX_INFLIGHT_ANNOTATION}" in status["message"]

    other = await deferToThread(_python_get, gateway, "free")  # slow, but not refused
    assert other.status == 200
    assert (await holding).status == 200
    sim.faults.latency = 0.0
    assert _admission(gateway).in_flight("capped") == (0, 0)
    assert (await deferToThread(_python_get, gateway, "capped")).status == 200
    body = await deferToThread(_metrics, gateway)
    assert (
        'ocm_proxy_rejected_requests_total{cluster="capped",reason="cluster-max-requests-inflight"}'
        " 1.0" in body
    )


@pytest_twisted.ensureDeferred
async def test_kubectl_prints_the_429_after_its_retries(
    sim: SimulatedCluster, gateway_factory: Any
) -> None:
    """A cluster allowing one long-running request: while kubectl 1.33 watches it (HTTP/2),
    a second watch by kubectl is refused; kubectl honours Retry-After (1 s) and retries ten
    times, then prints the Status's message naming the cluster and the cap."""
    kubectl = kubectl_binary("1.33")
    gateway = await gateway_factory(
        secrets=[_secret("capped", sim, **{LONG_RUNNING_ANNOTATION: "1"})]
    )
    await wait_until(lambda: gateway.registry.entry("capped") is not None, timeout=10)
    watching = StreamingKubectl.start(
        kubectl, gateway.proxy_kubeconfig("capped"), "get", "cm", "-w", "--no-headers"
    )
    try:
        await wait_until(lambda: _admission(gateway).in_flight("capped") == (0, 1), timeout=20)
        result = await run_kubectl(
            kubectl, gateway.kubeconfig, "get", "--raw", PROXY.format("capped") + CM + "?watch=1"
        )
    finally:
        watching.process.terminate()
        await deferToThread(watching.process.wait, 10)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "Error from server (TooManyRequests)" in stderr, stderr
    assert "cluster capped: too many requests, please try again later: 1 long-running" in stderr
    assert f"annotation {LONG_RUNNING_ANNOTATION}" in stderr
    assert "cluster-max-long-running-requests-inflight" in stderr
    body = await deferToThread(_metrics, gateway)
    refusals = (
        'ocm_proxy_rejected_requests_total{cluster="capped",'
        'reason="cluster-max-long-running-requests-inflight"}'
    )
    assert refusals + " 11.0" in body  # the first try and kubectl's ten retries


@pytest_twisted.ensureDeferred
async def test_black_holed_cluster_opens_the_circuit_then_closes_when_back(
    gateway_factory: Any, tmp_path: Path
) -> None:
    """A cluster that black-holes (accepts TCP, never answers TLS) with a 300 ms connect
    timeout by annotation: two failures open its circuit; then kubectl and the kubernetes
    client get 503 'cluster c1 is unreachable: <cause>; retrying in Ns' with Retry-After and
    no connection reaches the cluster (its accepts are counted); the ClusterGateway shows
    healthy false with CircuitOpen and /metrics the open circuit.  Once the cluster is back,
    the trial after the cooldown closes the circuit and requests flow again."""
    from twisted.internet import reactor

    kubectl = kubectl_binary("1.33")
    member = SimulatedCluster.create(tmp_path / "member", "member-token", reactor, name="m")
    await member.start(port=0, interface="127.0.0.1")
    try:
        gateway = await gateway_factory(
            secrets=[_secret("c1", member, **{CONNECT_TIMEOUT_ANNOTATION: "300ms"})],
            circuit_breaker_failure_threshold=2,
            # Long enough for the checks below on a busy machine; the trial comes after.
            circuit_breaker_cooldown=8.0,
            circuit_breaker_max_cooldown=8.0,
        )
        await wait_until(lambda: gateway.registry.entry("c1") is not None, timeout=10)
        assert (await deferToThread(_python_get, gateway, "c1")).status == 200
        await member.go_dark(black_hole=True)

        failed = [await deferToThread(_python_get, gateway, "c1") for _ in range(2)]
        assert [f.status for f in failed] == [504, 504]
        assert "TLS handshake" in json.loads(failed[0].body)["message"] or json.loads(
            failed[0].body
        )["message"].startswith("cluster c1:")
        accepts = member.dark_accepts
        assert accepts >= 1

        # kubectl gets the 503 at once, honours its Retry-After (the rest of the cooldown)
        # and retries: that retry is the half-open trial, which meets the black hole, so
        # kubectl prints the real cause; exactly one connection was made for it.
        result = await run_kubectl(
            kubectl, gateway.kubeconfig, "get", "--raw", PROXY.format("c1") + CM, "-v=6"
        )
        assert result.returncode == 1
        stderr = result.stderr.decode()
        assert 'status="503 Service Unavailable"' in stderr, stderr
        assert '"Got a Retry-After response" delay="8s" attempt=1' in stderr
        assert stderr.rstrip().endswith(
            "Error from server (Timeout): cluster c1: TLS handshake with "
            f"127.0.0.1:{member.port} timed out after 0.3s"
        )
        assert member.dark_accepts == accepts + 1
        accepts = member.dark_accepts
        refused = await deferToThread(_python_get, gateway, "c1")
        assert refused.status == 503
        assert int(refused.headers["Retry-After"]) >= 1
        status = json.loads(refused.body)
        assert status["kind"] == "Status" and status["reason"] == "ServiceUnavailable"
        assert member.dark_accepts == accepts  # nothing dialed while open

        shown = await run_kubectl(
            kubectl, gateway.kubeconfig, "get", "clustergateways", "c1", "-o", "json"
        )
        shown_status = json.loads(shown.stdout)["status"]
        assert shown_status["healthy"] is False
        assert shown_status["healthyReason"].startswith("CircuitOpen: ")
        metrics = await deferToThread(_metrics, gateway)
        assert 'ocm_proxy_cluster_circuit_open{cluster="c1"} 1.0' in metrics
        assert (
            'ocm_proxy_rejected_requests_total{cluster="c1",reason="circuit-open"} 2.0' in metrics
        )

        await member.come_back()
        deadline = time.monotonic() + 30
        answer = refused
        while answer.status != 200 and time.monotonic() < deadline:
            await wait_until(lambda: True)
            answer = await deferToThread(_python_get, gateway, "c1")
        assert answer.status == 200
        gateway_now = gateway.registry.get("c1")
        assert (gateway_now.healthy, gateway_now.circuit_open) == (True, False)
        metrics = await deferToThread(_metrics, gateway)
        assert 'ocm_proxy_cluster_circuit_open{cluster="c1"} 0.0' in metrics
    finally:
        await member.stop()


@pytest_twisted.ensureDeferred
async def test_open_circuit_under_healthiness_check_still_gets_its_trial(
    gateway_factory: Any, tmp_path: Path
) -> None:
    """With HealthinessCheck on, a cluster unhealthy only because of its open circuit is
    not refused as unhealthy forever: the circuit's trial goes through and closes it."""
    from twisted.internet import reactor

    from clustergateway.registry.features import FeatureGates

    member = SimulatedCluster.create(tmp_path / "member", "member-token", reactor, name="m")
    await member.start(port=0, interface="127.0.0.1")
    try:
        gateway = await gateway_factory(
            secrets=[_secret("c1", member, **{CONNECT_TIMEOUT_ANNOTATION: "300ms"})],
            circuit_breaker_failure_threshold=1,
            circuit_breaker_cooldown=1.0,
            feature_gates=FeatureGates.parse("HealthinessCheck=true"),
        )
        await wait_until(lambda: gateway.registry.entry("c1") is not None, timeout=10)
        await member.go_dark()
        assert (await deferToThread(_python_get, gateway, "c1")).status == 502
        refused = await deferToThread(_python_get, gateway, "c1")
        assert refused.status == 503
        assert "is unreachable" in json.loads(refused.body)["message"]
        assert gateway.registry.get("c1").circuit_open
        await member.come_back()
        deadline = time.monotonic() + 10
        answer = refused
        while answer.status != 200 and time.monotonic() < deadline:
            await wait_until(lambda: True)
            answer = await deferToThread(_python_get, gateway, "c1")
        assert answer.status == 200
        assert gateway.registry.get("c1").healthy
    finally:
        await member.stop()
