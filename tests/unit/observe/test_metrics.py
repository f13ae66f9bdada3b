"""GatewayMetrics and /metrics: exact series after a known mix of requests."""

from __future__ import annotations

import json

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families
from twisted.web.test.requesthelper import DummyRequest

from clustergateway.observe.labels import OTHER, UNKNOWN_CLUSTER
from clustergateway.observe.metrics import GatewayMetrics, MetricsResource
from tests.unit.observe.fakes import FakeRegistry, labels_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

GO_BUCKETS = ["0.0", "0.005", "0.02", "0.05", "0.1", "0.2", "0.5", "1.0", "2.0", "5.0", "10.0",
              "30.0", "+Inf"]  # fmt: skip


def scrape(metrics: GatewayMetrics, accept: bytes | None = None) -> tuple[str, str]:
    """GET /metrics through the resource; returns (content type, body)."""
    request = DummyRequest([])
    if accept is not None:
        request.requestHeaders.setRawHeaders(b"accept", [accept])
    body = MetricsResource(metrics).render(request)
    content_type = request.responseHeaders.getRawHeaders(b"content-type")[0].decode()
    return content_type, body.decode()


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def select(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def lbl(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.add("c1")
    reg.add("c2")
    reg.add("broken", valid=False)
    return reg


def record_known_mix(metrics: GatewayMetrics) -> None:
    """The mix the assertions below count: list, get, watch, exec (101), 502, 404, 503."""
    c1 = metrics.cluster("c1")
    c1.inflight(+1)
    c1.upstream_connected(0.001, 0.004, reused=False)
    c1.first_byte(0.002)
    c1.bytes(0, 5000)
    c1.request_finished(*labels_for("GET", "/api/v1/namespaces/default/pods"), 200, 0.01)
    c1.inflight(-1)

    metrics.inflight("c1", +1)
    metrics.upstream_connected("c1", None, None, reused=True)
    metrics.request_finished(
        "c1", *labels_for("GET", "/api/v1/namespaces/default/pods/p"), 200, 0.003
    )
    metrics.inflight("c1", -1)

    # A watch that ended after 12 s (another stays open, below).
    metrics.inflight("c1", +1)
    metrics.upstream_connected("c1", None, None, reused=True)
    metrics.request_finished("c1", *labels_for("GET", "/api/v1/pods", "watch=true"), 200, 12.0)
    metrics.inflight("c1", -1)

    # exec: upgraded (101), a session of 3 s; the session has closed.
    c1.inflight(+1)
    c1.upgrade_open(+1)
    c1.bytes(120, 800)
    c1.upgrade_open(-1)
    c1.request_finished(*labels_for("POST", "/api/v1/namespaces/x/pods/y/exec"), 101, 3.0)
    c1.inflight(-1)
    c1.inflight(+1)  # the still-open watch

    # c2 fails: exec credential plugin failed, the gateway answered 502.
    c2 = metrics.cluster("c2")
    c2.exec_credential(ok=False)
    c2.request_finished(*labels_for("GET", "/api/v1/namespaces/default/pods"), 502, 0.05)
    metrics.exec_credential("c1", ok=True)

    # Unknown cluster: 404; unconvertible Secret: 503.
    metrics.request_finished("ghost", *labels_for("GET", "/api/v1/pods"), 404, 0.001)
    metrics.request_finished("broken", *labels_for("GET", "/version"), 503, 0.001)

    metrics.access_review(True, 0.01)
    metrics.access_review(False, 0.2)
    metrics.registry_synced(at=1_700_000_000.0)


def test_known_mix_gives_exact_series() -> None:
    """After the known mix, /metrics holds exactly these counts, with these labels."""
    metrics = GatewayMetrics.build(registry(), process_metrics=False)
    record_known_mix(metrics)
    content_type, text = scrape(metrics)
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = parse(text)

    assert select(samples, "ocm_proxy_proxied_resource_requests_by_resource_total") == {
        lbl(resource="pods", verb="list", code="200"): 1,
        lbl(resource="pods", verb="get", code="200"): 1,
        lbl(resource="pods", verb="watch", code="200"): 1,
        lbl(resource="pods", verb="connect", code="101"): 1,
        lbl(resource="pods", verb="list", code="502"): 1,
        lbl(resource="pods", verb="list", code="404"): 1,
        lbl(resource="", verb="get", code="503"): 1,
    }
    assert select(samples, "ocm_proxy_proxied_requests_by_cluster_total") == {
        lbl(cluster="c1", code="200"): 3,
        lbl(cluster="c1", code="101"): 1,
        lbl(cluster="c2", code="502"): 1,
        lbl(cluster=UNKNOWN_CLUSTER, code="404"): 1,
        lbl(cluster="broken", code="503"): 1,
    }
    counts = select(samples, "ocm_proxy_proxied_request_duration_seconds_count")
    assert counts == {
        lbl(resource="pods", verb="list", cluster="c1", code="200"): 1,
        lbl(resource="pods", verb="get", cluster="c1", code="200"): 1,
        lbl(resource="pods", verb="watch", cluster="c1", code="200"): 1,
        lbl(resource="pods", verb="connect", cluster="c1", code="101"): 1,
        lbl(resource="pods", verb="list", cluster="c2", code="502"): 1,
        lbl(resource="pods", verb="list", cluster=UNKNOWN_CLUSTER, code="404"): 1,
        lbl(resource="", verb="get", cluster="broken", code="503"): 1,
    }
    sums = select(samples, "ocm_proxy_proxied_request_duration_seconds_sum")
    assert sums[lbl(resource="pods", verb="watch", cluster="c1", code="200")] == 12.0
    assert sums[lbl(resource="pods", verb="connect", cluster="c1", code="101")] == 3.0

    watch_buckets = {
        dict(labels)["le"]: value
        for labels, value in select(
            samples, "ocm_proxy_proxied_request_duration_seconds_bucket"
        ).items()
        if dict(labels)["verb"] == "watch"
    }
    assert list(watch_buckets) == GO_BUCKETS
    assert watch_buckets["10.0"] == 0 and watch_buckets["30.0"] == 1

    review = select(samples, "ocm_proxy_cluster_escalation_access_review_duration_seconds_count")
    assert review == {lbl(success="true"): 1, lbl(success="false"): 1}

    assert select(samples, "ocm_proxy_inflight_requests") == {lbl(cluster="c1"): 1}
    assert select(samples, "ocm_proxy_upgrade_sessions") == {lbl(cluster="c1"): 0}
    assert select(samples, "ocm_proxy_upstream_connections_total") == {
        lbl(cluster="c1", reused="false"): 1,
        lbl(cluster="c1", reused="true"): 2,
    }
    assert select(samples, "ocm_proxy_upstream_open_connections") == {lbl(cluster="c1"): 1}
    assert select(samples, "ocm_proxy_upstream_dial_duration_seconds_count") == {
        lbl(cluster="c1"): 1
    }
    assert select(samples, "ocm_proxy_upstream_dial_duration_seconds_sum") == {
        lbl(cluster="c1"): 0.001
    }
    assert select(samples, "ocm_proxy_upstream_tls_handshake_duration_seconds_sum") == {
        lbl(cluster="c1"): 0.004
    }
    assert select(samples, "ocm_proxy_upstream_first_byte_duration_seconds_count") == {
        lbl(cluster="c1"): 1
    }
    assert select(samples, "ocm_proxy_upstream_sent_bytes_total") == {lbl(cluster="c1"): 120}
    assert select(samples, "ocm_proxy_upstream_received_bytes_total") == {lbl(cluster="c1"): 5800}
    assert select(samples, "ocm_proxy_exec_credential_runs_total") == {
        lbl(cluster="c1"): 1,
        lbl(cluster="c2"): 1,
    }
    assert select(samples, "ocm_proxy_exec_credential_failures_total") == {lbl(cluster="c2"): 1}

    assert samples[("cluster_gateway_registry_clusters", ())] == 2
    assert samples[("cluster_gateway_registry_unconvertible_secrets", ())] == 1
    assert samples[("cluster_gateway_registry_synced", ())] == 1
    assert samples[("cluster_gateway_registry_last_sync_timestamp_seconds", ())] == 1.7e9
    # The classic text format carries no *_created series (Go never had them).
    assert not [name for name, _ in samples if name.endswith("_created")]


def test_unknown_cluster_names_add_no_series() -> None:
    """1,000 requests to names the registry does not know all land on the same series."""
    metrics = GatewayMetrics.build(registry(), process_metrics=False)
    record_known_mix(metrics)

    def unknown_request(name: str) -> None:
        recorder = metrics.cluster(name)
        recorder.inflight(+1)
        recorder.request_finished("pods", "list", 404, 0.001)
        recorder.inflight(-1)
        metrics.first_byte(name, 0.001)

    unknown_request("first-unknown")
    before = parse(scrape(metrics)[1])
    for i in range(1000):
        unknown_request(f"made-up-{i}")
    after = parse(scrape(metrics)[1])

    assert after.keys() == before.keys()
    key = ("ocm_proxy_proxied_requests_by_cluster_total", lbl(cluster=UNKNOWN_CLUSTER, code="404"))
    assert after[key] == before[key] + 1000
    assert metrics._clusters.keys() == {"c1", "c2", "broken"}


def test_unbounded_resource_verb_and_code_values_fold() -> None:
    """Raw values outside the known sets fold into <other> and are not cached one by one."""
    metrics = GatewayMetrics.build(registry(), process_metrics=False)
    c1 = metrics.cluster("c1")
    for i in range(200):
        c1.request_finished(f"widgets{i}", f"verb{i}", 1000 + i, 0.1)
    samples = parse(scrape(metrics)[1])
    assert select(samples, "ocm_proxy_proxied_resource_requests_by_resource_total") == {
        lbl(resource=OTHER, verb=OTHER, code=OTHER): 200
    }
    assert c1._finished == {}


def test_cluster_label_is_stable_for_the_life_of_a_request() -> None:
    """A cluster deleted while a request is open keeps its series: +1/-1 stay balanced."""
    reg = registry()
    metrics = GatewayMetrics.build(reg, process_metrics=False)
    metrics.inflight("c2", +1)
    del reg.by_name["c2"]
    metrics.inflight("c2", -1)
    samples = parse(scrape(metrics)[1])
    assert select(samples, "ocm_proxy_inflight_requests") == {lbl(cluster="c2"): 0}


def test_registry_gauges_follow_the_registry_at_scrape_time() -> None:
    """Registry gauges are computed when scraped; no sync time is shown before the first."""
    reg = registry()
    reg.synced = False
    now = [1_800_000_000.0]
    metrics = GatewayMetrics.build(reg, clock=lambda: now[0], process_metrics=False)
    samples = parse(scrape(metrics)[1])
    assert samples[("cluster_gateway_registry_synced", ())] == 0
    assert ("cluster_gateway_registry_last_sync_timestamp_seconds", ()) not in samples

    reg.add("c3")
    reg.synced = True
    metrics.registry_synced()
    samples = parse(scrape(metrics)[1])
    assert samples[("cluster_gateway_registry_clusters", ())] == 3
    assert samples[("cluster_gateway_registry_synced", ())] == 1
    assert samples[("cluster_gateway_registry_last_sync_timestamp_seconds", ())] == 1.8e9


def test_each_gateway_metrics_has_its_own_registry() -> None:
    """Two instances share nothing, and the process-global registry is never touched."""
    one = GatewayMetrics.build(registry(), process_metrics=False)
    two = GatewayMetrics.build(registry(), process_metrics=False)
    one.request_finished("c1", "pods", "list", 200, 0.1)
    assert "ocm_proxy" in scrape(one)[1]
    assert "c1" not in scrape(two)[1]
    global_text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "ocm_proxy" not in global_text
    assert "cluster_gateway" not in global_text


def test_process_metrics_are_on_the_gateway_registry() -> None:
    """Process, platform and GC collectors report through the gateway's own registry."""
    metrics = GatewayMetrics.build(registry())
    names = {family.name for family in text_string_to_metric_families(scrape(metrics)[1])}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= names
    assert "python_gc_objects_collected" in names


def test_openmetrics_on_request() -> None:
    """A scraper that asks for OpenMetrics gets it (with its *_created series and # EOF)."""
    metrics = GatewayMetrics.build(registry(), process_metrics=False)
    metrics.request_finished("c1", "pods", "list", 200, 0.1)
    content_type, text = scrape(
        metrics, accept=b"application/openmetrics-text; version=1.0.0; charset=utf-8"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    assert 'ocm_proxy_proxied_requests_by_cluster_created{cluster="c1",code="200"}' in text


def test_other_methods_get_a_status() -> None:
    """/metrics answers anything but GET/HEAD with a 405 Kubernetes Status."""
    metrics = GatewayMetrics.build(registry(), process_metrics=False)
    request = DummyRequest([])
    request.method = b"POST"
    body = json.loads(MetricsResource(metrics).render(request))
    assert request.responseCode == 405
    assert body["kind"] == "Status" and body["code"] == 405
