"""Scenario 5: a stalled client on a 300 MiB body — how much the proxy's RSS grows.

The client GETs ``/big/300m`` from nginx through the proxy, reads the head
and 64 KiB, then stops reading (256 KiB receive buffer) for
``stall_seconds`` while the proxy's ``VmRSS`` is sampled every 50 ms.  With
backpressure the proxy stops reading upstream once the socket buffers are
full and its RSS stays flat; without it, it buffers the body.
"""

from __future__ import annotations

from typing import Any

import attrs

from bench.clients import stalled_get
from bench.context import Context
from bench.topology import CONFIGMAP_PATH

__all__ = ["NAME", "UPSTREAMS", "run"]

NAME = "stalled"
UPSTREAMS = ("nginx",)


def run(ctx: Context) -> dict[str, Any]:
    topo = ctx.topo
    results: dict[str, Any] = {
        "body": "300 MiB",
        "cores": {
            "kubectl-proxy": ctx.proxy_core,
            "go-proxy": ctx.proxy_core,
            "gateway": ctx.proxy_core,
        },
        "targets": {},
    }
    with (
        topo.kubectl_proxy("nginx") as kp,
        topo.go_proxy("nginx") as go,
        topo.gateway() as gateways,
    ):
        for target in (kp, go, gateways["nginx"]):
            topo.probe(target, CONFIGMAP_PATH)
            ctx.log(f"stalled: {target.name}, stall {ctx.settings.stall_seconds}s")
            result = stalled_get(
                target, "/big/300m", ctx.settings.stall_seconds, target.process.rss_kib
            )
            row = attrs.asdict(result)
            row["growth_kib"] = result.growth_kib
            results["targets"][target.name] = row
            ctx.log(f"  {target.name}: RSS +{result.growth_kib} KiB")
    return results
