"""OCM ManagedClusters: endpoint, CA and health merged into the Secret's cluster."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from twisted.logger import LogLevel, globalLogPublisher

from clustergateway import errors
from clustergateway.certs import KeyPair
from clustergateway.registry.ocm import (
    ManagedClusterError,
    OCMHealth,
    managed_cluster_endpoint,
    managed_cluster_health,
)
from clustergateway.registry.samples import cluster_secret, managed_cluster
from clustergateway.registry.store import SecretRegistry

GROUP = "cluster.core.oam.dev"
TOKEN = "tok-do-not-log"
HEALTH = "status.cluster.core.oam.dev/healthy"
REASON = "status.cluster.core.oam.dev/healthy-reason"


def ocm_secret(name: str, rv: str = "1", **kwargs: Any) -> dict[str, Any]:
    """What OCM's addon-manager copies: token and ca.crt, no endpoint."""
    kwargs.setdefault("endpoint", None)
    kwargs.setdefault("ca", b"")
    return cluster_secret(name, token=TOKEN, resource_version=rv, **kwargs)


@pytest.fixture
def registry() -> SecretRegistry:
    return SecretRegistry(GROUP, ocm_integration=True)


@pytest.fixture
def events(registry: SecretRegistry) -> list[tuple[str, str, str | None]]:
    seen: list[tuple[str, str, str | None]] = []
    registry.subscribe(
        lambda event, entry, _rv: seen.append(
            (event, entry.name, entry.gateway.endpoint.address if entry.gateway else entry.error)
        )
    )
    return seen


@pytest.fixture
def warnings() -> Any:
    from twisted.logger import formatEvent

    seen: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.warn, LogLevel.error):
            seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


# -- pure functions ---------------------------------------------------------------------


def test_endpoint_with_ca(pki: dict[str, KeyPair]) -> None:
    """The first client config's URL and caBundle (base64 PEM) are the endpoint."""
    mc = managed_cluster("c1", url="https://c1.example:6443", ca=pki["ca"].cert_pem)
    assert managed_cluster_endpoint(mc) == ("https://c1.example:6443", pki["ca"].cert_pem)
    assert managed_cluster_endpoint(managed_cluster("c1", url="c1:6443")) == (
        "https://c1:6443",
        None,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"managedClusterClientConfigs": None}, 'ManagedCluster "c1" has no spec.managed'),
        ({"managedClusterClientConfigs": []}, 'ManagedCluster "c1" has no spec.managed'),
        ({"managedClusterClientConfigs": "x"}, "spec.managedClusterClientConfigs is not a list"),
        ({"managedClusterClientConfigs": ["x"]}, "[0] is not an object"),
        ({"managedClusterClientConfigs": [{"url": ""}]}, "[0].url is empty"),
        (
            {"managedClusterClientConfigs": [{"url": "ftp://c1"}]},
            'spec.managedClusterClientConfigs[0].url has scheme "ftp"',
        ),
        (
            {"managedClusterClientConfigs": [{"url": "https://c1:99999"}]},
            "spec.managedClusterClientConfigs[0].url is not a valid URL",
        ),
        (
            {"managedClusterClientConfigs": [{"url": "https://c1", "caBundle": "%%%"}]},
            "[0].caBundle is not valid base64",
        ),
        (
            {
                "managedClusterClientConfigs": [
                    {"url": "https://c1", "caBundle": base64.b64encode(b"junk").decode()}
                ]
            },
            "[0].caBundle is not a PEM certificate bundle",
        ),
    ],
)
def test_endpoint_errors(change: dict[str, Any], message: str) -> None:
    """A ManagedCluster the endpoint cannot come from: the message names it and the field."""
    mc = managed_cluster("c1")
    mc["spec"].update(change)
    with pytest.raises(ManagedClusterError) as caught:
        managed_cluster_endpoint(mc)
    assert message in str(caught.value)
    assert str(caught.value).startswith('ManagedCluster "c1"')


def test_health_from_available_condition() -> None:
    """Available True → healthy; False/Unknown → unhealthy with reason and message;
    no condition → no say."""
    assert managed_cluster_health(managed_cluster("c1")) == OCMHealth(True)
    down = managed_cluster(
        "c1", available="Unknown", reason="ManagedClusterLeaseUpdateStopped", message="lost"
    )
    assert managed_cluster_health(down) == OCMHealth(
        False, 'ManagedCluster "c1" is not available: ManagedClusterLeaseUpdateStopped: lost'
    )
    bare = managed_cluster("c1", available="False", reason="Gone")
    assert managed_cluster_health(bare) == OCMHealth(
        False, 'ManagedCluster "c1" is not available: Gone'
    )
    assert managed_cluster_health(managed_cluster("c1", available=None)) is None
    no_status = managed_cluster("c1")
    del no_status["status"]
    assert managed_cluster_health(no_status) is None


