"""CPU per proxied GET through the whole gateway, in memory: the request path alone.

    .venv/bin/python -m bench.proxypath                 # 20,000 GETs, best of 3
    .venv/bin/python -m bench.proxypath --web           # twisted.web's Request for all
    .venv/bin/python -m bench.proxypath --h2 32         # HTTP/2 streams, 32 per read
    .venv/bin/python -m bench.proxypath --h2 1 --h2-engine python

No sockets, no TLS, no load generator: one caller connection (HTTP/1.1,
keep-alive) on the gateway's real ``GatewaySite`` built by ``tap.build_service``
(standalone, metrics on), and a cluster that answers each request the moment
it is read, through the real pooled client.  What is timed is the Python a
proxied GET costs from its head's bytes to the answer's: the channel, the
gate, ``ClusterProxy``, the relay, the pooled client and the metrics.  With
``--h2 N`` the caller is an HTTP/2 connection instead (ALPN ``h2``, on the
site's ``--h2-engine``), and an ngh2 client, outside the timer, sends N GETs
per read (1: kubectl's shape, 32: the aggregator's).  It
uses only the service's wiring, so the same command measures an older commit
(``git worktree``) for a before/after.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import ngh2
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.testing import StringTransport

from clustergateway.config import GatewayConfig
from clustergateway.proxy.resource import ClusterProxy
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.store import SecretRegistry
from clustergateway.tap import build_service
from clustergateway.testing.clock import PassEndClock

__all__ = ["cpu_per_request", "main"]

_PATH = (
    b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy"
    b"/api/v1/namespaces/default/configmaps/cm"
)
REQUEST = b"GET " + _PATH + b" HTTP/1.1\r\nHost: gw:9443\r\nAccept: */*\r\n\r\n"
_BODY = b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm"}}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nAudit-Id: 42\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


class _AnsweringTransport(StringTransport):
    """The cluster's side of a pooled connection: answers each request when written."""

    protocol: Any = None

    def write(self, data: bytes) -> None:
        if data.endswith(b"\r\n\r\n"):
            self.protocol.dataReceived(ANSWER)

    def writeSequence(self, data: Any) -> None:  # noqa: N802 - Twisted's name
        self.write(b"".join(data))


class _Cluster:
    """The dialer: every connection the pool opens answers in memory."""

    def stream_endpoint(self, host: str, port: int) -> _Cluster:
        return self

    def connect(self, factory: Any) -> Any:
        protocol = factory.buildProtocol(None)
        transport = _AnsweringTransport()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return succeed(protocol)


class _H2Transport(StringTransport):
    negotiatedProtocol = b"h2"  # noqa: N815 - Twisted's name


H2_REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"gw:9443"),
    (b":path", _PATH),
    (b"accept", b"application/json"),
    (b"user-agent", b"kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef"),
]


def _caller(
    web: bool, directory: Path, h2_engine: str | None = None
) -> tuple[Any, StringTransport, PassEndClock]:
    # The gateway's reactor frames HTTP/2 at the end of each pass (fence.reactor).
    reactor = PassEndClock()
    registry = SecretRegistry("cluster.core.oam.dev")
    registry.replace_all([cluster_secret("c1", endpoint="http://10.0.0.1:6443", token="t0ken")])
    proxy = ClusterProxy.build(reactor, registry, dialer=_Cluster())  # type: ignore[arg-type]
    config = GatewayConfig(
        secure_port=0,
        bind_address="127.0.0.1",
        standalone=True,
        cert_dir=directory / "certs",
        h2_engine=h2_engine or "auto",
    )
    service = build_service(reactor, config, registry=registry, source=None, proxy=proxy)
    proxy.metrics = service.metrics
    if web:
        for name in ("proxy_entry", "lean_proxy"):  # today's name, and an older one
            if hasattr(service.site, name):
                setattr(service.site, name, None)
    address = IPv4Address("TCP", "192.0.2.7", 40000)
    protocol = service.site.buildProtocol(address)
    client = (_H2Transport if h2_engine else StringTransport)(peerAddress=address)
    protocol.makeConnection(client)
    return protocol, client, reactor


def h2_cpu_per_request(requests: int, batch: int, engine: str) -> float:
    """Seconds of CPU per proxied GET arriving as HTTP/2 streams, ``batch`` per read."""
    with tempfile.TemporaryDirectory() as directory:
        protocol, transport, reactor = _caller(False, Path(directory), engine)
        client = ngh2.Connection(ngh2.Role.CLIENT)
        client.initiate_connection()

        def exchange() -> float:
            data = client.data_to_send()
            started = time.process_time()
            protocol.dataReceived(data)
            reactor.end_pass()
            reactor.advance(0)  # the pure-Python engine's later sending passes
            elapsed = time.process_time() - started
            client.receive_data(transport.value())
            transport.clear()
            return elapsed

        exchange()
        exchange()
        client.events()
        for _ in range(200 // batch + 1):  # warm the pools and caches
            for _ in range(batch):
                client.send_request(H2_REQUEST, end_stream=True)
            exchange()
        client.events()
        gc.collect()
        gc.disable()
        answered = 0
        spent = 0.0
        rounds = max(requests // batch, 1)
        try:
            for _ in range(rounds):
                for _ in range(batch):
                    client.send_request(H2_REQUEST, end_stream=True)
                spent += exchange()
                for event in client.events():
                    if type(event) is ngh2.ResponseReceived:
                        answered += dict(event.headers)[b":status"] == b"200"
        finally:
            gc.enable()
        if answered != rounds * batch:
            raise SystemExit(f"the gateway answered 200 to {answered} of {rounds * batch}")
        return spent / (rounds * batch)


def cpu_per_request(requests: int, *, web: bool = False) -> float:
    """Seconds of CPU per proxied GET (process time; the collector off while timed)."""
    with tempfile.TemporaryDirectory() as directory:
        protocol, client, _ = _caller(web, Path(directory))
        for _ in range(200):  # warm the pools and caches
            protocol.dataReceived(REQUEST)
        if b"200 OK" not in client.value():
            raise SystemExit(f"the gateway did not answer 200: {client.value()[:300]!r}")
        client.clear()
        gc.collect()
        gc.disable()
        try:
            started = time.process_time()
            for _ in range(requests):
                protocol.dataReceived(REQUEST)
                client.clear()
            spent = time.process_time() - started
        finally:
            gc.enable()
        return spent / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--web", action="store_true", help="twisted.web's Request for all")
    parser.add_argument("--h2", type=int, metavar="N", help="HTTP/2: N streams per read")
    parser.add_argument("--h2-engine", default="native", choices=("native", "python"))
    args = parser.parse_args()
    if args.h2:
        best = min(
            h2_cpu_per_request(args.requests, args.h2, args.h2_engine) for _ in range(args.rounds)
        )
        path = f"HTTP/2, {args.h2} per read, {args.h2_engine} engine"
    else:
        best = min(cpu_per_request(args.requests, web=args.web) for _ in range(args.rounds))
        path = "twisted.web Request" if args.web else "answered on the connection"
    print(f"{best * 1e6:.1f} µs CPU per proxied GET ({path}; best of {args.rounds})")


if __name__ == "__main__":
    main()
