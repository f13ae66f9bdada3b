"""Blocking socket clients for the stream scenarios: an upgrade splice and a stalled reader.

Blocking sockets with 1 MiB buffers keep the per-byte work in C, so the
client (on core 1, beside the upstream) is not what limits the rate.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import attrs

from bench.topology import Target

__all__ = ["SpliceResult", "StallResult", "splice", "stalled_get"]

CHUNK = 1 << 20


def _connect(target: Target, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(60)
    sock.connect((target.host, target.port))
    context = target.ssl_context()
    if context is not None:
        return context.wrap_socket(sock, server_hostname=target.host)
    return sock


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the response head: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _head(target: Target, method: str, path: str, extra: list[str]) -> bytes:
    lines = [f"{method} {target.prefix}{path} HTTP/1.1", f"Host: {target.host}:{target.port}"]
    lines += [f"{name}: {value}" for name, value in target.headers]
    lines += extra
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@attrs.frozen
class SpliceResult:
    direction: str
    bytes: int
    seconds: float

    @property
    def mib_per_s(self) -> float:
        return self.bytes / self.seconds / (1 << 20)


def splice(target: Target, direction: str, total: int) -> SpliceResult:
    """Upgrade through ``target`` to the sink and move ``total`` bytes ``down`` or ``up``.

    Timed from the 101 to the last byte (down) or to the sink's ``OK`` (up).
    """
    sock = _connect(target)
    try:
        path = f"/api/v1/namespaces/default/pods/sink/portforward?mode={direction}&bytes={total}"
        sock.sendall(
            _head(
                target,
                "POST",
                path,
                [
                    "Connection: Upgrade",
                    "Upgrade: SPDY/3.1",
                    "X-Stream-Protocol-Version: portforward.k8s.io",
                    "Content-Length: 0",
                ],
            )
        )
        head, rest = _read_head(sock)
        if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
            raise ConnectionError(f"{target.name}: no 101: {head[:300]!r}")
        started = time.perf_counter()
        if direction == "down":
            got = len(rest)
            buf = bytearray(CHUNK)
            while got < total:
                n = sock.recv_into(buf)
                if n == 0:
                    raise ConnectionError(f"{target.name}: closed after {got} of {total} bytes")
                got += n
        else:
            block = memoryview(bytes(CHUNK))
            left = total
            while left > 0:
                n = min(left, CHUNK)
                sock.sendall(block[:n])
                left -= n
            answer = b""
            while b"OK\n" not in answer:
                chunk = sock.recv(64)
                if not chunk:
                    raise ConnectionError(f"{target.name}: closed before the sink's OK")
                answer += chunk
        return SpliceResult(direction, total, time.perf_counter() - started)
    finally:
        sock.close()


@attrs.frozen
class StallResult:
    baseline_kib: int
    peak_kib: int
    after_close_kib: int
    bytes_read: int
    stall_seconds: float
    samples: int

    @property
    def growth_kib(self) -> int:
        return self.peak_kib - self.baseline_kib


def stalled_get(
    target: Target,
    path: str,
    stall_seconds: float,
    rss: Callable[[], int],
    read_first: int = 65536,
) -> StallResult:
    """GET a large body, read ``read_first`` bytes, stop reading; sample ``rss`` meanwhile."""
    baseline = rss()
    sock = _connect(target, rcvbuf=256 * 1024)
    try:
        sock.sendall(_head(target, "GET", path, ["Accept: */*"]))
        head, rest = _read_head(sock)
        if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
            raise ConnectionError(f"{target.name}: {head[:300]!r}")
        got = len(rest)
        while got < read_first:
            chunk = sock.recv(min(65536, read_first - got))
            if not chunk:
                break
            got += len(chunk)
        peak = baseline
        samples = 0
        deadline = time.monotonic() + stall_seconds
        while time.monotonic() < deadline:
            peak = max(peak, rss())
            samples += 1
            time.sleep(0.05)
    finally:
        sock.close()
    time.sleep(1.0)
    return StallResult(baseline, peak, rss(), got, stall_seconds, samples)
