"""N concurrent idle watches, each on its own HTTP/1.1 connection (``python -m bench.watchers``).

As kubectl does: every watch is one connection (TLS to the gateway, plain
HTTP to ``kubectl proxy``) carrying one ``GET …?watch=1``.  The client opens
them ``--parallel`` at a time (each until its response head arrived, or
for at most ``HEAD_WAIT``), waits until every response head arrived (a
proxy that holds the head back until the first event is taken as ready once
it holds two sockets per watch, and the count of heads seen is reported), lets the
server settle, reads the server's RSS (``/proc/PID/status``) and its open fds,
then creates one ConfigMap in the watched namespace directly at the upstream
and records when the first event bytes reach each watch.  Prints one JSON
object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import ssl
import sys
import time
from typing import Any

__all__ = ["main"]

#: Seconds a watch waits for its response head before letting the next one start.
HEAD_WAIT = 2.0


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


class Watch:
    """One watch connection and what it saw."""

    def __init__(self) -> None:
        self.head = asyncio.Event()
        self.sent = asyncio.Event()
        self.got_head = False
        self.first_event_at: float | None = None
        self.error: str | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.armed = False


async def _watch(
    w: Watch,
    host: str,
    port: int,
    context: ssl.SSLContext | None,
    request: bytes,
    gate: asyncio.Semaphore,
) -> None:
    # A watch holds its place in the gate until its response head arrives (or
    # HEAD_WAIT passes, for a proxy that holds heads back): at most ``parallel``
    # watches are being set up at once.  Go's transport (kubectl proxy) dials a
    # new upstream connection for every waiting request while no HTTP/2
    # connection has room, so 9,850 requests in flight at once made it open
    # thousands of connections and run out of descriptors.
    await gate.acquire()
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            gate.release()

    timer = asyncio.get_running_loop().call_later(HEAD_WAIT, release)
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context else None, limit=1 << 16
        )
        w.writer = writer
        writer.write(request)
        await writer.drain()
        w.sent.set()
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = await reader.read(65536)
            if not chunk:
                w.error = "closed before the response head"
                w.head.set()
                return
            buffer += chunk
            if w.armed and w.first_event_at is None:
                w.first_event_at = time.perf_counter()
        timer.cancel()
        release()
        head, _, body = buffer.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            w.error = status.decode(errors="replace")
            w.head.set()
            return
        w.got_head = True
        w.head.set()
        if body and w.first_event_at is None and w.armed:
            w.first_event_at = time.perf_counter()
        while w.first_event_at is None:
            chunk = await reader.read(65536)
            if not chunk:
                w.error = "closed before the event"
                return
            if w.armed:
                w.first_event_at = time.perf_counter()
        # Keep the connection open (idle) until the run ends.
        while await reader.read(65536):
            pass
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as e:
        w.error = f"{type(e).__name__}: {e}"
        w.sent.set()
        w.head.set()
    finally:
        timer.cancel()
        release()


async def _h2_watches(
    watches: list[Watch],
    host: str,
    port: int,
    context: ssl.SSLContext,
    headers: list[tuple[bytes, bytes]],
    gate: asyncio.Semaphore,
) -> None:
    """``watches`` as streams of one HTTP/2 connection, as the kube-aggregator
    carries its callers' watches to an aggregated apiserver."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset

    by_stream: dict[int, Watch] = {}
    try:
        async with gate:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host, limit=1 << 16
            )
            for w in watches:
                w.writer = writer
            conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
            conn.initiate_connection()
            conn.increment_flow_control_window(1 << 30)
            for w in watches:
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, headers, end_stream=True)
                by_stream[stream_id] = w
                w.sent.set()
            writer.write(conn.data_to_send())
            await writer.drain()
        while True:
            data = await reader.read(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                w = by_stream.get(getattr(event, "stream_id", 0) or 0)
                if w is None:
                    continue
                if isinstance(event, ResponseReceived):
                    status = dict(event.headers).get(b":status", b"")
                    if status == b"200":
                        w.got_head = True
                    else:
                        w.error = f"HTTP/2 status {status.decode(errors='replace')}"
                    w.head.set()
                elif isinstance(event, DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if w.armed and w.first_event_at is None:
                        w.first_event_at = time.perf_counter()
                elif isinstance(event, (StreamEnded, StreamReset)):
                    w.error = w.error or "the stream ended"
                    w.head.set()
            out = conn.data_to_send()
            if out:
                writer.write(out)
        for w in watches:
            if not w.got_head:
                w.error = w.error or "closed before the response head"
                w.head.set()
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as e:
        for w in watches:
            w.error = f"{type(e).__name__}: {e}"
            w.sent.set()
            w.head.set()


def _post(args: argparse.Namespace, path: str, obj: dict[str, Any]) -> float:
    """POST ``obj`` at the upstream; returns the perf_counter just before sending."""
    context = ssl.create_default_context(cafile=args.trigger_ca)
    conn = http.client.HTTPSConnection(args.trigger_host, args.trigger_port, context=context)
    headers = {"Authorization": f"Bearer {args.trigger_token}", "Content-Type": "application/json"}
    body = json.dumps(obj).encode()
    started = time.perf_counter()
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    answer = response.read()
    conn.close()
    if response.status != 201:
        raise RuntimeError(f"POST {path} answered {response.status}: {answer[:200]!r}")
    return started


def _create_namespace(args: argparse.Namespace, namespace: str) -> None:
    _post(
        args,
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )


def _trigger(args: argparse.Namespace, namespace: str) -> float:
    """Create one ConfigMap in the watched namespace; the time just before sending."""
    return _post(
        args,
        f"/api/v1/namespaces/{namespace}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "event"},
            "data": {"a": "b"},
        },
    )


async def _wait_established(
    watches: list[Watch], pid: int, fds_before: int, args: argparse.Namespace
) -> None:
    """Until every response head arrived, or the server holds two sockets per watch.

    A proxy that sends the head only with the first event gives no signal per
    watch; its open sockets (client side + upstream) do.  Gives up when
    neither count moved for ``--head-idle`` seconds, or after ``--head-wait``.
    """
    deadline = time.perf_counter() + args.head_wait
    last = (-1, -1)
    last_change = time.perf_counter()
    while time.perf_counter() < deadline:
        live = sum(1 for w in watches if not w.error)
        heads = sum(1 for w in watches if w.got_head)
        fds = _fds(pid)
        if heads >= live or fds - fds_before >= 2 * live - 4:
            return
        if (heads, fds) != last:
            last, last_change = (heads, fds), time.perf_counter()
        elif time.perf_counter() - last_change > args.head_idle:
            return
        await asyncio.sleep(0.2)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    context = None
    if args.tls:
        context = ssl.create_default_context(cafile=args.ca)
        context.set_alpn_protocols(["h2"] if args.h2 else ["http/1.1"])
    namespace = args.namespace
    path = f"{args.prefix}/api/v1/namespaces/{namespace}/configmaps?watch=1"
    lines = [f"GET {path} HTTP/1.1", f"Host: {args.host}:{args.port}", "Accept: application/json"]
    lines += list(args.header)
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    _create_namespace(args, namespace)
    pid = args.pid
    rss_before = _rss_kib(pid)
    fds_before = _fds(pid)
    gate = asyncio.Semaphore(args.parallel)
    watches = [Watch() for _ in range(args.count)]
    started = time.perf_counter()
    if args.h2:
        assert context is not None, "--h2 needs --tls"
        h2_headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", f"{args.host}:{args.port}".encode()),
            (b":path", path.encode()),
            (b"accept", b"application/json"),
        ] + [
            (name.strip().lower().encode(), value.strip().encode())
            for name, _, value in (h.partition(":") for h in args.header)
        ]
        per = args.streams_per_connection
        tasks = [
            asyncio.ensure_future(
                _h2_watches(watches[i : i + per], args.host, args.port, context, h2_headers, gate)
            )
            for i in range(0, len(watches), per)
        ]
    else:
        tasks = [
            asyncio.ensure_future(_watch(w, args.host, args.port, context, request, gate))
            for w in watches
        ]
    await asyncio.gather(*(w.sent.wait() for w in watches))
    sent_at = time.perf_counter()
    await _wait_established(watches, pid, fds_before, args)
    opened = time.perf_counter() - started
    await asyncio.sleep(args.settle)
    heads = sum(w.got_head for w in watches)
    errors = [w.error for w in watches if w.error]
    rss_after = _rss_kib(pid)
    fds_after = _fds(pid)
    live = args.count - len(errors)
    for w in watches:
        w.armed = True
    loop = asyncio.get_running_loop()
    t0 = await loop.run_in_executor(None, _trigger, args, namespace)
    deadline = time.perf_counter() + args.event_timeout
    while time.perf_counter() < deadline:
        if all(w.first_event_at is not None or w.error for w in watches):
            break
        await asyncio.sleep(0.01)
    delays = sorted(w.first_event_at - t0 for w in watches if w.first_event_at is not None)
    for w in watches:
        if w.writer is not None:
            w.writer.transport.abort()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    first_errors: dict[str, int] = {}
    for error in errors:
        first_errors[error] = first_errors.get(error, 0) + 1
    return {
        "requested": args.count,
        "live": live,
        "heads_seen": heads,
        "errors": dict(sorted(first_errors.items(), key=lambda kv: -kv[1])[:5]),
        "open_seconds": round(opened, 2),
        "send_seconds": round(sent_at - started, 2),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_watch_kib": round((rss_after - rss_before) / live, 2) if live else None,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "events_received": len(delays),
        "event_ms": {
            "first": round(delays[0] * 1000, 2) if delays else None,
            "p50": round(_percentile(delays, 50) * 1000, 2) if delays else None,
            "p99": round(_percentile(delays, 99) * 1000, 2) if delays else None,
            "all": round(delays[-1] * 1000, 2) if delays else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watchers", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--ca")
    parser.add_argument("--prefix", default="", help="path prefix (the gateway's …/proxy)")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=100)
    parser.add_argument(
        "--h2",
        action="store_true",
        help="carry the watches as HTTP/2 streams (TLS only), as the kube-aggregator does",
    )
    parser.add_argument("--streams-per-connection", type=int, default=200)
    parser.add_argument("--pid", type=int, required=True, help="server whose RSS is read")
    parser.add_argument("--head-wait", type=float, default=600.0)
    parser.add_argument("--head-idle", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--event-timeout", type=float, default=60.0)
    parser.add_argument("--trigger-host", default="127.0.0.1")
    parser.add_argument("--trigger-port", type=int, required=True)
    parser.add_argument("--trigger-ca", required=True)
    parser.add_argument("--trigger-token", required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(_run(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
