"""The local directory source: manifests parsed, changes picked up on the next tick."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.secrets_dir import (
    DirectorySecretSource,
    ManifestError,
    parse_manifests,
)
from clustergateway.registry.store import SecretRegistry

GROUP = "cluster.core.oam.dev"
TOKEN = "dir-token-never-logged"


def manifest(*names: str, endpoint: str = "https://10.0.0.1:6443") -> str:
    return yaml.safe_dump_all(
        [cluster_secret(n, token=TOKEN, endpoint=endpoint, namespace=None) for n in names]
    )


def write(path: Path, text: str) -> None:
    """Replace the file the way editors and kubectl do (new inode)."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def logged() -> list[str]:
    captured: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_namespace", "").startswith("clustergateway.registry"):
            captured.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield captured
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def setup(tmp_path: Path):
    clock = Clock()
    registry = SecretRegistry(GROUP)
    events: list[tuple[str, str]] = []
    registry.subscribe(lambda event, entry, rv: events.append((event, entry.name)))
    source = DirectorySecretSource(clock, tmp_path, registry, interval=1.0)
    yield clock, registry, source, events
    if source.running:
        source.stopService()


def test_initial_scan_and_sync(tmp_path: Path, setup) -> None:
    """Starting reads every manifest at once and marks the registry synced, even when empty."""
    clock, registry, source, events = setup
    write(tmp_path / "a.yaml", manifest("a1", "a2"))
    source.startService()
    assert registry.synced
    assert events == [("ADDED", "a1"), ("ADDED", "a2")]


def test_empty_directory_syncs(setup) -> None:
    """An empty directory is a valid (empty) registry."""
    clock, registry, source, events = setup
    source.startService()
    assert registry.synced and registry.entries() == []


def test_add_edit_delete(tmp_path: Path, setup) -> None:
    """A file added, edited or deleted shows up at the next tick (interval 1 s)."""
    clock, registry, source, events = setup
    source.startService()
    write(tmp_path / "c.yaml", manifest("c"))
    clock.advance(1)
    assert events == [("ADDED", "c")]
    write(tmp_path / "c.yaml", manifest("c", endpoint="https://10.9.9.9:6443"))
    clock.advance(1)
    assert events[-1] == ("MODIFIED", "c")
    assert registry.get("c").endpoint.address == "https://10.9.9.9:6443"
    (tmp_path / "c.yaml").unlink()
    clock.advance(1)
    assert events[-1] == ("DELETED", "c")
    assert registry.entries() == []


def test_in_place_edit_same_size(tmp_path: Path, setup) -> None:
    """An in-place edit that keeps the size is seen through the mtime."""
    clock, registry, source, events = setup
    path = tmp_path / "c.yaml"
    path.write_text(manifest("c", endpoint="https://10.0.0.1:6443"))
    source.startService()
    stat = path.stat()
    path.write_text(manifest("c", endpoint="https://10.0.0.2:6443"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    clock.advance(1)
    assert registry.get("c").endpoint.address == "https://10.0.0.2:6443"


def test_unchanged_directory_is_not_reparsed(tmp_path: Path, setup, monkeypatch) -> None:
    """Ticks without changes parse nothing and push nothing."""
    clock, registry, source, events = setup
    write(tmp_path / "a.yaml", manifest("a"))
    source.startService()
    version = registry.resource_version
    calls: list[object] = []
    import clustergateway.registry.secrets_dir as module

    monkeypatch.setattr(module, "parse_manifests", lambda *a, **k: calls.append(a) or [])
    monkeypatch.setattr(SecretRegistry, "replace_all", lambda *a: calls.append(a))
    clock.advance(1)
    clock.advance(1)
    assert calls == [] and registry.resource_version == version


def test_malformed_file(tmp_path: Path, setup, logged: list[str]) -> None:
    """A file that fails to parse is logged once (without its content), its Secrets are
    dropped, the other files are unaffected; fixing it brings them back."""
    clock, registry, source, events = setup
    write(tmp_path / "good.yaml", manifest("good"))
    write(tmp_path / "bad.yaml", manifest("bad"))
    source.startService()
    assert [e.name for e in registry.entries()] == ["bad", "good"]
    write(tmp_path / "bad.yaml", manifest("bad") + f"\ntoken: {TOKEN}\n  broken: [\n")
    for _ in range(3):
        clock.advance(1)
    assert [e.name for e in registry.entries()] == ["good"]
    problems = [line for line in logged if "bad.yaml" in line]
    assert len(problems) == 1
    assert "invalid YAML at line" in problems[0]
    assert TOKEN not in "".join(logged)
    write(tmp_path / "bad.yaml", manifest("bad"))
    clock.advance(1)
    assert [e.name for e in registry.entries()] == ["bad", "good"]


def test_selection_of_files_and_documents(tmp_path: Path, setup) -> None:
    """Hidden files, other extensions, subdirectories and non-Secret kinds are skipped;
    JSON (List, concatenated) and stringData files count; any namespace is accepted."""
    clock, registry, source, events = setup
    write(tmp_path / ".hidden.yaml", manifest("hidden"))
    write(tmp_path / "notes.txt", manifest("txt"))
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "x.yaml", manifest("sub"))
    write(
        tmp_path / "list.json",
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [cluster_secret("j1", token=TOKEN, namespace="ns-a")],
            }
        )
        + "\n"
        + json.dumps(cluster_secret("j2", token=TOKEN, namespace="ns-b")),
    )
    write(
        tmp_path / "mixed.yml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\n  labels:\n"
        f"    {GROUP}/cluster-credential-type: ServiceAccountToken\n"
        "  creationTimestamp: 2024-01-02T03:04:05Z\n"
        "stringData:\n  endpoint: https://1.2.3.4:6443\n  token: abc\n---\n",
    )
    source.startService()
    assert [e.name for e in registry.entries()] == ["j1", "j2", "s1"]
    gateway = registry.get("s1")
    assert gateway.credential.token == "abc"
    assert gateway.creation_timestamp == "2024-01-02T03:04:05Z"


