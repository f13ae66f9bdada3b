"""Scenario 3: many idle watches through one proxy process.

Upstream: the simulated cluster (it streams watches; nginx cannot).  The
client (``python -m bench.watchers``, core 1) opens N watches, each its own
HTTP/1.1 connection as kubectl does, then measures the proxy's RSS per watch
(``VmRSS`` delta / N) and the time for one event, created directly at the
upstream, to reach every watch (this includes the simulator writing N
events and the client reading them, both on core 1, for either proxy alike).

A second gateway run (``gateway-h2``) carries the same watches as streams of
HTTP/2 connections, 200 per connection, as the kube-aggregator does in front
of an aggregated apiserver: the gateway's production path.  ``kubectl
proxy`` serves HTTP/1.1 only and has no such row.

N defaults to 10,000 but is capped by the open-file limit: a proxy holds two
sockets per watch (client side and upstream), and ``RLIMIT_NOFILE`` cannot be
raised above its hard limit without privileges; the cap used is recorded.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.topology import SIM_TOKEN, Target

__all__ = ["NAME", "UPSTREAMS", "run", "watch_cap"]

NAME = "watches"
UPSTREAMS = ("simulator",)
_FD_RESERVE = 300


def watch_cap() -> int:
    """Most watches one proxy process can hold with two sockets each."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    return max(1, (limit - _FD_RESERVE) // 2)


def _one(ctx: Context, target: Target, count: int, h2: bool = False) -> dict[str, Any]:
    topo = ctx.topo
    sim_port = topo.ports["simulator"]
    namespace = f"bench-watch-{uuid.uuid4().hex[:8]}"
    argv = [
        "taskset",
        "-c",
        ctx.load_core,
        sys.executable,
        "-m",
        "bench.watchers",
        f"--port={target.port}",
        f"--prefix={target.prefix}",
        f"--namespace={namespace}",
        f"--count={count}",
        f"--parallel={ctx.settings.watch_parallel}",
        f"--pid={target.process.pid}",
        "--head-wait=600",
        f"--trigger-port={sim_port}",
        f"--trigger-ca={topo.workdir / 'sim' / 'ca.crt'}",
        f"--trigger-token={SIM_TOKEN}",
    ]
    if target.tls:
        argv += ["--tls", f"--ca={target.ca}"]
    if h2:
        argv.append("--h2")
    for name, value in target.headers:
        argv.append(f"--header={name}: {value}")
    label = f"{target.name}{'-h2' if h2 else ''}"
    ctx.log(f"watches: {label}, {count} watches")
    done = subprocess.run(
        argv, capture_output=True, timeout=900, cwd=Path(__file__).resolve().parents[2]
    )
    if done.returncode != 0:
        raise RuntimeError(f"watch client failed: {done.stderr.decode(errors='replace')[-450:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    ctx.log(
        f"  {label}: {result['live']} live, {result['rss_per_watch_kib']} KiB/watch, "
        f"event to all in {result['event_ms']['all']} ms"
    )
    return result


def run(ctx: Context) -> dict[str, Any]:
    requested = ctx.settings.watches
    cap = watch_cap()
    count = min(requested, cap)
    if count < requested:
        ctx.log(f"watches: RLIMIT_NOFILE allows {cap} per proxy; using {count}, not {requested}")
    results: dict[str, Any] = {
        "requested": requested,
        "count": count,
        "nofile_hard_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "upstream": "simulated cluster on core 1",
        "cores": {
            "kubectl-proxy": ctx.proxy_core,
            "gateway": ctx.proxy_core,
            "client": ctx.load_core,
        },
        "client_side": {
            "kubectl-proxy": "plain HTTP",
            "gateway": "TLS",
            "gateway-h2": "TLS, HTTP/2, 200 streams per connection",
        },
        "targets": {},
    }
    topo = ctx.topo
    # The gateway caps long-running requests per cluster (5000 by default, as a
    # guard against one cluster's watches taking the process): raised here, so
    # every watch is live and RSS per watch is not diluted by refused ones.
    cap = (f"--max-long-running-requests-per-cluster={count + 100}",)
    # One proxy at a time: the simulator holds the upstream side of every watch.
    with topo.kubectl_proxy("simulator") as kp:
        topo.probe(kp, "/api/v1/namespaces/default/configmaps")
        results["targets"]["kubectl-proxy"] = _one(ctx, kp, count)
    with topo.gateway(extra_args=cap) as gateways:
        gw = gateways["simulator"]
        topo.probe(gw, "/api/v1/namespaces/default/configmaps")
        results["targets"]["gateway"] = _one(ctx, gw, count)
    with topo.gateway(extra_args=cap) as gateways:  # a fresh process: RSS from a clean start
        gw = gateways["simulator"]
        topo.probe(gw, "/api/v1/namespaces/default/configmaps")
        results["targets"]["gateway-h2"] = _one(ctx, gw, count, h2=True)
    return results
