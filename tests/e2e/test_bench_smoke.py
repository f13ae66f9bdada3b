"""``python -m bench --quick --only crud``: the bench harness runs end to end.

No timing is asserted (the machine is shared); the test proves that the
harness starts the simulated cluster, ``kubectl proxy``, the Go peer (built
from ``bench/goproxy`` with Debian's Go, which ``scripts/test-deps.sh``
installs) and the gateway pinned to their CPUs, drives the ConfigMap flow
through all four, and
writes the results JSON and the Markdown tables (plots need the ``bench``
extra, matplotlib, which the test environment does not install).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_quick_crud_run_writes_results(tmp_path: Path) -> None:
    """The quick CRUD scenario yields per-step stats for direct, kubectl proxy, the Go
    proxy and the gateway."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "crud",
            "--crud-rounds",
            "5",
            "--no-plots",
            "--out",
            str(tmp_path),
            "--name",
            "smoke",
        ],
        cwd=REPO,
        capture_output=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert results["errors"] == {}
    crud = results["scenarios"]["crud"]
    assert crud["rounds"] == 5
    for target in ("direct", "kubectl-proxy", "go-proxy", "gateway"):
        for step in ("create", "update", "delete", "flow"):
            stats = crud["targets"][target][step]
            assert stats["n"] == 5
            assert 0 < stats["fastest"] <= stats["mean"] <= stats["slowest"]
    table = (tmp_path / "smoke.md").read_text()
    assert "ConfigMap create → update → delete, 5 rounds" in table
    assert "| flow |" in table
    assert results["meta"]["cores"] == {"server_under_test": "0", "load_and_upstreams": "1"}


def test_quick_watches_run_reaches_every_watch(tmp_path: Path) -> None:
    """200 watches through kubectl proxy, the gateway (a TLS connection each) and the
    gateway again as HTTP/2 streams (as the kube-aggregator sends them): every watch
    is live, gets its response head, and receives the one event."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "watches",
            "--watches",
            "200",
            "--no-plots",
            "--no-profile",
            "--out",
            str(tmp_path),
            "--name",
            "smoke",
        ],
        cwd=REPO,
        capture_output=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert results["errors"] == {}
    targets = results["scenarios"]["watches"]["targets"]
    assert sorted(targets) == ["gateway", "gateway-h2", "kubectl-proxy"]
    for name, row in targets.items():
        assert (row["live"], row["heads_seen"], row["events_received"]) == (200, 200, 200), name
        assert row["errors"] == {}, name
    assert "| gateway-h2 | 200 |" in (tmp_path / "smoke.md").read_text()
