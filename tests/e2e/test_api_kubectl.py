"""The aggregated API through the real kubectl (1.33 and 1.29): standalone, a secrets dir."""

from __future__ import annotations

import json
import time

import pytest
import pytest_twisted

from tests.e2e.api_helpers import StreamingKubectl, token_cluster
from tests.fixtures.gateway import RunningGateway, wait_until
from tests.fixtures.simulator import run_kubectl

pytestmark = pytest.mark.e2e


def seed(gateway: RunningGateway) -> None:
    gateway.write_secrets(
        "clusters.yaml",
        token_cluster("alpha", labels={"env": "prod"}, creation_timestamp="2026-01-01T00:00:00Z"),
        token_cluster(
            "beta",
            endpoint_type="ClusterProxy",
            annotations={"cluster.core.oam.dev/cluster-alias": "b"},
            creation_timestamp="2026-02-01T00:00:00Z",
        ),
        token_cluster("broken", endpoint=None),
    )


async def seeded(gateway: RunningGateway) -> None:
    seed(gateway)
    await wait_until(lambda: gateway.registry.entry("broken") is not None)


def table(stdout: bytes) -> list[list[str]]:
    return [line.split() for line in stdout.decode().splitlines()]


@pytest_twisted.ensureDeferred
async def test_get_clustergateways_table(kubectl, gateway) -> None:
    """``kubectl get clustergateways``: the Go columns; the broken Secret is left out."""
    await seeded(gateway)
    result = await run_kubectl(kubectl, gateway.kubeconfig, "get", "clustergateways")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0].split() == ["NAME", "PROVIDER", "CREDENTIAL-TYPE", "ENDPOINT-TYPE", "HEALTHY"]
    assert [line.split() for line in lines[1:]] == [
        ["alpha", "ServiceAccountToken", "Const", "true"],
        ["beta", "ServiceAccountToken", "ClusterProxy", "true"],
    ]


@pytest_twisted.ensureDeferred
async def test_get_vc_wide(kubectl, gateway) -> None:
    """``kubectl get vc -o wide``: local first, newest first, real endpoints, the wide column."""
    await seeded(gateway)
    result = await run_kubectl(kubectl, gateway.kubeconfig, "get", "vc", "-o", "wide")
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert rows[0] == [
        "NAME",
        "ALIAS",
        "CREDENTIAL_TYPE",
        "ENDPOINT",
        "ACCEPTED",
        "LABELS",
        "CREATION_TIMESTAMP",
    ]
    assert [r[0] for r in rows[1:]] == ["local", "beta", "alpha"]
    assert rows[2] == [
        "beta",
        "b",
        "ServiceAccountToken",
        "https://beta.example:6443",
        "true",
        "cluster.core.oam.dev/control-plane=false",
        "2026-02-01T00:00:00Z",
    ]
    narrow = await run_kubectl(kubectl, gateway.kubeconfig, "get", "virtualclusters")
    assert "CREATION_TIMESTAMP" not in narrow.stdout.decode()


@pytest_twisted.ensureDeferred
async def test_get_json_shape(kubectl, gateway) -> None:
    """``-o json`` is exactly the spec's shape (what kubectl -o yaml prints, too)."""
    await seeded(gateway)
    result = await run_kubectl(
        kubectl, gateway.kubeconfig, "get", "clustergateway", "alpha", "-o", "json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "apiVersion": "cluster.core.oam.dev/v1alpha1",
        "kind": "ClusterGateway",
        "metadata": {"name": "alpha", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "provider": "",
            "access": {
                "endpoint": {
                    "type": "Const",
                    "const": {"address": "https://alpha.example:6443", "insecure": True},
                },
                "credential": {
                    "type": "ServiceAccountToken",
                    "serviceAccountToken": "token-of-alpha",
                },
            },
        },
        "status": {"healthy": True},
    }
    vc = await run_kubectl(kubectl, gateway.kubeconfig, "get", "vc", "local", "-o", "json")
    assert json.loads(vc.stdout)["spec"] == {
        "accepted": True,
        "endpoint": "-",
        "credential-type": "Internal",
    }


@pytest_twisted.ensureDeferred
async def test_api_resources(kubectl, gateway) -> None:
    """``kubectl api-resources --api-group=cluster.core.oam.dev`` lists both kinds."""
    result = await run_kubectl(
        kubectl, gateway.kubeconfig, "api-resources", "--api-group=cluster.core.oam.dev"
    )
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert rows[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert rows[1] == [
        "clustergateways",
        "cluster.core.oam.dev/v1alpha1",
        "false",
        "ClusterGateway",
    ]
    assert rows[2] == [
        "virtualclusters",
        "vc,vcluster,vclusters,virtual-cluster,virtual-clusters",
        "cluster.core.oam.dev/v1alpha1",
        "false",
        "VirtualCluster",
    ]


@pytest_twisted.ensureDeferred
async def test_explain(kubectl, gateway) -> None:
    """``kubectl explain clustergateway.spec.access`` walks the served OpenAPI schema."""
    result = await run_kubectl(kubectl, gateway.kubeconfig, "explain", "clustergateway.spec.access")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "KIND:       ClusterGateway" in text
    assert "endpoint\t<ClusterEndpoint> -required-" in text
    assert "credential\t<ClusterAccessCredential>" in text
    deeper = await run_kubectl(
        kubectl, gateway.kubeconfig, "explain", "virtualcluster.spec.credential-type"
    )
    assert deeper.returncode == 0, deeper.stderr
    assert "ManagedCluster" in deeper.stdout.decode()


@pytest_twisted.ensureDeferred
async def test_not_found_and_unavailable(kubectl, gateway) -> None:
    """404 names the resource; an unconvertible Secret is a 503 naming the Secret and cause."""
    await seeded(gateway)
    missing = await run_kubectl(kubectl, gateway.kubeconfig, "get", "clustergateway", "nope")
    assert missing.returncode == 1
    assert (
        'Error from server (NotFound): clustergateways.cluster.core.oam.dev "nope" not found'
        in missing.stderr.decode()
    )
    broken = await run_kubectl(kubectl, gateway.kubeconfig, "get", "clustergateway", "broken")
    assert broken.returncode == 1
    stderr = broken.stderr.decode()
    assert "Error from server (ServiceUnavailable)" in stderr
    assert 'secret vela-system/broken: missing data key "endpoint"' in stderr


@pytest_twisted.ensureDeferred
async def test_watch_sees_new_cluster_within_a_second(kubectl, gateway) -> None:
    """``kubectl get clustergateways -w`` prints a cluster within 1 s of its Secret appearing."""
    await seeded(gateway)
    watch = StreamingKubectl.start(kubectl, gateway.kubeconfig, "get", "clustergateways", "-w")
    try:
        await wait_until(lambda: any("beta" in line for line in watch.texts()), timeout=30)
        written = time.monotonic()
        gateway.write_secrets("gamma.yaml", token_cluster("gamma"))
        await wait_until(lambda: watch.first_time("gamma") is not None, timeout=10)
        seen = watch.first_time("gamma")
        assert seen is not None and seen - written < 1.0
        gateway.remove_secrets("gamma.yaml")
        await wait_until(lambda: sum("gamma" in line for line in watch.texts()) == 2, timeout=10)
    finally:
        stderr = watch.stop()
    assert "error" not in stderr.lower(), stderr
