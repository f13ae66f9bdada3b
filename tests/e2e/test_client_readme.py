"""The README's Python example runs as written against two clusters behind the gateway."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.fixtures.clients import TwoClusters

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python_example() -> str:
    """The first ``python`` code block after the heading of ``clustergateway.client``."""
    text = README.read_text()
    section = text[text.index("### From Python: `clustergateway.client`") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python example in the README's client section"
    return match.group(1)


@pytest_twisted.ensureDeferred
async def test_readme_example_runs(two_clusters: TwoClusters, tmp_path: Path) -> None:
    """With ``KUBECONFIG`` pointing at the hub, the example exits 0, prints both
    clusters' exec output, the cluster list and the recorded health."""
    env = {**os.environ, "KUBECONFIG": str(two_clusters.hub_kubeconfig), "HOME": str(tmp_path)}
    result = await deferToThread(
        subprocess.run,
        [sys.executable, "-c", readme_python_example()],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "c1" in lines and "c2" in lines  # the exec echo in each cluster
    assert "ADDED hello" in lines
    assert "['c1', 'c2']" in lines
    assert lines[-1] == "Health(healthy=False, reason='ConnectionTimeout')"
    assert two_clusters.c1.store.get("configmaps", "default", "hello") is not None
    assert two_clusters.c2.store.get("configmaps", "default", "hello") is not None
