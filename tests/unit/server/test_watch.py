"""Watch streams: initial state, live changes, resume, expiry, bookmarks, timeouts, cleanup."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clustergateway import errors
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.store import SecretRegistry
from clustergateway.server.watch import ChangeLog, WatchOptions
from tests.unit.server.conftest import BASE, Served, token_secret
from tests.unit.server.memhttp import connect, parse, raw_request

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


class Watch:
    """One open watch on an in-memory connection."""

    def __init__(
        self, served: Served, query: str, resource: str = "clustergateways", **headers: str
    ) -> None:
        self.protocol, self.transport = connect(served.site)
        self.protocol.dataReceived(raw_request("GET", f"{BASE}/{resource}?{query}", headers))

    def response(self) -> Any:
        return parse(self.transport.value())

    def events(self) -> list[dict[str, Any]]:
        body = self.response().body
        return [json.loads(line) for line in body.splitlines() if line]

    def summary(self) -> list[tuple[str, str]]:
        out = []
        for event in self.events():
            obj = event["object"]
            name = obj.get("metadata", {}).get("name") or obj.get("metadata", {}).get(
                "resourceVersion"
            )
            if obj.get("kind") == "Table":
                name = (
                    obj["rows"][0]["cells"][0]
                    if obj["rows"]
                    else obj["metadata"]["resourceVersion"]
                )
            out.append((event["type"], name))
        return out

    def close(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone()))


def watch_timers(served: Served) -> list[Any]:
    """Pending timers other than the HTTP/1.1 keep-alive idle timeout of the connection."""
    return [
        c for c in served.clock.getDelayedCalls() if c.active() and "TimeoutMixin" not in str(c)
    ]


def test_initial_state_then_changes(served: Served) -> None:
    """No resourceVersion: ADDED for what exists, then ADDED/MODIFIED/DELETED as Secrets change."""
    served.registry.replace_all([token_secret("a")])
    watch = Watch(served, "watch=true")
    response = watch.response()
    assert response.code == 200
    assert response.header("transfer-encoding") == "chunked"
    assert response.header("content-type") == "application/json"
    served.registry.apply("ADDED", token_secret("b"))
    served.registry.apply("MODIFIED", token_secret("a", labels={"x": "y"}))
    served.registry.apply("DELETED", token_secret("b"))
    assert watch.summary() == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    rvs = [e["object"]["metadata"]["resourceVersion"] for e in watch.events()]
    assert rvs[1:] == ["2", "3", "4"]


def test_unconvertible_leaves_and_comes_back(served: Served) -> None:
    """A Secret that becomes unconvertible is DELETED from the watch and ADDED when fixed."""
    served.registry.replace_all([token_secret("a")])
    watch = Watch(served, "watch=1")
    served.registry.apply("MODIFIED", token_secret("a", endpoint=None))
    served.registry.apply("MODIFIED", token_secret("a", endpoint="https://fixed:6443"))
    assert watch.summary() == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "a")]
    assert watch.events()[2]["object"]["spec"]["access"]["endpoint"]["const"]["address"] == (
        "https://fixed:6443"
    )


def test_label_selector_transitions(served: Served) -> None:
    """Starting or stopping to match the selector is ADDED / DELETED for that watch."""
    served.registry.replace_all([token_secret("a")])
    watch = Watch(served, "watch=true&labelSelector=env%3Dprod")
    served.registry.apply("MODIFIED", token_secret("a", labels={"env": "prod"}))
    served.registry.apply("MODIFIED", token_secret("a", labels={"env": "dev"}))
    served.registry.apply("ADDED", token_secret("b", labels={"env": "dev"}))
    assert watch.summary() == [("ADDED", "a"), ("DELETED", "a")]


def test_resume_from_resource_version(served: Served) -> None:
    """A watch from a list's resourceVersion sees exactly what changed after it."""
    served.registry.replace_all([token_secret("a")])
    listed = served.get(f"{BASE}/clustergateways").json()["metadata"]["resourceVersion"]
    served.registry.apply("ADDED", token_secret("b"))
    served.registry.apply("DELETED", token_secret("a"))
    watch = Watch(served, f"watch=true&resourceVersion={listed}")
    assert watch.summary() == [("ADDED", "b"), ("DELETED", "a")]
    current = served.registry.resource_version
    quiet = Watch(served, f"watch=true&resourceVersion={current}")
    assert quiet.response().code == 200
    assert quiet.events() == []


