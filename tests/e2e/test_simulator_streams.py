"""Pod streams of the simulated cluster (exec, logs -f, port-forward, cp) with real clients.

kubectl 1.33 speaks WebSocket (exec) and SPDY-in-WebSocket (port-forward);
kubectl 1.29 speaks SPDY/3.1.  The ``kubectl`` fixture runs each test with
both.  Blocking clients run in threads so the reactor keeps serving.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread

from tests.fixtures.simulator import kube_api_client, run_kubectl
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e

T = TypeVar("T")

#: A klog line (``E1125 07:58:46.340499    3937 v2.go:104] ...``).
_KLOG_LINE = re.compile(rb"^[EWI]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()


def _echo_server():
    """A TCP echo server on 127.0.0.1 in the reactor (half-close aware)."""
    from twisted.internet import reactor
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from zope.interface import directlyProvides

    def build() -> Protocol:
        protocol = _Echo()
        directlyProvides(protocol, IHalfCloseableProtocol)
        return protocol

    return reactor.listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")


def python_port_forward(api: Any, port: int, payload: bytes, timeout: float = 10) -> bytes:
    """``kubernetes.stream.portforward()`` to pod ``default/demo``'s ``port`` with the
    ``CoreV1Api`` ``api``: send ``payload``, return as many bytes as came back (blocking)."""
    from kubernetes.stream import portforward

    forward = portforward(
        api.connect_get_namespaced_pod_portforward, "demo", "default", ports=str(port)
    )
    conn = forward.socket(port)
    conn.settimeout(timeout)
    conn.sendall(payload)
    received = b""
    deadline = time.monotonic() + timeout
    while len(received) < len(payload) and time.monotonic() < deadline:
        received += conn.recv(1024)
    conn.close()
    return received


def kubectl_port_forward(kubectl: str, kubeconfig: Path, remote: int, use: Callable[[int], T]) -> T:
    """Run ``kubectl port-forward pod/demo :REMOTE``, call ``use(local_port)`` while it
    runs, then kill it (blocking: run in a thread)."""
    command = [kubectl, "--kubeconfig", str(kubeconfig), "port-forward", "pod/demo", f":{remote}"]
    env = {**os.environ, "HOME": str(Path(kubeconfig).parent)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    try:
        assert process.stdout is not None
        first = process.stdout.readline().decode()
        match = re.search(r"127\.0\.0\.1:(\d+) ->", first)
        assert match, first
        return use(int(match.group(1)))
    finally:
        process.kill()
        process.wait(10)


def _exchange(port: int, payload: bytes, timeout: float = 20) -> bytes | None:
    """Send ``payload`` to 127.0.0.1:port, half-close, read until EOF (blocking).

    Returns what came back, or ``None`` when the far end never closed.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        received = bytearray()
        ended = threading.Event()

        def reader() -> None:
            try:
                while chunk := conn.recv(65536):
                    received.extend(chunk)
                ended.set()
            except OSError:
                pass

        thread = threading.Thread(target=reader)
        thread.start()
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        thread.join(timeout)
        return bytes(received) if ended.is_set() else None


@pytest_twisted.ensureDeferred
async def test_exec_echo(sim, sim_kubeconfig, kubectl):
    """`kubectl exec demo -- echo hi` prints hi and exits 0."""
    result = await run_kubectl(kubectl, sim_kubeconfig, "exec", "demo", "--", "echo", "hi")
    assert (result.returncode, result.stdout) == (0, b"hi\n"), result.stderr


@pytest_twisted.ensureDeferred
async def test_exec_cat_keeps_one_mebibyte_intact(sim, sim_kubeconfig, kubectl):
    """`exec -i demo -- cat` returns 1 MiB of stdin byte for byte."""
    payload = os.urandom(1024 * 1024)
    result = await run_kubectl(
        kubectl, sim_kubeconfig, "exec", "-i", "demo", "--", "cat", stdin=payload
    )
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()


@pytest_twisted.ensureDeferred
async def test_exec_exit_code_reaches_kubectl(sim, sim_kubeconfig, kubectl):
    """`exec demo -- sh -c 'exit 3'` makes kubectl exit with 3."""
    result = await run_kubectl(kubectl, sim_kubeconfig, "exec", "demo", "--", "sh", "-c", "exit 3")
    assert result.returncode == 3, result.stderr
    assert b"exit code 3" in result.stderr


@pytest_twisted.ensureDeferred
async def test_exec_stderr_and_unknown_command(sim, sim_kubeconfig, kubectl):
    """stderr stays separate from stdout; an unknown executable is kubelet's exec error."""
    result = await run_kubectl(
        kubectl, sim_kubeconfig, "exec", "demo", "--", "sh", "-c", "echo out; nope; echo err"
    )
    assert result.stdout == b"out\nerr\n"
    assert b"sh: 1: nope: not found" in result.stderr
    result = await run_kubectl(kubectl, sim_kubeconfig, "exec", "demo", "--", "nope")
    assert result.returncode != 0
    assert b"executable file not found" in result.stderr


