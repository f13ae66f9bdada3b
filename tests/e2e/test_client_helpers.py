"""``clustergateway.client`` with the official ``kubernetes`` package, through the gateway.

One Python program reaches two simulated clusters (``c1`` = ``sim``, ``c2`` =
another) through the gateway's proxy subresource: CRUD, watch, exec and
port-forward, with a client fixed to one cluster and with one routing client
switched by ``with cluster(...)``.  The clients block, so each program runs in
a thread while the reactor serves the gateway and the two_clusters.
"""

from __future__ import annotations

import contextvars
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from clustergateway.client import (
    NoClusterSelected,
    cluster,
    for_cluster,
    get_health,
    list_cluster_gateways,
    list_virtual_clusters,
    load_hub_configuration,
    routing_client,
    update_health,
)
from clustergateway.testing import SimulatedCluster
from tests.e2e.test_simulator_streams import _echo_server, python_port_forward
from tests.fixtures.clients import TwoClusters, configmap
from tests.fixtures.gateway import wait_until

pytestmark = pytest.mark.e2e

PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{}/proxy"


def _watches(cluster: SimulatedCluster, suffix: str) -> list[str]:
    return [r.path for r in cluster.requests if r.path.endswith(suffix) and r.query.get("watch")]


def _paths(cluster: SimulatedCluster, suffix: str) -> list[str]:
    return [r.path for r in cluster.requests if r.path.endswith(suffix)]


@pytest_twisted.ensureDeferred
async def test_routing_client_switches_clusters_per_call(two_clusters: TwoClusters) -> None:
    """One routing client: CRUD, exec and watch go to the cluster of the enclosing
    ``with cluster(...)``; each write lands in that cluster's store only."""
    from kubernetes import watch
    from kubernetes.client import CoreV1Api
    from kubernetes.stream import stream

    hub = load_hub_configuration(two_clusters.hub_kubeconfig)
    api = CoreV1Api(routing_client(hub))

    def crud() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for name in ("c1", "c2"):
            with cluster(name):
                api.create_namespaced_config_map("default", configmap(f"from-{name}"))
                api.patch_namespaced_config_map(
                    f"from-{name}", "default", {"data": {"where": name}}
                )
        with cluster("c1"):
            seen["c1"] = sorted(
                i.metadata.name for i in api.list_namespaced_config_map("default").items
            )
            seen["c1-data"] = api.read_namespaced_config_map("from-c1", "default").data
            with cluster("c2"):  # the innermost block wins, the outer one comes back
                seen["c2"] = sorted(
                    i.metadata.name for i in api.list_namespaced_config_map("default").items
                )
                api.delete_namespaced_config_map("from-c2", "default")
            seen["exec"] = stream(
                api.connect_get_namespaced_pod_exec,
                "demo",
                "default",
                command=["echo", "hello c1"],
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
            )
        return seen

    seen = await deferToThread(crud)
    assert "from-c1" in seen["c1"] and "from-c2" not in seen["c1"]
    assert "from-c2" in seen["c2"] and "from-c1" not in seen["c2"]
    assert seen["c1-data"] == {"where": "c1"}
    assert seen["exec"] == "hello c1\n"
    assert two_clusters.c1.store.get("configmaps", "default", "from-c1")["data"] == {"where": "c1"}
    assert two_clusters.c2.store.get("configmaps", "default", "from-c2") is None
    assert _paths(two_clusters.c1, "/exec") and not _paths(two_clusters.c2, "/exec")

    # A watch in c2 sees an object created in c2 meanwhile, and nothing of c1.
    def watch_c2() -> list[str]:
        names = []
        with cluster("c2"):
            w = watch.Watch()
            for event in w.stream(api.list_namespaced_config_map, "default", timeout_seconds=20):
                names.append(event["object"].metadata.name)
                if event["object"].metadata.name == "late-c2":
                    w.stop()
        return names

    watching = deferToThread(watch_c2)
    await wait_until(lambda: len(two_clusters.c2.watches) >= 1, timeout=20)
    two_clusters.c1.store.put(configmap("late-c1"))
    two_clusters.c2.store.put(configmap("late-c2"))
    names = await watching
    assert "late-c2" in names and "late-c1" not in names
    assert not [
        r
        for r in two_clusters.c1.requests
        if r.path.endswith("/configmaps") and r.query.get("watch")
    ]
    assert [
        r
        for r in two_clusters.c2.requests
        if r.path.endswith("/configmaps") and r.query.get("watch")
    ]


@pytest_twisted.ensureDeferred
async def test_strict_mode_raises_and_fallback_mode_reaches_the_hub(
    two_clusters: TwoClusters,
) -> None:
    """Outside ``with cluster(...)`` a strict client raises before any request; a
    fallback client (and ``cluster("local")``) talks to the hub itself."""
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    hub = load_hub_configuration(two_clusters.hub_kubeconfig)

    def run() -> dict[str, Any]:
        results: dict[str, Any] = {}
        strict = CoreV1Api(routing_client(hub))
        try:
            strict.list_namespaced_config_map("default")
        except NoClusterSelected as e:
            results["strict"] = str(e)
        fallback = routing_client(hub, strict=False)
        listed = CustomObjectsApi(fallback).list_cluster_custom_object(
            "cluster.core.oam.dev", "v1alpha1", "clustergateways"
        )
        results["hub"] = sorted(i["metadata"]["name"] for i in listed["items"])
        with cluster("local"):
            local = CustomObjectsApi(routing_client(hub)).list_cluster_custom_object(
                "cluster.core.oam.dev", "v1alpha1", "virtualclusters"
            )
        results["local"] = [i["metadata"]["name"] for i in local["items"]]
        return results

    before = (len(two_clusters.c1.requests), len(two_clusters.c2.requests))
    results = await deferToThread(run)
    assert "missing cluster name" in results["strict"]
    assert results["hub"] == ["c1", "c2"]
    assert results["local"][0] == "local"
    proxied = [r.path for r in two_clusters.c1.requests[before[0] :] if "/configmaps" in r.path]
    assert proxied == [] and len(two_clusters.c2.requests) == before[1]


