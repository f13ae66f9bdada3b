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
