"""The registry gauge of clusters whose server certificate the gateway does not verify."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clustergateway.observe.metrics import GatewayMetrics, unverified_reason
from clustergateway.registry.convert import convert_secret
from clustergateway.registry.features import FeatureGates
from clustergateway.registry.model import ClusterGateway, CredentialSpec, EndpointSpec
from tests.unit.observe.fakes import FakeRegistry


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        (EndpointSpec(address="https://c:6443", ca_bundle=b"PEM"), None),
        # No CA but not insecure ("insecure-skip-tls-verify: false"): system roots verify it.
        (EndpointSpec(address="https://c:6443", ca_bundle=None), None),
        (EndpointSpec(address="https://c:6443", insecure=True), "skip_verify"),
        (EndpointSpec(address="https://c:6443", ca_bundle=b"PEM", insecure=True), "skip_verify"),
        (EndpointSpec(address="http://c:8080"), "plain_http"),
        (EndpointSpec(address="HTTP://c:8080", insecure=True), "plain_http"),
        (EndpointSpec(type="ClusterProxy", address="", insecure=True), "skip_verify"),
        (EndpointSpec(type="ClusterProxy", address="", ca_bundle=b"PEM"), None),
    ],
)
def test_unverified_reason(endpoint: EndpointSpec, reason: str | None) -> None:
    """Plain HTTP first (no TLS at all), then ``insecure``; a CA-less endpoint that is
    not insecure is verified against the system roots and not counted."""
    assert unverified_reason(endpoint) == reason


def test_conversion_of_a_secret_without_ca_counts_as_skip_verify() -> None:
    """Go quirk 4 (no ca.crt means no verification) shows up in the gauge's reason."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "no-ca",
            "namespace": "vela-system",
            "labels": {"cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken"},
        },
        "data": {"endpoint": "aHR0cHM6Ly9jOjY0NDM=", "token": "dG9rZW4="},  # https://c:6443
    }
    gateway = convert_secret(secret, group="cluster.core.oam.dev", gates=FeatureGates())
    assert unverified_reason(gateway.endpoint) == "skip_verify"


def _gauge(metrics: GatewayMetrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "cluster_gateway_registry_insecure_clusters"
    }


def _put(registry: FakeRegistry, name: str, endpoint: EndpointSpec) -> None:
    registry.put(ClusterGateway(name, endpoint, CredentialSpec("ServiceAccountToken", token="t")))


def test_gauge_counts_by_reason_at_scrape_time() -> None:
    """Both reasons are always present (0 when none), computed from the registry when
    scraped; unconvertible Secrets are not counted."""
    registry = FakeRegistry()
    metrics = GatewayMetrics.build(registry, process_metrics=False)
    assert _gauge(metrics) == {"skip_verify": 0, "plain_http": 0}

    _put(registry, "verified", EndpointSpec(address="https://a:6443", ca_bundle=b"PEM"))
    _put(registry, "no-ca", EndpointSpec(address="https://b:6443", insecure=True))
    _put(registry, "skip", EndpointSpec(address="https://c:6443", ca_bundle=b"P", insecure=True))
    _put(registry, "plain", EndpointSpec(address="http://d:8080"))
    registry.add("broken", valid=False)
    assert _gauge(metrics) == {"skip_verify": 2, "plain_http": 1}

    del registry.by_name["no-ca"]
    assert _gauge(metrics) == {"skip_verify": 1, "plain_http": 1}
