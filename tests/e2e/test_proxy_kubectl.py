"""The proxy subresource with the real kubectl (1.33 and 1.29) against the simulated cluster.

kubectl's server is ``…/clustergateways/sim/proxy``: everything kubectl does —
discovery, CRUD, watch, logs -f, exec, port-forward — goes through the gateway.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.e2e.api_helpers import StreamingKubectl
from tests.e2e.test_simulator_streams import _echo_server, _exchange, kubectl_port_forward
from tests.fixtures.gateway import wait_until
from tests.fixtures.proxy import ProxiedCluster
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e


@pytest_twisted.ensureDeferred
async def test_configmap_crud(proxied: ProxiedCluster, kubectl: str, tmp_path: Path) -> None:
    """create, get, patch (server-side dry run first), replace and delete a ConfigMap."""
    kc = proxied.kubeconfig
    result = await run_kubectl(kubectl, kc, "create", "configmap", "cm1", "--from-literal=a=1")
    assert result.returncode == 0, result.stderr
    result = await run_kubectl(kubectl, kc, "get", "configmap", "cm1", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == {"a": "1"}

    patch = '{"data":{"a":"2"}}'
    result = await run_kubectl(
        kubectl, kc, "patch", "configmap", "cm1", "-p", patch, "--dry-run=server", "-o", "json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == {"a": "2"}
    stored = proxied.sim.store.get("configmaps", "default", "cm1")
    assert stored["data"] == {"a": "1"}  # the dry run reached the cluster as a dry run

    result = await run_kubectl(kubectl, kc, "patch", "configmap", "cm1", "-p", patch)
    assert result.returncode == 0, result.stderr
    manifest = tmp_path / "cm.json"
    current = json.loads((await run_kubectl(kubectl, kc, "get", "cm", "cm1", "-o", "json")).stdout)
    current["data"] = {"a": "3"}
    manifest.write_text(json.dumps(current))
    result = await run_kubectl(kubectl, kc, "replace", "-f", str(manifest))
    assert result.returncode == 0, result.stderr
    result = await run_kubectl(kubectl, kc, "get", "cm")
    assert result.returncode == 0, result.stderr
    assert re.search(rb"^cm1\s+1\s", result.stdout, re.M), result.stdout
    result = await run_kubectl(kubectl, kc, "delete", "configmap", "cm1")
    assert result.returncode == 0, result.stderr
    result = await run_kubectl(kubectl, kc, "get", "configmap", "cm1")
    assert result.returncode == 1
    assert b'configmaps "cm1" not found' in result.stderr


@pytest_twisted.ensureDeferred
async def test_cluster_errors_reach_kubectl(proxied: ProxiedCluster, kubectl: str) -> None:
    """The cluster's own 403 (RBAC) reaches kubectl as the cluster worded it."""
    proxied.sim.faults.deny.add(("*", "list", "secrets"))
    result = await run_kubectl(kubectl, proxied.kubeconfig, "get", "secrets")
    assert result.returncode == 1
    assert b"Forbidden" in result.stderr or b"forbidden" in result.stderr


