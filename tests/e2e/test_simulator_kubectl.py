"""The simulated cluster as the real kubectl (1.33 and 1.29) sees it."""

from __future__ import annotations

import json

import pytest_twisted

from tests.fixtures.simulator import run_kubectl


@pytest_twisted.ensureDeferred
async def test_get_namespaces(kubectl, sim, sim_kubeconfig):
    """``kubectl get ns`` lists the built-in namespaces through discovery and a Table list."""
    result = await run_kubectl(kubectl, sim_kubeconfig, "get", "ns")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "AGE"]
    names = {line.split()[0] for line in lines[1:]}
    assert {"default", "kube-system", "vela-system"} <= names


@pytest_twisted.ensureDeferred
async def test_configmap_lifecycle(kubectl, sim, sim_kubeconfig):
    """create, get -o json, strategic and merge patch, delete of a ConfigMap."""
    created = await run_kubectl(
        kubectl, sim_kubeconfig, "create", "configmap", "x", "--from-literal=a=b"
    )
    assert created.returncode == 0, created.stderr
    assert sim.store.get("configmaps", "default", "x")["data"] == {"a": "b"}

    got = await run_kubectl(kubectl, sim_kubeconfig, "get", "cm", "x", "-o", "json")
    assert got.returncode == 0, got.stderr
    obj = json.loads(got.stdout)
    assert obj["data"] == {"a": "b"}
    assert obj["metadata"]["uid"]

    strategic = await run_kubectl(
        kubectl, sim_kubeconfig, "patch", "cm", "x", "-p", '{"data":{"c":"d"}}'
    )
    assert strategic.returncode == 0, strategic.stderr
    merge = await run_kubectl(
        kubectl, sim_kubeconfig, "patch", "cm", "x", "--type", "merge", "-p", '{"data":{"a":null}}'
    )
    assert merge.returncode == 0, merge.stderr
    assert sim.store.get("configmaps", "default", "x")["data"] == {"c": "d"}
    content_types = [r.header("content-type") for r in sim.requests if r.method == "PATCH"]
    assert content_types == [
        "application/strategic-merge-patch+json",
        "application/merge-patch+json",
    ]

    deleted = await run_kubectl(kubectl, sim_kubeconfig, "delete", "cm", "x")
    assert deleted.returncode == 0, deleted.stderr
    assert sim.store.get("configmaps", "default", "x") is None


@pytest_twisted.ensureDeferred
async def test_get_pods_shows_running_demo_pod(kubectl, sim, sim_kubeconfig):
    """``kubectl get pods`` prints the pod printer columns for the built-in running pod."""
    result = await run_kubectl(kubectl, sim_kubeconfig, "get", "pods")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.decode().splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows[0].split()[:4] == ["demo", "1/1", "Running", "0"]


@pytest_twisted.ensureDeferred
async def test_client_certificate_kubeconfig(kubectl, sim, tmp_path):
    """A kubeconfig with the admin client certificate works; the cluster sees sim-admin."""
    kubeconfig = sim.write_kubeconfig(tmp_path / "cert-kubeconfig", user="cert")
    result = await run_kubectl(kubectl, kubeconfig, "get", "ns", "default", "-o", "name")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == "namespace/default"
    last = sim.requests[-1]
    assert last.header("authorization") is None
    assert last.user.name == "sim-admin"
    assert "system:masters" in last.user.groups


@pytest_twisted.ensureDeferred
async def test_apply_create_and_update(kubectl, sim, sim_kubeconfig, tmp_path):
    """``kubectl apply -f`` creates, then patches from the last-applied annotation."""
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  k: one\n"
    )
    first = await run_kubectl(kubectl, sim_kubeconfig, "apply", "-f", str(manifest))
    assert first.returncode == 0, first.stderr
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  k: two\n"
    )
    second = await run_kubectl(kubectl, sim_kubeconfig, "apply", "-f", str(manifest))
    assert second.returncode == 0, second.stderr
    assert b"configured" in second.stdout
    stored = sim.store.get("configmaps", "default", "applied")
    assert stored["data"] == {"k": "two"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]


@pytest_twisted.ensureDeferred
async def test_watch_sees_event_from_another_client_within_a_second(kubectl, sim, sim_kubeconfig):
    """``kubectl get cm -w`` prints a ConfigMap another client creates within 1 s."""
    import subprocess
    import time

    from twisted.internet import reactor
    from twisted.internet.task import deferLater
    from twisted.internet.threads import deferToThread

    watcher = subprocess.Popen(
        [
            kubectl,
            "--kubeconfig",
            str(sim_kubeconfig),
            "--cache-dir",
            str(sim_kubeconfig.parent / "watch-cache"),
            "get",
            "cm",
            "-w",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if sim.watches:
                break
            await deferLater(reactor, 0.05, lambda: None)
        assert sim.watches, "kubectl never started watching"

        def wait_for_line(word: bytes) -> float:
            assert watcher.stdout is not None
            while True:
                line = watcher.stdout.readline()
                if not line:
                    raise AssertionError("kubectl get -w ended early")
                if word in line:
                    return time.monotonic()

        seen = deferToThread(wait_for_line, b"from-elsewhere")
        other = await run_kubectl(kubectl, sim_kubeconfig, "create", "configmap", "from-elsewhere")
        created_at = time.monotonic()
        assert other.returncode == 0, other.stderr
        watchdog = reactor.callLater(10, watcher.kill)
        printed_at = await seen
        if watchdog.active():
            watchdog.cancel()
        assert printed_at - created_at < 1.0
    finally:
        watcher.kill()
        watcher.wait(timeout=10)
