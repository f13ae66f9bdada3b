"""Both Secret sources report each successful full sync through ``on_synced``.

That feeds the ``cluster_gateway_registry_last_sync_timestamp_seconds`` gauge
(``GatewayMetrics.registry_synced``), so a stuck source shows as a stale
timestamp; a failed list or an unreadable directory must therefore not count.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from twisted.internet.task import Clock

from clustergateway import errors
from clustergateway.observe.metrics import GatewayMetrics
from clustergateway.registry.hub_source import Backoff, HubSecretSource
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.secrets_dir import DirectorySecretSource
from clustergateway.registry.store import SecretRegistry
from tests.unit.registry.test_hub_source import FakeHub, page, secret

GROUP = "cluster.core.oam.dev"


def _last_sync(metrics: GatewayMetrics) -> float | None:
    return metrics.registry.get_sample_value("cluster_gateway_registry_last_sync_timestamp_seconds")


def test_directory_source_reports_every_readable_scan(tmp_path: Path) -> None:
    """Each scan that reads the directory is a sync (changed or not), at the clock's
    time; while the directory is unreadable the last sync time stays where it was."""
    clock = Clock()
    clock.advance(1_000.0)
    registry = SecretRegistry(GROUP)
    metrics = GatewayMetrics.build(registry, clock=clock.seconds, process_metrics=False)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "a.yaml").write_text(
        yaml.safe_dump(cluster_secret("a", token="t", endpoint="https://10.0.0.1:6443"))
    )
    source = DirectorySecretSource(
        clock, secrets, registry, interval=1.0, on_synced=metrics.registry_synced
    )
    assert _last_sync(metrics) is None
    source.startService()
    try:
        assert registry.synced and [e.name for e in registry.entries()] == ["a"]
        assert _last_sync(metrics) == 1_000.0

        clock.advance(1.0)  # nothing changed: still a successful sync
        assert _last_sync(metrics) == 1_001.0

        os.rename(secrets, tmp_path / "gone")
        clock.advance(1.0)
        clock.advance(1.0)
        assert _last_sync(metrics) == 1_001.0

        os.rename(tmp_path / "gone", secrets)
        clock.advance(1.0)
        assert _last_sync(metrics) == 1_004.0
    finally:
        source.stopService()


def test_directory_source_without_callback_still_works(tmp_path: Path) -> None:
    """``on_synced`` is optional."""
    registry = SecretRegistry(GROUP)
    source = DirectorySecretSource(Clock(), tmp_path, registry)
    source.startService()
    source.stopService()
    assert registry.synced


def test_hub_source_reports_lists_not_failures_or_events() -> None:
    """The first list, a resync relist and the relist after a failure each report a sync,
    after the registry has the list; a failed list and watch events do not."""
    clock = Clock()
    clock.advance(5_000.0)
    hub = FakeHub()
    registry = SecretRegistry(GROUP)
    seen: list[tuple[float, list[str]]] = []

    def on_synced() -> None:
        seen.append((clock.seconds(), [e.name for e in registry.entries()]))

    source = HubSecretSource(
        clock,
        hub,
        "vela-system",
        registry,
        resync_period=30.0,
        backoff=Backoff(initial=1.0, maximum=8.0, random=lambda: 1.0),
        on_synced=on_synced,
    )
    hub.responses.append(page("10", secret("a", "5")))
    source.startService()
    try:
        assert seen == [(5_000.0, ["a"])]
        hub.current["on_event"]({"type": "ADDED", "object": secret("b", "11")})
        assert len(seen) == 1

        hub.responses.append(page("20", secret("a", "5"), secret("c", "19")))
        clock.advance(30.0)  # resync: relist
        assert seen[-1] == (5_030.0, ["a", "c"])

        hub.responses.append(errors.ServiceUnavailable("hub unreachable"))
        hub.current["d"].errback(errors.BadGateway("watch stream broken"))
        clock.advance(1.0)  # the backoff's relist fails
        assert len(hub.lists) == 3 and len(seen) == 2
        hub.responses.append(page("30", secret("a", "5")))
        clock.advance(2.0)  # the next one succeeds
        assert len(hub.lists) == 4 and seen[-1] == (5_033.0, ["a"])
    finally:
        source.stopService()
