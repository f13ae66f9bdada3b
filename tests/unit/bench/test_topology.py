"""The bench measures the gateway as deploy/ runs it."""

from __future__ import annotations

from pathlib import Path

import yaml
from bench.topology import GATEWAY_COMMAND

DEPLOYMENT = Path(__file__).parents[3] / "deploy" / "deployment.yaml"


def test_bench_starts_the_gateway_with_the_command_of_deploy() -> None:
    """The bench's gateway command is the start of the Deployment's container command
    (the flags after it are the deployment's own): the gateway is measured as deployed."""
    deployment = next(
        doc for doc in yaml.safe_load_all(DEPLOYMENT.read_text()) if doc["kind"] == "Deployment"
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    deployed = tuple(container.get("command", ())) + tuple(container["args"])
    assert deployed[: len(GATEWAY_COMMAND)] == GATEWAY_COMMAND
