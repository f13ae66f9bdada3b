"""``--workers N``: processes sharing the port (SO_REUSEPORT), started and stopped together.

The gateway runs as a real subprocess (the console script, and ``twistd`` as
deploy/ runs it); clients are plain blocking sockets, so no test here touches
the reactor.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.fixtures.gateway import ENTRY_POINTS

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().split(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            match = re.fullmatch(r"socket:\[(\d+)\]", target)
            if match:
                inodes.add(match.group(1))
    except OSError:
        pass
    return inodes


def connections_to(port: int) -> dict[str, str]:
    """inode → state of TCP sockets whose local port is ``port`` (``/proc/net/tcp``)."""
    found = {}
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if local_port == port:
                found[fields[9]] = fields[3]  # 0A = LISTEN, 01 = ESTABLISHED
    return found


@attrs.define
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    ca: Path

    def tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.check_hostname = False
        return context

    def get(self, sock: ssl.SSLSocket, path: str) -> bytes:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return self.tls().wrap_socket(raw)


def start(
    tmp_path: Path,
    *extra: str,
    port: int | None = None,
    entry: str = "cluster-gateway",
    log: Path | None = None,
) -> Gateway:
    """The gateway through ``entry``, standalone, on ``port`` (a free one); ``log``: where
    its log lines (stdout) and stderr go (else stderr is a pipe, stdout dropped)."""
    port = free_port() if port is None else port
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    command, *flags = ENTRY_POINTS[entry]
    output: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    if log is not None:
        output = {"stdout": log.open("wb"), "stderr": subprocess.STDOUT}
    process = subprocess.Popen(
        [
            str(BIN / command),
            *flags,
            "--standalone-debug-mode",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--secrets-dir={secrets}",
            f"--cert-dir={tmp_path / 'certs'}",
            *extra,
        ],
        **output,
    )
    return Gateway(process, port, tmp_path / "certs" / "ca.crt")


def stop(gateway: Gateway) -> None:
    if gateway.process.poll() is None:
        gateway.process.send_signal(signal.SIGTERM)
        try:
            gateway.process.wait(15)
        except subprocess.TimeoutExpired:
            gateway.process.kill()
            gateway.process.wait(5)


@pytest.fixture(params=sorted(ENTRY_POINTS))
def two_workers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """``--workers=2`` through each entry point (under twistd they were never started)."""
    gateway = start(tmp_path, "--workers=2", entry=request.param)
    try:
        wait_until(
            lambda: (
                len(children_of(gateway.process.pid)) == 1
                and list(connections_to(gateway.port).values()).count("0A") == 2
            ),
            30,
            "a child worker and two listening sockets",
        )
        yield gateway
    finally:
        stop(gateway)


def test_two_workers_share_the_port(two_workers: Gateway) -> None:
    """Both processes listen on the port and each accepts some of 40 new connections;
    every connection is answered."""
    gateway = two_workers
    [child] = children_of(gateway.process.pid)
    sockets = []
    try:
        for _ in range(40):
            sock = gateway.connect()
            assert gateway.get(sock, "/healthz").startswith(b"HTTP/1.1 200")
            sockets.append(sock)
        established = {
            inode for inode, state in connections_to(gateway.port).items() if state == "01"
        }
        per_process = {
            pid: len(socket_inodes(pid) & established) for pid in (gateway.process.pid, child)
        }
        assert sum(per_process.values()) == 40
        assert all(count > 0 for count in per_process.values()), per_process
    finally:
        for sock in sockets:
            sock.close()


def test_a_child_that_dies_is_restarted(two_workers: Gateway) -> None:
    """A killed child is replaced by a new one that listens again."""
    gateway = two_workers
    [child] = children_of(gateway.process.pid)
    os.kill(child, signal.SIGKILL)
    wait_until(
        lambda: (current := children_of(gateway.process.pid)) != [] and current != [child],
        15,
        "a new child",
    )
    wait_until(
        lambda: list(connections_to(gateway.port).values()).count("0A") == 2,
        30,
        "two listening sockets again",
    )


def test_children_stop_with_the_parent(two_workers: Gateway) -> None:
    """SIGTERM to the parent stops its children; a parent killed outright leaves no
    orphan either (the child notices its parent is gone)."""
    gateway = two_workers
    [child] = children_of(gateway.process.pid)
    gateway.process.send_signal(signal.SIGTERM)
    gateway.process.wait(15)
    wait_until(lambda: not alive(child), 15, "the child to exit after SIGTERM")


def test_children_stop_when_the_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL to the parent: the orphaned child stops by itself within seconds."""
    gateway = start(tmp_path, "--workers=2")
    try:
        wait_until(lambda: len(children_of(gateway.process.pid)) == 1, 30, "a child worker")
        [child] = children_of(gateway.process.pid)
        gateway.process.kill()
        gateway.process.wait(5)
        wait_until(lambda: not alive(child), 15, "the orphaned child to exit")
    finally:
        stop(gateway)


def test_workers_need_a_fixed_port(tmp_path: Path) -> None:
    """``--workers 2 --secure-port 0`` stops the start with one line naming the flag."""
    gateway = start(tmp_path, "--workers=2", port=0)
    gateway.process.wait(30)
    assert gateway.process.returncode != 0
    assert gateway.process.stderr is not None
    message = gateway.process.stderr.read().decode()
    assert "--workers" in message and "secure-port" in message
