"""Settings of a run and the context every scenario receives."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from bench.procs import BenchProcess
from bench.topology import LOAD_CORE, PROXY_CORE, Topology

__all__ = [
    "MIB",
    "Context",
    "Settings",
    "core_times",
    "cpu_window",
    "foreign_cpu",
    "stats_ms",
]

MIB = 1 << 20


@attrs.frozen
class Settings:
    """Durations and sizes; :meth:`quick` is the ~1-minute smoke variant."""

    quick: bool = False
    #: Seconds of each measured wrk run (and of each profile).
    duration: float = 5.0
    #: Seconds of unmeasured load before each measured run (pools, JIT-less caches, TLS).
    warmup: float = 1.0
    connections: tuple[int, ...] = (1, 16, 64)
    #: The fixed-rate point: about this many requests/s over ``paced_connections``.
    paced_rate: int = 1000
    paced_connections: int = 10
    crud_rounds: int = 100
    watches: int = 10_000
    watch_parallel: int = 100
    splice_bytes: int = 512 * MIB
    stall_seconds: float = 8.0
    profile: bool = True
    #: Re-measure a row up to this many times while other work took more than
    #: ``foreign_limit`` of a core (see ``small_get.measure``).
    retries: int = 2
    foreign_limit: float = 0.15

    @classmethod
    def quick_settings(cls) -> Settings:
        return cls(
            quick=True,
            duration=2.0,
            warmup=1.0,
            connections=(1, 16, 64),
            crud_rounds=20,
            watches=200,
            splice_bytes=64 * MIB,
            stall_seconds=3.0,
            profile=False,
            retries=0,
        )

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def stats_ms(samples: list[float]) -> dict[str, float]:
    """fastest / slowest / mean ± sd / p50 of durations in seconds, as milliseconds."""
    import statistics

    if not samples:
        return {}
    ms = sorted(s * 1000 for s in samples)
    return {
        "n": len(ms),
        "fastest": round(ms[0], 3),
        "slowest": round(ms[-1], 3),
        "mean": round(statistics.fmean(ms), 3),
        "sd": round(statistics.stdev(ms), 3) if len(ms) > 1 else 0.0,
        "p50": round(ms[len(ms) // 2], 3),
    }


def core_times() -> dict[str, tuple[int, int]]:
    """``{core: (busy, total)}`` jiffies of every CPU from ``/proc/stat`` (all processes)."""
    times: dict[str, tuple[int, int]] = {}
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *fields = line.split()
                values = [int(v) for v in fields[:8]]
                idle = values[3] + values[4]  # idle + iowait
                times[name[3:]] = (sum(values) - idle, sum(values))
    return times


def foreign_cpu(all_busy: dict[str, float], ours: dict[str, float]) -> dict[str, float]:
    """Per core, the share of time other processes kept it busy (never below 0)."""
    return {
        core: round(max(0.0, all_busy[core] - share), 3)
        for core, share in ours.items()
        if core in all_busy
    }


@attrs.define
class cpu_window:  # noqa: N801 - used like a function: ``with cpu_window(procs) as w``
    """CPU seconds each process used and the wall time between enter and exit.

    ``core_busy`` is how busy each core was meanwhile counting *every*
    process on the machine: next to our own processes' CPU it shows whether
    something else (other work on a shared machine) took CPU from the run.
    """

    processes: dict[str, BenchProcess]
    used: dict[str, float] = attrs.field(factory=dict)
    wall: float = 0.0
    core_busy: dict[str, float] = attrs.field(factory=dict)
    _start: dict[str, float] = attrs.field(factory=dict)
    _cores: dict[str, tuple[int, int]] = attrs.field(factory=dict)
    _t0: float = 0.0

    def __enter__(self) -> cpu_window:
        self._start = {name: p.cpu_seconds() for name, p in self.processes.items()}
        self._cores = core_times()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self._t0
        self.used = {
            name: p.cpu_seconds() - self._start[name] for name, p in self.processes.items()
        }
        after = core_times()
        for core, (busy, total) in after.items():
            busy0, total0 = self._cores.get(core, (busy, total))
            if total > total0:
                self.core_busy[core] = round((busy - busy0) / (total - total0), 3)


@attrs.define
class Context:
    """What a scenario gets: the topology, the settings, a work directory and a logger."""

    topo: Topology
    settings: Settings
    workdir: Path
    verbose: bool = True

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    @property
    def proxy_core(self) -> str:
        return PROXY_CORE

    @property
    def load_core(self) -> str:
        return LOAD_CORE

    def loadavg(self) -> list[float]:
        return [round(x, 2) for x in os.getloadavg()]
