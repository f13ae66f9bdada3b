"""Backpressure, measured: the gateway runs as its own process and its RSS is read
from ``/proc/<pid>/status`` while 300 MiB flow to a client that does not read.

The upstream (``tests/unit/proxy/upstream.py``, plain HTTP to save CPU) and the
client run in the test's reactor; only the gateway is a subprocess.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
import yaml
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from clustergateway.registry.samples import cluster_secret
from tests.fixtures.gateway import PROXY_PATH, wait_until
from tests.unit.proxy.upstream import Upstream

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
TOTAL = 300 * MiB
RSS_LIMIT = 10 * MiB
PROXY = PROXY_PATH.format(cluster="up").encode()


def rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class GatewayProcess:
    process: subprocess.Popen[bytes]
    port: int
    ca_pem: bytes
    samples: list[int] = attrs.field(factory=list)

    def sample(self) -> int:
        value = rss(self.process.pid)
        self.samples.append(value)
        return value


@pytest_twisted.async_yield_fixture
async def upstream() -> AsyncIterator[Upstream]:
    from twisted.internet import reactor

    server = Upstream(reactor).start()
    yield server
    await server.stop()


@pytest_twisted.async_yield_fixture
async def gateway_process(upstream: Upstream, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    """``cluster-gateway --standalone-debug-mode`` with cluster ``up`` → the upstream."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "up.yaml").write_text(
        yaml.safe_dump(cluster_secret("up", endpoint=upstream.url, token="t"))
    )
    port = free_port()
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "cluster-gateway"),
            "--standalone-debug-mode",
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            str(port),
            "--cert-dir",
            str(tmp_path / "certs"),
            "--secrets-dir",
            str(secrets),
            # A test may leave a session open (a client that stopped reading): the
            # drain on SIGTERM closes it after this, within the teardown's wait.
            "--shutdown-grace-period=1s",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ca = tmp_path / "certs" / "ca.crt"

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError((tmp_path / "gateway.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                return False
            return ca.exists()

        await wait_until(listening, timeout=30, interval=0.1)
        yield GatewayProcess(process, port, ca.read_bytes())
    finally:
        process.terminate()
        process.wait(10)
        log.close()


class Counting(Protocol):
    """Counts what arrives (keeping only the head), fires ``done`` at ``expected`` bytes."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.head = b""
        self.received = 0
        self.done: Deferred[None] = Deferred()
        self.reached: Deferred[None] = Deferred()
        self.marker = b""

    def dataReceived(self, data: bytes) -> None:
        if len(self.head) < 4096:
            self.head += data[:4096]
        self.received += len(data)
        if self.received >= self.expected and not self.done.called:
            self.done.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.errback(AssertionError(f"closed after {self.received} bytes"))


async def connect(gateway: GatewayProcess, protocol: Protocol) -> None:
    from twisted.internet import reactor, ssl
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS

    options = ssl.optionsForClientTLS(
        "127.0.0.1",
        trustRoot=ssl.Certificate.loadPEM(gateway.ca_pem),
        acceptableProtocols=[b"http/1.1"],
    )
    endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port))
    await connectProtocol(endpoint, protocol)


async def sample_while(gateway: GatewayProcess, seconds: float) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(int(seconds / 0.2)):
        gateway.sample()
        await deferLater(reactor, 0.2, lambda: None)


async def sample_until(gateway: GatewayProcess, condition: Callable[[], bool]) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    while not condition():
        gateway.sample()
        await deferLater(reactor, 0.2, lambda: None)


async def warm_up(gateway: GatewayProcess) -> None:
    """A few MiB first, so one-off allocations (TLS contexts, pools) are in the baseline."""
    client = Counting(4 * MiB)
    await connect(gateway, client)
    client.transport.write(
        b"GET " + PROXY + b"/big?size=%d HTTP/1.1\r\nHost: g\r\n\r\n" % (4 * MiB)
    )
    await client.done
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_300_mib_response_to_a_stalled_client(
    gateway_process: GatewayProcess, upstream: Upstream
) -> None:
    """A client that stops reading pauses the cluster (it has sent only a few MiB), and the
    gateway's RSS stays within 10 MiB of its baseline; once the client reads, all 300 MiB
    arrive."""
    await warm_up(gateway_process)
    upstream.sent = 0
    baseline = gateway_process.sample()
    client = Counting(TOTAL)
    await connect(gateway_process, client)
    client.transport.write(b"GET " + PROXY + b"/big?size=%d HTTP/1.1\r\nHost: g\r\n\r\n" % TOTAL)
    await wait_until(lambda: client.received > 0, timeout=10)
    client.transport.pauseProducing()  # the client stalls once the response started
    await sample_while(gateway_process, 3.0)
    assert upstream.sent < 64 * MiB, upstream.sent  # the cluster was paused
    client.transport.resumeProducing()
    await sample_until(gateway_process, lambda: client.done.called)
    await client.done
    assert client.head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: %d" % TOTAL in client.head.lower()
    growth = max(gateway_process.samples) - baseline
    assert growth < RSS_LIMIT, f"RSS grew {growth / MiB:.1f} MiB"
    client.transport.loseConnection()


@implementer(IPushProducer)
class Pusher:
    """Writes ``total`` bytes into a transport as fast as it accepts them."""

    def __init__(self, transport: Any, total: int) -> None:
        self.transport = transport
        self.remaining = total
        self.sent = 0
        self.paused = False
        self.block = b"p" * 65536
        self.finished: Deferred[None] = Deferred()

    def start(self) -> None:
        self.transport.registerProducer(self, True)
        self._push()

    def _push(self) -> None:
        while not self.paused and self.remaining > 0:
            n = min(len(self.block), self.remaining)
            self.remaining -= n
            self.sent += n
            self.transport.write(self.block[:n])
        if self.remaining == 0 and not self.finished.called:
            self.transport.unregisterProducer()
            self.finished.callback(None)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        from twisted.internet import reactor

        if self.paused:
            self.paused = False
            reactor.callLater(0, self._push)

    def stopProducing(self) -> None:
        self.remaining = 0


@pytest_twisted.ensureDeferred
async def test_300_mib_pushed_into_a_splice_without_reading(
    gateway_process: GatewayProcess, upstream: Upstream
) -> None:
    """Bytes pushed into an upgraded connection whose echo the client does not read: the
    pressure reaches the pushing client (it is paused), the gateway's RSS stays within
    10 MiB; once the client reads, all 300 MiB come back intact."""
    await warm_up(gateway_process)
    client = Counting(2 * TOTAL)  # the real total is known after the 101 head
    await connect(gateway_process, client)
    client.transport.write(
        b"POST " + PROXY + b"/upgrade/exec HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\n"
        b"Upgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n"
    )
    await wait_until(lambda: b"\r\n\r\n" in client.head, timeout=10)
    head_length = client.head.index(b"\r\n\r\n") + 4
    assert client.head.startswith(b"HTTP/1.1 101 ")
    client.expected = head_length + TOTAL
    baseline = gateway_process.sample()
    client.transport.pauseProducing()
    pusher = Pusher(client.transport, TOTAL)
    pusher.start()
    await sample_while(gateway_process, 3.0)
    assert pusher.paused and pusher.sent < 64 * MiB, pusher.sent  # pressure reached the client
    client.transport.resumeProducing()
    await sample_until(gateway_process, lambda: client.done.called)
    await client.done
    await pusher.finished
    assert upstream.upgrade_bytes == TOTAL
    assert client.received == head_length + TOTAL
    growth = max(gateway_process.samples) - baseline
    assert growth < RSS_LIMIT, f"RSS grew {growth / MiB:.1f} MiB"
    client.transport.loseConnection()
