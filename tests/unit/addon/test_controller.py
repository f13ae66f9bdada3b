"""The reconcile runner: passes one at a time, kicks coalesced, failures retried."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from clustergateway.addon.controller import ReconcileRunner, relevant
from clustergateway.registry.hub_source import Backoff


def test_kicks_during_a_pass_coalesce_into_one_rerun():
    """Three kicks while a pass runs → exactly one more pass after it."""
    clock = Clock()
    gates: list[Deferred[None]] = []

    async def action() -> None:
        d: Deferred[None] = Deferred()
        gates.append(d)
        await d

    runner = ReconcileRunner(clock, action)
    runner.kick()
    runner.kick()
    clock.advance(0.05)
    assert len(gates) == 1
    runner.kick()
    runner.kick()
    runner.kick()
    gates[0].callback(None)
    clock.advance(0.05)
    assert len(gates) == 2
    gates[1].callback(None)
    clock.advance(10)
    assert len(gates) == 2 and runner.passes == 2


def test_a_pass_that_never_waits_leaves_the_runner_ready():
    """A pass that completes at once (nothing to wait for) still lets the next kick run
    the next pass."""
    clock = Clock()
    calls: list[float] = []

    async def action() -> None:
        calls.append(clock.seconds())

    runner = ReconcileRunner(clock, action)
    runner.kick()
    clock.advance(0.05)
    runner.kick()
    clock.advance(0.05)
    assert calls == [0.05, 0.1] and runner.passes == 2


def test_failure_is_retried_after_backoff():
    """A failed pass is retried after the backoff delay, not at once."""
    clock = Clock()
    calls: list[float] = []

    async def action() -> None:
        calls.append(clock.seconds())
        if len(calls) == 1:
            raise RuntimeError("hub down")

    runner = ReconcileRunner(clock, action, backoff=Backoff(initial=4, random=lambda: 1.0))
    runner.kick()
    clock.advance(0.05)
    clock.advance(3.9)
    assert len(calls) == 1 and runner.failures == 1
    clock.advance(0.1)
    assert len(calls) == 2 and runner.passes == 1


def test_relevant_events():
    """Owned objects, the install's names and the addon kinds trigger; others do not."""
    owned = {
        "metadata": {
            "name": "x",
            "ownerReferences": [{"kind": "ClusterManagementAddOn", "name": "cluster-gateway"}],
        }
    }
    assert relevant("Secret", owned)
    assert relevant("Secret", {"metadata": {"name": "proxy-client"}}, {"proxy-client"})
    assert not relevant("Secret", {"metadata": {"name": "helm-release"}}, {"proxy-client"})
    assert relevant("ManagedClusterAddOn", {"metadata": {"name": "other"}})
    assert relevant("Deployment", {"metadata": {"name": "gateway-deployment"}})
