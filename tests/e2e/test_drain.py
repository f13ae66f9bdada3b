"""Graceful drain on SIGTERM: every stream ends cleanly, sessions get their grace, exit 0.

The gateway (console script) and the simulated cluster run as subprocesses; the
clients are real and blocking: kubectl 1.33 (``get -w`` through the proxy and on
``clustergateways``, ``logs -f``, ``exec``), the ``kubernetes`` client's watch, and
raw HTTP/1.1 and HTTP/2 (the ``h2`` library) watches.  Nothing here touches the
test's reactor.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import h2.config
import h2.connection
import pytest
import yaml
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

from clustergateway.registry.samples import cluster_secret
from tests.e2e.test_workers import Gateway, children_of, connections_to, start, wait_until
from tests.fixtures.gateway import PROXY_PATH, write_kubeconfig
from tests.fixtures.tools import kubectl_binary

WATCH = "/api/v1/namespaces/default/configmaps?watch=true"
DELAY = 2.0
GRACE = 6.0


@attrs.define
class Simulator:
    process: subprocess.Popen[bytes]
    url: str
    ca: bytes
    token: str = "sim-token"


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clustergateway.testing",
            "--listen",
            "127.0.0.1:0",
            "--cert-dir",
            str(tmp_path / "sim"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("simulated cluster ready on "), line
        url = line.rsplit(" ", 1)[1].strip()
        yield Simulator(process, url, (tmp_path / "sim" / "ca.crt").read_bytes())
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def start_gateway(tmp_path: Path, sim: Simulator, workers: int) -> Gateway:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    secret = cluster_secret("c1", token=sim.token, endpoint=sim.url, ca=sim.ca)
    (secrets / "c1.yaml").write_text(yaml.safe_dump(secret))
    gateway = start(
        tmp_path,
        f"--workers={workers}",
        f"--shutdown-delay-duration={DELAY:g}s",
        f"--shutdown-grace-period={GRACE:g}s",
        log=tmp_path / "gateway.log",
    )
    port, process = gateway.port, gateway.process
    wait_until(
        lambda: (
            list(connections_to(port).values()).count("0A") == workers
            and len(children_of(process.pid)) == workers - 1
        ),
        30,
        "the gateway's listening sockets",
    )
    wait_until(lambda: _ready(gateway) == 200, 30, "the gateway to be ready")
    return gateway


def _ready(gateway: Gateway) -> int:
    try:
        sock = gateway.connect()
    except OSError:
        return 0
    with sock:
        head = gateway.get(sock, "/readyz")
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0


# -- the clients ----------------------------------------------------------------------


@attrs.define
class Outcome:
    """How one client's stream ended."""

    events: int = 0
    clean: bool = False
    detail: str = ""


def raw_h1_watch(gateway: Gateway, path: str, outcome: Outcome, started: threading.Event) -> None:
    """A chunked watch over HTTP/1.1; clean = the terminating chunk arrived."""
    sock = gateway.connect()
    sock.settimeout(60)
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer x\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                started.set()
            if data.endswith(b"\r\n0\r\n\r\n"):
                outcome.clean = True
                break
        outcome.events = data.count(b'"type":')
        outcome.detail = data[-300:].decode(errors="replace")


def raw_h2_watch(gateway: Gateway, path: str, outcome: Outcome, started: threading.Event) -> None:
    """A watch as an HTTP/2 stream; clean = END_STREAM, no RST_STREAM, and a GOAWAY.

    The ``h2`` library sends the request, but the server's frames are read with
    ``hyperframe`` alone: h2's state machine refuses any frame after a GOAWAY, which
    is exactly when a graceful server ends its streams (Go's client reads them).
    """
    context = gateway.tls()
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", gateway.port), timeout=60)
    sock = context.wrap_socket(raw)
    assert sock.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [
            (":method", "GET"),
            (":path", path),
            (":scheme", "https"),
            (":authority", "gw"),
            ("authorization", "Bearer x"),
        ],
        end_stream=True,
    )
    sock.sendall(conn.data_to_send())
    ended = reset = goaway = False
    body = b""
    buffer = b""
    with sock:
        while not (ended or reset):
            data = sock.recv(65536)
            if not data:
                break
            buffer += data
            while len(buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(buffer[:9]))
                if len(buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(buffer[9 : 9 + length]))
                buffer = buffer[9 + length :]
                if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                    sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
                elif isinstance(frame, HeadersFrame) and frame.stream_id == stream:
                    started.set()
                    ended = ended or "END_STREAM" in frame.flags
                elif isinstance(frame, DataFrame) and frame.stream_id == stream:
                    body += frame.data
                    ended = ended or "END_STREAM" in frame.flags
                elif isinstance(frame, RstStreamFrame):
                    reset = True
                elif isinstance(frame, GoAwayFrame):
                    goaway = frame.error_code == 0 and frame.last_stream_id >= stream
    outcome.events = body.count(b'"type":')
    outcome.clean = ended and not reset and goaway
    outcome.detail = f"ended={ended} reset={reset} goaway={goaway}"


def python_client_watch(gateway: Gateway, outcome: Outcome, started: threading.Event) -> None:
    """The kubernetes client's watch; clean = the generator ends without an exception."""
    import kubernetes.client
    from kubernetes import watch

    config = kubernetes.client.Configuration()
    config.host = f"https://127.0.0.1:{gateway.port}" + PROXY_PATH.format(cluster="c1")
    config.ssl_ca_cert = str(gateway.ca)
    config.api_key = {"authorization": "Bearer x"}
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))
    try:
        for _event in watch.Watch().stream(
            core.list_namespaced_config_map, "default", timeout_seconds=600
        ):
            started.set()
            outcome.events += 1
        outcome.clean = True
    except Exception as e:  # what a cut stream would raise
        outcome.detail = repr(e)


