"""``/metrics`` of the real gateway after a known mix of proxied requests, and its logs.

The official ``kubernetes`` client (no discovery requests, so the counts are
exact) drives a list, a relayed 404 and a watch through the proxy; raw
requests add an unknown cluster (404) and an unreachable one (5xx); then
``kubectl exec`` (WebSocket) adds a 101.  The scrape goes through the gateway's own TLS port
and gate, and every log event of the run is written by the gateway's log
observer and searched for the cluster's token.
"""

from __future__ import annotations

import io
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, globalLogPublisher

from clustergateway.observe.labels import UNKNOWN_CLUSTER
from clustergateway.observe.logs import gateway_observer
from tests.fixtures.gateway import PROXY_PATH
from tests.fixtures.proxy import ProxiedCluster, sim_secret
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e


def _get(url: str, ca_path: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=ca_path)
    request = urllib.request.Request(url, headers={"Authorization": "Bearer standalone"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _by_cluster(cluster: str, code: str) -> tuple[tuple[str, str], ...]:
    return (("cluster", cluster), ("code", code))


def _by_resource(resource: str, verb: str, code: str) -> tuple[tuple[str, str], ...]:
    return (("code", code), ("resource", resource), ("verb", verb))


@pytest_twisted.ensureDeferred
async def test_metrics_after_a_known_mix_and_no_credential_in_logs(
    proxied: ProxiedCluster,
) -> None:
    """Exact per-cluster and per-resource counts with real codes (101 for the exec),
    unknown names folded, and no cluster token anywhere in the logs."""
    from kubernetes import watch
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException
    from twisted.internet import reactor

    logs = io.StringIO()
    observer = gateway_observer(logs, json_lines=True, level=LogLevel.debug)
    globalLogPublisher.addObserver(observer)
    try:
        gateway, sim = proxied.gateway, proxied.sim
        down = sim_secret(sim, "down", endpoint="https://127.0.0.1:1")
        gateway.registry.replace_all([sim_secret(sim), down])
        ca = str(gateway.ca_path)

        def drive() -> dict[str, Any]:
            api = CoreV1Api(proxied.api_client())
            api.list_namespaced_config_map("default")
            try:
                api.read_namespaced_config_map("nope", "default")
            except ApiException as e:
                missing = e.status
            events = list(
                watch.Watch().stream(api.list_namespaced_config_map, "default", timeout_seconds=1)
            )
            unknown = _get(gateway.url + PROXY_PATH.format(cluster="ghost") + "/api/v1/pods", ca)
            unreachable = _get(gateway.url + PROXY_PATH.format(cluster="down") + "/api/v1/pods", ca)
            return {
                "missing": missing,
                "events": events,
                "unknown": unknown[0],
                "unreachable": unreachable[0],
            }

        results = await deferToThread(drive)
        assert results["missing"] == 404
        assert results["unknown"] == 404 and results["unreachable"] in (502, 503)
        down_code = str(results["unreachable"])

        async def scrape() -> str:
            code, body = await deferToThread(_get, gateway.url + "/metrics", ca)
            assert code == 200
            return body.decode()

        text = await scrape()
        by_cluster = _series(text, "ocm_proxy_proxied_requests_by_cluster_total")
        assert by_cluster == {
            _by_cluster("sim", "200"): 2,  # list, watch
            _by_cluster("sim", "404"): 1,  # relayed from the cluster
            _by_cluster(UNKNOWN_CLUSTER, "404"): 1,
            _by_cluster("down", down_code): 1,
        }
        assert _series(text, "ocm_proxy_proxied_resource_requests_by_resource_total") == {
            _by_resource("configmaps", "list", "200"): 1,
            _by_resource("configmaps", "get", "404"): 1,
            _by_resource("configmaps", "watch", "200"): 1,
            _by_resource("pods", "list", "404"): 1,
            _by_resource("pods", "list", down_code): 1,
        }
        assert set(_series(text, "ocm_proxy_inflight_requests").values()) == {0}
        assert _series(text, "cluster_gateway_registry_clusters") == {(): 2}
        assert "process_cpu_seconds_total" in text

        # kubectl exec (WebSocket): counted as 101 once its connection has closed.
        exec_run = await run_kubectl(
            kubectl_binary("1.33"), proxied.kubeconfig, "exec", "demo", "--", "echo", "hi"
        )
        assert exec_run.stdout.strip() == b"hi"
        connect = _by_resource("pods", "connect", "101")
        for _ in range(100):
            text = await scrape()
            counted = _series(text, "ocm_proxy_proxied_resource_requests_by_resource_total")
            if connect in counted:
                break
            await deferLater(reactor, 0.1, lambda: None)
        assert counted[connect] == 1
        by_cluster = _series(text, "ocm_proxy_proxied_requests_by_cluster_total")
        assert by_cluster[_by_cluster("sim", "101")] == 1
        assert set(_series(text, "ocm_proxy_inflight_requests").values()) == {0}
    finally:
        globalLogPublisher.removeObserver(observer)

    output = logs.getvalue()
    assert output, "the run logged nothing: the observer saw no events"
    assert sim.token not in output


@pytest_twisted.ensureDeferred
async def test_upstream_timings_after_sequential_requests(proxied: ProxiedCluster) -> None:
    """N sequential requests to one cluster: the dial and TLS histograms count exactly the
    new upstream connections (one: the pool keeps it), the reuse counter the other N - 1,
    the first-byte histogram all N; the new connection is counted open."""
    gateway = proxied.gateway
    ca = str(gateway.ca_path)
    n = 5
    url = proxied.url + "/api/v1/namespaces/default/configmaps"

    def drive() -> list[int]:
        return [_get(url, ca)[0] for _ in range(n)]

    assert await deferToThread(drive) == [200] * n
    code, body = await deferToThread(_get, gateway.url + "/metrics", ca)
    assert code == 200
    text = body.decode()
    sim = (("cluster", "sim"),)

    def count(name: str) -> float | None:
        return _series(text, name).get(sim)

    connections = _series(text, "ocm_proxy_upstream_connections_total")
    new = connections[(("cluster", "sim"), ("reused", "false"))]
    reused = connections[(("cluster", "sim"), ("reused", "true"))]
    assert new == 1
    assert count("ocm_proxy_upstream_dial_duration_seconds_count") == new
    assert count("ocm_proxy_upstream_tls_handshake_duration_seconds_count") == new
    assert reused == n - new
    assert count("ocm_proxy_upstream_first_byte_duration_seconds_count") == n
    assert count("ocm_proxy_upstream_open_connections") == new
    # Every observation is a real duration: positive sums, under the test's own time.
    for name in ("dial", "tls_handshake", "first_byte"):
        total = count(f"ocm_proxy_upstream_{name}_duration_seconds_sum")
        assert total is not None and 0 < total < 30
