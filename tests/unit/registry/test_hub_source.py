"""The list+watch loop on a fake hub client and a fake clock: every path, synchronously."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from clustergateway import errors
from clustergateway.registry.hub_source import (
    Backoff,
    HubManagedClusterSource,
    HubSecretSource,
    ListWatch,
)
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.store import SecretRegistry

GROUP = "cluster.core.oam.dev"


class FakeHub:
    """Answers lists from ``pages``/``failures`` and records watches for the test to drive."""

    def __init__(self) -> None:
        self.lists: list[dict[str, Any]] = []
        self.watches: list[dict[str, Any]] = []
        self.responses: list[Any] = []  # dict (a page) or StatusError

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Deferred[dict]:
        self.lists.append({"path": path, **(params or {})})
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            return fail(answer)
        return succeed(answer)

    def watch(self, path: str, params: dict[str, Any], on_event: Any) -> Deferred[None]:
        cancelled: list[bool] = []
        d: Deferred[None] = Deferred(lambda _: cancelled.append(True))
        self.watches.append(
            {"path": path, "params": params, "on_event": on_event, "d": d, "cancelled": cancelled}
        )
        return d

    @property
    def current(self) -> dict[str, Any]:
        return self.watches[-1]


def page(rv: str, *items: dict[str, Any], cont: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        metadata["continue"] = cont
    return {"kind": "SecretList", "metadata": metadata, "items": list(items)}


def secret(name: str, rv: str) -> dict[str, Any]:
    return cluster_secret(name, token="t", resource_version=rv)


@pytest.fixture
def caplog_events() -> Any:
    """Formatted log lines emitted during the test."""
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def setup():
    clock = Clock()
    hub = FakeHub()
    registry = SecretRegistry(GROUP)
    events: list[tuple[str, str]] = []
    registry.subscribe(lambda event, entry, rv: events.append((event, entry.name)))
    source = HubSecretSource(
        clock,
        hub,
        "vela-system",
        registry,
        resync_period=30.0,
        backoff=Backoff(initial=1.0, maximum=8.0, random=lambda: 1.0),
    )
    yield clock, hub, registry, source, events
    if source.running:
        source.stopService()


def test_list_then_watch(setup) -> None:
    """Start lists the labelled Secrets, syncs the registry, then watches from the list's
    version with bookmarks; events land in the registry."""
    clock, hub, registry, source, events = setup
    hub.responses.append(page("10", secret("a", "5")))
    source.startService()
    assert registry.synced and events == [("ADDED", "a")]
    assert hub.lists == [
        {
            "path": "/api/v1/namespaces/vela-system/secrets",
            "limit": 500,
            "labelSelector": f"{GROUP}/cluster-credential-type",
        }
    ]
    params = hub.current["params"]
    assert params["resourceVersion"] == "10" and params["allowWatchBookmarks"] is True
    assert params["labelSelector"] == f"{GROUP}/cluster-credential-type"
    assert 300 <= params["timeoutSeconds"] < 600
    hub.current["on_event"]({"type": "ADDED", "object": secret("b", "11")})
    hub.current["on_event"](
        {"type": "MODIFIED", "object": {**secret("a", "12"), "stringData": {"token": "u"}}}
    )
    hub.current["on_event"]({"type": "DELETED", "object": secret("b", "13")})
    assert events[1:] == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert source.reflector.resource_version == "13"


def test_paged_list(setup) -> None:
    """A list is read page by page with ``continue`` and applied once, whole."""
    clock, hub, registry, source, events = setup
    hub.responses += [page("", secret("a", "1"), cont="tok"), page("20", secret("b", "2"))]
    source.startService()
    assert hub.lists[1]["continue"] == "tok"
    assert [e.name for e in registry.entries()] == ["a", "b"]
    assert hub.current["params"]["resourceVersion"] == "20"


def test_clean_end_rewatches_from_last_version(setup) -> None:
    """A watch the hub ends cleanly is resumed from the last version (a bookmark's
    included) without a relist."""
    clock, hub, registry, source, events = setup
    hub.responses.append(page("10"))
    source.startService()
    hub.current["on_event"]({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}})
    hub.current["d"].callback(None)
    assert len(hub.lists) == 1 and len(hub.watches) == 2
    assert hub.current["params"]["resourceVersion"] == "42"


def test_gone_relists_at_once(setup) -> None:
    """An ERROR 410 event ends the watch and relists immediately (no backoff)."""
    clock, hub, registry, source, events = setup
    hub.responses += [page("10", secret("a", "1")), page("50", secret("b", "45"))]
    source.startService()
    gone = {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "code": 410,
            "reason": "Expired",
            "message": "too old resource version: 10 (40)",
        },
    }
    with pytest.raises(errors.Gone):
        hub.current["on_event"](gone)
    hub.current["d"].errback(errors.Gone("too old resource version"))
    assert len(hub.lists) == 2
    assert events == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")]
    assert hub.current["params"]["resourceVersion"] == "50"


def test_failures_back_off_and_keep_state(setup) -> None:
    """Hub failures relist after exponential, capped delays; the registry keeps its state
    meanwhile and recovers without a restart."""
    clock, hub, registry, source, events = setup
    hub.responses.append(page("10", secret("a", "1")))
    source.startService()
    down = errors.ServiceUnavailable("hub unreachable")
    hub.responses += [down, down, down, down, down]
    hub.current["d"].errback(errors.BadGateway("watch stream broken"))
    delays = []
    for _ in range(5):
        before = len(hub.lists)
        pending = [c.getTime() for c in clock.getDelayedCalls()]
        delay = min(pending) - clock.seconds()
        delays.append(delay)
        clock.advance(delay)
        assert len(hub.lists) == before + 1
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert registry.get("a") and registry.synced
    hub.responses.append(page("60", secret("a", "1"), secret("c", "55")))
    clock.advance(8.0)
    assert events == [("ADDED", "a"), ("ADDED", "c")]
    assert hub.current["params"]["resourceVersion"] == "60"
    assert not source.reflector.backoff.failing


def test_resync_relists_and_restarts_watch(setup) -> None:
    """The resync tick ends the watch and relists: an event the watch never delivered
    is healed, and the new watch starts at the new list's version."""
    clock, hub, registry, source, events = setup
    hub.responses.append(page("10"))
    source.startService()
    first = hub.current
    hub.responses.append(page("12", secret("missed", "11")))
    clock.advance(30.0)
    assert first["cancelled"] == [True]
    assert events == [("ADDED", "missed")]
    assert hub.current["params"]["resourceVersion"] == "12"
    assert len(hub.watches) == 2