def test_too_old_resource_version_is_410(make_served) -> None:
    """A resourceVersion older than the kept history (or from the future) ends with ERROR 410."""
    served = make_served()
    served.changes.capacity = 2
    served.registry.replace_all([token_secret("a")])
    for name in ("b", "c", "d"):
        served.registry.apply("ADDED", token_secret(name))
    watch = Watch(served, "watch=true&resourceVersion=1")
    events = watch.events()
    assert [e["type"] for e in events] == ["ERROR"]
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"
    assert watch.response().complete
    future = Watch(served, "watch=true&resourceVersion=999")
    assert future.events()[0]["object"]["code"] == 410


def test_bookmarks_and_timeout(served: Served) -> None:
    """allowWatchBookmarks gets periodic BOOKMARKs; timeoutSeconds ends the stream cleanly."""
    served.registry.replace_all([token_secret("a")])
    watch = Watch(served, "watch=true&allowWatchBookmarks=true&timeoutSeconds=150")
    served.clock.advance(61)
    assert watch.summary()[-1] == ("BOOKMARK", str(served.registry.resource_version))
    assert watch.events()[-1]["object"]["kind"] == "ClusterGateway"
    served.clock.advance(90)
    response = watch.response()
    assert response.complete
    assert served.changes.followers == 0
    assert watch_timers(served) == []


def test_send_initial_events_ends_with_marked_bookmark(served: Served) -> None:
    """sendInitialEvents: the initial ADDED events then a bookmark annotated initial-events-end."""
    served.registry.replace_all([token_secret("a")])
    watch = Watch(
        served,
        "watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
        "&resourceVersionMatch=NotOlderThan&resourceVersion=",
    )
    events = watch.events()
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_client_disconnect_stops_following(served: Served) -> None:
    """When the client goes away the watch unsubscribes and cancels its timers."""
    served.registry.replace_all([])
    watch = Watch(served, "watch=true&allowWatchBookmarks=true")
    assert served.changes.followers == 1
    assert len(watch_timers(served)) == 2  # the watch's end and its next bookmark
    watch.close()
    assert served.changes.followers == 0
    assert watch_timers(served) == []
    served.registry.apply("ADDED", token_secret("late"))


def test_table_watch(served: Served) -> None:
    """kubectl get -w: every event object is a Table with the columns and one row."""
    served.registry.replace_all([token_secret("a")])
    watch = Watch(served, "watch=true", accept=TABLE)
    assert watch.response().header("content-type") == "application/json;as=Table;v=v1;g=meta.k8s.io"
    served.registry.apply("DELETED", token_secret("a"))
    events = watch.events()
    assert [(e["type"], e["object"]["rows"][0]["cells"][0]) for e in events] == [
        ("ADDED", "a"),
        ("DELETED", "a"),
    ]
    assert events[0]["object"]["columnDefinitions"][0]["name"] == "Name"


def test_virtual_cluster_watch(served: Served) -> None:
    """virtualclusters: local first, then Secrets as VirtualClusters; a field selector on name."""
    served.registry.replace_all([token_secret("a")])
    watch = Watch(served, "watch=true", resource="virtualclusters")
    served.registry.apply("ADDED", token_secret("b"))
    served.registry.apply("MODIFIED", token_secret("b", labels={"k": "v"}))
    assert watch.summary() == [
        ("ADDED", "local"),
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("MODIFIED", "b"),
    ]
    assert watch.events()[-1]["object"]["metadata"]["labels"]["k"] == "v"
    named = Watch(served, "watch=true&fieldSelector=metadata.name%3Da", resource="virtualclusters")
    assert named.summary() == [("ADDED", "a")]


