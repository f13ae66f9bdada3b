"""``/metrics`` around upgraded sessions and registry syncs, on a real gateway.

A gateway fed by a secrets directory (so its source reports syncs) in front
of the simulated cluster: ``kubectl exec`` (1.33, WebSocket) must leave the
upgrade-sessions gauge at 0 and a 101 in the by-cluster counter; the last-sync
gauge must be present and recent.  Then the ``kubernetes`` Python client's
``stream()`` exec, which never closes its socket (see
:func:`test_python_client_exec_is_closed_by_the_gateway`).
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.threads import deferToThread

from clustergateway.testing import SimulatedCluster
from tests.fixtures.gateway import PROXY_PATH, RunningGateway, wait_until
from tests.fixtures.proxy import sim_secret
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e

Series = dict[tuple[tuple[str, str], ...], float]


def _scrape(gateway: RunningGateway) -> dict[str, Series]:
    """GET /metrics through the gateway's TLS port; every sample by name and labels."""
    context = ssl.create_default_context(cafile=str(gateway.ca_path))
    request = urllib.request.Request(
        gateway.url + "/metrics", headers={"Authorization": "Bearer standalone"}
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[str, Series] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


async def _scrape_until(
    gateway: RunningGateway, done: Callable[[dict[str, Series]], bool], timeout: float = 10.0
) -> dict[str, Series]:
    """Scrape until ``done`` holds (the gateway records a session when its sockets close)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await deferToThread(_scrape, gateway)
        if done(samples) or time.monotonic() > deadline:
            return samples
        await _sleep(0.1)


def _sleep(seconds: float) -> Any:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


def _sim(cluster: str = "sim") -> tuple[tuple[str, str], ...]:
    return (("cluster", cluster),)


def _settled(samples: dict[str, Series]) -> bool:
    """No upgraded session and no request open on cluster ``sim``."""
    sessions = samples.get("ocm_proxy_upgrade_sessions", {}).get(_sim())
    inflight = samples.get("ocm_proxy_inflight_requests", {}).get(_sim())
    return sessions == 0 and inflight == 0


async def _dir_gateway(
    sim: SimulatedCluster, gateway_factory: Callable[..., Awaitable[RunningGateway]]
) -> RunningGateway:
    gateway = await gateway_factory(mode="dir", secrets=[sim_secret(sim)])
    await wait_until(lambda: gateway.registry.synced)
    return gateway


@pytest_twisted.ensureDeferred
async def test_kubectl_exec_session_and_registry_sync_gauges(
    sim: SimulatedCluster, gateway_factory: Callable[..., Awaitable[RunningGateway]]
) -> None:
    """After ``kubectl exec`` (1.33, WebSocket) the session gauge is back at 0, the
    by-cluster counter has one 101, bytes went both ways, the exec's own upstream
    connection was dialed (timed) and closed; the secrets directory's last
    sync is shown and recent; no cluster is reached unverified (the Secret has a CA)."""
    started = time.time()
    gateway = await _dir_gateway(sim, gateway_factory)
    kubeconfig = gateway.proxy_kubeconfig("sim")

    run = await run_kubectl(
        kubectl_binary("1.33"), kubeconfig, "exec", "demo", "--", "echo", "hi", timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == b"hi"

    def counted(samples: dict[str, Series]) -> bool:
        by_cluster = samples.get("ocm_proxy_proxied_requests_by_cluster_total", {})
        new = samples.get("ocm_proxy_upstream_connections_total", {}).get(
            (("cluster", "sim"), ("reused", "false"))
        )
        # The exec's upstream connection is counted closed when its socket is gone.
        closed = new is not None and samples["ocm_proxy_upstream_open_connections"][_sim()] < new
        return (
            by_cluster.get((("cluster", "sim"), ("code", "101"))) == 1
            and _settled(samples)
            and closed
        )

    samples = await _scrape_until(gateway, counted)
    assert samples["ocm_proxy_upgrade_sessions"][_sim()] == 0
    assert samples["ocm_proxy_inflight_requests"][_sim()] == 0
    by_cluster = samples["ocm_proxy_proxied_requests_by_cluster_total"]
    assert by_cluster[(("cluster", "sim"), ("code", "101"))] == 1
    assert samples["ocm_proxy_upstream_sent_bytes_total"][_sim()] > 0
    assert samples["ocm_proxy_upstream_received_bytes_total"][_sim()] > len(b"hi\n")
    # kubectl's plain requests (the pod GET) share pooled connections; the exec dials
    # one of its own, closed with the session.  Each new one: one dial, one handshake.
    plain = sum(n for labels, n in by_cluster.items() if ("code", "101") not in labels)
    connections = samples["ocm_proxy_upstream_connections_total"]
    new = connections[(("cluster", "sim"), ("reused", "false"))]
    reused = connections.get((("cluster", "sim"), ("reused", "true")), 0)
    assert new + reused == plain + 1 and new >= 2
    assert samples["ocm_proxy_upstream_dial_duration_seconds_count"][_sim()] == new
    assert samples["ocm_proxy_upstream_tls_handshake_duration_seconds_count"][_sim()] == new
    assert samples["ocm_proxy_upstream_first_byte_duration_seconds_count"][_sim()] == plain
    assert samples["ocm_proxy_upstream_open_connections"][_sim()] == new - 1

    last_sync = samples["cluster_gateway_registry_last_sync_timestamp_seconds"][()]
    # The directory is rescanned every 0.1 s (the fixture's interval); a minute of
    # slack for a loaded machine.
    assert started - 1 <= last_sync <= time.time() + 1
    assert time.time() - last_sync < 60
    assert samples["cluster_gateway_registry_synced"][()] == 1
    assert samples["cluster_gateway_registry_insecure_clusters"] == {
        (("reason", "plain_http"),): 0,
        (("reason", "skip_verify"),): 0,
    }


@pytest_twisted.ensureDeferred
async def test_python_client_exec_is_closed_by_the_gateway(
    sim: SimulatedCluster, gateway_factory: Callable[..., Awaitable[RunningGateway]]
) -> None:
    """``kubernetes.stream.stream()`` exec: once the cluster ends the session, the gateway
    closes the client's connection although the client keeps its socket open, and
    neither the session nor the request stays open.

    Why this test exists: the session used to stay "in flight" until the test ended.
    Two ends each kept the connection, the gateway (a byte splice) kept neither:

    - the ``kubernetes`` client answers the WebSocket close frame but never closes
      its socket (``websocket_call`` returns without ``WSClient.close()``; the
      socket sits in a reference cycle and closes only when the garbage collector
      runs), while ``kubectl`` closes its connection at once;
    - the simulated cluster called ``loseConnection`` with its own producer still
      registered, and Twisted's TLS transport postpones the shutdown until the
      producer is unregistered, so it never hung up (fixed in
      ``testing.upgraded``; a real apiserver hangs up after the close handshake).

    The client below is kept referenced and never closed, so only the gateway can
    close its socket: the test proves the gateway does (the client reads EOF).
    """
    from kubernetes.client import Configuration, CoreV1Api
    from kubernetes.client.api_client import ApiClient
    from kubernetes.stream import stream

    gateway = await _dir_gateway(sim, gateway_factory)
    kept: list[Any] = []

    def run() -> str:
        config = Configuration()
        config.host = gateway.url + PROXY_PATH.format(cluster="sim")
        config.ssl_ca_cert = str(gateway.ca_path)
        config.api_key = {"authorization": "Bearer standalone"}
        client = stream(
            CoreV1Api(ApiClient(config)).connect_get_namespaced_pod_exec,
            "demo",
            "default",
            command=["echo", "from python"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        client.run_forever(timeout=30)  # returns at the cluster's close frame
        kept.append(client)  # never closed: as stream() with _preload_content=True
        return str(client.read_stdout())

    assert await deferToThread(run) == "from python\n"
    samples = await _scrape_until(gateway, _settled)
    assert samples["ocm_proxy_upgrade_sessions"][_sim()] == 0
    assert samples["ocm_proxy_inflight_requests"][_sim()] == 0
    by_cluster = samples["ocm_proxy_proxied_requests_by_cluster_total"]
    assert by_cluster[(("cluster", "sim"), ("code", "101"))] == 1

    def read_after_close() -> bytes | str:
        raw: socket.socket = kept[0].sock.sock
        raw.settimeout(10)
        try:
            return raw.recv(1)  # b"": the gateway closed the connection (TLS close_notify)
        except (ssl.SSLEOFError, ConnectionResetError) as e:
            return type(e).__name__  # closed without close_notify: closed as well
        except TimeoutError:
            return "still open"

    closed = await deferToThread(read_after_close)
    assert closed in (b"", "SSLEOFError", "ConnectionResetError")
    kept[0].close()