def test_watch_deadline(setup) -> None:
    """A watch the hub never ends is ended by the client after timeoutSeconds + 60 s."""
    clock, hub, registry, source, events = setup
    source.resync_period = 0
    hub.responses.append(page("10"))
    source.startService()
    timeout = hub.current["params"]["timeoutSeconds"]
    hub.responses.append(page("11"))
    clock.advance(timeout + 59)
    assert len(hub.watches) == 1
    clock.advance(1)
    assert len(hub.watches) == 2 and len(hub.lists) == 2


def test_handler_bug_does_not_kill_loop(setup, monkeypatch) -> None:
    """An unexpected exception in the loop is logged and retried like a hub failure."""
    clock, hub, registry, source, events = setup
    hub.responses += [page("10")]
    original = SecretRegistry.replace_all
    calls: list[int] = []

    def buggy_once(self: SecretRegistry, secrets: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("bug")
        original(self, secrets)

    monkeypatch.setattr(SecretRegistry, "replace_all", buggy_once)
    source.startService()
    assert clock.getDelayedCalls()  # a retry is scheduled, nothing raised
    hub.responses.append(page("11", secret("a", "1")))
    clock.advance(1.0)
    assert registry.synced and registry.get("a")


def test_stop_cleans_up(setup) -> None:
    """Stopping cancels the watch and every timer, in any state."""
    clock, hub, registry, source, events = setup
    hub.responses.append(page("10"))
    source.startService()
    watch = hub.current
    done = source.stopService()
    assert watch["cancelled"] == [True] and done.called
    assert clock.getDelayedCalls() == []
    # stopped while backing off
    hub.responses.append(errors.ServiceUnavailable("down"))
    source.startService()
    assert clock.getDelayedCalls()
    source.stopService()
    assert clock.getDelayedCalls() == []


def test_backoff() -> None:
    """Delays double up to the cap, with jitter in [half, full] of each step."""
    b = Backoff(initial=0.5, maximum=4.0, random=lambda: 0.0)
    assert [b.next() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    b.reset()
    assert not b.failing and b.next() == 0.25 and b.failing


def test_list_watch_generic() -> None:
    """ListWatch works for any collection (ManagedClusters use it without a selector)."""
    clock, hub = Clock(), FakeHub()
    lists: list[Any] = []
    seen: list[Any] = []
    hub.responses.append(page("3", {"metadata": {"name": "m"}}))
    loop = ListWatch(
        clock,
        hub,
        "/apis/x/v1/things",
        lists.append,
        lambda t, o: seen.append((t, o["metadata"]["name"])),
        resync_period=0,
    )
    loop.start()
    assert "labelSelector" not in hub.lists[0] and lists == [[{"metadata": {"name": "m"}}]]
    hub.current["on_event"](
        {"type": "ADDED", "object": {"metadata": {"name": "n", "resourceVersion": "4"}}}
    )
    assert seen == [("ADDED", "n")]
    loop.stop()
    assert clock.getDelayedCalls() == []


def managed_source(clock: Clock, hub: FakeHub, registry: SecretRegistry) -> HubManagedClusterSource:
    return HubManagedClusterSource(
        clock, hub, registry, resync_period=0, backoff=Backoff(initial=1.0, random=lambda: 1.0)
    )


def test_managed_clusters_not_served(caplog_events: list[str]) -> None:
    """Without the OCM API on the hub the source logs it once and asks again quietly
    every recheck period; a CRD installed later is then listed and watched."""
    clock, hub, registry = Clock(), FakeHub(), SecretRegistry(GROUP)
    absent = errors.NotFound("the server could not find the requested resource")
    hub.responses += [absent, absent]
    source = managed_source(clock, hub, registry)
    source.startService()
    assert source.served is False and hub.watches == []
    clock.advance(source.recheck_period)
    assert len(hub.lists) == 2 and hub.watches == []
    assert sum("not installed" in line for line in caplog_events) == 1
    hub.responses.append({"resources": [{"name": "managedclusters"}]})
    hub.responses.append({"metadata": {"resourceVersion": "1"}, "items": []})
    clock.advance(source.recheck_period)
    assert source.served is True and len(hub.watches) == 1
    assert sum("not installed" in line for line in caplog_events) == 1
    source.stopService()
    assert clock.getDelayedCalls() == []


def test_managed_clusters_served() -> None:
    """With the OCM API served, ManagedClusters are listed and watched into the registry;
    discovery failures are retried with backoff first."""
    clock, hub, registry = Clock(), FakeHub(), SecretRegistry(GROUP)
    hub.responses.append(errors.ServiceUnavailable("down"))
    source = managed_source(clock, hub, registry)
    source.startService()
    assert source.served is None
    hub.responses.append({"resources": [{"name": "managedclusters"}]})
    mc = {
        "metadata": {"name": "m1", "resourceVersion": "3"},
        "spec": {"managedClusterClientConfigs": [{"url": "https://m1"}]},
    }
    hub.responses.append({"metadata": {"resourceVersion": "3"}, "items": [mc]})
    clock.advance(1.0)
    assert source.served is True
    assert hub.lists[-1]["path"] == "/apis/cluster.open-cluster-management.io/v1/managedclusters"
    assert [m["metadata"]["name"] for m in registry.managed_clusters()] == ["m1"]
    hub.current["on_event"]({"type": "DELETED", "object": mc})
    assert registry.managed_clusters() == []
    source.stopService()
    assert clock.getDelayedCalls() == []
