"""``make run``: a simulated cluster, the gateway in front of it, and the kubectl commands to try.

1. starts a simulated Kubernetes cluster (``python -m clustergateway.testing``) on a
   free loopback port, its PKI in ``run/sim``;
2. renders ``examples/demo/clusters.yaml`` (three cluster Secrets pointing at it) into
   ``run/secrets/``;
3. starts the gateway standalone on ``127.0.0.1:$GATEWAY_PORT`` (default 9443) with
   ``--secrets-dir run/secrets`` and a self-signed certificate in ``run/gateway-certs``
   (log: ``run/gateway.log``);
4. writes ``run/kubeconfig`` for the gateway and prints what to try;
5. runs until Ctrl-C, then stops both.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import signal
import ssl
import string
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where everything is written (``DEMO_DIR`` overrides; the tests use a temporary one).
RUN = Path(os.environ.get("DEMO_DIR") or ROOT / "run").resolve()
PYTHON = sys.executable
GATEWAY = Path(PYTHON).parent / "cluster-gateway"
GROUP_PATH = "/apis/cluster.core.oam.dev/v1alpha1"


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def fail(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr)
    sys.exit(1)


def start_sim(token: str) -> tuple[subprocess.Popen[str], str]:
    """The simulated cluster on a free port; returns the process and its URL."""
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "clustergateway.testing",
            "--listen",
            "127.0.0.1:0",
            "--token",
            token,
            "--cert-dir",
            str(RUN / "sim"),
            "--kubeconfig",
            str(RUN / "sim.kubeconfig"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"ready on (https://\S+)", line)
    if not found:
        process.kill()
        fail(f"the simulated cluster did not start (said {line!r})")
    return process, found.group(1)  # type: ignore[union-attr]


def render_secrets(endpoint: str, token: str) -> Path:
    sim = RUN / "sim"
    template = string.Template((ROOT / "examples" / "demo" / "clusters.yaml").read_text())
    text = template.substitute(
        ENDPOINT_B64=b64(endpoint),
        CA_B64=b64((sim / "ca.crt").read_bytes()),
        TOKEN_B64=b64(token),
        CERT_B64=b64((sim / "client.crt").read_bytes()),
        KEY_B64=b64((sim / "client.key").read_bytes()),
        CREATED=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    secrets = RUN / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    for old in secrets.glob("*.yaml"):
        old.unlink()
    target = secrets / "clusters.yaml"
    target.write_text(text)
    target.chmod(0o600)
    return target


def start_gateway(port: int) -> subprocess.Popen[bytes]:
    log = (RUN / "gateway.log").open("wb")
    return subprocess.Popen(
        [
            str(GATEWAY),
            "--standalone-debug-mode",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--secrets-dir={RUN / 'secrets'}",
            f"--cert-dir={RUN / 'gateway-certs'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_ready(gateway: subprocess.Popen[bytes], port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.poll() is not None:
            fail(f"the gateway exited; see {RUN / 'gateway.log'}")
        ca = RUN / "gateway-certs" / "ca.crt"
        if ca.exists():
            try:
                context = ssl.create_default_context(cafile=str(ca))
                connection = http.client.HTTPSConnection(
                    "127.0.0.1", port, context=context, timeout=2
                )
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    return
            except (OSError, ssl.SSLError, http.client.HTTPException):
                pass
        time.sleep(0.2)
    fail(f"the gateway did not become ready; see {RUN / 'gateway.log'}")


def write_kubeconfig(port: int) -> Path:
    path = RUN / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: cluster-gateway
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {RUN / "gateway-certs" / "ca.crt"}
users:
- name: demo
  user:
    token: demo  # standalone mode: the gateway does not check it
contexts:
- name: cluster-gateway
  context: {{cluster: cluster-gateway, user: demo}}
current-context: cluster-gateway
"""
    )
    return path


def main() -> None:
    port = int(os.environ.get("GATEWAY_PORT", "9443"))
    token = "demo-sim-token"
    RUN.mkdir(exist_ok=True)
    sim, endpoint = start_sim(token)
    gateway = None
    try:
        render_secrets(endpoint, token)
        gateway = start_gateway(port)
        wait_ready(gateway, port)
        kubeconfig = write_kubeconfig(port)
        rel = os.path.relpath(kubeconfig)
        log, secrets = os.path.relpath(RUN / "gateway.log"), os.path.relpath(RUN / "secrets")
        proxy = f"https://127.0.0.1:{port}{GROUP_PATH}/clustergateways/sim-token/proxy"
        print(
            f"""
cluster-gateway is serving on https://127.0.0.1:{port} (standalone, log: {log})
in front of a simulated cluster on {endpoint}; its clusters are the Secrets in {secrets}/.

Try:
  kubectl --kubeconfig {rel} get clustergateways
  kubectl --kubeconfig {rel} get vc -o wide
  kubectl --kubeconfig {rel} get clustergateway sim-token -o yaml
  kubectl --kubeconfig {rel} explain clustergateway.spec.access
  kubectl --kubeconfig {rel} api-resources --api-group=cluster.core.oam.dev
  kubectl --kubeconfig {rel} get clustergateways -w     # then add/remove a file in {secrets}/
Through the proxy subresource, to the cluster named sim-token:
  kubectl --kubeconfig {rel} --server {proxy} get ns
  kubectl --kubeconfig {rel} --server {proxy} get pods -A

Ctrl-C stops both.""",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while sim.poll() is None and gateway.poll() is None:
            time.sleep(0.5)
        fail(f"a process exited; see {RUN / 'gateway.log'}")
    except KeyboardInterrupt:
        pass
    finally:
        for process in (gateway, sim):
            if process is not None and process.poll() is None:
                process.terminate()
        for process in (gateway, sim):
            if process is not None:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
