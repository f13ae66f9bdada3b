"""CPU per request of the gateway's HTTP/1.1 server channel, in memory: H1Channel vs Twisted's.

    .venv/bin/python -m bench.h1parse              # 20,000 keep-alive GETs, best of 5
    .venv/bin/python -m bench.h1parse --held       # answered after dataReceived returns

Each kubectl-like GET (9 header lines, a Bearer token) goes through
``GatewaySite`` on a ``StringTransport`` to a leaf resource that answers
``{}``, once on :class:`~clustergateway.fence.h1channel.H1Channel` and once on
Twisted's line-by-line ``HTTPChannel``.  The figure is process CPU time per
request, so it includes the request object and the response (the same for
both); the difference is the parsing.  No sockets, no other processes: it can
run beside the load scenarios' machine use, but numbers still move when the
machine is busy, so compare the two rows of one run.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.http import HTTPFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from clustergateway.server.site import GatewaySite

HEAD = (
    b"GET /apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy"
    b"/api/v1/namespaces/default/pods?limit=500 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9443\r\n"
    b"User-Agent: kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef0\r\n"
    b"Accept: application/json;as=Table;v=v1;g=meta.k8s.io,"
    b"application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json\r\n"
    b"Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJzdWIiOiJzeXN0ZW06c2Vy"
    b"dmljZWFjY291bnQ6ZGVmYXVsdDpkZWZhdWx0In0.c2lnbmF0dXJl\r\n"
    b"Kubectl-Command: kubectl get\r\n"
    b"Kubectl-Session: 4b2e1f2a-5c6d-4e7f-8a9b-0c1d2e3f4a5b\r\n"
    b"Accept-Encoding: gzip\r\n"
    b"X-Request-Id: 0123456789abcdef\r\n"
    b"\r\n"
)


class Answer(Resource):
    """Answers ``{}`` at once, or holds the request for the driver to finish."""

    isLeaf = True

    def __init__(self, held: bool) -> None:
        super().__init__()
        self.held = held
        self.pending: list[Any] = []

    def render(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", b"2")
        if self.held:
            self.pending.append(request)
            return NOT_DONE_YET
        return b"{}"


class StockSite(GatewaySite):
    """The same site on Twisted's own line-by-line ``HTTPChannel``."""

    protocol = HTTPFactory.protocol


def cpu_per_request(site_class: type[GatewaySite], requests: int, held: bool) -> float:
    """CPU µs per request over ``requests`` keep-alive GETs on one connection."""
    resource = Answer(held)
    site = site_class(resource, reactor=MemoryReactorClock())
    client = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = site.buildProtocol(client)
    transport = StringTransport(
        peerAddress=client, hostAddress=IPv4Address("TCP", "127.0.0.1", 9443)
    )
    protocol.makeConnection(transport)
    gc.collect()
    start = time.process_time()
    for i in range(requests):
        protocol.dataReceived(HEAD)
        if held:
            request = resource.pending.pop()
            request.write(b"{}")
            request.finish()
        if i % 256 == 0:
            transport.clear()
    elapsed = time.process_time() - start
    if not transport.value().startswith(b"HTTP/1.1 200 OK"):
        raise AssertionError(f"unexpected answer: {transport.value()[:100]!r}")
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--held", action="store_true", help="answer after dataReceived returns")
    args = parser.parse_args()
    for name, site_class in (("twisted HTTPChannel", StockSite), ("H1Channel", GatewaySite)):
        runs = sorted(
            cpu_per_request(site_class, args.requests, args.held) for _ in range(args.rounds)
        )
        print(
            f"{name:20s} best {runs[0]:6.2f}  median {runs[len(runs) // 2]:6.2f} µs/request"
            f"  ({args.requests} GETs x {args.rounds}, held={args.held})"
        )


if __name__ == "__main__":
    main()
