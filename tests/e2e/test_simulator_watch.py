"""Watch streams of the simulated cluster, read off the wire."""

from __future__ import annotations

import json

import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.fixtures.simulator import authorized_request, raw_exchange


def _events(response: bytes) -> tuple[list[dict], bool]:
    """Decode a chunked watch response: the events, and whether it ended cleanly."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    assert b"transfer-encoding: chunked" in head.lower()
    data = b""
    clean = False
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            clean = True
            break
        data += rest[:size]
        body = rest[size + 2 :]
    return [json.loads(line) for line in data.splitlines() if line], clean


async def _until_watching(sim, count: int = 1) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(200):
        if len(sim.watches) >= count:
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("the watch never started")


def _put_cm(sim, name: str, labels: dict[str, str]) -> None:
    sim.store.put(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}
    )


@pytest_twisted.ensureDeferred
async def test_initial_events_end_bookmark_and_timeout(sim):
    """sendInitialEvents replays state, marks its end with a bookmark, and timeoutSeconds
    ends the stream with a terminal chunk."""
    _put_cm(sim, "one", {})
    _put_cm(sim, "two", {})
    path = (
        "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true"
        "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
    )
    events, clean = _events(
        await deferToThread(raw_exchange, sim, authorized_request(sim, "GET", path))
    )
    assert clean
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events[:3]] == [
        ("ADDED", "one"),
        ("ADDED", "two"),
        ("BOOKMARK", None),
    ]
    bookmark = events[2]["object"]
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["metadata"]["resourceVersion"] == str(sim.store.revision)


@pytest_twisted.ensureDeferred
async def test_periodic_bookmarks(sim):
    """allowWatchBookmarks brings BOOKMARK events carrying the current resourceVersion."""
    sim.bookmark_interval = 0.2
    rv = sim.store.revision
    path = (
        f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"
        "&allowWatchBookmarks=true&timeoutSeconds=1"
    )
    events, clean = _events(
        await deferToThread(raw_exchange, sim, authorized_request(sim, "GET", path))
    )
    assert clean
    assert len(events) >= 2
    assert {e["type"] for e in events} == {"BOOKMARK"}
    assert all(e["object"]["metadata"]["resourceVersion"] == str(rv) for e in events)


@pytest_twisted.ensureDeferred
async def test_selector_transitions_and_legacy_path(sim):
    """Objects entering or leaving a label selector arrive as ADDED/DELETED; the legacy
    /watch/ path streams the same events."""
    rv = sim.store.revision
    selected = authorized_request(
        sim,
        "GET",
        f"/api/v1/namespaces/default/configmaps?watch=1&labelSelector=app%3Dweb"
        f"&resourceVersion={rv}&timeoutSeconds=2",
    )
    legacy = authorized_request(
        sim,
        "GET",
        f"/api/v1/watch/namespaces/default/configmaps/moving?resourceVersion={rv}&timeoutSeconds=2",
    )
    first = deferToThread(raw_exchange, sim, selected)
    second = deferToThread(raw_exchange, sim, legacy)
    await _until_watching(sim, 2)
    _put_cm(sim, "moving", {"app": "db"})
    _put_cm(sim, "moving", {"app": "web"})
    _put_cm(sim, "moving", {"app": "web", "v": "2"})
    _put_cm(sim, "moving", {"app": "db"})
    _put_cm(sim, "other", {"app": "web"})
    events, _ = _events(await first)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "moving"),
        ("MODIFIED", "moving"),
        ("DELETED", "moving"),
        ("ADDED", "other"),
    ]
    legacy_events, _ = _events(await second)
    assert [e["type"] for e in legacy_events] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED"]


@pytest_twisted.ensureDeferred
async def test_too_old_resource_version_is_an_error_event(sim):
    """A resourceVersion older than the history window gets an ERROR event with 410."""
    sim.store.history_size = 2
    for i in range(5):
        _put_cm(sim, f"c{i}", {})
    path = "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1"
    events, clean = _events(
        await deferToThread(raw_exchange, sim, authorized_request(sim, "GET", path))
    )
    assert clean
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")


@pytest_twisted.ensureDeferred
async def test_table_watch_for_kubectl(sim):
    """With kubectl's Table Accept header each event object is a one-row Table."""
    rv = sim.store.revision
    request = authorized_request(
        sim,
        "GET",
        f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&timeoutSeconds=1",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    watching = deferToThread(raw_exchange, sim, request)
    await _until_watching(sim)
    sim.store.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "tabled"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }
    )
    events, _ = _events(await watching)
    assert events[0]["type"] == "ADDED"
    table = events[0]["object"]
    assert table["kind"] == "Table"
    assert table["rows"][0]["cells"][:3] == ["tabled", "1/1", "Running"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


@pytest_twisted.ensureDeferred
async def test_watch_without_timeout_stays_open(sim):
    """timeoutSeconds=0 (client-go's "server default") and no timeout keep the watch open
    with no timer; only the server going away ends it."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    path = "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=0"
    open_watch = deferToThread(raw_exchange, sim, authorized_request(sim, "GET", path))
    await _until_watching(sim)
    (stream,) = sim.watches
    assert stream._timeout is None
    await deferLater(reactor, 0.3, lambda: None)
    assert not open_watch.called
    await sim.stop()
    await open_watch
