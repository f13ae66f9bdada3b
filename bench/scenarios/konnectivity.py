"""Scenario: ClusterProxy clusters through a konnectivity proxy-server, beside ``Const``.

The gateway reaches the same upstreams two ways: directly (``Const`` Secrets) and
through the konnectivity proxy-server stand-in (``ClusterProxy`` Secrets;
``python -m clustergateway.testing.konnectivity`` on the load core, grpcio, relaying
to the upstream over loopback as an agent would).  Two flows, each interleaving the
targets so machine noise hits all alike:

- the CRUD flow of scenario 1 (create → update → delete a ConfigMap) against the
  simulated cluster: direct, gateway (Const), gateway (ClusterProxy);
- small GETs (the 616-byte ConfigMap from nginx, over TLS), one keep-alive
  ``http.client`` connection per target, one request at a time: latency percentiles
  and the tunnel's added latency (ClusterProxy − Const, p50 and mean).

Then the stand-in's counters: gRPC channels, ``Proxy`` calls and dials over the whole
scenario, and requests per channel and per dial — Go opens a channel and a tunnel per
request, so it would show 1 and 1.  The stand-in is Python (grpcio), so its own relay
cost is part of the added latency: a real proxy-server and agent add network hops
instead.
"""

from __future__ import annotations

import time
from typing import Any

from bench.context import Context, stats_ms
from bench.scenarios.crud import WARMUP_ROUNDS, flows
from bench.topology import CONFIGMAP_PATH, Target

__all__ = ["NAME", "UPSTREAMS", "run"]

NAME = "konnectivity"
UPSTREAMS = ("simulator", "nginx")

_BLOCK = 50


def _gets(conn: Any, target: Target, count: int) -> list[float]:
    headers = dict(target.headers)
    path = target.prefix + CONFIGMAP_PATH
    out = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        out.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"{target.name}: GET answered {response.status}")
    return out


def run(ctx: Context) -> dict[str, Any]:
    topo = ctx.topo
    rounds = ctx.settings.crud_rounds
    gets = 500 if ctx.settings.quick else 3000
    topo.start_konnectivity({"bench-sim-kp": "simulator", "bench-kp": "nginx"})
    before = topo.konnectivity_stats()
    tunnelled = {"bench-sim-kp": "simulator", "bench-kp": "nginx"}
    with topo.gateway(cluster_proxy=tunnelled) as gateways:
        crud_targets = [topo.direct("simulator"), gateways["simulator"], gateways["bench-sim-kp"]]
        ctx.log(f"konnectivity: {rounds} CRUD rounds on {len(crud_targets)} targets")
        crud = flows(crud_targets, rounds, "kp")

        get_targets = [gateways["nginx"], gateways["bench-kp"]]
        ctx.log(f"konnectivity: {gets} sequential small GETs per target")
        latencies: dict[str, list[float]] = {t.name: [] for t in get_targets}
        cpu: dict[str, float] = {t.name: 0.0 for t in get_targets}
        conns = {t.name: t.connection() for t in get_targets}
        for target in get_targets:
            _gets(conns[target.name], target, 20)  # warm-up: connections and pools
        for _ in range(gets // _BLOCK):
            for target in get_targets:
                used_before = target.process.cpu_seconds()
                latencies[target.name] += _gets(conns[target.name], target, _BLOCK)
                cpu[target.name] += target.process.cpu_seconds() - used_before
        for conn in conns.values():
            conn.close()
        after = topo.konnectivity_stats()
    requests = (rounds + WARMUP_ROUNDS) * 3 + gets + 20
    used = {key: after[key] - before.get(key, 0) for key in ("channels", "streams", "dials")}
    small: dict[str, dict[str, float]] = {}
    for name, values in latencies.items():
        small[name] = stats_ms(values)
        small[name]["gateway_cpu_us_per_request"] = round(cpu[name] / len(values) * 1e6, 1)
    const, tunnel = small.get("gateway", {}), small.get("gateway-konnectivity", {})
    return {
        "rounds": rounds,
        "gets": gets,
        "client": "http.client keep-alive, one request at a time (runner on core 1)",
        "upstream": "simulated cluster (CRUD), nginx over TLS (small GETs), on core 1; "
        "the konnectivity stand-in (grpcio) on core 1",
        "crud": {name: {s: stats_ms(v) for s, v in steps.items()} for name, steps in crud.items()},
        "small_get": small,
        "added_ms": {
            "p50": round(tunnel.get("p50", 0) - const.get("p50", 0), 3),
            "mean": round(tunnel.get("mean", 0) - const.get("mean", 0), 3),
        },
        "tunnel": {
            **used,
            "requests": requests,
            "requests_per_channel": round(requests / used["channels"], 1)
            if used["channels"]
            else None,
            "requests_per_dial": round(requests / used["dials"], 1) if used["dials"] else None,
        },
    }