def test_missing_directory(tmp_path: Path, logged: list[str]) -> None:
    """A missing directory is logged once and is an empty registry; creating it later works."""
    clock = Clock()
    registry = SecretRegistry(GROUP)
    path = tmp_path / "later"
    source = DirectorySecretSource(clock, path, registry)
    source.startService()
    clock.advance(1)
    clock.advance(1)
    assert registry.synced and registry.entries() == []
    assert len([line for line in logged if "Cannot read secrets directory" in line]) == 1
    path.mkdir()
    write(path / "a.yaml", manifest("a"))
    clock.advance(1)
    assert [e.name for e in registry.entries()] == ["a"]
    source.stopService()
    assert not clock.getDelayedCalls()


@pytest.mark.parametrize(
    ("text", "is_json", "message"),
    [
        ("a: [", False, "invalid YAML at line"),
        ("- 1\n- 2\n", False, "document 1 is not an object"),
        ('{"kind": "List", "items": 3}', True, "items is not a list"),
        ('{"kind": "Secret", "metadata": {}}', True, "Secret without metadata.name"),
        ('{"kind": "Secret"', True, "invalid JSON at line 1"),
        ("kind: Secret\nmetadata: {name: [x]}\n", False, "Secret without metadata.name"),
    ],
)
def test_parse_manifest_errors(text: str, is_json: bool, message: str) -> None:
    """Parse errors say where and what kind, never quoting the file."""
    with pytest.raises(ManifestError, match=message.replace("[", r"\[")):
        parse_manifests(text, is_json=is_json)


def test_parse_manifests_documents() -> None:
    """Empty documents are skipped; ``*List`` kinds contribute their items."""
    text = "---\n---\nkind: SecretList\nitems:\n- kind: Secret\n  metadata: {name: a}\n"
    assert [s["metadata"]["name"] for s in parse_manifests(text)] == ["a"]


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        ("deep.json", "[" * 5000 + "]" * 5000),
        ("deep.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"),
        ("nested.yaml", "kind: Secret\nmetadata: {name: n}\ndata: " + "{a: " * 80 + "1" + "}" * 80),
    ],
)
def test_deep_document_affects_only_its_file(
    tmp_path: Path, setup, logged: list[str], filename: str, text: str
) -> None:
    """A document nested thousands of levels deep (or deeper than any Secret) is one
    bad file: logged once without a traceback, and every scan still delivers the rest,
    including clusters added after it."""
    clock, registry, source, events = setup
    write(tmp_path / "good.yaml", manifest("good"))
    (tmp_path / filename).write_text(text)
    source.startService()
    write(tmp_path / "later.yaml", manifest("later"))
    for _ in range(3):
        clock.advance(1)
    assert [e.name for e in registry.entries()] == ["good", "later"]
    problems = [line for line in logged if filename in line]
    assert len(problems) == 1, logged
    assert "nested" in problems[0]
    assert not [line for line in logged if "Traceback" in line or "failed" in line]


def test_oversized_file_is_not_read(tmp_path: Path, setup, logged: list[str]) -> None:
    """A file over the size cap is skipped unread (logged once); the others are served."""
    clock, registry, source, events = setup
    write(tmp_path / "good.yaml", manifest("good"))
    with open(tmp_path / "huge.yaml", "wb") as f:
        f.truncate(9 * 1024 * 1024)
    source.startService()
    clock.advance(1)
    assert [e.name for e in registry.entries()] == ["good"]
    assert [line for line in logged if "huge.yaml" in line and "larger than 8 MiB" in line]