@pytest_twisted.ensureDeferred
async def test_exec_tty_sees_the_terminal_size(sim, sim_kubeconfig, kubectl):
    """`exec -it demo -- stty size` under a pseudo-terminal (script) prints its size."""
    inner = " ".join(
        [
            "stty rows 33 cols 101;",
            shlex.quote(kubectl),
            "--kubeconfig",
            shlex.quote(str(sim_kubeconfig)),
            "exec -it demo -- stty size",
        ]
    )
    env = {**os.environ, "HOME": str(Path(sim_kubeconfig).parent)}
    result = await deferToThread(
        subprocess.run,
        ["script", "-qec", inner, "/dev/null"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stdout
    # `script` mixes kubectl's stderr into the terminal's output.  When the command
    # ends at once, kubectl 1.33's stdin copier may log that its own write failed
    # after kubectl had closed the stream ("websocket: close sent"): a klog line
    # about the client's shutdown order, not about what the exec printed.
    printed = [
        line
        for line in result.stdout.replace(b"\r", b"").strip().splitlines()
        if not _KLOG_LINE.match(line)
    ]
    assert printed == [b"33 101"], result.stdout


@pytest_twisted.ensureDeferred
async def test_websocket_refusal_falls_back_to_spdy(sim, sim_kubeconfig):
    """kubectl 1.33 retries over SPDY when the WebSocket upgrade gets 403."""
    sim.faults.refuse_websocket = True
    result = await run_kubectl(
        kubectl_binary("1.33"), sim_kubeconfig, "exec", "demo", "--", "echo", "fallback"
    )
    assert (result.returncode, result.stdout) == (0, b"fallback\n"), result.stderr
    upgrades = [
        {k.lower(): v for k, v in r.headers.items()}.get("upgrade", [""])[0].lower()
        for r in sim.requests
        if r.path.endswith("/exec")
    ]
    assert upgrades == ["websocket", "spdy/3.1"]


@pytest_twisted.ensureDeferred
async def test_logs_follow_streams_new_lines(sim, sim_kubeconfig, kubectl):
    """`logs -f demo` prints the log, then keeps printing new lines until killed."""
    sim.pod_logs[("default", "demo", "main")] = ["first", "second"]
    command = [kubectl, "--kubeconfig", str(sim_kubeconfig), "logs", "-f", "demo"]
    env = {**os.environ, "HOME": str(Path(sim_kubeconfig).parent)}

    def follow() -> list[bytes]:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
        try:
            assert process.stdout is not None
            return [process.stdout.readline() for _ in range(5)]
        finally:
            process.kill()
            process.wait(10)

    lines = await deferToThread(follow)
    assert lines[:2] == [b"first\n", b"second\n"]
    assert lines[2:] == [f"main: follow line {n}\n".encode() for n in (3, 4, 5)]


@pytest_twisted.ensureDeferred
async def test_port_forward_moves_bytes_both_ways(sim, sim_kubeconfig, kubectl):
    """`port-forward pod/demo :PORT` reaches a local echo server; two connections in a row."""
    server = _echo_server()
    remote = server.getHost().port

    def exchanges(local: int) -> list[object]:
        big = os.urandom(300_000)
        return [_exchange(local, big) == big, _exchange(local, b"again")]

    try:
        intact, again = await deferToThread(
            kubectl_port_forward, kubectl, sim_kubeconfig, remote, exchanges
        )
    finally:
        await server.stopListening()
    assert intact
    assert again == b"again"


@pytest_twisted.ensureDeferred
async def test_kubectl_cp_round_trip(sim, sim_kubeconfig, kubectl, tmp_path):
    """`kubectl cp` into the pod and back (tar over exec) preserves the file."""
    source = tmp_path / "in.txt"
    source.write_bytes(b"copied through tar\n" * 100)
    result = await run_kubectl(kubectl, sim_kubeconfig, "cp", str(source), "demo:/tmp/in.txt")
    assert result.returncode == 0, result.stderr
    back = tmp_path / "back.txt"
    result = await run_kubectl(kubectl, sim_kubeconfig, "cp", "demo:/tmp/in.txt", str(back))
    assert result.returncode == 0, result.stderr
    assert back.read_bytes() == source.read_bytes()


@pytest_twisted.ensureDeferred
async def test_python_client_stream_exec(sim):
    """kubernetes.stream.stream() runs echo, and cat with stdin closed over v5."""
    from kubernetes.client import CoreV1Api
    from kubernetes.stream import stream

    def run() -> tuple[str, bytes, int | None]:
        api = CoreV1Api(kube_api_client(sim))
        echoed = stream(
            api.connect_get_namespaced_pod_exec,
            "demo",
            "default",
            command=["echo", "hello from python"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        client = stream(
            api.connect_get_namespaced_pod_exec,
            "demo",
            "default",
            command=["cat"],
            stderr=True,
            stdin=True,
            stdout=True,
            tty=False,
            _preload_content=False,
            binary=True,
        )
        client.write_stdin(b"line one\n")
        client.write_stdin(b"line two\n")
        client.close_channel(0)
        client.run_forever(timeout=10)
        out = client.read_stdout() or b""
        return echoed, out, client.returncode

    echoed, out, code = await deferToThread(run)
    assert echoed == "hello from python\n"
    assert out == b"line one\nline two\n"
    assert code == 0


@pytest_twisted.ensureDeferred
async def test_python_client_exit_code(sim):
    """The Python client reads a non-zero exit code from the v5 error channel."""
    from kubernetes.client import CoreV1Api
    from kubernetes.stream import stream

    def run() -> int | None:
        api = CoreV1Api(kube_api_client(sim))
        client = stream(
            api.connect_get_namespaced_pod_exec,
            "demo",
            "default",
            command=["sh", "-c", "exit 7"],
            stderr=True,
            stdout=True,
            _preload_content=False,
        )
        client.run_forever(timeout=10)
        return client.returncode

    assert await deferToThread(run) == 7


@pytest_twisted.ensureDeferred
async def test_python_client_port_forward(sim):
    """kubernetes.stream.portforward() (v4 channels, ports=) reaches the echo server."""
    from kubernetes.client import CoreV1Api

    server = _echo_server()
    port = server.getHost().port

    def run() -> bytes:
        return python_port_forward(CoreV1Api(kube_api_client(sim)), port, b"ping over websocket")

    try:
        assert await deferToThread(run) == b"ping over websocket"
    finally:
        await server.stopListening()