def kubectl(kubeconfig: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [kubectl_binary("1.33"), "--kubeconfig", str(kubeconfig), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"HOME": str(kubeconfig.parent), "PATH": "/usr/bin:/bin"},
    )


def _read_lines(process: subprocess.Popen[bytes], lines: list[str]) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        lines.append(raw.decode().rstrip("\n"))


@pytest.mark.parametrize("workers", [1, 2], ids=["workers1", "workers2"])
def test_sigterm_drains_every_stream_cleanly_and_exits_0(
    simulator: Simulator, tmp_path: Path, workers: int
) -> None:
    """SIGTERM with open watches from kubectl 1.33 (proxied and on clustergateways), a
    followed log, the kubernetes client's watch and raw HTTP/1.1 and HTTP/2 watches, and two
    exec sessions: /readyz fails at once while requests are still served for the delay;
    then every watch and the log end cleanly (kubectl exits 0 without 'unexpected EOF', the
    client's watch ends without an exception, HTTP/1.1 sees the terminating chunk, HTTP/2
    END_STREAM and GOAWAY, never RST_STREAM); the exec that ends within the grace period
    exits 0, the one still running is closed at its end; the process exits 0."""
    gateway = start_gateway(tmp_path, simulator, workers)
    proxy = f"https://127.0.0.1:{gateway.port}" + PROXY_PATH.format(cluster="c1")
    kc_proxy = write_kubeconfig(tmp_path / "kc" / "proxy", proxy, gateway.ca, "x")
    kc_gateway = write_kubeconfig(
        tmp_path / "kc" / "gateway", f"https://127.0.0.1:{gateway.port}", gateway.ca, "x"
    )
    created = kubectl(kc_proxy, "create", "configmap", "who", "--from-literal=a=b")
    assert created.wait(30) == 0, created.stderr.read() if created.stderr else ""
    cm_path = PROXY_PATH.format(cluster="c1") + WATCH
    outcomes = {name: Outcome() for name in ("h1", "h2", "python")}
    started = {name: threading.Event() for name in outcomes}
    threads = [
        threading.Thread(
            target=raw_h1_watch, args=(gateway, cm_path, outcomes["h1"], started["h1"])
        ),
        threading.Thread(
            target=raw_h2_watch, args=(gateway, cm_path, outcomes["h2"], started["h2"])
        ),
        threading.Thread(
            target=python_client_watch, args=(gateway, outcomes["python"], started["python"])
        ),
    ]
    for thread in threads:
        thread.daemon = True
        thread.start()
    watchers = {
        "kubectl-proxied": kubectl(kc_proxy, "get", "cm", "-w", "--no-headers"),
        "kubectl-clustergateways": kubectl(kc_gateway, "get", "clustergateways", "-w"),
        "kubectl-logs": kubectl(kc_proxy, "logs", "-f", "demo"),
    }
    lines: dict[str, list[str]] = {name: [] for name in watchers}
    readers = [
        threading.Thread(target=_read_lines, args=(p, lines[n]), daemon=True)
        for n, p in watchers.items()
    ]
    for reader in readers:
        reader.start()
    short_exec = kubectl(
        kc_proxy, "exec", "demo", "--", "sh", "-c", f"sleep {DELAY + 2:g}; echo done"
    )
    long_exec = kubectl(kc_proxy, "exec", "demo", "--", "sleep", "600")
    for name, event in started.items():
        assert event.wait(30), f"{name} watch did not start: {outcomes[name]}"
    wait_until(lambda: all(lines[n] for n in watchers), 30, "kubectl's watches and log to print")
    time.sleep(1)  # the execs are running (the short one sleeps DELAY + 2 s)

    gateway.process.send_signal(signal.SIGTERM)
    wait_until(lambda: _ready(gateway) == 500, 5, "/readyz to fail")
    # /readyz answered 500, so the port was still open; requests are still served.
    sock = gateway.connect()
    with sock:
        assert gateway.get(sock, PROXY_PATH.format(cluster="c1") + "/api/v1/namespaces").startswith(
            b"HTTP/1.1 200"
        )

    code = gateway.process.wait(DELAY + GRACE + 30)
    log = (tmp_path / "gateway.log").read_text()
    assert code == 0, log[-3000:]
    for thread in threads:
        thread.join(10)
    for name, outcome in outcomes.items():
        assert outcome.clean and outcome.events >= 1, (name, outcome)
    for name, process in watchers.items():
        rc = process.wait(30)
        err = process.stderr.read().decode() if process.stderr else ""
        assert rc == 0, (name, rc, err)
        assert "unexpected EOF" not in err, (name, err)
        assert "error" not in err.lower(), (name, err)
    out, err = short_exec.communicate(timeout=30)
    assert (short_exec.returncode, out) == (0, b"done\n"), err
    long_exec.communicate(timeout=30)
    assert long_exec.returncode != 0  # closed when the grace period ran out
    summary = [line for line in log.splitlines() if "Drained:" in line]
    assert len(summary) == workers, log[-3000:]
    assert any("1 upgraded sessions closed" in line for line in summary), summary
