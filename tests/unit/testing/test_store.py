"""The object store: CRUD rules, one resourceVersion counter, history and watch fan-out."""

from __future__ import annotations

import base64

import pytest

from clustergateway.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Gone,
    NotFound,
    UnprocessableEntity,
)
from clustergateway.testing.selectors import parse_label_selector
from clustergateway.testing.store import ObjectStore


@pytest.fixture
def store():
    s = ObjectStore()
    s.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    return s


def _cm(name, **extra):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra}


def test_create_fills_server_fields(store):
    """uid, creationTimestamp and resourceVersion are set; the input is not mutated."""
    body = _cm("a", data={"k": "v"})
    cm = store.types.resolve("configmaps")
    created = store.create(cm, "default", body)
    meta = created["metadata"]
    assert meta["namespace"] == "default"
    assert meta["uid"] and meta["creationTimestamp"]
    assert int(meta["resourceVersion"]) == store.revision
    assert "uid" not in body["metadata"]


def test_one_counter_for_all_types(store):
    """resourceVersions from different resources are one increasing sequence."""
    first = store.put(_cm("a"))
    second = store.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
    third = store.put(_cm("a", data={"x": "y"}))
    versions = [int(o["metadata"]["resourceVersion"]) for o in (first, second, third)]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_create_errors(store):
    """Duplicates, missing namespaces, bad names and mismatched kinds are refused."""
    cm = store.types.resolve("configmaps")
    store.create(cm, "default", _cm("a"))
    with pytest.raises(AlreadyExists):
        store.create(cm, "default", _cm("a"))
    with pytest.raises(NotFound):
        store.create(cm, "missing", _cm("b"))
    with pytest.raises(UnprocessableEntity):
        store.create(cm, "default", _cm("Not_Valid"))
    with pytest.raises(UnprocessableEntity):
        store.create(cm, "default", {"metadata": {}})
    with pytest.raises(BadRequest):
        store.create(
            cm, "default", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}
        )
    with pytest.raises(BadRequest):
        store.create(cm, "default", {"metadata": {"name": "x", "namespace": "other"}})
    with pytest.raises(UnprocessableEntity):
        store.create(cm, "default", _cm("x", data={"k": 1}))


def test_generate_name(store):
    """generateName gets a random suffix."""
    created = store.create(
        store.types.resolve("configmaps"), "default", {"metadata": {"generateName": "job-"}}
    )
    assert created["metadata"]["name"].startswith("job-")
    assert len(created["metadata"]["name"]) == len("job-") + 5


def test_dry_run_changes_nothing(store):
    """dry_run returns the would-be object and leaves version and contents alone."""
    cm = store.types.resolve("configmaps")
    before = store.revision
    answer = store.create(cm, "default", _cm("a"), dry_run=True)
    assert answer["metadata"]["name"] == "a"
    assert store.revision == before
    assert not store.exists(cm, "default", "a")


def test_update_conflict_and_identity(store):
    """A stale resourceVersion is a Conflict; uid and creationTimestamp survive updates."""
    cm = store.types.resolve("configmaps")
    created = store.create(cm, "default", _cm("a"))
    update = dict(created, data={"k": "v"})
    updated = store.update(cm, "default", "a", update)
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(Conflict):
        store.update(cm, "default", "a", update)
    with pytest.raises(BadRequest):
        store.update(cm, "default", "a", _cm("b"))


def test_unchanged_update_keeps_version(store):
    """Writing identical content does not bump the resourceVersion or emit an event."""
    cm = store.types.resolve("configmaps")
    created = store.create(cm, "default", _cm("a", data={"k": "v"}))
    events = []
    store.subscribe(cm, events.append)
    again = store.update(cm, "default", "a", _cm("a", data={"k": "v"}))
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert events == []


