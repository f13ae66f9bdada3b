"""Scenario: one cluster never hurts the others (caps, per-cluster timeouts, circuits).

20 clusters behind one gateway: 17 good ones (``good-00`` … ``good-16``, all the
simulated cluster under different names, so each has its own pool, caps and
circuit), ``blackhole`` (a listening socket nobody accepts on: the TCP handshake
completes in the kernel's queue and TLS is never answered), ``slow`` (a second
simulated cluster answering every request after 5 s) and ``refused`` (a closed
port).  One thread per good cluster loops GETs of the ConfigMap list; a second
process floods the bad three (``bad_threads`` loops each).  Two runs, each with a
fresh gateway and the same good load: the **baseline** without the bad three,
then **with** them; reported: the good clusters' p50/p99 in both and their ratio,
and per bad cluster the answers (code → count) and how long the refused ones
took once the circuit was open (the 503s) — the figure that says how fast the
gateway fails fast.  Every loop honours ``Retry-After`` as client-go does.  The
load side is Python (http.client, keep-alive, one TLS connection per thread), so
absolute latencies include its own overhead; the ratio between the two runs is
the figure of merit.
"""

from __future__ import annotations

import http.client
import multiprocessing
import socket
import ssl
import statistics
import threading
import time
from typing import Any

from bench.context import Context
from bench.procs import free_port
from bench.topology import Target

__all__ = ["NAME", "UPSTREAMS", "run"]

NAME = "isolation"
UPSTREAMS = ("simulator",)
PATH = "/api/v1/namespaces/default/configmaps"
GOOD = 17
BAD = ("blackhole", "slow", "refused")


def _loop(base: str, port: int, ca: str, seconds: float, out: list[tuple[float, int]]) -> None:
    """GET ``base + PATH`` in a loop for ``seconds``: (latency s, status) per request."""
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["http/1.1"])
    deadline = time.monotonic() + seconds
    conn: http.client.HTTPSConnection | None = None
    while time.monotonic() < deadline:
        if conn is None:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=60, context=context)
        started = time.monotonic()
        try:
            conn.request("GET", base + PATH, headers={"Authorization": "Bearer bench"})
            response = conn.getresponse()
            response.read()
            out.append((time.monotonic() - started, response.status))
            wait = response.getheader("Retry-After")
            if wait is not None and response.status in (429, 503):
                # As client-go does: honour Retry-After (within the run).
                time.sleep(max(0.0, min(float(wait), deadline - time.monotonic())))
        except (OSError, http.client.HTTPException):
            out.append((time.monotonic() - started, 0))
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def _threads(
    targets: list[tuple[str, str]], port: int, ca: str, seconds: float, per_target: int
) -> dict[str, list[tuple[float, int]]]:
    results: dict[str, list[tuple[float, int]]] = {name: [] for name, _ in targets}
    threads = [
        threading.Thread(target=_loop, args=(base, port, ca, seconds, results[name]))
        for name, base in targets
        for _ in range(per_target)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    return results


def _flood(
    targets: list[tuple[str, str]],
    port: int,
    ca: str,
    seconds: float,
    per_target: int,
    queue: Any,
) -> None:
    """In a process of its own, so its threads do not slow the good load's client."""
    queue.put(_threads(targets, port, ca, seconds, per_target))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _good_stats(results: dict[str, list[tuple[float, int]]]) -> dict[str, Any]:
    latencies = [lat for rows in results.values() for lat, code in rows if code == 200]
    errors = sum(1 for rows in results.values() for _, code in rows if code != 200)
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(_pct(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_pct(latencies, 0.99) * 1000, 2),
    }


def _bad_stats(rows: list[tuple[float, int]]) -> dict[str, Any]:
    codes: dict[str, int] = {}
    for _, code in rows:
        codes[str(code)] = codes.get(str(code), 0) + 1
    refused = [lat for lat, code in rows if code == 503]
    return {
        "codes": codes,
        "refused_p50_ms": round(statistics.median(refused) * 1000, 2) if refused else None,
        "refused_p99_ms": round(_pct(refused, 0.99) * 1000, 2) if refused else None,
        "slowest_s": round(max((lat for lat, _ in rows), default=0.0), 2),
    }


def run(ctx: Context) -> dict[str, Any]:
    topo = ctx.topo
    # Long enough for the black hole's first requests to time out (10 s) and the
    # circuit's refusals to follow, even in a quick run.
    seconds = 20.0 if ctx.settings.quick else 30.0
    bad_threads = 5
    url, ca, token = topo.upstream("simulator")
    topo.start_simulator("slow-simulator", latency=5.0)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(4096)  # never accepted: TLS is never answered
    good = {f"good-{i:02d}": (url, ca, token) for i in range(GOOD)}
    bad = {
        "blackhole": (f"https://127.0.0.1:{hole.getsockname()[1]}", ca, token),
        "slow": topo.upstream("slow-simulator"),
        "refused": (f"https://127.0.0.1:{free_port()}", ca, token),
    }
    results: dict[str, Any] = {
        "clusters": {"good": GOOD, "bad": list(BAD)},
        "load_seconds": seconds,
        "bad_threads_each": bad_threads,
        "good_threads_each": 1,
        "runs": {},
    }
    try:
        for run_name, clusters in (("baseline", good), ("with-bad", {**good, **bad})):
            with topo.gateway(clusters=clusters) as gateways:
                first = gateways["good-00"]
                port, gw_ca = first.port, str(first.ca)
                for name in good:
                    topo.probe(gateways[name], PATH)
                good_targets = [(n, gateways[n].prefix) for n in good]
                ctx.log(f"isolation: {run_name}, {seconds:g}s of load")
                flood = None
                queue: Any = None
                if run_name == "with-bad":
                    queue = multiprocessing.get_context("fork").Queue()
                    bad_targets = [(n, gateways[n].prefix) for n in bad]
                    flood = multiprocessing.get_context("fork").Process(
                        target=_flood,
                        args=(bad_targets, port, gw_ca, seconds, bad_threads, queue),
                    )
                    flood.start()
                    time.sleep(0.5)
                measured = _threads(good_targets, port, gw_ca, seconds, 1)
                row: dict[str, Any] = {"good": _good_stats(measured)}
                if flood is not None:
                    flooded = queue.get(timeout=seconds + 180)
                    flood.join(30)
                    row["bad"] = {name: _bad_stats(flooded[name]) for name in bad}
                    row["metrics"] = _circuit_metrics(first)
                results["runs"][run_name] = row
                ctx.log(f"  {run_name}: good {row['good']}")
                if "bad" in row:
                    for name, stats in row["bad"].items():
                        ctx.log(f"  {name}: {stats}")
    finally:
        hole.close()
    base, loaded = results["runs"]["baseline"]["good"], results["runs"]["with-bad"]["good"]
    results["good_p99_ratio"] = round(loaded["p99_ms"] / base["p99_ms"], 3)
    results["good_p50_ratio"] = round(loaded["p50_ms"] / base["p50_ms"], 3)
    return results


def _circuit_metrics(target: Target) -> list[str]:
    """The gateway's circuit and refusal series, as /metrics shows them."""
    context = target.ssl_context()
    conn = http.client.HTTPSConnection("127.0.0.1", target.port, timeout=30, context=context)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return [
        line
        for line in text.splitlines()
        if line.startswith(
            ("ocm_proxy_cluster_circuit_open{", "ocm_proxy_rejected_requests_total{")
        )
    ]
