"""The active health prober, its verdicts and where they are recorded: all in memory."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from clustergateway import errors
from clustergateway.health.prober import ClusterHealthProber, probe_verdict
from clustergateway.health.recorder import HubHealthRecorder, MemoryHealthRecorder
from clustergateway.observe.metrics import GatewayMetrics
from clustergateway.proxy.resource import ClusterProxy, ProbeAnswer, ProbeFailed
from clustergateway.registry.model import ClusterGateway
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.store import SecretRegistry
from tests.unit.server.test_callers import Upstream, answer

GROUP = "cluster.core.oam.dev"
HEALTH = "status.cluster.core.oam.dev/healthy"
REASON = "status.cluster.core.oam.dev/healthy-reason"


class ScriptedTarget:
    """Answers probes from a per-cluster script; records every probe."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.hang: set[str] = set()
        self.calls: list[tuple[str, bytes, float]] = []
        self.hanging: list[Deferred[ProbeAnswer]] = []

    def probe(self, cluster: ClusterGateway, path: bytes, timeout: float) -> Deferred[ProbeAnswer]:
        self.calls.append((cluster.name, path, timeout))
        if cluster.name in self.hang:
            d: Deferred[ProbeAnswer] = Deferred()
            self.hanging.append(d)
            return d
        if cluster.name in self.down:
            return fail(ProbeFailed(f"cluster {cluster.name}: connection refused"))
        return succeed(ProbeAnswer(200, b"ok"))


class CountingRecorder(MemoryHealthRecorder):
    """The in-memory recorder, counting the verdicts it actually recorded."""

    written: list[tuple[str, bool, str]]

    async def record(self, name: str, healthy: bool, reason: str) -> bool:
        wrote = await super().record(name, healthy, reason)
        if wrote:
            self.written.append((name, healthy, reason))
        return wrote


def run_for(clock: Clock, seconds: float) -> None:
    """Advance in 0.5 s steps (``Clock.advance`` moves time before running calls, so a
    call scheduled by a call it runs would otherwise land past the jump)."""
    clock.pump([0.5] * int(seconds / 0.5))


def prober_for(
    names: list[str], **options: Any
) -> tuple[ClusterHealthProber, Clock, SecretRegistry, ScriptedTarget, CountingRecorder]:
    clock = Clock()
    registry = SecretRegistry(GROUP)
    registry.replace_all([cluster_secret(n, token="t") for n in names])
    target = ScriptedTarget()
    recorder = CountingRecorder(registry)
    recorder.written = []
    settings: dict[str, Any] = {"failure_threshold": 3, "timeout": 2.0, "random": lambda: 0.5}
    settings.update(options)
    prober = ClusterHealthProber(clock, registry, target, recorder, 10.0, **settings)
    return prober, clock, registry, target, recorder


# -- one probe ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "verdict", "paths"),
    [
        ([ProbeAnswer(200, b"ok")], None, [b"/healthz"]),
        ([ProbeAnswer(403, b"forbidden"), ProbeAnswer(200, b"ok")], None, [b"/healthz", b"/livez"]),
        (
            [ProbeAnswer(500, b"[-]etcd failed\n"), ProbeAnswer(503, b"")],
            "GET /livez answered 503",
            [b"/healthz", b"/livez"],
        ),
        (
            [ProbeFailed("cluster c1: connection refused")],
            "GET /healthz: cluster c1: connection refused",
            [b"/healthz"],
        ),
    ],
)
def test_probe_verdict(answers: list[Any], verdict: str | None, paths: list[bytes]) -> None:
    """/healthz, then /livez when /healthz answered non-200; no HTTP answer ends it."""
    asked: list[bytes] = []

    def probe(cluster: ClusterGateway, path: bytes, timeout: float) -> Deferred[ProbeAnswer]:
        asked.append(path)
        result = answers[len(asked) - 1]
        return fail(result) if isinstance(result, Exception) else succeed(result)

    target = type("T", (), {"probe": staticmethod(probe)})()
    cluster = SecretRegistry(GROUP)
    cluster.replace_all([cluster_secret("c1", token="t")])
    d = Deferred.fromCoroutine(probe_verdict(target, cluster.get("c1"), 1.0))
    assert d.result == verdict
    assert asked == paths


# -- the prober ---------------------------------------------------------------------------


