"""SecretRegistry: event semantics, lookups, error surfacing, logging once."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.logger import LogLevel, globalLogPublisher

from clustergateway import errors
from clustergateway.registry.features import FeatureGates
from clustergateway.registry.keys import PROXY_CONFIG_ANNOTATION
from clustergateway.registry.model import ClusterRegistry, RegistryEntry
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.store import SecretRegistry

GROUP = "cluster.core.oam.dev"
TOKEN = "tok-do-not-log"


def secret(name: str, rv: str | None = "1", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("token", TOKEN)
    return cluster_secret(name, resource_version=rv, **kwargs)


@pytest.fixture
def registry() -> SecretRegistry:
    return SecretRegistry(GROUP)


@pytest.fixture
def events(registry: SecretRegistry) -> list[tuple[str, str, int]]:
    seen: list[tuple[str, str, int]] = []
    registry.subscribe(lambda event, entry, rv: seen.append((event, entry.name, rv)))
    return seen


@pytest.fixture
def logged() -> list[dict[str, Any]]:
    from twisted.logger import formatEvent

    captured: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_namespace", "").startswith("clustergateway.registry"):
            captured.append({**event, "text": formatEvent(event)})

    globalLogPublisher.addObserver(observer)
    yield captured
    globalLogPublisher.removeObserver(observer)


def test_satisfies_protocol(registry: SecretRegistry) -> None:
    """SecretRegistry is what the API and proxy layers are typed against."""
    reader: ClusterRegistry = registry
    assert reader.resource_version == 0
    assert reader.synced is False


def test_replace_all_emits_only_real_changes(registry: SecretRegistry, events: list) -> None:
    """A full list emits ADDED for new, MODIFIED for changed, DELETED for gone, and
    nothing for Secrets that did not change (a resync is silent)."""
    registry.replace_all([secret("a"), secret("b")])
    assert events == [("ADDED", "a", 1), ("ADDED", "b", 2)]
    registry.replace_all([secret("a"), secret("b")])
    assert len(events) == 2
    registry.replace_all([secret("b", rv="2", endpoint="https://new"), secret("c")])
    assert events[2:] == [("DELETED", "a", 3), ("MODIFIED", "b", 4), ("ADDED", "c", 5)]
    assert registry.resource_version == 5
    assert [e.name for e in registry.entries()] == ["b", "c"]
    assert registry.entry("b").resource_version == 4


def test_content_change_without_resource_version(registry: SecretRegistry, events: list) -> None:
    """Secrets from files have no resourceVersion: content decides."""
    registry.replace_all([secret("a", rv=None)])
    registry.replace_all([secret("a", rv=None, labels={"x": "y"})])
    assert [e[0] for e in events] == ["ADDED", "MODIFIED"]


def test_unlabelled_secrets_are_not_clusters(registry: SecretRegistry, events: list) -> None:
    """Only Secrets with the credential-type label are clusters."""
    registry.replace_all([secret("a", credential_type=None)])
    assert events == [] and registry.entries() == []
    with pytest.raises(errors.NotFound):
        registry.get("a")


def test_apply_events(registry: SecretRegistry, events: list) -> None:
    """Watch events: ADDED/MODIFIED upsert, DELETED removes, others are ignored; a
    Secret losing its label leaves, one gaining it enters."""
    registry.apply("ADDED", secret("a", rv="1"))
    registry.apply("MODIFIED", secret("a", rv="2", labels={"x": "1"}))
    registry.apply("BOOKMARK", secret("a", rv="3"))
    registry.apply("MODIFIED", secret("a", rv="4", credential_type=None))
    registry.apply("MODIFIED", secret("a", rv="5"))
    registry.apply("DELETED", secret("a", rv="6"))
    registry.apply("DELETED", secret("zzz", rv="7"))
    assert events == [
        ("ADDED", "a", 1),
        ("MODIFIED", "a", 2),
        ("DELETED", "a", 3),
        ("ADDED", "a", 4),
        ("DELETED", "a", 5),
    ]


def test_apply_ignores_stale_and_duplicate_events(registry: SecretRegistry, events: list) -> None:
    """An event older than the held version (integer resourceVersions) or identical to
    it is dropped; a full list is authoritative even when older."""
    registry.apply("ADDED", secret("a", rv="10"))
    registry.apply("MODIFIED", secret("a", rv="9", endpoint="https://old"))
    registry.apply("MODIFIED", secret("a", rv="10"))
    assert len(events) == 1
    registry.replace_all([secret("a", rv="9", endpoint="https://old")])
    assert events[-1][0] == "MODIFIED"
    assert registry.get("a").endpoint.address == "https://old"


def test_get(registry: SecretRegistry) -> None:
    """``get``: the gateway; 404 for unknown names; 503 naming Secret and cause when the
    Secret cannot be converted (quirk 1 fixed)."""
    registry.replace_all([secret("good"), secret("bad", endpoint=None)])
    assert registry.get("good").credential.token == TOKEN
    with pytest.raises(errors.NotFound) as missing:
        registry.get("nope")
    assert missing.value.message == 'clustergateways.cluster.core.oam.dev "nope" not found'
    with pytest.raises(errors.ServiceUnavailable) as bad:
        registry.get("bad")
    assert bad.value.message == (
        'clustergateways.cluster.core.oam.dev "bad" is unavailable: secret vela-system/bad: '
        'missing data key "endpoint" (the cluster\'s apiserver URL)'
    )
    assert bad.value.to_dict()["details"]["name"] == "bad"
    assert [g.name for g in registry.gateways()] == ["good"]
    entry = registry.entry("bad")
    assert isinstance(entry, RegistryEntry) and entry.gateway is None and entry.error


def test_broken_secret_logged_once(registry: SecretRegistry, logged: list) -> None:
    """A malformed Secret is logged once per version, without its data, and a fix
    clears it."""
    broken = secret("bad", endpoint=None)
    for _ in range(3):
        registry.replace_all([broken])
        registry.apply("MODIFIED", broken)
    assert len(logged) == 1
    assert (
        "vela-system/bad" in logged[0]["text"]
        and 'missing data key "endpoint"' in logged[0]["text"]
    )
    assert TOKEN not in repr(logged[0])
    registry.apply("MODIFIED", secret("bad", rv="2", endpoint=None, labels={"x": "y"}))
    assert len(logged) == 2
    registry.apply("MODIFIED", secret("bad", rv="3"))
    registry.apply("MODIFIED", secret("bad", rv="4", endpoint=None))
    assert len(logged) == 3


def test_conversion_warning_logged(logged: list) -> None:
    """A proxy-config annotation that does not parse is ignored with one warning."""
    registry = SecretRegistry(GROUP, FeatureGates(client_identity_penetration=True))
    registry.replace_all([secret("a", annotations={PROXY_CONFIG_ANNOTATION: "[unclosed"})])
    registry.replace_all([secret("a", annotations={PROXY_CONFIG_ANNOTATION: "[unclosed"})])
    assert registry.get("a").proxy_config is None
    assert len(logged) == 1 and "ignored" in logged[0]["text"]


def test_duplicate_names(registry: SecretRegistry, logged: list) -> None:
    """Two Secrets with one name in a list (a directory holds namespaces): the first wins."""
    first = secret("a", namespace="ns1", endpoint="https://first")
    second = secret("a", namespace="ns2", endpoint="https://second")
    registry.replace_all([first, second])
    registry.replace_all([first, second])
    assert registry.get("a").endpoint.address == "https://first"
    assert len(logged) == 1 and "ns2/a" in logged[0]["text"]


def test_synced(registry: SecretRegistry) -> None:
    """``synced`` and ``when_synced`` turn true with the first full list, not with events."""
    waiter = registry.when_synced()
    registry.apply("ADDED", secret("a"))
    assert not registry.synced and not waiter.called
    registry.replace_all([])
    assert registry.synced and waiter.called
    assert registry.when_synced().called


def test_listener_failure_isolated(registry: SecretRegistry, logged: list) -> None:
    """A failing listener is logged and does not stop the others or the registry."""
    seen: list[str] = []

    def bad(*_: object) -> None:
        raise RuntimeError("boom")

    registry.subscribe(bad)
    unsubscribe = registry.subscribe(lambda event, entry, rv: seen.append(event))
    registry.replace_all([secret("a")])
    assert seen == ["ADDED"] and registry.get("a")
    assert any(e.get("log_level") == LogLevel.critical for e in logged)
    unsubscribe()
    unsubscribe()
    registry.replace_all([])
    assert seen == ["ADDED"]


def test_conversion_bug_does_not_crash(registry: SecretRegistry, monkeypatch, logged) -> None:
    """An unexpected exception in conversion becomes an entry error, never a crash."""
    import clustergateway.registry.store as store

    def explode(*args: object, **kwargs: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(store, "convert_secret_with_warnings", explode)
    registry.replace_all([secret("a")])
    with pytest.raises(errors.ServiceUnavailable, match="internal error"):
        registry.get("a")


def test_managed_clusters_and_virtual_clusters(registry: SecretRegistry) -> None:
    """ManagedClusters share the version counter; VirtualCluster lookups combine both."""
    mc_events: list[tuple[str, str, int]] = []
    registry.subscribe_managed_clusters(
        lambda e, mc, rv: mc_events.append((e, mc["metadata"]["name"], rv))
    )
    mc = {
        "metadata": {"name": "m1", "resourceVersion": "1"},
        "spec": {"hubAcceptsClient": True, "managedClusterClientConfigs": [{"url": "https://m"}]},
    }
    registry.replace_all([secret("c1", creation_timestamp="2024-01-01T00:00:00Z")])
    registry.replace_managed_clusters([mc])
    registry.replace_managed_clusters([mc])
    assert mc_events == [("ADDED", "m1", 2)]
    assert [vc.name for vc in registry.virtual_clusters()] == ["local", "c1", "m1"]
    assert registry.virtual_cluster("m1").endpoint == "https://m"
    assert registry.virtual_cluster("local").credential_type == "Internal"
    with pytest.raises(errors.NotFound):
        registry.virtual_cluster("zzz")
    registry.apply_managed_cluster("DELETED", mc)
    assert mc_events[-1] == ("DELETED", "m1", 3)
    assert registry.managed_clusters() == []


def test_open_circuit_is_a_health_source(registry: SecretRegistry, events: list) -> None:
    """An open circuit makes a healthy cluster unhealthy with ``CircuitOpen: <cause>``
    (MODIFIED for watchers), never hides another source's reason, and closing it restores
    the cluster; it is never taken for recorded health."""
    registry.replace_all([secret("c1")])
    assert registry.get("c1").healthy
    registry.set_circuit("c1", "dial tcp: connection refused")
    gateway = registry.get("c1")
    assert (gateway.healthy, gateway.healthy_reason, gateway.circuit_open) == (
        False,
        "CircuitOpen: dial tcp: connection refused",
        True,
    )
    assert events[-1][:2] == ("MODIFIED", "c1")
    count = len(events)
    registry.set_circuit("c1", "dial tcp: connection refused")
    assert len(events) == count  # no change, no event
    assert registry.recorded_health("c1") == (True, "")
    registry.record_health("c1", False, "ProbeFailed")
    gateway = registry.get("c1")
    assert (gateway.healthy_reason, gateway.circuit_open) == ("ProbeFailed", False)
    registry.record_health("c1", True, "")
    registry.set_circuit("c1", None)
    gateway = registry.get("c1")
    assert (gateway.healthy, gateway.healthy_reason, gateway.circuit_open) == (True, "", False)
    registry.set_circuit("c1", "refused")
    assert registry.with_recorded_health("c1", True, "").healthy_reason == "CircuitOpen: refused"
