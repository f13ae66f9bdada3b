"""The official ``kubernetes`` Python client with the proxy URL as its API server.

The client blocks, so every call runs in a thread (``deferToThread``) while the
reactor serves the gateway and the simulated cluster.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.fixtures.proxy import ProxiedCluster

pytestmark = pytest.mark.e2e


@pytest_twisted.ensureDeferred
async def test_configmap_crud(proxied: ProxiedCluster) -> None:
    """create, read, patch, list with a selector, delete; a 404 from the cluster is an
    ApiException with the cluster's Status."""
    from kubernetes.client import CoreV1Api, V1ConfigMap, V1ObjectMeta
    from kubernetes.client.exceptions import ApiException

    def run() -> tuple[Any, ...]:
        api = CoreV1Api(proxied.api_client())
        body = V1ConfigMap(metadata=V1ObjectMeta(name="py", labels={"app": "py"}), data={"k": "v"})
        created = api.create_namespaced_config_map("default", body)
        patched = api.patch_namespaced_config_map("py", "default", {"data": {"k": "w"}})
        listed = api.list_namespaced_config_map("default", label_selector="app=py")
        api.delete_namespaced_config_map("py", "default")
        try:
            api.read_namespaced_config_map("py", "default")
        except ApiException as e:
            missing = (e.status, e.reason)
        else:
            missing = None
        return created.data, patched.data, [i.metadata.name for i in listed.items], missing

    created, patched, names, missing = await deferToThread(run)
    assert created == {"k": "v"}
    assert patched == {"k": "w"}
    assert names == ["py"]
    assert missing == (404, "Not Found")


@pytest_twisted.ensureDeferred
async def test_watch(proxied: ProxiedCluster) -> None:
    """``watch.Watch().stream`` receives an event for an object created meanwhile."""
    from kubernetes import watch
    from kubernetes.client import CoreV1Api

    from tests.fixtures.gateway import wait_until

    def run() -> list[tuple[str, str]]:
        api = CoreV1Api(proxied.api_client())
        events = []
        w = watch.Watch()
        for event in w.stream(api.list_namespaced_config_map, "default", timeout_seconds=20):
            events.append((event["type"], event["object"].metadata.name))
            if event["object"].metadata.name == "from-python-watch":
                w.stop()
        return events

    d = deferToThread(run)
    await wait_until(lambda: len(proxied.sim.watches) >= 1, timeout=20)
    proxied.sim.store.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "from-python-watch", "namespace": "default"},
        }
    )
    events = await d
    assert ("ADDED", "from-python-watch") in events


@pytest_twisted.ensureDeferred
async def test_stream_exec(proxied: ProxiedCluster) -> None:
    """``kubernetes.stream.stream()`` exec through the proxy: echo, cat with stdin, exit code."""
    from kubernetes.client import CoreV1Api
    from kubernetes.stream import stream

    def run() -> tuple[str, bytes, Any, Any]:
        api = CoreV1Api(proxied.api_client())
        echoed = stream(
            api.connect_get_namespaced_pod_exec,
            "demo",
            "default",
            command=["echo", "hello via gateway"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        client = stream(
            api.connect_get_namespaced_pod_exec,
            "demo",
            "default",
            command=["cat"],
            stderr=True,
            stdin=True,
            stdout=True,
            tty=False,
            _preload_content=False,
            binary=True,
        )
        client.write_stdin(b"one\n")
        client.write_stdin(b"two\n")
        client.close_channel(0)
        client.run_forever(timeout=10)
        out = client.read_stdout() or b""
        code = client.returncode
        failing = stream(
            api.connect_get_namespaced_pod_exec,
            "demo",
            "default",
            command=["sh", "-c", "exit 7"],
            stderr=True,
            stdout=True,
            _preload_content=False,
        )
        failing.run_forever(timeout=10)
        return echoed, out, code, failing.returncode

    echoed, out, code, failed = await deferToThread(run)
    assert echoed == "hello via gateway\n"
    assert out == b"one\ntwo\n"
    assert code == 0
    assert failed == 7
