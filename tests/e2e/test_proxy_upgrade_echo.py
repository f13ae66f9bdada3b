"""A client that writes the moment the 101 arrives gets every byte back, and promptly.

The client is raw, as a prompt exec or port-forward client behaves: TLS to the
gateway, the upgrade request for ``exec … cat`` in the simulated pod, read the
``101``, and at once write 64 KiB to the command's stdin; read its stdout until
the 64 KiB are back, byte for byte; then twice more the same.  The protocols
are the real ones (SPDY/3.1 frames with ``v4.channel.k8s.io`` streams, channel
WebSocket messages with ``v5.channel.k8s.io``), answered by the simulator's
kubelet, so every byte crosses the gateway's splice twice.  200 rounds per way,
through both entry points (``twistd``, as deploy/ runs the gateway, and the
console script), to an HTTP/1.1-only cluster reached directly and through a
real egress proxy (tinyproxy's CONNECT).

What went wrong (issue 24): the gateway left Nagle's algorithm on for its
sockets.  TLS on the socket writes each record with its own ``send``, so 64 KiB
went out as five segments, and the kernel held the last four until the peer
acknowledged the first, which the peer delays (Linux: 40 ms at least) unless
it is still acknowledging every segment, as at the start of a connection.  A
third of the first writes waited that long, nearly every later one did;
directly against the simulator and through ``kubectl proxy`` (Go sets
``TCP_NODELAY`` on every connection) none.  A client reading with a short
deadline saw nothing come back at all.  An exchange that took
:data:`DELAYED_ACK` or more waited for one; tinyproxy leaves Nagle on itself,
so only the direct rounds are held to that.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from wsproto.connection import Connection as WebSocket
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, Message

from clustergateway.testing import SimulatedCluster
from clustergateway.testing.spdy import DataFrame, FrameDecoder, FrameEncoder, SynStreamFrame
from tests.fixtures.egress import RunningProxy
from tests.fixtures.gateway import ENTRY_POINTS, PROXY_PATH, GatewayProcess
from tests.fixtures.proxy import sim_secret

pytestmark = pytest.mark.e2e

ROUNDS = 200
PAYLOAD = 64 * 1024
#: Writes of PAYLOAD per round, each after the echo of the one before: the first is
#: the issue's, the others find a peer no longer acknowledging every segment at once.
EXCHANGES = 3
#: How long a round waits for more of its echo before it counts what it got.
ECHO_WAIT = 5.0
#: A way in stops after this many rounds that did not get their bytes back.
SHORT_ENOUGH = 5
#: Linux's shortest delayed-ACK timer: an echo that took this long waited for one.
DELAYED_ACK = 0.040
#: Direct rounds that may wait that long anyway (a busy machine): a quarter.  With
#: Nagle on nearly every round did; with it off 0-4%, on a machine loaded to 10.
SLOW_ALLOWED = ROUNDS // 4
#: Rounds run at once: one by one where the time is measured (rounds in parallel
#: contend for the test process and would blur it), many through the proxies.
BATCH = {"direct": 1, "via-connect": 20}
EXEC_QUERY = (
    "/api/v1/namespaces/default/pods/demo/exec?command=cat&stdin=true&stdout=true&stderr=false"
)

ProxyFactory = Callable[..., Awaitable[RunningProxy]]


def _connect(port: int, ca_path: Path) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=ECHO_WAIT)
    # As Go's clients do (kubectl): the client itself never waits for an ACK.
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    context = ssl.create_default_context(cafile=str(ca_path))
    context.set_alpn_protocols(["http/1.1"])
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _receive(sock: ssl.SSLSocket) -> bytes:
    """The next bytes of the echo; b"" once the stream closed or stayed silent too long."""
    try:
        return sock.recv(65536)
    except TimeoutError:
        return b""


def _request(method: str, cluster: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {PROXY_PATH.format(cluster=cluster)}{EXEC_QUERY} HTTP/1.1", "Host: gw"]
    lines += ["Connection: Upgrade", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_101(sock: ssl.SSLSocket) -> bytes:
    """Read the response head; returns what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the response head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return rest


class SpdyExec:
    """``exec cat`` over SPDY/3.1 (``v4.channel.k8s.io``): stdin on stream 3, stdout on 5."""

    method = "POST"

    @staticmethod
    def headers() -> list[tuple[str, str]]:
        return [
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
            ("Content-Length", "0"),
        ]

    def __init__(self) -> None:
        self.encoder, self.decoder = FrameEncoder(), FrameDecoder()
        streams = ((1, "error"), (3, "stdin"), (5, "stdout"))
        #: The streams are opened with the first stdin, as a prompt client does.
        self.opening = b"".join(
            self.encoder.encode(SynStreamFrame(i, {"streamtype": t})) for i, t in streams
        )

    def stdin(self, data: bytes) -> bytes:
        opening, self.opening = self.opening, b""
        return opening + self.encoder.encode(DataFrame(3, data))

    def stdout(self, received: bytes) -> bytes:
        self.decoder.feed(received)
        out = bytearray()
        while (frame := self.decoder.next_frame()) is not None:
            if isinstance(frame, DataFrame) and frame.stream_id == 5:
                out += frame.data
        return bytes(out)