def test_threshold_then_recovery() -> None:
    """N consecutive failures → unhealthy with the failure as reason; one success →
    healthy; a steady cluster is never written."""
    prober, clock, registry, target, recorder = prober_for(["a", "b"])
    target.down.add("b")
    prober.startService()
    run_for(clock, 1.0)  # jitter: 0.5 × 0.2 × 10 s
    run_for(clock, 10.0)
    assert registry.get("b").healthy is True  # two failures: not yet
    run_for(clock, 10.0)
    b = registry.get("b")
    assert (b.healthy, b.healthy_reason) == (
        False,
        "GET /healthz: cluster b: connection refused",
    )
    run_for(clock, 10.0)  # still failing: nothing more to record
    target.down.clear()
    run_for(clock, 10.0)
    assert registry.get("b").healthy is True
    assert recorder.written == [
        ("b", False, "GET /healthz: cluster b: connection refused"),
        ("b", True, ""),
    ]
    assert registry.get("a").healthy is True
    assert {(name, timeout) for name, _, timeout in target.calls} == {("a", 2.0), ("b", 2.0)}
    prober.stopService()
    assert clock.getDelayedCalls() == []


def test_a_failure_between_successes_resets_the_count() -> None:
    """Failures must be consecutive."""
    prober, clock, registry, target, recorder = prober_for(["a"], failure_threshold=2)
    prober.startService()
    for down in (True, False, True, False):
        target.down = {"a"} if down else set()
        run_for(clock, 10.0)
    assert recorder.written == [] and registry.get("a").healthy is True
    prober.stopService()


def test_bounded_concurrency_and_no_overlap() -> None:
    """At most ``concurrency`` probes run; a cluster still being probed is skipped."""
    prober, clock, registry, target, recorder = prober_for(["a", "b", "c", "d"], concurrency=2)
    target.hang = {"a", "b", "c", "d"}
    prober.startService()
    run_for(clock, 1.0)
    assert len(target.hanging) == 2
    run_for(clock, 10.0)
    assert len(target.hanging) == 2  # same four still busy: no second probe of any
    target.hanging[0].callback(ProbeAnswer(200, b"ok"))
    assert len(target.hanging) == 3
    prober.stopService()
    assert clock.getDelayedCalls() == []


def test_probe_metrics() -> None:
    """Each probe is observed by cluster and result (bounded: known clusters only)."""
    prober, clock, registry, target, _ = prober_for(["a", "b"])
    metrics = GatewayMetrics.build(registry, clock=clock.seconds)
    prober.metrics = metrics
    target.down.add("b")
    prober.startService()
    run_for(clock, 1.0)
    samples = {
        (s.labels["cluster"], s.labels["result"]): s.value
        for family in metrics.registry.collect()
        if family.name == "ocm_proxy_cluster_health_probe_duration_seconds"
        for s in family.samples
        if s.name.endswith("_count")
    }
    assert samples == {("a", "success"): 1.0, ("b", "failure"): 1.0}

    def unhealthy() -> float:
        return next(
            s.value
            for family in metrics.registry.collect()
            if family.name == "cluster_gateway_registry_unhealthy_clusters"
            for s in family.samples
        )

    assert unhealthy() == 0
    run_for(clock, 20.0)  # the third failure
    assert unhealthy() == 1
    prober.stopService()


# -- the probe request, through the cluster's pool ------------------------------------------


def proxy_for(upstream: Upstream) -> tuple[ClusterProxy, MemoryReactorClock, ClusterGateway]:
    reactor = MemoryReactorClock()
    registry = SecretRegistry(GROUP)
    registry.replace_all([cluster_secret("c1", endpoint="http://10.0.0.1:6443", token="t0ken")])
    proxy = ClusterProxy.build(reactor, registry, dialer=upstream)  # type: ignore[arg-type]
    return proxy, reactor, registry.get("c1")


def test_probe_request_uses_the_cluster_credential() -> None:
    """GET /healthz with the Secret's token, through the cluster's pool."""
    upstream = Upstream()
    proxy, reactor, cluster = proxy_for(upstream)
    d = Deferred.fromCoroutine(proxy.probe(cluster, b"/healthz", 5.0))
    upstream.reply(answer(b"ok"))
    assert d.result == ProbeAnswer(200, b"ok")
    sent = upstream.received()
    assert sent.startswith(b"GET /healthz HTTP/1.1\r\n")
    assert b"Authorization: Bearer t0ken\r\n" in sent
    reactor.advance(5.0)  # the timeout was cancelled with the answer
    assert not upstream.connections[0][1].aborted


