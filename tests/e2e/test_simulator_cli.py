"""``python -m clustergateway.testing`` as a process: ready line, kubectl, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary


@pytest_twisted.ensureDeferred
async def test_standalone_process(tmp_path):
    """The module writes its PKI and a kubeconfig, prints one ready line, serves kubectl,
    and exits 0 on SIGTERM."""
    cert_dir = tmp_path / "certs"
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clustergateway.testing",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "cli-token",
            "--cert-dir",
            str(cert_dir),
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = await deferToThread(process.stdout.readline)
        assert ready.startswith(b"simulated cluster ready on https://127.0.0.1:"), ready
        for name in (
            "ca.crt",
            "tls.crt",
            "tls.key",
            "client-ca.crt",
            "client.crt",
            "client.key",
            "front-proxy-ca.crt",
            "front-proxy-client.crt",
            "front-proxy-client.key",
        ):
            assert (cert_dir / name).is_file(), name
        assert oct((cert_dir / "tls.key").stat().st_mode & 0o777) == "0o600"
        assert b"cli-token" in kubeconfig.read_bytes()

        result = await run_kubectl(kubectl_binary("1.33"), kubeconfig, "get", "ns", "-o", "name")
        assert result.returncode == 0, result.stderr
        assert b"namespace/vela-system" in result.stdout

        process.send_signal(signal.SIGTERM)
        code = await deferToThread(process.wait, 20)
        assert code == 0
        assert process.stdout.read() == b""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