def test_health_conditions_not_a_list() -> None:
    """A condition list that is not a list is an error naming it."""
    mc = managed_cluster("c1")
    mc["status"]["conditions"] = {"type": "ManagedClusterConditionAvailable"}
    with pytest.raises(ManagedClusterError, match="status.conditions is not a list"):
        managed_cluster_health(mc)


# -- the registry with --ocm-integration -------------------------------------------------


def test_secret_without_endpoint_takes_managed_cluster(
    registry: SecretRegistry, events: list[Any], pki: dict[str, KeyPair]
) -> None:
    """A token+CA Secret is unavailable until its ManagedCluster arrives, then served
    with the ManagedCluster's URL and CA; the change is a MODIFIED event."""
    registry.replace_all([ocm_secret("c1")])
    with pytest.raises(errors.ServiceUnavailable) as caught:
        registry.get("c1")
    assert 'missing data key "endpoint"' in caught.value.message
    assert 'there is no OCM ManagedCluster "c1" to take it from' in caught.value.message
    registry.replace_managed_clusters(
        [managed_cluster("c1", url="https://c1:6443", ca=pki["ca"].cert_pem, resource_version="5")]
    )
    gateway = registry.get("c1")
    assert (gateway.endpoint.address, gateway.endpoint.ca_bundle) == (
        "https://c1:6443",
        pki["ca"].cert_pem,
    )
    assert gateway.endpoint.insecure is False and gateway.healthy is True
    assert events[-1] == ("MODIFIED", "c1", "https://c1:6443")


def test_url_change_and_deletion(registry: SecretRegistry, events: list[Any]) -> None:
    """Moving the ManagedCluster's URL re-derives the cluster (MODIFIED, new address);
    deleting it leaves a Status naming the cause."""
    registry.replace_managed_clusters(
        [managed_cluster("c1", url="https://a:1", resource_version="1")]
    )
    registry.replace_all([ocm_secret("c1")])
    assert registry.get("c1").endpoint.address == "https://a:1"
    registry.apply_managed_cluster(
        "MODIFIED", managed_cluster("c1", url="https://b:2", resource_version="2")
    )
    assert events[-1] == ("MODIFIED", "c1", "https://b:2")
    assert registry.get("c1").endpoint.address == "https://b:2"
    count = len(events)
    registry.apply_managed_cluster(
        "MODIFIED", managed_cluster("c1", url="https://b:2", resource_version="3")
    )
    assert len(events) == count  # same endpoint and health: nothing for readers
    registry.apply_managed_cluster("DELETED", managed_cluster("c1", url="https://b:2"))
    assert events[-1][0] == "MODIFIED" and "no OCM ManagedCluster" in events[-1][2]
    with pytest.raises(errors.ServiceUnavailable, match='no OCM ManagedCluster "c1"'):
        registry.get("c1")


def test_hybrid_and_cluster_proxy(registry: SecretRegistry) -> None:
    """Secret-only clusters stay (Go's hybrid mode); ClusterProxy ignores the URL;
    a ManagedCluster's URL wins over the Secret's endpoint."""
    registry.replace_managed_clusters(
        [
            managed_cluster("tunnel", url="https://ignored"),
            managed_cluster("both", url="https://mc"),
        ]
    )
    registry.replace_all(
        [
            cluster_secret("plain", token=TOKEN, endpoint="https://plain:6443"),
            ocm_secret("tunnel", endpoint_type="ClusterProxy"),
            cluster_secret("both", token=TOKEN, endpoint="https://secret:6443"),
        ]
    )
    assert registry.get("plain").endpoint.address == "https://plain:6443"
    assert registry.get("tunnel").endpoint.type == "ClusterProxy"
    assert registry.get("tunnel").endpoint.address == ""
    assert registry.get("both").endpoint.address == "https://mc"


def test_without_integration_managed_clusters_are_ignored() -> None:
    """Without --ocm-integration the Secret alone decides (ManagedClusters feed only
    VirtualCluster)."""
    registry = SecretRegistry(GROUP)
    registry.replace_managed_clusters([managed_cluster("c1", url="https://mc", available="False")])
    registry.replace_all([cluster_secret("c1", token=TOKEN, endpoint="https://secret")])
    gateway = registry.get("c1")
    assert (gateway.endpoint.address, gateway.healthy) == ("https://secret", True)


