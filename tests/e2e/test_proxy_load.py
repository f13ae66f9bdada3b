"""Many connections through the proxy: concurrent watches, disconnects, no leaked sockets.

Upstream sockets are counted in the kernel's table (``/proc/net/tcp*``): every
connection whose local port is the simulated cluster's port is one the gateway
opened to it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.protocol import Protocol

from tests.e2e.api_helpers import StreamingKubectl
from tests.fixtures.gateway import PROXY_PATH, wait_until
from tests.fixtures.proxy import ProxiedCluster, RawClient, raw_tls_connect
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e

SIM = PROXY_PATH.format(cluster="sim").encode()
WATCH = (
    b"GET " + SIM + b"/api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\n"
    b"Host: gateway\r\n\r\n"
)
# TCP states that still hold a socket (not LISTEN, TIME_WAIT or CLOSE).
_GONE_STATES = {"0A", "06", "07"}


def sockets_on(port: int) -> int:
    """Open TCP sockets whose local port is ``port`` (the server side of connections)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state not in _GONE_STATES:
                count += 1
    return count


def configmap(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
    }


async def connect(proxied: ProxiedCluster) -> RawClient:
    return await raw_tls_connect(proxied.gateway.port, proxied.gateway.ca_path.read_bytes())


def pools_of(proxied: ProxiedCluster) -> Any:
    return proxied.gateway.root.children[b"apis"].proxy.pools


@pytest_twisted.ensureDeferred
async def test_200_concurrent_watches_each_get_the_event(proxied: ProxiedCluster) -> None:
    """200 watches open at once through the gateway; one new object reaches every one;
    when the clients leave, every upstream connection closes."""
    sim = proxied.sim
    clients = list(await gatherResults([ensureDeferred(connect(proxied)) for _ in range(200)]))
    for client in clients:
        client.transport.write(WATCH)
    await wait_until(lambda: len(sim.watches) >= 200, timeout=120)
    sim.store.put(configmap("for-everyone"))
    await wait_until(lambda: all(b"for-everyone" in c.data for c in clients), timeout=60)
    for client in clients:
        client.transport.loseConnection()
    await wait_until(lambda: not sim.watches, timeout=30)
    await wait_until(
        lambda: sockets_on(sim.port) <= pools_of(proxied).connection_count(), timeout=30
    )


@pytest_twisted.ensureDeferred
async def test_client_disconnect_closes_upstream_within_a_second(proxied: ProxiedCluster) -> None:
    """A client leaving a watch ends the cluster's watch at once (its HTTP/2 stream is
    reset); the connection that carried it stays only as an idle pooled one."""
    sim = proxied.sim
    client = await connect(proxied)
    client.transport.write(WATCH)
    await wait_until(lambda: len(sim.watches) == 1, timeout=30)
    started = time.monotonic()
    client.transport.loseConnection()
    await wait_until(lambda: not sim.watches, timeout=5)
    assert time.monotonic() - started < 1.0
    await wait_until(
        lambda: sockets_on(sim.port) <= pools_of(proxied).connection_count(), timeout=5
    )


class Requester(Protocol):
    """Sends ``count`` requests one after another on one keep-alive connection."""

    def __init__(self, request: bytes, count: int) -> None:
        self.request = request
        self.remaining = count
        self.buffer = b""
        self.codes: dict[int, int] = {}
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            code = int(head.split(b" ", 2)[1])
            self.codes[code] = self.codes.get(code, 0) + 1
            self.buffer = rest[length:]
            self.remaining -= 1
            if self.remaining == 0:
                self.transport.loseConnection()
                return
            self.transport.write(self.request)

    def connectionLost(self, reason: Any = None) -> None:
        if self.remaining:
            self.done.errback(AssertionError(f"closed with {self.remaining} requests to go"))
        else:
            self.done.callback(None)


async def run_requests(proxied: ProxiedCluster, request: bytes, count: int) -> dict[int, int]:
    from twisted.internet import reactor, ssl
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS

    options = ssl.optionsForClientTLS(
        "127.0.0.1",
        trustRoot=ssl.Certificate.loadPEM(proxied.gateway.ca_path.read_bytes()),
        acceptableProtocols=[b"http/1.1"],
    )
    requester = Requester(request, count)
    endpoint = wrapClientTLS(
        options, TCP4ClientEndpoint(reactor, "127.0.0.1", proxied.gateway.port)
    )
    await connectProtocol(endpoint, requester)
    await requester.done
    return requester.codes


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_quiet_watch_survives_a_minute_and_10000_requests_leak_nothing(
    proxied: ProxiedCluster,
) -> None:
    """Two watches stay quiet for more than 60 s (kubectl 1.33 ``get -w`` and a raw
    HTTP/1.1 one) while 10,000 requests — plain ones and watches the client abandons —
    go through the gateway.  Afterwards the only cluster connections open are the one
    HTTP/2 connection carrying both watches and the pool's idle ones, and both watches
    still deliver an event."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    sim = proxied.sim
    started = time.monotonic()
    kubectl = StreamingKubectl.start(
        kubectl_binary("1.33"), proxied.kubeconfig, "get", "cm", "-w", "--no-headers"
    )
    raw = await connect(proxied)
    raw.transport.write(WATCH)
    try:
        await wait_until(lambda: len(sim.watches) >= 2, timeout=30)
        get = (
            b"GET " + SIM + b"/api/v1/namespaces/default/configmaps/missing HTTP/1.1\r\n"
            b"Host: gateway\r\n\r\n"
        )
        total: dict[int, int] = {}
        for _round in range(10):
            results = await gatherResults(
                [ensureDeferred(run_requests(proxied, get, 100)) for _ in range(10)]
            )
            for codes in results:
                for code, n in codes.items():
                    total[code] = total.get(code, 0) + n
            abandoned = await connect(proxied)
            abandoned.transport.write(WATCH)
            await wait_until(lambda: len(sim.watches) >= 3, timeout=30)
            abandoned.transport.abortConnection()
        assert total == {404: 10_000}

        await wait_until(lambda: len(sim.watches) == 2, timeout=10)
        idle = pools_of(proxied).connection_count()
        assert idle <= 32
        assert sim.connection_protocols().count("h2") == 1
        assert sockets_on(sim.port) == 1 + idle

        remaining = 61.0 - (time.monotonic() - started)
        if remaining > 0:
            await deferLater(reactor, remaining, lambda: None)
        assert not raw.closed.called
        sim.store.put(configmap("after-a-quiet-minute"))
        await raw.wait_contains(b"after-a-quiet-minute")
        await wait_until(lambda: kubectl.first_time("after-a-quiet-minute") is not None, timeout=30)
    finally:
        kubectl.stop()
        raw.transport.loseConnection()
