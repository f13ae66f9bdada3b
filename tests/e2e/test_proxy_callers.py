"""Real clients on the lean proxy path (``server.callers``), over HTTP/1.1 and HTTP/2.

kubectl speaks HTTP/2 to the gateway unless ``DISABLE_HTTP2`` is set (client-go
honours it); the kubernetes Python client always speaks HTTP/1.1.  These tests
prove that those clients are served by the channel path (its ``served`` count
moves, and ``served_h2`` for the HTTP/2 streams) and that what they see is
right: reads, tables, watches, followed logs, cluster errors, an unknown
cluster, and that writes and upgrades on the same connections still go
through twisted.web.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.e2e.api_helpers import StreamingKubectl
from tests.fixtures.gateway import wait_until
from tests.fixtures.proxy import ProxiedCluster
from tests.fixtures.simulator import run_kubectl

pytestmark = pytest.mark.e2e

PROTOCOLS = {"http1": {"DISABLE_HTTP2": "1"}, "h2": {}}


@pytest.fixture(params=sorted(PROTOCOLS))
def protocol(request: pytest.FixtureRequest) -> str:
    """How kubectl talks to the gateway: ``http1`` (DISABLE_HTTP2) or ``h2``."""
    return str(request.param)


def served(proxied: ProxiedCluster, protocol: str = "") -> int:
    """Requests the channel path took (only HTTP/2 streams, for ``h2``)."""
    lean = proxied.gateway.service.site.proxy_entry
    assert lean is not None, "the gateway was built without the channel path"
    return int(lean.served_h2 if protocol == "h2" else lean.served)


@pytest_twisted.ensureDeferred
async def test_kubectl_reads_are_served_lean(
    proxied: ProxiedCluster, kubectl: str, protocol: str
) -> None:
    """CRUD with kubectl: the reads go lean, the writes (bodies) do not."""
    client_env = PROTOCOLS[protocol]
    kc = proxied.kubeconfig
    h2_before = served(proxied, "h2")
    before = served(proxied)
    result = await run_kubectl(
        kubectl, kc, "create", "cm", "h1", "--from-literal=a=1", env=client_env
    )
    assert result.returncode == 0, result.stderr
    result = await run_kubectl(kubectl, kc, "get", "cm", "h1", "-o", "json", env=client_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == {"a": "1"}
    result = await run_kubectl(kubectl, kc, "get", "cm", env=client_env)  # a Table
    assert result.returncode == 0, result.stderr
    assert b"h1" in result.stdout and b"DATA" in result.stdout
    after_reads = served(proxied)
    assert after_reads > before
    # Over HTTP/2 every lean request was an HTTP/2 stream; over HTTP/1.1 none.
    h2_reads = served(proxied, "h2") - h2_before
    assert h2_reads == (after_reads - before if protocol == "h2" else 0)
    result = await run_kubectl(kubectl, kc, "delete", "cm", "h1", env=client_env)
    assert result.returncode == 0, result.stderr
    result = await run_kubectl(kubectl, kc, "get", "cm", "h1", env=client_env)
    assert result.returncode == 1
    assert b'configmaps "h1" not found' in result.stderr
    assert proxied.sim.store.get("configmaps", "default", "h1") is None


@pytest_twisted.ensureDeferred
async def test_errors(proxied: ProxiedCluster, kubectl: str, protocol: str) -> None:
    """The cluster's 403 and the gateway's 404 for an unknown cluster, as kubectl prints them."""
    client_env = PROTOCOLS[protocol]
    proxied.sim.faults.deny.add(("*", "list", "secrets"))
    result = await run_kubectl(kubectl, proxied.kubeconfig, "get", "secrets", env=client_env)
    assert result.returncode == 1
    assert b"forbidden" in result.stderr.lower()
    kc = proxied.gateway.proxy_kubeconfig("nope")
    before = served(proxied, protocol)
    result = await run_kubectl(kubectl, kc, "get", "cm", env=client_env)
    assert result.returncode == 1
    assert b"(NotFound)" in result.stderr
    raw = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/nope/proxy/api/v1/namespaces"
    result = await run_kubectl(kubectl, kc, "get", "--raw", raw, env=client_env)
    assert result.returncode == 1
    assert b'clustergateways.cluster.core.oam.dev "nope" not found' in result.stderr
    assert served(proxied, protocol) > before


@pytest_twisted.ensureDeferred
async def test_watch_and_logs_follow(proxied: ProxiedCluster, kubectl: str, protocol: str) -> None:
    """`get -w` sees a new object and `logs -f` streams, both lean."""
    client_env = PROTOCOLS[protocol]
    env = {**os.environ, "HOME": str(proxied.kubeconfig.parent), **client_env}
    before = served(proxied, protocol)
    watching = StreamingKubectl.start(
        kubectl, proxied.kubeconfig, "get", "cm", "-w", "--no-headers", env=client_env
    )
    try:
        await wait_until(lambda: len(proxied.sim.watches) >= 1, timeout=30)
        proxied.sim.store.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "w1", "namespace": "default"},
            }
        )
        await wait_until(lambda: watching.first_time("w1") is not None, timeout=30)
    finally:
        watching.stop()

    proxied.sim.pod_logs[("default", "demo", "main")] = ["first"]
    command = [kubectl, "--kubeconfig", str(proxied.kubeconfig), "logs", "-f", "demo"]

    def follow() -> list[bytes]:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
        try:
            assert process.stdout is not None
            return [process.stdout.readline() for _ in range(3)]
        finally:
            process.kill()
            process.wait(10)

    lines = await deferToThread(follow)
    assert lines == [b"first\n", b"main: follow line 2\n", b"main: follow line 3\n"]
    assert served(proxied, protocol) > before


@pytest_twisted.ensureDeferred
async def test_kubectls_http2_is_served_on_libnghttp2(
    proxied: ProxiedCluster, kubectl: str
) -> None:
    """kubectl's HTTP/2 connection (its watch open on it) is served by the libnghttp2
    engine, the gateway's default; with DISABLE_HTTP2 it is the HTTP/1.1 channel."""
    from clustergateway.fence.h2engine_ngh2 import Ngh2Connection
    from clustergateway.fence.twisted_web import channel_of

    site = proxied.gateway.service.site
    assert site.h2_engine == "native"
    for env, native in (({}, True), (PROTOCOLS["http1"], False)):
        watches = len(proxied.sim.watches)
        watching = StreamingKubectl.start(
            kubectl, proxied.kubeconfig, "get", "cm", "-w", "--no-headers", env=env
        )
        try:
            await wait_until(lambda w=watches: len(proxied.sim.watches) > w, timeout=30)
            channels = [channel_of(protocol) for protocol in site.open_connections()]
            assert any(isinstance(c, Ngh2Connection) for c in channels) == native, channels
        finally:
            watching.stop()
        await wait_until(lambda: not site.open_connections(), timeout=30)


