"""``python -m bench.konnectivity_client``: how to speak gRPC to the proxy-server, measured.

The gateway's konnectivity client (``clustergateway.proxy.konnectivity``) speaks gRPC
with ``h2`` on the Twisted reactor.  The alternative is ``grpcio``'s client, which runs
its own threads, so every chunk crosses to the reactor (``callFromThread``) and back.
This measures both on the same job: one dialed connection through the proxy-server
stand-in (a separate process) to a TCP echo server (another process), then N
sequential round trips of a 600-byte message; per round trip: wall time (p50, mean)
and the client process's CPU (user+sys).  For grpcio the reactor hand-off is included
as it would be in the gateway: the reactor writes with a queue the request iterator
reads, and the response thread hands each chunk back with ``callFromThread``.
"""

from __future__ import annotations

import argparse
import json
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.procs import free_port, wait_for_port

_ECHO = """
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port})); s.listen()
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d: return
        c.sendall(d)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""
MESSAGE = b"x" * 600


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _summary(samples: list[float], cpu: float) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_us": round(statistics.median(samples) * 1e6, 1),
        "mean_us": round(statistics.fmean(samples) * 1e6, 1),
        "cpu_us_per_round_trip": round(cpu / len(samples) * 1e6, 1),
    }


def run_ours(port: int, pki: Path, count: int) -> dict[str, float]:
    """Our client: KonnectivityDialer on the reactor, the protocol echoing in callbacks."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, ensureDeferred
    from twisted.internet.protocol import Factory, Protocol

    from clustergateway.proxy.konnectivity import KonnectivityDialer
    from clustergateway.proxy.tls import konnectivity_tls_creator

    creator = konnectivity_tls_creator(
        "127.0.0.1",
        (pki / "ca.crt").read_bytes(),
        (pki / "client.crt").read_bytes(),
        (pki / "client.key").read_bytes(),
    )
    dialer = KonnectivityDialer(reactor, "127.0.0.1", port, creator)
    result: dict[str, float] = {}

    class Echo(Protocol):
        def __init__(self) -> None:
            self.buffer = b""
            self.waiting: Deferred[None] | None = None

        def dataReceived(self, data: bytes) -> None:  # noqa: N802
            self.buffer += data
            if len(self.buffer) >= len(MESSAGE) and self.waiting is not None:
                self.buffer = b""
                waiting, self.waiting = self.waiting, None
                waiting.callback(None)

    async def main() -> None:
        protocol: Any = await dialer.dial("echo:443", Factory.forProtocol(Echo))
        samples = []
        for i in range(-50, count):
            protocol.waiting = Deferred()
            started = time.perf_counter()
            if i == 0:
                cpu = _cpu()
            protocol.transport.write(MESSAGE)
            await protocol.waiting
            if i >= 0:
                samples.append(time.perf_counter() - started)
        result.update(_summary(samples, _cpu() - cpu))
        protocol.transport.loseConnection()

    def done(_: Any) -> None:
        reactor.stop()  # type: ignore[attr-defined]

    ensureDeferred(main()).addBoth(done)
    reactor.run()  # type: ignore[attr-defined]
    return result


def run_grpcio(port: int, pki: Path, count: int) -> dict[str, float]:
    """grpcio's client in its threads, each chunk handed to and from a reactor thread."""
    import grpc
    from twisted.internet import reactor

    from clustergateway.testing.konnectivity import proto_modules

    pb2, pb2_grpc = proto_modules()
    credentials = grpc.ssl_channel_credentials(
        (pki / "ca.crt").read_bytes(),
        (pki / "client.key").read_bytes(),
        (pki / "client.crt").read_bytes(),
    )
    channel = grpc.secure_channel(f"127.0.0.1:{port}", credentials)
    stub = pb2_grpc.ProxyServiceStub(channel)
    outgoing: queue.Queue[Any] = queue.Queue()
    outgoing.put(
        pb2.Packet(
            type=pb2.DIAL_REQ,
            dialRequest=pb2.DialRequest(protocol="tcp", address="echo:443", random=1),
        )
    )

    def requests() -> Any:
        while True:
            item = outgoing.get()
            if item is None:
                return
            yield item

    responses = stub.Proxy(requests())
    connect_id = next(responses).dialResponse.connectID
    result: dict[str, float] = {}
    state: dict[str, Any] = {"buffer": b"", "samples": [], "i": -50}

    def on_data(data: bytes) -> None:  # on the reactor
        state["buffer"] += data
        if len(state["buffer"]) < len(MESSAGE):
            return
        state["buffer"] = b""
        if state["i"] >= 0:
            state["samples"].append(time.perf_counter() - state["started"])
        state["i"] += 1
        if state["i"] >= count:
            result.update(_summary(state["samples"], _cpu() - state["cpu"]))
            outgoing.put(
                pb2.Packet(type=pb2.CLOSE_REQ, closeRequest=pb2.CloseRequest(connectID=connect_id))
            )
            outgoing.put(None)
            reactor.stop()  # type: ignore[attr-defined]
            return
        send()

    def send() -> None:  # on the reactor: hand the chunk to grpcio's sender
        if state["i"] == 0 and "cpu" not in state:
            state["cpu"] = _cpu()
        state["started"] = time.perf_counter()
        outgoing.put(pb2.Packet(type=pb2.DATA, data=pb2.Data(connectID=connect_id, data=MESSAGE)))

    def receive() -> None:  # grpcio's response thread
        for packet in responses:
            if packet.type == pb2.DATA:
                reactor.callFromThread(on_data, packet.data.data)  # type: ignore[attr-defined]

    threading.Thread(target=receive, daemon=True).start()
    reactor.callWhenRunning(send)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    channel.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--client", choices=("ours", "grpcio"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--pki", type=Path)
    args = parser.parse_args(argv)
    if args.client:  # one client in this process
        run = run_ours if args.client == "ours" else run_grpcio
        print(json.dumps(run(args.port, args.pki, args.count)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="konn-client-"))
    echo_port, proxy_port = free_port(), free_port()
    processes = [
        subprocess.Popen([sys.executable, "-c", _ECHO.format(port=echo_port)]),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clustergateway.testing.konnectivity",
                f"--listen=127.0.0.1:{proxy_port}",
                f"--cert-dir={work}",
                f"--route=echo=127.0.0.1:{echo_port}",
            ],
            stdout=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_for_port(echo_port, 10)
        wait_for_port(proxy_port, 30)
        results = {}
        for client in ("ours", "grpcio", "ours", "grpcio"):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.konnectivity_client",
                    f"--client={client}",
                    f"--port={proxy_port}",
                    f"--pki={work}",
                    f"--count={args.count}",
                ],
                capture_output=True,
                check=True,
                timeout=300,
            )
            results.setdefault(client, []).append(json.loads(out.stdout.splitlines()[-1]))
        print(json.dumps(results, indent=1))
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
