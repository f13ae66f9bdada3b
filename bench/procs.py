"""Processes of a bench run: start pinned to a CPU, wait until ready, read /proc, stop.

Every process under test or feeding it is a child of the runner, started
through ``taskset -c CORE`` so the CPU it got is a fact of the run (recorded
in the results), and stopped by its own pid.  CPU time and RSS come from
``/proc`` (``utime + stime`` of the process and its children; ``VmRSS``), so
the numbers include every thread (Go's runtime threads for ``kubectl proxy``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

__all__ = [
    "BenchProcess",
    "ProcessError",
    "cpu_seconds",
    "free_port",
    "rss_kib",
    "start_process",
    "wait_for_port",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessError(RuntimeError):
    """A bench process that would not start (the message names it and its log)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def _own_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return 0.0
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (all threads), plus its descendants if ``tree``."""
    total = _own_cpu(pid)
    if tree:
        for child in _children(pid):
            total += cpu_seconds(child, tree=True)
    return total


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS``); 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise ProcessError(f"exited with code {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout}s"
                ) from None
            time.sleep(0.05)


@attrs.define
class BenchProcess:
    """One started child: its name, the CPU list it is pinned to and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    cores: str
    log_path: Path
    #: Count the CPU of child processes too (nginx: master + worker).
    tree: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid, tree=self.tree)

    def rss_kib(self) -> int:
        if not self.tree:
            return rss_kib(self.pid)
        return rss_kib(self.pid) + sum(rss_kib(child) for child in _children(self.pid))

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; always reaps the child."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    cores: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    tree: bool = False,
    cwd: Path | None = None,
) -> BenchProcess:
    """Start ``argv`` pinned to ``cores`` (a ``taskset -c`` list), output into ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    try:
        popen = subprocess.Popen(
            ["taskset", "-c", cores, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
        )
    finally:
        log.close()
    # taskset execs the command: the pid is the command's own.
    return BenchProcess(name, popen, cores, log_path, tree)
