"""``twistd clustergateway`` (as deploy/ runs it) and ``cluster-gateway`` run one process."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
import pytest_twisted

from tests.fixtures.gateway import ENTRY_POINTS, GatewayProcess

pytestmark = pytest.mark.e2e

LEAN = "clustergateway.fence.reactor.LeanEPollReactor"


@pytest_twisted.ensureDeferred
async def test_both_entry_points_run_the_gateways_reactor(
    gateway_process: Callable[..., Awaitable[GatewayProcess]],
) -> None:
    """Both say at start (twistd's "reactor class" line) that they run the gateway's
    LeanEPollReactor, and neither warns of another; ``twistd`` ran Twisted's stock
    epoll reactor before, so busy polling and pass-end writes were off in deploy/."""
    reactors = {}
    for entry in sorted(ENTRY_POINTS):
        running = await gateway_process(entry)
        log = running.log
        reactors[entry] = re.findall(r"reactor class: ([\w.]+)\.", log)
        assert "not on the gateway's LeanEPollReactor" not in log, log
        running.stop()
    assert reactors == {entry: [LEAN] for entry in ENTRY_POINTS}
