"""Fault knobs of the simulated cluster, observed by real clients."""

from __future__ import annotations

import json
import time

import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.fixtures.simulator import authorized_request, raw_exchange, run_kubectl


def _code(response: bytes) -> int:
    return int(response.split(b"\r\n", 1)[0].split()[1])


async def _sleep(seconds: float) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_latency_delays_every_answer(sim):
    """faults.latency adds that many seconds before the response."""
    sim.faults.latency = 0.4
    started = time.monotonic()
    answer = await deferToThread(raw_exchange, sim, authorized_request(sim, "GET", "/version"))
    assert _code(answer) == 200
    assert time.monotonic() - started >= 0.4


@pytest_twisted.ensureDeferred
async def test_refused_websocket_upgrade(sim):
    """refuse_websocket answers WebSocket upgrades with 403 (kubectl then falls back to SPDY)."""
    sim.faults.refuse_websocket = True
    request = authorized_request(
        sim,
        "GET",
        "/api/v1/namespaces/default/pods/demo/exec?command=echo&command=hi&stdout=true",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": "v5.channel.k8s.io",
        },
    )
    answer = await deferToThread(raw_exchange, sim, request)
    assert _code(answer) == 403
    status = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert status["kind"] == "Status" and status["reason"] == "Forbidden"


@pytest_twisted.ensureDeferred
async def test_stream_subresource_of_missing_pod_is_404(sim):
    """Pod stream subresources check the pod exists before anything else."""
    request = authorized_request(sim, "GET", "/api/v1/namespaces/default/pods/ghost/log")
    answer = await deferToThread(raw_exchange, sim, request)
    assert _code(answer) == 404


@pytest_twisted.ensureDeferred
async def test_drop_after_bytes_cuts_the_response(sim):
    """drop_after_bytes closes the connection after that many body bytes."""
    sim.faults.drop_after_bytes = 50
    answer = await deferToThread(
        raw_exchange, sim, authorized_request(sim, "GET", "/api/v1/namespaces")
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    assert len(body) == 50 < length


@pytest_twisted.ensureDeferred
async def test_stall_holds_requests_until_cleared(sim):
    """stall stops answering; clearing it lets the held request finish."""
    sim.faults.stall = True
    pending = deferToThread(raw_exchange, sim, authorized_request(sim, "GET", "/version"))
    await _sleep(0.5)
    assert not pending.called
    sim.faults.stall = False
    assert _code(await pending) == 200


@pytest_twisted.ensureDeferred
async def test_deny_list_forbids_requests(kubectl, sim, sim_kubeconfig):
    """A (user, verb, resource) in faults.deny makes that request 403 Forbidden."""
    sim.faults.deny.add(("sim-admin", "list", "configmaps"))
    denied = await run_kubectl(kubectl, sim_kubeconfig, "get", "cm")
    assert denied.returncode != 0
    assert b"Forbidden" in denied.stderr
    assert b'cannot list resource "configmaps"' in denied.stderr
    allowed = await run_kubectl(kubectl, sim_kubeconfig, "get", "pods")
    assert allowed.returncode == 0, allowed.stderr


@pytest_twisted.ensureDeferred
async def test_restart_on_the_same_port(kubectl, sim, sim_kubeconfig):
    """restart() drops connections and comes back on the same port with its objects."""
    sim.store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}})
    port = sim.port
    watch = deferToThread(
        raw_exchange,
        sim,
        authorized_request(sim, "GET", "/api/v1/namespaces/default/configmaps?watch=true"),
    )
    for _ in range(200):
        if sim.watches:
            break
        await _sleep(0.02)
    await sim.stop()
    assert not sim.running
    down = await run_kubectl(kubectl, sim_kubeconfig, "get", "cm", "--request-timeout=5s")
    assert down.returncode != 0
    await sim.restart()
    assert sim.port == port
    dropped = await watch
    assert b"0\r\n\r\n" not in dropped  # cut, not ended cleanly
    up = await run_kubectl(kubectl, sim_kubeconfig, "get", "cm", "kept", "-o", "name")
    assert up.returncode == 0, up.stderr
    assert up.stdout.decode().strip() == "configmap/kept"


@pytest_twisted.ensureDeferred
async def test_recording_can_be_switched_off(sim):
    """record_requests=False keeps the request log from growing (benchmarks)."""
    sim.record_requests = False
    before = len(sim.requests)
    answer = await deferToThread(raw_exchange, sim, authorized_request(sim, "GET", "/version"))
    assert _code(answer) == 200
    assert len(sim.requests) == before
