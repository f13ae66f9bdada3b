"""Lease election between replicas sharing one in-memory hub, on a Clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from clustergateway.addon.leader import LeaseElector
from clustergateway.testing.memoryhub import StoreHubClient
from tests.unit.addon.conftest import run


class Replica:
    def __init__(self, hub: StoreHubClient, clock: Clock, identity: str) -> None:
        hub.store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "addon-ns"}})
        self.events: list[str] = []
        self.elector = LeaseElector(
            clock,
            hub,
            "addon-ns",
            "cluster-gateway-addon-manager",
            identity,
            lambda: self.events.append("started"),
            lambda: self.events.append("stopped"),
            wall_time=lambda: f"renewed at {clock.seconds():.6f}",  # moves with the Clock
        )

    def tick(self) -> None:
        run(self.elector.tick())


def _lease(hub: StoreHubClient) -> dict:
    return hub.store.get("leases", "addon-ns", "cluster-gateway-addon-manager")


def test_one_leader_and_takeover_only_after_the_lease_expires(hub):
    """The first replica creates the Lease and leads; the second waits while it renews;
    when the leader stops renewing, the second takes over lease_duration later (by its
    own clock), and the old leader steps down at its renew deadline."""
    clock = Clock()
    a, b = Replica(hub, clock, "a"), Replica(hub, clock, "b")
    a.tick()
    b.tick()
    assert (a.elector.leading, b.elector.leading) == (True, False)
    assert _lease(hub)["spec"]["holderIdentity"] == "a"
    for _ in range(10):
        clock.advance(2)
        a.tick()
        b.tick()
        assert (a.elector.leading, b.elector.leading) == (True, False)
    # a is cut off from the hub: it stops renewing (its ticks fail)
    hub.missing_groups.add("coordination.k8s.io/v1")
    clock.advance(2)
    a.tick()
    hub.missing_groups.clear()
    b.tick()
    assert b.elector.leading is False  # 2 s since b last saw a renew: not expired
    for _ in range(6):  # until t=34: 14 s since b saw a's last renewal at t=20
        clock.advance(2)
        b.tick()
        assert b.elector.leading is False
    clock.advance(2)  # t=36: 16 s > the 15 s lease
    b.tick()
    assert b.elector.leading is True and b.events == ["started"]
    assert _lease(hub)["spec"]["holderIdentity"] == "b"
    assert _lease(hub)["spec"]["leaseTransitions"] == 1
    a.tick()  # a reaches the hub again: b holds the Lease, a stops at once
    assert a.elector.leading is False and a.events == ["started", "stopped"]


def test_release_on_shutdown_hands_over_at_once(hub):
    """A leader that stops releases the Lease; the other replica leads on its next try."""
    clock = Clock()
    a, b = Replica(hub, clock, "a"), Replica(hub, clock, "b")
    a.tick()
    b.tick()
    run(a.elector._release())
    assert a.events == ["started", "stopped"]
    assert _lease(hub)["spec"]["holderIdentity"] == ""
    b.tick()
    assert b.elector.leading is True


def test_racing_for_an_expired_lease_one_wins(hub):
    """Two replicas reading the same expired Lease: the second write is a 409, one leads."""
    clock = Clock()
    a, b, c = Replica(hub, clock, "a"), Replica(hub, clock, "b"), Replica(hub, clock, "c")
    a.tick()
    b.tick()
    c.tick()
    clock.advance(20)
    lease = _lease(hub)

    class StaleReads:
        """b and c both read the same version of the Lease before either writes."""

        async def get_json(self, path, params=None):
            return dict(lease)

        async def put_json(self, path, body, params=None):
            return await hub.put_json(path, body, params)

        async def post_json(self, path, body, params=None):
            return await hub.post_json(path, body, params)

    b.elector.client = c.elector.client = StaleReads()
    b.tick()
    c.tick()
    assert [b.elector.leading, c.elector.leading].count(True) == 1
