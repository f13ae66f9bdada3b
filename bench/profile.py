"""Profile the gateway under the 16-connection small-GET load with ``py-spy record``.

py-spy samples the running process (``--nonblocking``: the gateway is never
paused, so the load it serves is unchanged; ``--native`` off; idle samples
are dropped, so shares are shares of busy CPU) and writes a speedscope JSON
(open it at speedscope.app).  :func:`top_self` turns it into the top costs by
self time — what the next optimisation should attack.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.h2load import H2LoadResult, run_h2load
from bench.topology import CONFIGMAP_PATH
from bench.wrk import WrkResult, run_wrk

__all__ = ["profile_gateway", "self_by_file", "top_self"]


def top_self(speedscope: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
    """Functions by self time (samples where they are the innermost frame), largest first."""
    frames = speedscope["shared"]["frames"]
    self_weight: Counter[int] = Counter()
    total_weight: Counter[int] = Counter()
    overall = 0.0
    for profile in speedscope["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack:
                continue
            overall += weight
            self_weight[stack[-1]] += weight
            for index in set(stack):
                total_weight[index] += weight
    rows = []
    for index, weight in self_weight.most_common(limit):
        frame = frames[index]
        location = frame.get("file", "?")
        if frame.get("line"):
            location += f":{frame['line']}"
        rows.append(
            {
                "function": frame.get("name", "?"),
                "location": _short(location),
                "self_share": round(weight / overall, 4) if overall else 0.0,
                "total_share": round(total_weight[index] / overall, 4) if overall else 0.0,
            }
        )
    return rows


def self_by_file(speedscope: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
    """Self time summed per source file (TLS, HTTP parsing, logging... at a glance)."""
    frames = speedscope["shared"]["frames"]
    weights: Counter[str] = Counter()
    overall = 0.0
    for profile in speedscope["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if stack:
                overall += weight
                weights[_short(frames[stack[-1]].get("file", "?"))] += weight
    return [
        {"file": name, "self_share": round(weight / overall, 4) if overall else 0.0}
        for name, weight in weights.most_common(limit)
    ]


def _short(location: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in location:
            return location.split(marker, 1)[1]
    return location


def profile_gateway(ctx: Context, out: Path, *, h2: bool = False) -> dict[str, Any]:
    """Run wrk -c16 on the gateway (``h2``: h2load with 4 connections × 32 streams,
    the aggregator's shape) while py-spy records it; write ``out`` (speedscope)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"error": "py-spy is not installed (pip install -e '.[bench]')"}
    topo = ctx.topo
    seconds = max(3, round(ctx.settings.duration))
    with topo.gateway() as gateways:
        gw = gateways["nginx"]
        url = gw.url(CONFIGMAP_PATH)
        label = "h2load -c4 -m32" if h2 else "wrk -c16"

        def run_load(duration: float) -> WrkResult | H2LoadResult:
            if h2:
                return run_h2load(
                    url, connections=4, streams=32, duration=duration, cores=ctx.load_core
                )
            return run_wrk(
                url,
                connections=16,
                duration=duration,
                workdir=ctx.workdir,
                cores=ctx.load_core,
            )

        run_load(ctx.settings.warmup or 1)
        loaded: list[WrkResult | H2LoadResult] = []
        load = threading.Thread(target=lambda: loaded.append(run_load(seconds + 2)))
        load.start()
        ctx.log(f"profile: py-spy record on the gateway for {seconds}s under {label}")
        done = subprocess.run(
            [
                "taskset",
                "-c",
                ctx.load_core,
                spy,
                "record",
                "--pid",
                str(gw.process.pid),
                "--duration",
                str(seconds),
                "--rate",
                "200",
                "--nonblocking",
                "--function",
                "--format",
                "speedscope",
                "--output",
                str(out),
            ],
            capture_output=True,
            timeout=seconds + 60,
        )
        load.join()
    if done.returncode != 0 or not out.exists():
        return {"error": done.stderr.decode(errors="replace")[-800:]}
    data = json.loads(out.read_text())
    result = loaded[0] if loaded else None
    if isinstance(result, H2LoadResult):
        errors: dict[str, int] | None = {"failed": result.failed} if result.failed else {}
    else:
        errors = result.errors if result is not None else None
    return {
        "file": out.name,
        "load": label,
        "seconds": seconds,
        "rps_while_profiling": round(result.rps, 1) if result is not None else None,
        "errors_while_profiling": errors,
        "top_self": top_self(data),
        "self_by_file": self_by_file(data),
    }