def test_probe_request_timeout_and_refusal() -> None:
    """No answer within the timeout, or a refused dial, is a ProbeFailed naming it."""
    upstream = Upstream()
    proxy, reactor, cluster = proxy_for(upstream)
    d = Deferred.fromCoroutine(proxy.probe(cluster, b"/healthz", 5.0))
    reactor.advance(5.0)
    failure = d.result
    d.addErrback(lambda _: None)
    assert failure.check(ProbeFailed) and str(failure.value) == "no answer within 5s"
    assert upstream.connections[0][1].aborted
    refused, _, cluster = proxy_for(Upstream(refuse=True))
    d = Deferred.fromCoroutine(refused.probe(cluster, b"/healthz", 5.0))
    failure = d.result
    d.addErrback(lambda _: None)
    assert failure.check(ProbeFailed) and "cluster c1" in str(failure.value)
    assert "refused" in str(failure.value)


# -- the hub recorder -----------------------------------------------------------------------


class FakeHub:
    """Secrets by name; a PATCH with a stale resourceVersion is a 409, as the apiserver's."""

    def __init__(self, secret: dict[str, Any]) -> None:
        self.secret = secret
        self.patches: list[Any] = []
        self.gets = 0

    def get_json(self, path: str, params: Any = None) -> Deferred[dict[str, Any]]:
        self.gets += 1
        return succeed(self.secret)

    def patch_json(self, path: str, body: Any) -> Deferred[dict[str, Any]]:
        self.patches.append(body)
        wanted = body["metadata"].get("resourceVersion")
        meta = self.secret["metadata"]
        if wanted is not None and wanted != meta["resourceVersion"]:
            return fail(errors.Conflict("the object has been modified"))
        meta.setdefault("annotations", {}).update(body["metadata"]["annotations"])
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return succeed(self.secret)


def record(recorder: HubHealthRecorder, healthy: bool, reason: str) -> bool:
    d = Deferred.fromCoroutine(recorder.record("c1", healthy, reason))
    return bool(d.result)


def test_hub_recorder_writes_with_a_precondition() -> None:
    """The patch carries the resourceVersion the registry holds; nothing is written
    when the verdict is already on record."""
    registry = SecretRegistry(GROUP)
    secret = cluster_secret("c1", token="t", resource_version="7")
    registry.replace_all([secret])
    hub = FakeHub(cluster_secret("c1", token="t", resource_version="7"))
    recorder = HubHealthRecorder(hub, "vela-system", registry)
    assert record(recorder, True, "") is False and hub.patches == []
    assert record(recorder, False, "down") is True
    assert hub.patches[0]["metadata"] == {
        "annotations": {HEALTH: "false", REASON: "down"},
        "resourceVersion": "7",
    }
    assert recorder.writes == 1


def test_hub_recorder_conflict_rereads() -> None:
    """A 409 (another replica wrote first) re-reads: the verdict already there → no write;
    otherwise one more try with the fresh resourceVersion."""
    registry = SecretRegistry(GROUP)
    registry.replace_all([cluster_secret("c1", token="t", resource_version="7")])
    written = cluster_secret(
        "c1", token="t", resource_version="8", annotations={HEALTH: "false", REASON: "other"}
    )
    hub = FakeHub(written)
    recorder = HubHealthRecorder(hub, "vela-system", registry)
    assert record(recorder, False, "mine") is False
    assert (recorder.writes, recorder.conflicts, hub.gets, len(hub.patches)) == (0, 1, 1, 1)

    hub = FakeHub(cluster_secret("c1", token="t", resource_version="9"))
    recorder = HubHealthRecorder(hub, "vela-system", registry)
    assert record(recorder, False, "mine") is True
    assert [p["metadata"]["resourceVersion"] for p in hub.patches] == ["7", "9"]
    assert (recorder.writes, recorder.conflicts) == (1, 1)


def test_memory_recorder_only_on_change() -> None:
    """The in-memory recorder records transitions only and the registry shows them."""
    registry = SecretRegistry(GROUP)
    registry.replace_all([cluster_secret("c1", token="t")])
    recorder = MemoryHealthRecorder(registry)
    assert Deferred.fromCoroutine(recorder.record("c1", True, "")).result is False
    assert Deferred.fromCoroutine(recorder.record("c1", False, "x")).result is True
    assert Deferred.fromCoroutine(recorder.record("c1", False, "y")).result is False
    assert registry.get("c1").healthy_reason == "x"
    assert Deferred.fromCoroutine(recorder.record("gone", False, "x")).result is False