@pytest_twisted.ensureDeferred
async def test_exec_beside_lean_requests(
    proxied: ProxiedCluster, kubectl: str, protocol: str
) -> None:
    """exec is an HTTP/1.1 upgrade (whatever the reads spoke), spliced as before."""
    client_env = PROTOCOLS[protocol]
    kc = proxied.kubeconfig
    result = await run_kubectl(kubectl, kc, "exec", "demo", "--", "echo", "hi", env=client_env)
    assert (result.returncode, result.stdout) == (0, b"hi\n"), result.stderr


@pytest_twisted.ensureDeferred
async def test_python_client_reads_and_watches_lean(proxied: ProxiedCluster) -> None:
    """The kubernetes Python client (HTTP/1.1 through urllib3): list, read, watch."""
    from kubernetes import watch
    from kubernetes.client import CoreV1Api

    proxied.sim.store.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "py", "namespace": "default"},
            "data": {"k": "v"},
        }
    )
    before = served(proxied)

    def use() -> tuple[list[str], dict[str, str], list[str]]:
        api = CoreV1Api(proxied.api_client())
        names = [cm.metadata.name for cm in api.list_namespaced_config_map("default").items]
        data = api.read_namespaced_config_map("py", "default").data
        events = [
            e["object"].metadata.name
            for e in watch.Watch().stream(
                api.list_namespaced_config_map, "default", timeout_seconds=1
            )
        ]
        return names, data, events

    names, data, events = await deferToThread(use)
    assert "py" in names and data == {"k": "v"} and "py" in events
    assert served(proxied) >= before + 3


@pytest_twisted.ensureDeferred
async def test_a_long_label_selector(proxied: ProxiedCluster, kubectl: str, protocol: str) -> None:
    """A 100 KiB label selector (HTTP/2 once advertised a 64 KiB header list:
    kubectl refused to send it, and a client that did lost the connection)."""
    proxied.sim.store.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "sel", "namespace": "default", "labels": {"app": "x"}},
        }
    )
    selector = "app=x," + ",".join(f"k{i}!=v" for i in range(14_000))
    assert len(selector) > 100_000
    result = await run_kubectl(
        kubectl,
        proxied.kubeconfig,
        "get",
        "cm",
        "-l",
        selector,
        "-o",
        "name",
        env=PROTOCOLS[protocol],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [b"configmap/sel"]


@pytest_twisted.ensureDeferred
async def test_a_large_object_round_trips(
    proxied: ProxiedCluster, kubectl: str, protocol: str, tmp_path: Any
) -> None:
    """A ConfigMap of 900 KiB created through the proxy (a request body, so
    twisted.web; over HTTP/2, flow-controlled) and read back lean."""
    data = tmp_path / "blob.txt"
    data.write_text("0123456789abcdef" * (900 * 64))
    kc = proxied.kubeconfig
    client_env = PROTOCOLS[protocol]
    result = await run_kubectl(
        kubectl, kc, "create", "cm", f"big-{protocol}", f"--from-file={data}", env=client_env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stored = proxied.sim.store.get("configmaps", "default", f"big-{protocol}")
    assert stored is not None and stored["data"]["blob.txt"] == data.read_text()
    result = await run_kubectl(
        kubectl,
        kc,
        "get",
        "cm",
        f"big-{protocol}",
        "-o",
        "jsonpath={.data.blob\\.txt}",
        env=client_env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.decode() == data.read_text()


@pytest_twisted.ensureDeferred
async def test_a_body_over_the_limit_is_refused_with_a_status(
    proxied: ProxiedCluster, kubectl: str, protocol: str, tmp_path: Any
) -> None:
    """Above the 3 MiB body limit (kube-apiserver's) the gateway answers 413 with
    a Status, over either protocol, and nothing reaches the cluster."""
    data = tmp_path / "blob.txt"
    data.write_text("x" * (4 << 20))
    result = await run_kubectl(
        kubectl,
        proxied.kubeconfig,
        "create",
        "cm",
        f"huge-{protocol}",
        f"--from-file={data}",
        env=PROTOCOLS[protocol],
    )
    assert result.returncode == 1
    assert b"the request body is larger than 3145728 bytes" in result.stderr, result.stderr
    assert proxied.sim.store.get("configmaps", "default", f"huge-{protocol}") is None
