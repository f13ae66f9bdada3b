"""The per-request metric updates done on the children's cells match prometheus_client's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from clustergateway.observe.metrics import (
    REQUEST_DURATION_BUCKETS,
    UPSTREAM_BUCKETS,
    GatewayMetrics,
)

VALUES = [0.0, 0.0001, 0.0005, 0.0007, 0.005, 0.02, 0.0200001, 1, 30, 31, 99.5]


def samples(registry: CollectorRegistry, prefix: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name.removeprefix(prefix), tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        if family.name.startswith(prefix)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_hot_path_updates_expose_what_the_public_api_would() -> None:
    """Bucket boundaries included: a value equal to a bound counts in that bound's bucket."""
    metrics = GatewayMetrics.build(process_metrics=False, is_known_cluster=lambda _: True)
    c1 = metrics.cluster("c1")
    twin = CollectorRegistry()
    first_byte = Histogram(
        "first_byte", "", ("cluster",), buckets=UPSTREAM_BUCKETS, registry=twin
    ).labels("c1")
    duration = Histogram(
        "duration", "", ("cluster",), buckets=REQUEST_DURATION_BUCKETS, registry=twin
    ).labels("c1")
    for value in VALUES:
        c1.inflight(+1)
        c1.first_byte(value)
        first_byte.observe(value)
        c1.upstream_connected(None, None, True)
        c1.bytes(0, 616)
        c1.request_finished("configmaps", "get", 200, value)
        duration.observe(value)
    c1.inflight(-1)
    ours = samples(metrics.registry, "ocm_proxy_")
    theirs = samples(twin, "")

    def pick(name: str, extra: tuple = ()) -> dict[tuple[str, tuple], float]:
        return {
            (key[0].split(name, 1)[1], tuple(kv for kv in key[1] if kv[0] == "le")): value
            for key, value in ours.items()
            if key[0].startswith(name) and (not extra or set(extra) <= set(key[1]))
        }

    def twin_of(name: str) -> dict[tuple[str, tuple], float]:
        return {
            (key[0].split(name, 1)[1], tuple(kv for kv in key[1] if kv[0] == "le")): value
            for key, value in theirs.items()
            if key[0].startswith(name)
        }

    assert pick("upstream_first_byte_duration_seconds") == twin_of("first_byte")
    assert pick("proxied_request_duration_seconds") == twin_of("duration")
    assert ours[("inflight_requests", (("cluster", "c1"),))] == 10.0
    assert ours[("upstream_received_bytes_total", (("cluster", "c1"),))] == 616.0 * len(VALUES)
    assert ours[("upstream_connections_total", (("cluster", "c1"), ("reused", "true")))] == len(
        VALUES
    )
    assert ours[("proxied_requests_by_cluster_total", (("cluster", "c1"), ("code", "200")))] == len(
        VALUES
    )
