"""Running ``wrk`` (one thread, pinned) and reading its results as JSON.

A generated Lua script prints the summary and exact latency percentiles from
wrk's own histogram (microseconds) as one JSON line in ``done()``.  With
``think_ms`` the script also defines ``delay()``: each connection waits a
random 0.5–1.5 × ``think_ms`` after a response before its next request (so
the connections do not fire in step), which paces the load to about
``connections / (think + latency)`` requests per second.  That is a closed
loop with think time, not an open-loop constant-rate generator (Debian has no
wrk2): latency counts from each request's actual send, so a stall longer than
the think time is under-counted (no coordinated-omission correction).

The CPU that wrk itself used comes from ``wait4`` on its pid, so every run
can show that the load generator had headroom.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = ["WrkError", "WrkResult", "run_wrk"]

_MARK = "WRKJSON "

_LUA = """\
{headers}
{delay}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"bytes":%d,'
    .. '"errors":{{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}},'
    .. '"latency_us":{{"min":%d,"mean":%.2f,"stdev":%.2f,"max":%d,'
    .. '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


class WrkError(RuntimeError):
    """wrk failed or printed no result."""


@attrs.frozen
class WrkResult:
    """One wrk run: totals, latency percentiles (µs) and wrk's own CPU seconds."""

    connections: int
    requests: int
    duration_s: float
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]
    wrk_cpu_s: float
    think_ms: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def mib_per_s(self) -> float:
        return self.bytes / self.duration_s / (1 << 20) if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "think_ms": self.think_ms,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "bytes": self.bytes,
            "mib_per_s": round(self.mib_per_s, 1),
            "errors": self.errors,
            "latency_us": self.latency_us,
            "wrk_cpu_s": round(self.wrk_cpu_s, 3),
            "wrk_cpu_share": round(self.wrk_cpu_s / self.duration_s, 3) if self.duration_s else 0,
        }


def run_wrk(
    url: str,
    *,
    connections: int,
    duration: float,
    workdir: Path,
    cores: str,
    headers: Sequence[tuple[str, str]] = (),
    think_ms: int = 0,
    timeout_s: int = 10,
) -> WrkResult:
    """``wrk -t1 -c<connections> -d<duration>`` on ``url``, pinned to ``cores``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkError("wrk is not installed (run scripts/bench-deps.sh)")
    header_lines = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in headers)
    delay = ""
    if think_ms > 0:
        # Uniform in [think/2, 3*think/2] ms: the connections' 1-ms timers would
        # otherwise fire together and send bursts, not a steady rate.
        low, high = max(1, think_ms // 2), max(1, think_ms // 2) + think_ms
        delay = (
            f"math.randomseed(os.time())\ndelay = function() return math.random({low}, {high}) end"
        )
    script = workdir / f"wrk-{os.getpid()}-{connections}-{think_ms}.lua"
    script.write_text(_LUA.format(headers=header_lines, delay=delay, mark=_MARK))
    seconds = max(1, round(duration))
    argv = [
        "taskset",
        "-c",
        cores,
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(script),
        url,
    ]
    out_path, err_path = script.with_suffix(".out"), script.with_suffix(".err")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
    watchdog = threading.Timer(seconds + timeout_s + 30, proc.kill)
    watchdog.start()
    try:
        # wait4 on the pid itself (taskset execs wrk): its own user + system CPU.
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wrk_cpu = usage.ru_utime + usage.ru_stime
    output = out_path.read_text(errors="replace")
    error_text = err_path.read_text(errors="replace")
    result = None
    for line in output.splitlines():
        if line.startswith(_MARK):
            result = json.loads(line[len(_MARK) :])
    if proc.returncode != 0 or result is None:
        raise WrkError(
            f"wrk on {url} failed (exit {proc.returncode}): {(error_text or output).strip()[-500:]}"
        )
    return WrkResult(
        connections=connections,
        requests=result["requests"],
        duration_s=result["duration_us"] / 1e6,
        bytes=result["bytes"],
        errors=result["errors"],
        latency_us=result["latency_us"],
        wrk_cpu_s=wrk_cpu,
        think_ms=think_ms,
    )