@pytest_twisted.ensureDeferred
async def test_context_follows_threads_copied_with_it(two_clusters: TwoClusters) -> None:
    """The cluster choice is a context variable: a thread run in a copied context keeps
    it, a thread started bare does not (strict mode raises there)."""
    import threading

    from kubernetes.client import CoreV1Api

    hub = load_hub_configuration(two_clusters.hub_kubeconfig)
    api = CoreV1Api(routing_client(hub))

    def run() -> tuple[list[str], str]:
        out: list[str] = []
        errors: list[str] = []
        with cluster("c2"):
            context = contextvars.copy_context()

            def inherited() -> None:
                out.extend(i.metadata.name for i in api.list_namespace().items)

            def bare() -> None:
                try:
                    api.list_namespace()
                except NoClusterSelected as e:
                    errors.append(type(e).__name__)

            threads = [
                threading.Thread(target=context.run, args=(inherited,)),
                threading.Thread(target=bare),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
        return out, errors[0]

    names, error = await deferToThread(run)
    assert "default" in names
    assert error == "NoClusterSelected"
    assert _paths(two_clusters.c2, "/api/v1/namespaces")


@pytest_twisted.ensureDeferred
async def test_for_cluster_crud_watch_and_port_forward(two_clusters: TwoClusters) -> None:
    """A client fixed to ``c2``: CRUD, a watch and ``portforward()`` reach ``c2`` only;
    every request went through the gateway's proxy path."""
    from kubernetes import watch
    from kubernetes.client import CoreV1Api

    server: Any = _echo_server()
    port = server.getHost().port
    hub = load_hub_configuration(two_clusters.hub_kubeconfig)
    gateway_requests = len(two_clusters.c1.requests)

    def run() -> dict[str, Any]:
        api = CoreV1Api(for_cluster("c2", hub))
        api.create_namespaced_config_map("default", configmap("fixed"))
        read = api.read_namespaced_config_map("fixed", "default").metadata.name
        events = [
            e["object"].metadata.name
            for e in watch.Watch().stream(
                api.list_namespaced_config_map, "default", timeout_seconds=1
            )
        ]
        api.delete_namespaced_config_map("fixed", "default")
        received = python_port_forward(api, port, b"through the gateway")
        return {"read": read, "events": events, "echo": received}

    try:
        results = await deferToThread(run)
    finally:
        await server.stopListening()
    assert results["read"] == "fixed"
    assert "fixed" in results["events"]
    assert results["echo"] == b"through the gateway"
    assert _paths(two_clusters.c2, "/portforward")
    assert two_clusters.c2.store.get("configmaps", "default", "fixed") is None
    # c1 (also the hub) saw only the gateway's own Secret watch, none of the program's calls.
    assert not [r for r in two_clusters.c1.requests[gateway_requests:] if "configmaps" in r.path]


@pytest_twisted.ensureDeferred
async def test_list_and_health_helpers(two_clusters: TwoClusters) -> None:
    """list ClusterGateways/VirtualClusters; update_health records in the hub Secret and
    get_health reads it back; an unknown cluster is the hub's 404."""
    from kubernetes.client import ApiClient
    from kubernetes.client.exceptions import ApiException

    hub = load_hub_configuration(two_clusters.hub_kubeconfig)

    def run() -> dict[str, Any]:
        api_client = ApiClient(hub)
        out: dict[str, Any] = {
            "gateways": [g["metadata"]["name"] for g in list_cluster_gateways(api_client)],
            "virtual": [v["metadata"]["name"] for v in list_virtual_clusters(api_client)],
            "selected": [
                v["metadata"]["name"]
                for v in list_virtual_clusters(
                    api_client, label_selector="cluster.core.oam.dev/control-plane=true"
                )
            ],
            "before": get_health(api_client, "c2"),
            "updated": update_health(api_client, "c2", False, "ConnectionTimeout"),
        }
        try:
            get_health(api_client, "nope")
        except ApiException as e:
            out["missing"] = e.status
        return out

    out = await deferToThread(run)
    assert out["gateways"] == ["c1", "c2"]
    assert out["virtual"][0] == "local" and sorted(out["virtual"][1:]) == ["c1", "c2"]
    assert out["selected"] == ["local"]
    assert out["updated"].healthy is False and out["updated"].reason == "ConnectionTimeout"
    annotations = two_clusters.c1.store.get("secrets", "vela-system", "c2")["metadata"][
        "annotations"
    ]
    assert annotations["status.cluster.core.oam.dev/healthy-reason"] == "ConnectionTimeout"
    await wait_until(
        lambda: two_clusters.gateway.registry.get("c2").healthy_reason == "ConnectionTimeout"
    )

    def healthy_again() -> Any:
        from kubernetes.client import ApiClient

        api_client = ApiClient(hub)
        update_health(api_client, "c2", True)
        return api_client

    api_client = await deferToThread(healthy_again)
    await wait_until(lambda: two_clusters.gateway.registry.get("c2").healthy)
    health = await deferToThread(get_health, api_client, "c2")
    assert (health.healthy, health.reason) == (True, "")
    assert out["missing"] == 404
