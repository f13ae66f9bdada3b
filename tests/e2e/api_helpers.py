"""Helpers of the API end-to-end tests: sample clusters and a kubectl that keeps running."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import attrs

from tests.fixtures.gateway import token_cluster

__all__ = ["StreamingKubectl", "token_cluster"]


@attrs.define
class StreamingKubectl:
    """A kubectl that runs on (``get -w``): its stdout lines with arrival times."""

    process: subprocess.Popen[bytes]
    lines: list[tuple[float, str]] = attrs.field(factory=list)
    _reader: threading.Thread | None = None

    @classmethod
    def start(
        cls, kubectl: str, kubeconfig: Path, *args: str, env: dict[str, str] | None = None
    ) -> StreamingKubectl:
        cache = kubeconfig.parent / f".kube-cache-{Path(kubectl).name}"
        process = subprocess.Popen(
            [kubectl, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "HOME": str(kubeconfig.parent), **(env or {})},
        )
        streaming = cls(process)
        streaming._reader = threading.Thread(target=streaming._read, daemon=True)
        streaming._reader.start()
        return streaming

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append((time.monotonic(), raw.decode().rstrip("\n")))

    def texts(self) -> list[str]:
        return [line for _, line in self.lines]

    def first_time(self, needle: str) -> float | None:
        for at, line in self.lines:
            if needle in line:
                return at
        return None

    def stop(self) -> str:
        """Kill kubectl; return its stderr."""
        self.process.kill()
        _, err = self.process.communicate(timeout=10)
        return err.decode()
