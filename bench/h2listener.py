"""CPU per request of the HTTP/2 listener, in memory: the pure-Python engine vs libnghttp2's.

    .venv/bin/python -m bench.h2listener               # 10,000 GETs per shape, best of 3
    .venv/bin/python -m bench.h2listener --requests 2000 --rounds 2

``bench.h2engine`` times the protocol engines alone; this times the whole
listener a request crosses, without sockets or TLS: the connection
(:class:`~clustergateway.fence.h2channel.GatewayH2Connection` on h2, or
:class:`~clustergateway.fence.h2engine_ngh2.Ngh2Connection` on libnghttp2,
the default), Twisted's ``H2Stream`` and ``GatewaySite``'s twisted.web request,
to a leaf resource that answers the small-GET row's 616 bytes.  A client
(ngh2, outside the timer) sends kubectl-like GETs one at a time (``16x1``) or
32 per read (``4x32``); the reactor is a ``MemoryReactorClock`` advanced after
each read, so the sending passes run inside the timer.  The lean proxy path
is not involved (it needs a cluster); both channels would hand it the same
streams.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

import ngh2
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource

from bench.h2engine import BODY, REQUEST, best_of
from clustergateway.fence.h2channel import GatewayH2Connection
from clustergateway.fence.h2engine_ngh2 import Ngh2Connection
from clustergateway.server.site import GatewaySite

__all__ = ["CHANNELS", "cpu_per_request", "main"]

CHANNELS: dict[str, type[Any]] = {"h2channel": GatewayH2Connection, "ngh2": Ngh2Connection}


class Answer(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - Twisted's name
        request.setHeader(b"content-type", b"application/json")
        return BODY


class H2Transport(StringTransport):
    negotiatedProtocol = b"h2"  # noqa: N815 - Twisted's name


def connect(channel: type[Any], clock: MemoryReactorClock) -> tuple[Any, StringTransport]:
    """A listener connection of class ``channel`` on a site, as ``ChannelSwitch`` builds it."""
    site = GatewaySite(Answer(), reactor=clock)
    protocol = channel(clock, 1 << 20)
    protocol.requestFactory = site.requestFactory
    protocol.site = site
    protocol.factory = site
    protocol.timeOut = None
    protocol.callLater = clock.callLater
    client = IPv4Address("TCP", "127.0.0.1", 40000)
    transport = H2Transport(peerAddress=client, hostAddress=IPv4Address("TCP", "127.0.0.1", 9443))
    protocol.makeConnection(transport)
    clock.advance(0)
    return protocol, transport


def cpu_per_request(channel: type[Any], requests: int, batch: int) -> float:
    """CPU µs per GET on the server side over ``requests`` GETs, ``batch`` per read."""
    clock = MemoryReactorClock()
    server, transport = connect(channel, clock)
    client = ngh2.Connection(ngh2.Role.CLIENT)
    client.initiate_connection()

    def exchange() -> tuple[bytes, float]:
        data = client.data_to_send()
        started = time.process_time()
        server.dataReceived(data)
        clock.advance(0)
        elapsed = time.process_time() - started
        out = transport.value()
        transport.clear()
        client.receive_data(out)
        return out, elapsed

    exchange()  # prefaces and SETTINGS
    exchange()
    client.events()
    answered = 0
    cpu = 0.0
    gc.collect()
    rounds = requests // batch
    for _ in range(rounds):
        for _ in range(batch):
            client.send_request(REQUEST, end_stream=True)
        _, elapsed = exchange()
        cpu += elapsed
        for event in client.events():
            if type(event) is ngh2.ResponseReceived and dict(event.headers)[b":status"] == b"200":
                answered += 1
    if answered != rounds * batch:
        raise AssertionError(f"{channel.__name__}: {answered} of {rounds * batch} answered 200")
    return cpu / (rounds * batch) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.h2listener", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many")
    options = parser.parse_args(argv)
    print(
        f"ngh2 {ngh2.__version__}; server CPU per GET through GatewaySite, best of "
        f"{options.rounds} rounds of {options.requests}"
    )
    print("| Shape | Listener | CPU µs/request | × h2channel |")
    print("|---|---|---|---|")
    best = best_of(
        CHANNELS,
        lambda channel, batch: cpu_per_request(channel, options.requests, batch),
        options.rounds,
    )
    for shape, row in best.items():
        for name, us in row.items():
            print(f"| {shape} | {name} | {us:.1f} | {row['h2channel'] / us:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
