"""CPU per proxied GET through the whole gateway, in memory: the request path alone.

    .venv/bin/python -m bench.proxypath                 # 20,000 GETs, best of 3
    .venv/bin/python -m bench.proxypath --web           # twisted.web's Request for all

No sockets, no TLS, no load generator: one caller connection (HTTP/1.1,
keep-alive) on the gateway's real ``GatewaySite`` built by ``tap.build_service``
(standalone, metrics on), and a cluster that answers each request the moment
it is read, through the real pooled client.  What is timed is the Python a
proxied GET costs from its head's bytes to the answer's: the channel, the
gate, ``ClusterProxy``, the relay, the pooled client and the metrics.  It
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

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport

from clustergateway.config import GatewayConfig
from clustergateway.proxy.resource import ClusterProxy
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.store import SecretRegistry
from clustergateway.tap import build_service

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


def _caller(web: bool, directory: Path) -> tuple[Any, StringTransport]:
    reactor = MemoryReactorClock()
    registry = SecretRegistry("cluster.core.oam.dev")
    registry.replace_all([cluster_secret("c1", endpoint="http://10.0.0.1:6443", token="t0ken")])
    proxy = ClusterProxy.build(reactor, registry, dialer=_Cluster())  # type: ignore[arg-type]
    config = GatewayConfig(
        secure_port=0, bind_address="127.0.0.1", standalone=True, cert_dir=directory / "certs"
    )
    service = build_service(reactor, config, registry=registry, source=None, proxy=proxy)
    proxy.metrics = service.metrics
    if web:
        for name in ("proxy_entry", "lean_proxy"):  # today's name, and an older one
            if hasattr(service.site, name):
                setattr(service.site, name, None)
    address = IPv4Address("TCP", "192.0.2.7", 40000)
    protocol = service.site.buildProtocol(address)
    client = StringTransport(peerAddress=address)
    protocol.makeConnection(client)
    return protocol, client


def cpu_per_request(requests: int, *, web: bool = False) -> float:
    """Seconds of CPU per proxied GET (process time; the collector off while timed)."""
    with tempfile.TemporaryDirectory() as directory:
        protocol, client = _caller(web, Path(directory))
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
    args = parser.parse_args()
    best = min(cpu_per_request(args.requests, web=args.web) for _ in range(args.rounds))
    path = "twisted.web Request" if args.web else "answered on the connection"
    print(f"{best * 1e6:.1f} µs CPU per proxied GET ({path}; best of {args.rounds})")


if __name__ == "__main__":
    main()
