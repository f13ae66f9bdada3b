"""Scenario 1: the Go README's flow — create → update → delete a ConfigMap, N rounds.

Against the simulated cluster (it implements CRUD), direct vs ``kubectl
proxy`` vs the Go proxy (``bench/goproxy``) vs the gateway.  The client is a
lean keep-alive ``http.client`` connection per target (not the
``kubernetes`` package, whose own per-call overhead of milliseconds would
hide the proxies), one request at a time; the rounds interleave the targets
so that machine noise hits all alike.
Reports fastest / slowest / mean ± sd per step and per whole flow, in ms.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from bench.context import Context, stats_ms
from bench.topology import Target

__all__ = ["NAME", "UPSTREAMS", "run"]

NAME = "crud"
UPSTREAMS = ("simulator",)
STEPS = ("create", "update", "delete")
WARMUP_ROUNDS = 3


class FlowError(RuntimeError):
    """An unexpected answer in the flow (the message names target, step and status)."""


def _call(
    conn: Any, target: Target, method: str, path: str, body: dict[str, Any] | None, want: int
) -> float:
    headers = dict(target.headers)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    headers["Accept"] = "application/json"
    started = time.perf_counter()
    conn.request(method, target.prefix + path, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    if response.status != want:
        raise FlowError(
            f"{target.name}: {method} {path} answered {response.status}, want {want}: "
            f"{payload[:200]!r}"
        )
    return elapsed


def _flow(conn: Any, target: Target, name: str) -> dict[str, float]:
    base = "/api/v1/namespaces/default/configmaps"
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"version": "1"},
    }
    times = {"create": _call(conn, target, "POST", base, obj, 201)}
    obj["data"] = {"version": "2"}
    times["update"] = _call(conn, target, "PUT", f"{base}/{name}", obj, 200)
    times["delete"] = _call(conn, target, "DELETE", f"{base}/{name}", None, 200)
    times["flow"] = sum(times.values())
    return times


def flows(targets: list[Target], rounds: int, tag: str) -> dict[str, dict[str, list[float]]]:
    """``rounds`` flows per target (after the warm-up), interleaved; seconds per step."""
    run_id = uuid.uuid4().hex[:6]
    conns = {t.name: t.connection() for t in targets}
    samples: dict[str, dict[str, list[float]]] = {
        t.name: {step: [] for step in (*STEPS, "flow")} for t in targets
    }
    for i in range(-WARMUP_ROUNDS, rounds):
        for target in targets:
            name = f"{tag}-{run_id}-{target.name}-{i + WARMUP_ROUNDS}"
            times = _flow(conns[target.name], target, name)
            if i >= 0:
                for step, seconds in times.items():
                    samples[target.name][step].append(seconds)
    for conn in conns.values():
        conn.close()
    return samples


def run(ctx: Context) -> dict[str, Any]:
    topo = ctx.topo
    rounds = ctx.settings.crud_rounds
    with (
        topo.kubectl_proxy("simulator") as kp,
        topo.go_proxy("simulator") as go,
        topo.gateway() as gateways,
    ):
        targets = [topo.direct("simulator"), kp, go, gateways["simulator"]]
        ctx.log(f"crud: {rounds} rounds of create/update/delete on {len(targets)} targets")
        samples = flows(targets, rounds, "bench")
    result: dict[str, Any] = {
        "rounds": rounds,
        "client": "http.client keep-alive, one request at a time (runner on core 1)",
        "upstream": "simulated cluster (python -m clustergateway.testing) on core 1",
        "cores": {
            "direct": None,
            "kubectl-proxy": ctx.proxy_core,
            "go-proxy": ctx.proxy_core,
            "gateway": ctx.proxy_core,
        },
        "targets": {
            name: {step: stats_ms(values) for step, values in steps.items()}
            for name, steps in samples.items()
        },
    }
    return result
