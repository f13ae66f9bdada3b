"""Scenario 4: bytes per second through a large GET and through an upgrade splice.

Large GET: wrk (1 connection) fetching a 1 MiB and a 64 MiB body from nginx
again and again; MiB/s = bytes wrk read / duration.  Splice: the client
upgrades (``POST …/pods/sink/portforward``, ``Upgrade: SPDY/3.1``) to the
splice sink and moves ``splice_bytes`` down (sink → client) and up; timed
from the 101 to the last byte.  ``kubectl proxy`` rejects exec/attach paths
by default (``--reject-paths``) but not port-forward, so the splice uses the
port-forward path.  The Go proxy (``go-proxy``) splices with
``httputil.ReverseProxy``'s own 101 handling.  The *direct* splice row is
client and sink on core 1 alone: the load side's own ceiling.
"""

from __future__ import annotations

import time
from typing import Any

from bench.clients import splice
from bench.context import Context, cpu_window, foreign_cpu
from bench.scenarios.small_get import measure
from bench.topology import Target

__all__ = ["NAME", "UPSTREAMS", "run"]

NAME = "streams"
UPSTREAMS = ("nginx", "nginx-direct", "sink")
BODIES = ("1m", "64m")


def _splice_row(ctx: Context, target: Target, direction: str) -> dict[str, Any]:
    total = ctx.settings.splice_bytes
    splice(target, direction, min(total, 16 << 20))  # warm-up: pools, TLS, page cache
    attempts = []
    for _ in range(ctx.settings.retries + 1):
        row = _splice_once(ctx, target, direction, total)
        attempts.append(row)
        if max(row["foreign_cpu"].values(), default=0.0) <= ctx.settings.foreign_limit:
            break
        ctx.log(f"  {target.name}: other work took CPU {row['foreign_cpu']}; measuring again")
    best = min(attempts, key=lambda r: sum(r["foreign_cpu"].values()))
    best["attempts"] = len(attempts)
    return best


def _splice_once(ctx: Context, target: Target, direction: str, total: int) -> dict[str, Any]:
    processes = {"server": target.process}
    if target.name != "direct" and ctx.topo.sink is not None:
        processes["upstream"] = ctx.topo.sink
    client_before = time.process_time()
    with cpu_window(processes) as window:
        result = splice(target, direction, total)
    client_cpu = time.process_time() - client_before
    load = client_cpu + window.used.get("upstream", 0.0)
    server_share = window.used["server"] / result.seconds if result.seconds else 0.0
    load_share = load / result.seconds if result.seconds else 0.0
    if target.name == "direct":  # client and sink both on the load core; core 0 idle
        load_share += server_share
        server_share = 0.0
    return {
        "bytes": result.bytes,
        "seconds": round(result.seconds, 3),
        "mib_per_s": round(result.mib_per_s, 1),
        "server_cpu_s": round(window.used["server"], 3),
        "server_cpu_share": round(server_share, 3),
        "load_core_busy": round(load_share, 3),
        "core_busy_all": window.core_busy,
        "foreign_cpu": foreign_cpu(
            window.core_busy, {ctx.proxy_core: server_share, ctx.load_core: load_share}
        ),
    }


def run(ctx: Context) -> dict[str, Any]:
    topo = ctx.topo
    results: dict[str, Any] = {
        "large_get": {},
        "splice": {},
        "cores": {
            "large_get": "proxy on 0; wrk + nginx on 1 (direct: nginx on 0, wrk on 1)",
            "splice": "proxy on 0; client + sink on 1 (direct: client + sink on 1)",
        },
        "client_side": {
            "direct": "TLS",
            "kubectl-proxy": "plain HTTP",
            "go-proxy": "TLS",
            "gateway": "TLS",
        },
    }
    with (
        topo.kubectl_proxy("nginx") as kp_nginx,
        topo.kubectl_proxy("sink") as kp_sink,
        topo.go_proxy("nginx") as go_nginx,
        topo.go_proxy("sink") as go_sink,
        topo.gateway() as gateways,
    ):
        for body in BODIES:
            row: dict[str, Any] = {}
            for target in (topo.direct("nginx"), kp_nginx, go_nginx, gateways["nginx"]):
                topo.probe(target, f"/big/{body}")
                ctx.log(f"streams: GET /big/{body} via {target.name}")
                row[target.name] = measure(ctx, target, f"/big/{body}", 1)
            results["large_get"][body] = row
        for direction in ("down", "up"):
            row = {}
            for target in (topo.direct("sink"), kp_sink, go_sink, gateways["sink"]):
                ctx.log(f"streams: splice {direction} via {target.name}")
                try:
                    row[target.name] = _splice_row(ctx, target, direction)
                except (OSError, ConnectionError) as e:
                    row[target.name] = {"error": str(e)[:300]}
                    ctx.log(f"  {target.name}: {e}")
            results["splice"][direction] = row
    return results