def test_status_subresource(store):
    """Updates of the main resource keep status; the status subresource changes only status."""
    pods = store.types.resolve("pods")
    pod = store.create(
        pods, "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    )
    assert pod["status"]["phase"] == "Running"
    changed = dict(
        pod, status={"phase": "Failed"}, spec={"containers": [{"name": "c", "image": "x"}]}
    )
    kept = store.update(pods, "default", "p", changed)
    assert kept["status"]["phase"] == "Running"
    changed["metadata"] = {"name": "p"}  # no resourceVersion: last write wins
    status_only = store.update(pods, "default", "p", changed, subresource="status")
    assert status_only["status"] == {"phase": "Failed"}
    assert status_only["spec"]["containers"][0]["image"] == "x"


def test_secret_normalization(store):
    """stringData folds into base64 data; type defaults to Opaque; bad base64 is refused."""
    secrets = store.types.resolve("secrets")
    s = store.create(secrets, "default", {"metadata": {"name": "s"}, "stringData": {"a": "b"}})
    assert s["data"] == {"a": base64.b64encode(b"b").decode()}
    assert s["type"] == "Opaque"
    assert "stringData" not in s
    with pytest.raises(BadRequest):
        store.create(secrets, "default", {"metadata": {"name": "t"}, "data": {"a": "%%%"}})


def test_delete_with_preconditions_and_namespace_cascade(store):
    """Preconditions guard deletes; deleting a namespace deletes what is in it."""
    cm = store.types.resolve("configmaps")
    created = store.create(cm, "default", _cm("a"))
    with pytest.raises(Conflict):
        store.delete(cm, "default", "a", preconditions={"uid": "other"})
    store.delete("namespaces", None, "default")
    assert not store.exists(cm, "default", "a")
    assert store.get("configmaps", "default", "a") is None
    with pytest.raises(NotFound):
        store.delete(cm, "default", "a")
    assert created["metadata"]["name"] == "a"


def test_list_selectors_and_pages(store):
    """Lists filter by label and page with continue tokens over key order."""
    cm = store.types.resolve("configmaps")
    store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    for i in range(5):
        store.put(_cm(f"c{i}", metadata={"name": f"c{i}", "labels": {"even": str(i % 2 == 0)}}))
    store.put(dict(_cm("z"), metadata={"name": "z", "namespace": "other"}))
    assert len(store.list(cm).items) == 6
    assert len(store.list(cm, "default").items) == 5
    even = store.list(cm, labels=parse_label_selector("even=True"))
    assert [o["metadata"]["name"] for o in even.items] == ["c0", "c2", "c4"]
    page1 = store.list(cm, "default", limit=2)
    assert page1.remaining == 3 and page1.continue_token
    page2 = store.list(cm, "default", limit=2, continue_token=page1.continue_token)
    page3 = store.list(cm, "default", limit=2, continue_token=page2.continue_token)
    names = [o["metadata"]["name"] for p in (page1, page2, page3) for o in p.items]
    assert names == ["c0", "c1", "c2", "c3", "c4"]
    assert page3.continue_token == ""
    assert page2.resource_version == page1.resource_version
    with pytest.raises(BadRequest):
        store.list(cm, continue_token="not-a-token")


def test_history_window_and_gone(store):
    """Events after a version are replayed; versions before the window are Gone."""
    store.history_size = 3
    cm = store.types.resolve("configmaps")
    start = store.revision
    for i in range(5):
        store.put(_cm(f"c{i}"))
    with pytest.raises(Gone):
        store.events_since(cm, start)
    recent = store.events_since(cm, store.revision - 2)
    assert [e.object["metadata"]["name"] for e in recent] == ["c3", "c4"]
    assert store.compacted_revision == store.revision - 3


def test_subscribers_get_events_with_previous_state(store):
    """Subscribers see ADDED/MODIFIED/DELETED synchronously; MODIFIED carries the old object."""
    cm = store.types.resolve("configmaps")
    events = []
    sub = store.subscribe(cm, events.append)
    store.put(_cm("a", data={"v": "1"}))
    store.put(_cm("a", data={"v": "2"}))
    store.delete(cm, "default", "a")
    sub.cancel()
    store.put(_cm("b"))
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1].previous["data"] == {"v": "1"}
    assert int(events[2].object["metadata"]["resourceVersion"]) > int(
        events[1].object["metadata"]["resourceVersion"]
    )
    assert store.watcher_count() == 0


def test_put_creates_missing_namespace_and_copies(store):
    """put creates the namespace an object needs and hands out copies."""
    stored = store.put(dict(_cm("a"), metadata={"name": "a", "namespace": "fresh"}))
    stored["data"] = {"mutated": "yes"}
    assert store.get("v1/Namespace", None, "fresh") is not None
    assert "data" not in store.get("ConfigMap", "fresh", "a")
    assert store.remove("cm", "fresh", "a") is True
    assert store.remove("cm", "fresh", "a") is False
    with pytest.raises(KeyError):
        store.put({"apiVersion": "v9", "kind": "Nope", "metadata": {"name": "x"}})


def test_generation_counts_spec_changes_only(store):
    """Kinds with a generation start at 1, count spec changes, and ignore status writes
    and metadata-only changes (what the addon-manager's generation label follows)."""
    cgc = {
        "apiVersion": "proxy.open-cluster-management.io/v1alpha1",
        "kind": "ClusterGatewayConfiguration",
        "metadata": {"name": "cluster-gateway"},
        "spec": {"image": "a"},
    }
    assert store.put(cgc)["metadata"]["generation"] == 1
    cgc["metadata"]["labels"] = {"x": "y"}
    assert store.put(cgc)["metadata"]["generation"] == 1
    cgc["spec"]["image"] = "b"
    assert store.put(cgc)["metadata"]["generation"] == 2
    rtype = store.types.resolve("clustergatewayconfigurations")
    current = store.get(rtype, None, "cluster-gateway")
    current["status"] = {"conditions": []}
    updated = store.update(rtype, "", "cluster-gateway", current, subresource="status")
    assert updated["metadata"]["generation"] == 2
    assert "generation" not in store.put(_cm("plain"))["metadata"]