class WebSocketExec:
    """``exec cat`` over WebSocket (``v5.channel.k8s.io``): channel 0 stdin, 1 stdout."""

    method = "GET"

    @staticmethod
    def headers() -> list[tuple[str, str]]:
        return [
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
            ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
        ]

    def __init__(self) -> None:
        self.websocket = WebSocket(ConnectionType.CLIENT)
        #: The channel of the message being received (its first fragment names it).
        self.channel: int | None = None

    def stdin(self, data: bytes) -> bytes:
        return self.websocket.send(Message(data=b"\x00" + data))

    def stdout(self, received: bytes) -> bytes:
        self.websocket.receive_data(received)
        out = bytearray()
        for event in self.websocket.events():
            if isinstance(event, BytesMessage):
                data = bytes(event.data)
                if self.channel is None:
                    self.channel, data = data[0], data[1:]
                if self.channel == 1:
                    out += data
                if event.message_finished:
                    self.channel = None
        return bytes(out)


PROTOCOLS: dict[str, type[SpdyExec] | type[WebSocketExec]] = {
    "spdy": SpdyExec,
    "websocket": WebSocketExec,
}


def exec_round(
    protocol: str, port: int, ca_path: Path, cluster: str, payloads: list[bytes]
) -> list[tuple[bytes, float]]:
    """One exec of ``cat``: the upgrade, then for each payload, written at once (the first
    the moment the 101 is read), the echo read back; returns (echo, seconds) each."""
    kind = PROTOCOLS[protocol]
    sock = _connect(port, ca_path)
    try:
        sock.sendall(_request(kind.method, cluster, kind.headers()))
        rest = _read_101(sock)
        stream = kind()
        pending = stream.stdout(rest)
        exchanges: list[tuple[bytes, float]] = []
        for payload in payloads:
            started = time.monotonic()
            sock.sendall(stream.stdin(payload))
            echoed, pending = bytearray(pending), b""
            while len(echoed) < len(payload):
                chunk = _receive(sock)
                if not chunk:
                    break
                echoed += stream.stdout(chunk)
            exchanges.append((bytes(echoed), time.monotonic() - started))
            if len(echoed) < len(payload):
                break
        return exchanges
    finally:
        sock.close()


async def run_rounds(gateway: GatewayProcess, cluster: str, protocol: str) -> str | None:
    """:data:`ROUNDS` rounds, :data:`BATCH` at a time; what went wrong, or None."""
    from twisted.internet.defer import gatherResults
    from twisted.internet.threads import deferToThread

    direct = cluster == "direct"
    short: list[int] = []
    slow = 0
    seconds: list[float] = []
    rounds = 0
    batch = BATCH[cluster]
    while rounds < ROUNDS:
        sent = [[os.urandom(PAYLOAD) for _ in range(EXCHANGES)] for _ in range(batch)]
        done = await gatherResults(
            [
                deferToThread(exec_round, protocol, gateway.port, gateway.ca_path, cluster, p)
                for p in sent
            ]
        )
        for exchanges, payloads in zip(done, sent, strict=True):
            echoed = [echo for echo, _ in exchanges]
            if echoed != payloads:
                short.append(sum(map(len, echoed)))
            times = [elapsed for _, elapsed in exchanges]
            slow += any(elapsed >= DELAYED_ACK for elapsed in times)
            seconds += times
        rounds += batch
        if len(short) >= SHORT_ENOUGH or (direct and slow > SLOW_ALLOWED):
            break  # the verdict is in
    seconds.sort()
    summary = (
        f"{gateway.entry} {protocol} {cluster}: {rounds - len(short)}/{rounds} rounds got "
        f"their {EXCHANGES} x {PAYLOAD // 1024} KiB back (short ones got {short} bytes), "
        f"{slow} waited {DELAYED_ACK * 1000:.0f} ms or more for one (exchanges: median "
        f"{statistics.median(seconds) * 1000:.1f} ms, max {seconds[-1] * 1000:.0f} ms)"
    )
    if short or (direct and slow > SLOW_ALLOWED):
        return summary
    return None


@pytest_twisted.async_yield_fixture
async def http1_sim(tmp_path: Path) -> AsyncIterator[SimulatedCluster]:
    """A simulated cluster offering only HTTP/1.1, not recording requests."""
    from twisted.internet import reactor

    sim = SimulatedCluster.create(tmp_path / "sim", reactor=reactor)
    sim.http2 = False
    sim.record_requests = False
    await sim.start(port=0, interface="127.0.0.1")
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest_twisted.ensureDeferred
async def test_bytes_written_right_after_the_101_all_come_back_promptly(
    entry: str,
    http1_sim: SimulatedCluster,
    gateway_process: Callable[..., Awaitable[GatewayProcess]],
    tinyproxy: ProxyFactory,
) -> None:
    """200 rounds each of SPDY and WebSocket, directly and through a CONNECT proxy: every
    round gets its 3 x 64 KiB back whole, and direct rounds do not wait for a delayed ACK
    (at most a quarter of them may take 40 ms or more for one; with Nagle on, all did)."""
    connect_proxy = await tinyproxy(connect_ports=[http1_sim.port])
    gateway = await gateway_process(
        entry,
        secrets=[
            sim_secret(http1_sim, "direct"),
            sim_secret(http1_sim, "via-connect", proxy_url=connect_proxy.url()),
        ],
    )
    failures: list[Any] = []
    for cluster in ("direct", "via-connect"):
        for protocol in ("spdy", "websocket"):
            failure = await run_rounds(gateway, cluster, protocol)
            if failure is not None:
                failures.append(failure)
    assert not failures, "\n".join(failures)
