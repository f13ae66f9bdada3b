"""The aggregated API through the official ``kubernetes`` Python client."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.e2e.api_helpers import token_cluster
from tests.fixtures.gateway import RunningGateway, wait_until

pytestmark = pytest.mark.e2e

GROUP, VERSION = "cluster.core.oam.dev", "v1alpha1"


async def seeded(gateway: RunningGateway) -> None:
    gateway.write_secrets(
        "clusters.yaml",
        token_cluster("alpha", labels={"env": "prod"}),
        token_cluster("beta"),
        token_cluster("broken", endpoint=None),
    )
    await wait_until(lambda: gateway.registry.entry("broken") is not None)


@pytest_twisted.ensureDeferred
async def test_list_get_and_selectors(gateway) -> None:
    """CustomObjectsApi list/get; a labelSelector; resourceVersion in the list metadata."""
    from kubernetes import client

    await seeded(gateway)
    api = client.CustomObjectsApi(gateway.api_client())
    listed = await deferToThread(api.list_cluster_custom_object, GROUP, VERSION, "clustergateways")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["alpha", "beta"]
    assert listed["metadata"]["resourceVersion"] == str(gateway.registry.resource_version)
    selected = await deferToThread(
        api.list_cluster_custom_object, GROUP, VERSION, "virtualclusters", label_selector="env=prod"
    )
    assert [i["metadata"]["name"] for i in selected["items"]] == ["alpha"]
    one = await deferToThread(
        api.get_cluster_custom_object, GROUP, VERSION, "clustergateways", "beta"
    )
    assert one["spec"]["access"]["credential"]["serviceAccountToken"] == "token-of-beta"


@pytest_twisted.ensureDeferred
async def test_errors_are_status_objects(gateway) -> None:
    """404 and 503 reach the client as ApiException with a Status body."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    await seeded(gateway)
    api = client.CustomObjectsApi(gateway.api_client())

    def get(name: str) -> Any:
        try:
            api.get_cluster_custom_object(GROUP, VERSION, "clustergateways", name)
        except ApiException as e:
            return e
        raise AssertionError("no error")

    missing = await deferToThread(get, "nope")
    assert missing.status == 404
    assert json.loads(missing.body)["reason"] == "NotFound"
    broken = await deferToThread(get, "broken")
    assert broken.status == 503
    assert "vela-system/broken" in json.loads(broken.body)["message"]


@pytest_twisted.ensureDeferred
async def test_watch_stream(gateway) -> None:
    """kubernetes.watch streams ADDED for the state, then the new cluster, resuming by RV."""
    from kubernetes import client, watch

    await seeded(gateway)
    api = client.CustomObjectsApi(gateway.api_client())
    events: list[tuple[str, str]] = []
    watcher = watch.Watch()

    def consume() -> None:
        for event in watcher.stream(
            api.list_cluster_custom_object, GROUP, VERSION, "clustergateways", timeout_seconds=20
        ):
            events.append((event["type"], event["object"]["metadata"]["name"]))
            if event["object"]["metadata"]["name"] == "gamma":
                watcher.stop()

    done = deferToThread(consume)
    await wait_until(lambda: len(events) >= 2, timeout=20)
    gateway.write_secrets("gamma.yaml", token_cluster("gamma"))
    await done
    assert events == [("ADDED", "alpha"), ("ADDED", "beta"), ("ADDED", "gamma")]
    assert int(watcher.resource_version) == gateway.registry.resource_version


@pytest_twisted.ensureDeferred
async def test_discovery(gateway) -> None:
    """The client's discovery calls: group list and the group's resource list."""
    from kubernetes import client

    api_client = gateway.api_client()
    groups = await deferToThread(client.ApisApi(api_client).get_api_versions)
    assert [g.name for g in groups.groups] == [GROUP]
    resources = await deferToThread(
        client.CustomObjectsApi(api_client).get_api_resources, GROUP, VERSION
    )
    names = sorted(r.name for r in resources.resources)
    assert names == [
        "clustergateways",
        "clustergateways/health",
        "clustergateways/proxy",
        "virtualclusters",
    ]
    version = await deferToThread(client.VersionApi(api_client).get_code)
    assert version.git_version.startswith("v")


@pytest_twisted.ensureDeferred
async def test_dynamic_client(gateway) -> None:
    """kubernetes.dynamic discovers the kinds and lists VirtualClusters."""
    from kubernetes import dynamic

    await seeded(gateway)

    def list_vcs() -> list[str]:
        dyn = dynamic.DynamicClient(gateway.api_client())
        resource = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind="VirtualCluster")
        return [item.metadata.name for item in resource.get().items]

    assert await deferToThread(list_vcs) == ["local", "alpha", "beta"]