def test_malformed_managed_cluster_is_contained(
    registry: SecretRegistry, warnings: list[str]
) -> None:
    """A bad URL or a condition list that is not a list is logged once, reported in
    that cluster's Status or health, and leaves the other clusters alone."""
    bad_url = managed_cluster("c1", url="https://c1:notaport", resource_version="1")
    bad_conditions = managed_cluster("c2", url="https://c2", resource_version="1")
    bad_conditions["status"]["conditions"] = "Available"
    registry.replace_managed_clusters(
        [bad_url, bad_conditions, managed_cluster("c3", url="https://c3")]
    )
    registry.replace_all([ocm_secret("c1"), ocm_secret("c2"), ocm_secret("c3")])
    registry.replace_all([ocm_secret("c1"), ocm_secret("c2"), ocm_secret("c3")])
    registry.replace_managed_clusters(
        [bad_url, bad_conditions, managed_cluster("c3", url="https://c3")]
    )
    with pytest.raises(errors.ServiceUnavailable) as caught:
        registry.get("c1")
    assert 'ManagedCluster "c1": spec.managedClusterClientConfigs[0].url' in caught.value.message
    c2 = registry.get("c2")
    assert c2.healthy is False
    assert c2.healthy_reason == 'ManagedCluster "c2": status.conditions is not a list'
    assert registry.get("c3").healthy is True
    assert sum("c1" in w and "url" in w for w in warnings) == 1
    assert sum("status.conditions is not a list" in w for w in warnings) == 1
    assert not any(TOKEN in w for w in warnings)


def test_ocm_health_and_precedence(registry: SecretRegistry, events: list[Any]) -> None:
    """Available=False makes the cluster unhealthy with OCM's reason; the Secret's
    unhealthy annotation keeps its own reason; both fine → healthy."""
    registry.replace_managed_clusters([managed_cluster("c1", url="https://c1")])
    registry.replace_all([ocm_secret("c1")])
    assert registry.get("c1").healthy is True
    registry.apply_managed_cluster(
        "MODIFIED",
        managed_cluster("c1", url="https://c1", available="False", reason="Lost", message="m"),
    )
    gateway = registry.get("c1")
    assert (gateway.healthy, gateway.healthy_reason) == (
        False,
        'ManagedCluster "c1" is not available: Lost: m',
    )
    assert events[-1][0] == "MODIFIED"
    annotated = ocm_secret("c1", rv="2", annotations={HEALTH: "false", REASON: "probe: refused"})
    registry.apply("MODIFIED", annotated)
    assert registry.get("c1").healthy_reason == "probe: refused"
    assert registry.recorded_health("c1") == (False, "probe: refused")
    # What a health PUT of "healthy" would show while OCM still says unavailable:
    shown = registry.with_recorded_health("c1", True, "")
    assert (shown.healthy, shown.healthy_reason) == (
        False,
        'ManagedCluster "c1" is not available: Lost: m',
    )
    registry.apply_managed_cluster("MODIFIED", managed_cluster("c1", url="https://c1"))
    registry.apply("MODIFIED", ocm_secret("c1", rv="3", annotations={HEALTH: "true"}))
    assert registry.get("c1").healthy is True


def test_managed_clusters_only_hides_secret_only_clusters(events: list[Any]) -> None:
    """With the opt-in filter a Secret without ManagedCluster is a 404 naming why, and
    shows up once its ManagedCluster exists."""
    registry = SecretRegistry(GROUP, ocm_integration=True, managed_clusters_only=True)
    registry.replace_all([cluster_secret("c1", token=TOKEN, endpoint="https://secret")])
    with pytest.raises(errors.NotFound) as caught:
        registry.get("c1")
    assert caught.value.message == (
        'clustergateways.cluster.core.oam.dev "c1" not found: there is no OCM ManagedCluster '
        '"c1" (--ocm-managed-clusters-only hides clusters without one)'
    )
    assert registry.gateways() == []
    registry.replace_managed_clusters([managed_cluster("c1", url="https://mc")])
    assert [g.endpoint.address for g in registry.gateways()] == ["https://mc"]


def test_recorded_health_in_memory(events: list[Any]) -> None:
    """Without a hub, recorded health stands in for the annotations: MODIFIED once per
    change, forgotten with the Secret."""
    registry = SecretRegistry(GROUP)
    seen: list[tuple[str, bool, str]] = []
    registry.subscribe(
        lambda event, entry, _rv: (
            seen.append((event, entry.gateway.healthy, entry.gateway.healthy_reason))
            if entry.gateway
            else None
        )
    )
    registry.replace_all([cluster_secret("c1", token=TOKEN, resource_version="1")])
    assert registry.recorded_health("c1") == (True, "")
    registry.record_health("c1", False, "GET /healthz: connection refused")
    registry.record_health("c1", False, "GET /healthz: connection refused")
    assert seen[-1] == ("MODIFIED", False, "GET /healthz: connection refused")
    assert len(seen) == 2
    assert registry.recorded_health("c1") == (False, "GET /healthz: connection refused")
    registry.record_health("nope", False, "x")  # unknown cluster: ignored
    registry.replace_all([])
    registry.replace_all([cluster_secret("c1", token=TOKEN, resource_version="2")])
    assert registry.get("c1").healthy is True