def test_legacy_watch_path(served: Served) -> None:
    """/watch/clustergateways/<name> watches that one object."""
    served.registry.replace_all([token_secret("a"), token_secret("b")])
    protocol, transport = connect(served.site)
    protocol.dataReceived(raw_request("GET", f"{BASE}/watch/clustergateways/b"))
    events = [json.loads(line) for line in parse(transport.value()).body.splitlines()]
    assert [e["object"]["metadata"]["name"] for e in events] == ["b"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("watch=true&resourceVersion=abc", 400),
        ("watch=true&timeoutSeconds=x", 400),
        ("watch=true&sendInitialEvents=true", 422),
    ],
)
def test_bad_watch_parameters(served: Served, query: str, code: int) -> None:
    """Invalid parameters are answered with a Status before any stream starts."""
    served.registry.replace_all([])
    response = served.get(f"{BASE}/clustergateways?{query}")
    assert response.code == code
    assert response.json()["kind"] == "Status"


def test_yaml_watch_not_acceptable(served: Served) -> None:
    """Watches stream JSON (or Tables); YAML-only clients get 406."""
    served.registry.replace_all([])
    assert served.get(f"{BASE}/clustergateways?watch=true", accept="application/yaml").code == 406


def test_change_log_horizon() -> None:
    """ChangeLog keeps the last N changes with before/after state; older resumes are refused."""
    registry = SecretRegistry("cluster.core.oam.dev")
    log = ChangeLog.follow(registry, capacity=2)
    registry.replace_all([cluster_secret("a", token="t")])
    registry.apply("MODIFIED", cluster_secret("a", token="t2"))
    registry.apply("DELETED", cluster_secret("a", token="t2"))
    assert log.resource_version == 3
    assert log.changes_since(0) is None
    changes = log.changes_since(1)
    assert changes is not None
    assert [
        (c.resource_version, c.before.entry is None, c.after.entry is None) for c in changes
    ] == [
        (2, False, False),
        (3, False, True),
    ]
    assert log.snapshot() == (3, {})
    assert log.changes_since(3) == []
    assert log.changes_since(4) is None
    log.close()
    registry.apply("ADDED", cluster_secret("b", token="t"))
    assert log.resource_version == 3


def test_watch_options_parse() -> None:
    """resourceVersion "0"/"" mean "from now with the current state"; bad values are 400."""
    assert WatchOptions.parse("0", None, False, None) == WatchOptions()
    assert WatchOptions.parse("12", "30", True, "false").resource_version == 12
    assert WatchOptions.parse(None, "0", False, None).timeout is None
    with pytest.raises(errors.BadRequest):
        WatchOptions.parse("-1", None, False, None)


def test_virtual_cluster_watch_follows_managed_clusters(served: Served) -> None:
    """OCM ManagedClusters appear in the virtualclusters watch; a valid Secret takes precedence."""
    served.registry.replace_all([])
    watch = Watch(
        served,
        "watch=true&labelSelector=cluster.core.oam.dev%2Fcontrol-plane%3Dfalse",
        resource="virtualclusters",
    )
    managed = {
        "apiVersion": "cluster.open-cluster-management.io/v1",
        "kind": "ManagedCluster",
        "metadata": {"name": "ocm-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "hubAcceptsClient": True,
            "managedClusterClientConfigs": [{"url": "https://m:6443"}],
        },
    }
    served.registry.apply_managed_cluster("ADDED", managed)
    served.registry.apply("ADDED", token_secret("ocm-1"))
    served.registry.apply_managed_cluster("DELETED", managed)
    events = watch.events()
    assert [(e["type"], e["object"]["spec"]["credential-type"]) for e in events] == [
        ("ADDED", "ManagedCluster"),
        ("MODIFIED", "ServiceAccountToken"),
    ]
    served.registry.apply("MODIFIED", token_secret("ocm-1", token="rotated"))
    assert len(watch.events()) == 2  # the VirtualCluster did not change
