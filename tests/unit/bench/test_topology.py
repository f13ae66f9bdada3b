"""The bench measures the gateway as deploy/ runs it."""

from __future__ import annotations

from pathlib import Path

import yaml
from bench.topology import GATEWAY_COMMAND

REPO = Path(__file__).parents[3]


def test_bench_starts_the_gateway_with_the_command_of_deploy() -> None:
    """deploy/'s Deployment runs the image's ``/apiserver``, which runs the
    ``cluster-gateway`` console script: the command the bench starts."""
    deployment = next(
        doc
        for doc in yaml.safe_load_all((REPO / "deploy/base/deployment.yaml").read_text())
        if doc["kind"] == "Deployment"
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/apiserver"]
    entry = (REPO / "image/entry.sh").read_text()
    assert "gateway=/opt/cluster-gateway/bin/cluster-gateway\n" in entry
    assert 'exec "$gateway" "$@"' in entry
    assert GATEWAY_COMMAND == ("cluster-gateway",)