@pytest_twisted.ensureDeferred
async def test_get_watch_sees_event(proxied: ProxiedCluster, kubectl: str) -> None:
    """`get -w` prints an object created after the watch started, through the gateway,
    within 50 ms of a watch straight to the cluster."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    direct_kc = proxied.sim.write_kubeconfig(proxied.kubeconfig.parent / "direct.kubeconfig")
    via = StreamingKubectl.start(kubectl, proxied.kubeconfig, "get", "cm", "-w", "--no-headers")
    direct = StreamingKubectl.start(kubectl, direct_kc, "get", "cm", "-w", "--no-headers")
    try:
        await wait_until(lambda: len(proxied.sim.watches) >= 2, timeout=30)
        await deferLater(reactor, 0.2, lambda: None)
        proxied.sim.store.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "watched", "namespace": "default"},
            }
        )
        await wait_until(
            lambda: via.first_time("watched") and direct.first_time("watched"), timeout=30
        )
        gap = via.first_time("watched") - direct.first_time("watched")  # type: ignore[operator]
        assert gap < 0.05, gap  # the bound; typically about 1 ms here
    finally:
        via.stop()
        direct.stop()


@pytest_twisted.ensureDeferred
async def test_logs_follow(proxied: ProxiedCluster, kubectl: str) -> None:
    """`logs -f` prints the log and keeps streaming new lines through the gateway."""
    proxied.sim.pod_logs[("default", "demo", "main")] = ["first", "second"]
    command = [kubectl, "--kubeconfig", str(proxied.kubeconfig), "logs", "-f", "demo"]
    env = {**os.environ, "HOME": str(proxied.kubeconfig.parent)}

    def follow() -> list[bytes]:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
        try:
            assert process.stdout is not None
            return [process.stdout.readline() for _ in range(4)]
        finally:
            process.kill()
            process.wait(10)

    lines = await deferToThread(follow)
    assert lines[:2] == [b"first\n", b"second\n"]
    assert lines[2:] == [f"main: follow line {n}\n".encode() for n in (3, 4)]


@pytest_twisted.ensureDeferred
async def test_exec_echo_cat_and_exit_code(proxied: ProxiedCluster, kubectl: str) -> None:
    """exec (WebSocket for 1.33, SPDY for 1.29): echo, 1 MiB through cat, exit codes."""
    kc = proxied.kubeconfig
    result = await run_kubectl(kubectl, kc, "exec", "demo", "--", "echo", "hi")
    assert (result.returncode, result.stdout) == (0, b"hi\n"), result.stderr
    payload = os.urandom(1024 * 1024)
    result = await run_kubectl(kubectl, kc, "exec", "-i", "demo", "--", "cat", stdin=payload)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(payload).digest()
    result = await run_kubectl(kubectl, kc, "exec", "demo", "--", "sh", "-c", "exit 3")
    assert result.returncode == 3, result.stderr
    upgrades = {
        (r.header("upgrade") or "").lower()
        for r in proxied.sim.requests
        if r.path.endswith("/exec")
    }
    assert upgrades == ({"websocket"} if kubectl.endswith("1.33") else {"spdy/3.1"})


@pytest_twisted.ensureDeferred
async def test_websocket_refusal_falls_back_to_spdy(proxied: ProxiedCluster) -> None:
    """kubectl 1.33 falls back to SPDY when the cluster refuses WebSocket: the gateway
    relays the refusal as it came."""
    proxied.sim.faults.refuse_websocket = True
    result = await run_kubectl(
        kubectl_binary("1.33"), proxied.kubeconfig, "exec", "demo", "--", "echo", "fallback"
    )
    assert (result.returncode, result.stdout) == (0, b"fallback\n"), result.stderr
    upgrades = [
        (r.header("upgrade") or "").lower()
        for r in proxied.sim.requests
        if r.path.endswith("/exec")
    ]
    assert upgrades == ["websocket", "spdy/3.1"]


@pytest_twisted.ensureDeferred
async def test_port_forward_moves_bytes(proxied: ProxiedCluster, kubectl: str) -> None:
    """`port-forward` through the gateway carries 300 kB both ways, twice."""
    server: Any = _echo_server()
    remote = server.getHost().port

    def exchanges(local: int) -> list[object]:
        big = os.urandom(300_000)
        return [_exchange(local, big) == big, _exchange(local, b"again")]

    try:
        intact, again = await deferToThread(
            kubectl_port_forward, kubectl, proxied.kubeconfig, remote, exchanges
        )
    finally:
        await server.stopListening()
    assert intact
    assert again == b"again"


@pytest_twisted.ensureDeferred
async def test_kubectl_cp(proxied: ProxiedCluster, kubectl: str, tmp_path: Path) -> None:
    """`kubectl cp` to and from the pod (tar over exec) through the gateway."""
    source = tmp_path / "in.txt"
    source.write_bytes(b"through the gateway\n" * 500)
    kc = proxied.kubeconfig
    result = await run_kubectl(kubectl, kc, "cp", str(source), "demo:/tmp/in.txt")
    assert result.returncode == 0, result.stderr
    back = tmp_path / "back.txt"
    result = await run_kubectl(kubectl, kc, "cp", "demo:/tmp/in.txt", str(back))
    assert result.returncode == 0, result.stderr
    assert back.read_bytes() == source.read_bytes()


@pytest_twisted.ensureDeferred
async def test_unknown_cluster_is_404_status(proxied: ProxiedCluster, kubectl: str) -> None:
    """kubectl pointed at a cluster the gateway does not know gets a NotFound Status."""
    kc = proxied.gateway.proxy_kubeconfig("nope")
    # --raw paths are taken from the host's root, not from the kubeconfig's server path.
    raw = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/nope/proxy/api/v1/namespaces"
    result = await run_kubectl(kubectl, kc, "get", "--raw", raw)
    assert result.returncode == 1
    assert b'(NotFound): clustergateways.cluster.core.oam.dev "nope" not found' in result.stderr
