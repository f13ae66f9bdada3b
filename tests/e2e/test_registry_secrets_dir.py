"""The --secrets-dir source on the real reactor: file changes reach the registry within 2 s."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import yaml
from twisted.internet.task import deferLater

from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.secrets_dir import DirectorySecretSource
from clustergateway.registry.store import SecretRegistry

pytestmark = pytest.mark.e2e


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await deferLater(_reactor(), 0.02)
    return time.monotonic() - start


def write(path: Path, *secrets: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all(secrets))
    os.replace(tmp, path)


@pytest_twisted.ensureDeferred
async def test_add_edit_delete_within_two_seconds(tmp_path: Path) -> None:
    """Adding, editing and deleting a manifest each show up within 2 s; a malformed
    file next to them changes nothing for the others."""
    registry = SecretRegistry("cluster.core.oam.dev")
    events: list[tuple[str, str]] = []
    registry.subscribe(lambda event, entry, rv: events.append((event, entry.name)))
    write(tmp_path / "a.yaml", cluster_secret("a", token="t"))
    source = DirectorySecretSource(_reactor(), tmp_path, registry, interval=1.0)
    source.startService()
    try:
        await registry.when_synced()
        write(tmp_path / "b.yaml", cluster_secret("b", token="t"))
        assert await eventually(lambda: registry.entry("b") is not None) < 2.0
        write(tmp_path / "b.yaml", cluster_secret("b", token="t", endpoint="https://10.7.7.7"))
        took = await eventually(lambda: registry.get("b").endpoint.address == "https://10.7.7.7")
        assert took < 2.0
        (tmp_path / "broken.yaml").write_text("kind: Secret\nmetadata: [\n")
        (tmp_path / "b.yaml").unlink()
        assert await eventually(lambda: registry.entry("b") is None) < 2.0
        assert [e.name for e in registry.entries()] == ["a"]
        assert events == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "b")]
    finally:
        source.stopService()
