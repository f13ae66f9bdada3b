"""The README's "run it" command: ``scripts/demo.py`` (``make run`` after the venv step)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.fixtures.simulator import run_kubectl

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _log_tail(tmp_path: Path, lines: int = 40) -> str:
    """The end of the demo gateway's log, for a failure message."""
    log = tmp_path / "run" / "gateway.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_twisted.ensureDeferred
async def test_demo_serves_clusters_and_proxies(kubectl, tmp_path) -> None:
    """The demo prints the commands to try, and they work: tables and a proxied get ns."""
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "DEMO_DIR": str(tmp_path / "run"), "GATEWAY_PORT": str(port)},
        text=True,
    )
    try:

        def until_ready() -> str:
            assert demo.stdout is not None
            seen = ""
            for line in demo.stdout:
                seen += line
                if "Ctrl-C stops both." in line:
                    return seen
            raise AssertionError(f"the demo stopped early:\n{seen}")

        printed = await deferToThread(until_ready)
        kubeconfig = tmp_path / "run" / "kubeconfig"
        assert f"kubectl --kubeconfig {os.path.relpath(kubeconfig)} get vc -o wide" in printed
        gateways = await run_kubectl(kubectl, kubeconfig, "get", "clustergateways", "-o", "name")
        assert gateways.returncode == 0, gateways.stderr
        assert gateways.stdout.decode().split() == [
            f"clustergateway.cluster.core.oam.dev/{name}"
            for name in ("sim-insecure", "sim-token", "sim-x509")
        ]
        for cluster in ("sim-token", "sim-x509", "sim-insecure"):
            server = (
                f"https://127.0.0.1:{port}/apis/cluster.core.oam.dev/v1alpha1/"
                f"clustergateways/{cluster}/proxy"
            )
            namespaces = await run_kubectl(kubectl, kubeconfig, "--server", server, "get", "ns")
            assert namespaces.returncode == 0, (cluster, namespaces.stderr, _log_tail(tmp_path))
            assert "kube-system" in namespaces.stdout.decode()
    finally:
        demo.send_signal(signal.SIGINT)
        await deferToThread(demo.communicate, None, 30)
    assert demo.returncode == 0
