"""``cluster-gateway kubeconfig`` with the real kubectl 1.29 (SPDY) and 1.33 (WebSocket).

The hub kubeconfig here is the gateway's own (in these tests the gateway serves
the aggregated API directly, as the hub does in production).  The generated
kubeconfig's contexts reach ``c1`` and ``c2`` through the proxy subresource:
get, ``get -w``, exec and port-forward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import yaml
from twisted.internet.threads import deferToThread

from tests.e2e.api_helpers import StreamingKubectl
from tests.e2e.test_simulator_streams import _echo_server, _exchange, kubectl_port_forward
from tests.fixtures.clients import TwoClusters, cluster_gateway, configmap
from tests.fixtures.gateway import wait_until
from tests.fixtures.simulator import run_kubectl

pytestmark = pytest.mark.e2e


async def generate(two_clusters: TwoClusters, tmp_path: Path, *selection: str) -> Path:
    out = tmp_path / "generated" / "kubeconfig"
    out.parent.mkdir(exist_ok=True)
    result = await cluster_gateway(
        "kubeconfig",
        "--kubeconfig",
        str(two_clusters.hub_kubeconfig),
        *selection,
        "-o",
        str(out),
        home=tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    return out


@pytest_twisted.ensureDeferred
async def test_kubectl_get_watch_exec_port_forward(
    two_clusters: TwoClusters, kubectl: str, tmp_path: Path
) -> None:
    """With ``--cluster c2``'s kubeconfig kubectl gets c2's objects, watches an event,
    execs and port-forwards, all through the gateway."""
    kc = await generate(two_clusters, tmp_path, "--cluster", "c2")
    assert oct(kc.stat().st_mode & 0o777) == "0o600"
    config = yaml.safe_load(kc.read_text())
    assert config["clusters"][0]["cluster"]["server"] == (
        two_clusters.gateway.url + "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c2/proxy"
    )
    got = await run_kubectl(kubectl, kc, "get", "cm", "-o", "name")
    assert got.returncode == 0, got.stderr
    assert "configmap/only-in-c2" in got.stdout.decode().split()

    watch = StreamingKubectl.start(kubectl, kc, "get", "cm", "-w", "--no-headers")
    try:
        await wait_until(lambda: any("only-in-c2" in line for line in watch.texts()), timeout=30)
        two_clusters.c2.store.put(configmap("watched"))
        await wait_until(lambda: watch.first_time("watched") is not None, timeout=30)
    finally:
        watch.stop()

    executed = await run_kubectl(kubectl, kc, "exec", "demo", "--", "echo", "hello c2")
    assert (executed.returncode, executed.stdout) == (0, b"hello c2\n"), executed.stderr
    assert [r for r in two_clusters.c2.requests if r.path.endswith("/exec")]
    assert not [r for r in two_clusters.c1.requests if r.path.endswith("/exec")]

    server: Any = _echo_server()
    payload = b"forwarded through the gateway"
    try:
        echoed = await deferToThread(
            kubectl_port_forward,
            kubectl,
            kc,
            server.getHost().port,
            lambda local: _exchange(local, payload),
        )
    finally:
        await server.stopListening()
    assert echoed == b"forwarded through the gateway"
    assert [r for r in two_clusters.c2.requests if r.path.endswith("/portforward")]


@pytest_twisted.ensureDeferred
async def test_all_writes_one_context_per_cluster(
    two_clusters: TwoClusters, tmp_path: Path
) -> None:
    """``--all`` (to stdout) has contexts c1 and c2; each context reaches its own cluster."""
    result = await cluster_gateway(
        "kubeconfig", "--kubeconfig", str(two_clusters.hub_kubeconfig), "--all", home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert [c["name"] for c in config["contexts"]] == ["c1", "c2"]
    assert config["current-context"] == "c1"
    kc = tmp_path / "all.kubeconfig"
    kc.write_text(result.stdout)
    from tests.fixtures.tools import kubectl_binary

    c2 = await run_kubectl(kubectl_binary("1.33"), kc, "--context", "c2", "get", "cm", "-o", "name")
    c1 = await run_kubectl(kubectl_binary("1.33"), kc, "get", "cm", "-o", "name")
    assert "configmap/only-in-c2" in c2.stdout.decode().split()
    assert c1.returncode == 0 and "configmap/only-in-c2" not in c1.stdout.decode().split()


@pytest_twisted.ensureDeferred
async def test_bad_input_is_one_line_and_writes_nothing(
    two_clusters: TwoClusters, tmp_path: Path
) -> None:
    """An unknown cluster, an unknown context, an unreachable hub: exit 1, one line on
    stderr naming the cause, no file written, no token printed."""
    out = tmp_path / "never"
    hub = str(two_clusters.hub_kubeconfig)
    unreachable = tmp_path / "unreachable.kubeconfig"
    unreachable.write_text(
        two_clusters.hub_kubeconfig.read_text().replace(
            two_clusters.gateway.url, "https://127.0.0.1:1"
        )
    )
    cases = {
        "does not exist at the hub": ("--kubeconfig", hub, "--cluster", "nope"),
        'context "other" not found': ("--kubeconfig", hub, "--context", "other", "--cluster", "c1"),
        "cannot read kubeconfig": ("--kubeconfig", str(tmp_path / "missing"), "--all"),
        "cannot reach the hub": ("--kubeconfig", str(unreachable), "--all"),
        "invalid cluster name": ("--kubeconfig", hub, "--cluster", "Not/A/Name"),
    }
    for expected, args in cases.items():
        result = await cluster_gateway("kubeconfig", *args, "-o", str(out), home=tmp_path)
        assert result.returncode == 1, (expected, result)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("cluster-gateway kubeconfig: "), lines
        assert expected in lines[0]
        assert "standalone" not in result.stderr  # the hub user's token
        assert not out.exists()
