"""``h2load`` (Debian ``nghttp2-client``): the HTTP/2 load generator of the small-GET rows.

wrk speaks HTTP/1.1 only, while kubectl and the kube-aggregator talk HTTP/2 to
an apiserver, which the gateway serves through twisted.web and the h2 stack
(its lean path is HTTP/1.1 only).  ``h2load -c<n> -m1`` keeps ``n``
connections with one stream in flight each, the HTTP/2 twin of ``wrk -c<n>``
(kubectl's shape); ``-c4 -m32`` keeps 32 streams in flight on each of 4
connections, the kube-aggregator's shape in front of an aggregated apiserver.
Its own CPU comes from ``wait4``, as for wrk.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from typing import Any

import attrs

__all__ = ["H2LoadError", "H2LoadResult", "parse_output", "run_h2load"]

_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored"
)
_TIME = r"([\d.]+)(us|ms|s)"
#: min, max, mean (then sd): the mean is groups 5 and 6.
_LATENCY = re.compile(rf"time for request:\s+{_TIME}\s+{_TIME}\s+{_TIME}")
_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


class H2LoadError(RuntimeError):
    """h2load is missing or failed."""


@attrs.frozen
class H2LoadResult:
    """One h2load run: succeeded requests, their rate, mean latency, h2load's own CPU."""

    connections: int
    streams: int
    requests: int
    failed: int
    duration_s: float
    rps: float
    mean_latency_us: float
    client_cpu_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "streams": self.streams,
            "requests": self.requests,
            "failed": self.failed,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "mean_latency_us": round(self.mean_latency_us, 1),
            "client_cpu_s": round(self.client_cpu_s, 3),
        }


def run_h2load(
    url: str, *, connections: int, duration: float, cores: str, streams: int = 1
) -> H2LoadResult:
    """``h2load -c<connections> -m<streams> -D<duration>`` on ``url`` (TLS, ALPN h2),
    pinned to ``cores``."""
    h2load = shutil.which("h2load")
    if h2load is None:
        raise H2LoadError("h2load is not installed (run scripts/bench-deps.sh)")
    seconds = max(1, round(duration))
    argv = ["taskset", "-c", cores, h2load, f"-c{connections}", f"-m{streams}", f"-D{seconds}", url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watchdog = threading.Timer(seconds + 60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        output = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    parsed = parse_output(output) if os.waitstatus_to_exitcode(status) == 0 else None
    if parsed is None:
        raise H2LoadError(f"h2load on {url} failed: {output.strip()[-500:]}")
    return H2LoadResult(
        connections=connections,
        streams=streams,
        client_cpu_s=usage.ru_utime + usage.ru_stime,
        **parsed,
    )


def parse_output(output: str) -> dict[str, Any] | None:
    """Requests succeeded, failed (+ errored), elapsed seconds, req/s and mean latency (µs)
    from h2load's summary; None when it has no summary."""
    finished, requests = _FINISHED.search(output), _REQUESTS.search(output)
    if finished is None or requests is None:
        return None
    latency = _LATENCY.search(output)
    return {
        "requests": int(requests.group(4)),
        "failed": int(requests.group(5)) + int(requests.group(6)),
        "duration_s": float(finished.group(1)) * (1e-3 if finished.group(2) == "ms" else 1.0),
        "rps": float(finished.group(3)),
        "mean_latency_us": (
            float(latency.group(5)) * _UNIT_US[latency.group(6)] if latency else 0.0
        ),
    }
