"""The health prober's verdicts, writes, pacing and bounds, in memory on a Clock."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from clustergateway.addon.prober import AddonHealthProber, available_condition, probe_result
from clustergateway.testing.memoryhub import StoreHubClient


@pytest.mark.parametrize(
    ("code", "body", "error", "expected"),
    [
        (200, b"ok", "", (True, "", "ok")),
        (200, b"not ok", "", (False, "", "not ok")),
        (None, b"", "dial tcp: connection refused", (False, "dial tcp: connection refused", "")),
        (
            503,
            b'{"kind":"Status","code":503,"message":"cluster c1 unreachable"}',
            "",
            (
                False,
                "cluster c1 unreachable",
                '{"kind":"Status","code":503,"message":"cluster c1 unreachable"}',
            ),
        ),
    ],
)
def test_probe_result(code, body, error, expected):
    """Healthy only for a 2xx ``ok``; otherwise the error, or the Status message."""
    assert probe_result(code, body, error) == expected


def test_available_condition_uses_go_reasons():
    """Go's reasons and messages: Returned OK; else error, body, or Unknown."""
    assert available_condition(True, "", "ok") == {
        "type": "Available",
        "status": "True",
        "reason": "SuccessfullyProbedHealthz",
        "message": "Returned OK",
    }
    assert available_condition(False, "boom", "body")["message"] == "boom"
    assert available_condition(False, "", "body")["message"] == "body"
    assert available_condition(False, "", "")["message"] == "Unknown"
    assert available_condition(False, "", "")["reason"] == "FailedProbingHealthz"


class FakeGateway:
    """The gateway's health subresource and /healthz, answered when the test says."""

    def __init__(self) -> None:
        self.health: dict[str, dict[str, Any]] = {}
        self.pending: list[tuple[str, Deferred[tuple[int, bytes]]]] = []
        self.puts: list[tuple[str, Any]] = []

    async def get_json(self, path: str, params: Any = None) -> dict[str, Any]:
        cluster = path.split("/")[-2]
        return self.health.setdefault(
            cluster, {"metadata": {"name": cluster}, "status": {"healthy": True}}
        )

    async def put_json(self, path: str, body: Any, params: Any = None) -> dict[str, Any]:
        self.puts.append((path, body))
        self.health[path.split("/")[-2]] = body
        return dict(body)

    async def post_json(self, path: str, body: Any, params: Any = None) -> dict[str, Any]:
        raise AssertionError("the prober never creates")

    def get_bytes(self, path: str, params: Any = None, timeout: float | None = None) -> Any:
        d: Deferred[tuple[int, bytes]] = Deferred()
        self.pending.append((path.split("/")[-3], d))
        return d


def _addons(hub: StoreHubClient, *clusters: str) -> None:
    for cluster in clusters:
        hub.store.put(
            {
                "apiVersion": "addon.open-cluster-management.io/v1alpha1",
                "kind": "ManagedClusterAddOn",
                "metadata": {"name": "cluster-gateway", "namespace": cluster},
            }
        )


def _prober(
    hub: StoreHubClient, gateway: FakeGateway, clock: Clock, **kw: Any
) -> AddonHealthProber:
    return AddonHealthProber(clock, hub, gateway, random=lambda: 1.0, now=lambda: "T", **kw)


def test_round_spreads_probes_and_bounds_concurrency(hub):
    """Probes start within the jitter window, at most ``concurrency`` at a time."""
    _addons(hub, "c1", "c2", "c3")
    gateway, clock = FakeGateway(), Clock()
    prober = _prober(hub, gateway, clock, interval=10.0, concurrency=2)
    prober.round()
    assert gateway.pending == []  # none before its jittered start
    clock.advance(5.0)  # interval * jitter * random() = 10 * 0.5 * 1.0
    assert [c for c, _ in gateway.pending] == ["c1", "c2"]
    gateway.pending.pop(0)[1].callback((200, b"ok"))
    assert [c for c, _ in gateway.pending] == ["c2", "c3"]
    for _, d in list(gateway.pending):
        d.callback((200, b"ok"))
    assert prober.probes == 3 and gateway.puts == []


def test_unhealthy_is_written_once_and_retried_after_five_seconds(hub):
    """A failing cluster: one health PUT, Available False, probed again after 5 s; the
    second failure writes nothing; recovery writes both back."""
    _addons(hub, "c1")
    gateway, clock = FakeGateway(), Clock()
    prober = _prober(hub, gateway, clock)
    prober.running = True
    prober.schedule("c1", 0)
    clock.advance(0)
    gateway.pending.pop()[1].callback((500, b"etcd down"))
    assert [body["status"] for _, body in gateway.puts] == [
        {"healthy": False, "healthyReason": "the hub answered 500: etcd down"}
    ]
    mca = hub.store.get("managedclusteraddons", "c1", "cluster-gateway")
    (condition,) = mca["status"]["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "FailedProbingHealthz")
    clock.advance(4.9)
    assert gateway.pending == []
    clock.advance(0.1)
    hub.calls.clear()
    gateway.pending.pop()[1].callback((500, b"etcd down"))
    assert len(gateway.puts) == 1 and hub.writes() == []
    clock.advance(5)
    gateway.pending.pop()[1].callback((200, b"ok"))
    assert gateway.puts[-1][1]["status"] == {"healthy": True, "healthyReason": ""}
    mca = hub.store.get("managedclusteraddons", "c1", "cluster-gateway")
    assert mca["status"]["conditions"][0]["status"] == "True"
    clock.advance(60)
    assert gateway.pending == []  # healthy: no quick retry (the next round probes it)


def test_failed_request_is_retried_after_five_seconds(hub):
    """The gateway's health read failing (e.g. 503 while it restarts): no write, and the
    cluster is probed again after the retry delay rather than at the next round."""
    from clustergateway import errors

    _addons(hub, "c1")
    gateway, clock = FakeGateway(), Clock()
    calls = []

    async def unavailable(path: str, params: Any = None) -> dict[str, Any]:
        calls.append(clock.seconds())
        raise errors.ServiceUnavailable("gateway restarting")

    gateway.get_json = unavailable  # type: ignore[method-assign]
    prober = _prober(hub, gateway, clock)
    prober.running = True
    prober.schedule("c1", 0)
    clock.advance(0)
    assert calls == [0.0] and hub.writes() == [] and gateway.puts == []
    clock.advance(5)
    assert calls == [0.0, 5.0]
