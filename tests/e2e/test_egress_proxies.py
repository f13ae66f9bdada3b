"""Reaching clusters through REAL egress proxies started by the test: Debian's tinyproxy
(HTTP CONNECT; behind a TLS terminator for https://) and microsocks (SOCKS5), for plain
requests, watches and exec (WebSocket with kubectl 1.33, SPDY with 1.29), with and without
proxy credentials, and the gateway environment's HTTPS_PROXY/NO_PROXY."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted

from clustergateway.certs import issue_cert
from clustergateway.registry.samples import cluster_secret
from clustergateway.testing import SimulatedCluster
from tests.e2e.api_helpers import StreamingKubectl
from tests.fixtures.egress import RunningProxy, free_port, proxy_get
from tests.fixtures.gateway import RunningGateway, wait_until
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e

GatewayFactory = Callable[..., Awaitable[RunningGateway]]
ProxyFactory = Callable[..., Awaitable[RunningProxy]]


def secret(sim: SimulatedCluster, proxy_url: str | None, name: str = "c1", **changes: Any) -> Any:
    values: dict[str, Any] = {"endpoint": sim.url, "token": sim.token, "ca": sim.ca_pem}
    values.update(changes)
    return cluster_secret(name, proxy_url=proxy_url, **values)


async def start(gateway_factory: GatewayFactory, *secrets: Any, **config: Any) -> RunningGateway:
    gateway = await gateway_factory(mode="memory", secrets=list(secrets), **config)
    await wait_until(lambda: gateway.registry.synced)
    return gateway


async def exec_and_watch(gateway: RunningGateway, sim: SimulatedCluster, kubectl: str) -> None:
    """kubectl exec and a watch through the gateway (and so through the proxy); the
    watch rides an HTTP/2 connection to the cluster, negotiated inside the tunnel."""
    kc = gateway.proxy_kubeconfig("c1")
    result = await run_kubectl(kubectl, kc, "exec", "demo", "--", "echo", "through-the-proxy")
    assert (result.returncode, result.stdout) == (0, b"through-the-proxy\n"), result.stderr
    upgrades = {
        (r.header("upgrade") or "").lower() for r in sim.requests if r.path.endswith("/exec")
    }
    assert upgrades == ({"websocket"} if kubectl.endswith("1.33") else {"spdy/3.1"})

    watch = StreamingKubectl.start(kubectl, kc, "get", "configmaps", "-w", "--no-headers")
    try:
        await wait_until(lambda: len(sim.watches) >= 1, timeout=30)
        assert "h2" in sim.connection_protocols()
        sim.store.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "seen-through-proxy", "namespace": "default"},
            }
        )
        await wait_until(lambda: watch.first_time("seen-through-proxy") is not None, timeout=30)
    finally:
        watch.stop()


@pytest_twisted.ensureDeferred
async def test_http_connect_proxy_exec_and_watch(
    sim: SimulatedCluster, gateway_factory: GatewayFactory, tinyproxy: ProxyFactory, kubectl: str
) -> None:
    """proxy-url http://: exec and watch go through tinyproxy (its log shows the CONNECTs)."""
    proxy = await tinyproxy(connect_ports=[sim.port])
    gateway = await start(gateway_factory, secret(sim, proxy.url()))
    await exec_and_watch(gateway, sim, kubectl)
    tunnels = proxy.connects()
    assert tunnels and set(tunnels) == {sim.server_address}
    assert len(tunnels) >= 2  # the pooled connection and the upgrade's own


@pytest_twisted.ensureDeferred
async def test_http_connect_proxy_credentials(
    sim: SimulatedCluster, gateway_factory: GatewayFactory, tinyproxy: ProxyFactory
) -> None:
    """user:pass@ in proxy-url becomes Proxy-Authorization; without it or with a wrong
    password the 407 becomes a 502 naming the cluster and the proxy, never the password;
    a port the proxy does not allow is its refusal, relayed."""
    proxy = await tinyproxy(connect_ports=[sim.port], user="gw", password="s3cret-pw")
    secrets = [
        secret(sim, proxy.url(), "good"),
        secret(sim, proxy.url(credentials=False), "anonymous"),
        secret(sim, proxy.url(password="wrong-pw"), "wrong"),
        secret(sim, proxy.url(), "badport", endpoint=f"https://127.0.0.1:{free_port()}"),
    ]
    gateway = await start(gateway_factory, *secrets)
    result = await run_kubectl(
        kubectl_binary("1.33"), gateway.proxy_kubeconfig("good"), "get", "pods", "-o", "name"
    )
    assert result.returncode == 0, result.stderr
    via = f"via proxy http://127.0.0.1:{proxy.port}: the proxy"
    expected = {
        "anonymous": f"{via} requires authentication and the proxy URL has none "
        "(407 Proxy Authentication Required)",
        "wrong": f"{via} rejected the credentials in the proxy URL (401 Unauthorized)",
        "badport": f'{via} answered "403 Access violation" to CONNECT',
    }
    for name, text in expected.items():
        code, status = await proxy_get(gateway, name)
        assert code == 502 and status["reason"] == "BadGateway", (name, status)
        assert status["message"].startswith(f"cluster {name}: dial tcp "), status
        assert text in status["message"], status
        assert "s3cret" not in status["message"] and "wrong-pw" not in status["message"]


@pytest_twisted.ensureDeferred
async def test_https_proxy(
    sim: SimulatedCluster,
    gateway_factory: GatewayFactory,
    tinyproxy: ProxyFactory,
    tls_terminator: Callable[..., Awaitable[int]],
) -> None:
    """proxy-url https://: TLS to the proxy itself (verified with the cluster's CA, as Go
    does), then CONNECT inside it, then TLS to the cluster inside the tunnel."""
    proxy = await tinyproxy(connect_ports=[sim.port])
    proxy_cert = issue_cert(sim.pki.ca, "egress-proxy", hosts=("127.0.0.1",), server=True)
    tls_port = await tls_terminator(proxy.port, proxy_cert)
    gateway = await start(gateway_factory, secret(sim, f"https://127.0.0.1:{tls_port}"))
    result = await run_kubectl(
        kubectl_binary("1.33"), gateway.proxy_kubeconfig("c1"), "get", "pods", "-o", "name"
    )
    assert result.returncode == 0, result.stderr
    assert b"pod/demo" in result.stdout
    assert set(proxy.connects()) == {sim.server_address}


@pytest_twisted.ensureDeferred
async def test_socks5_proxy_exec_and_watch(
    sim: SimulatedCluster, gateway_factory: GatewayFactory, microsocks: ProxyFactory, kubectl: str
) -> None:
    """proxy-url socks5:// (no authentication): exec and watch through microsocks."""
    proxy = await microsocks()
    gateway = await start(gateway_factory, secret(sim, proxy.url()))
    await exec_and_watch(gateway, sim, kubectl)
    assert set(proxy.connects()) == {sim.server_address}


@pytest_twisted.ensureDeferred
async def test_socks5h_proxy_with_credentials(
    sim: SimulatedCluster, gateway_factory: GatewayFactory, microsocks: ProxyFactory, kubectl: str
) -> None:
    """proxy-url socks5h://user:pass@ with a host name the proxy resolves: exec and watch
    work; a wrong password is a 502 saying the proxy rejected the credentials."""
    proxy = await microsocks(user="gw", password="s0cks-pw")
    by_name = {"endpoint": f"https://localhost:{sim.port}"}
    gateway = await start(
        gateway_factory,
        secret(sim, proxy.url(scheme="socks5h"), **by_name),
        secret(sim, proxy.url(scheme="socks5h", password="nope"), "wrong", **by_name),
    )
    await exec_and_watch(gateway, sim, kubectl)
    assert proxy.connects() and all(t.endswith(f":{sim.port}") for t in proxy.connects())
    code, status = await proxy_get(gateway, "wrong")
    assert code == 502
    assert status["message"] == (
        f"cluster wrong: dial tcp localhost:{sim.port} via proxy "
        f"socks5h://127.0.0.1:{proxy.port}: the proxy rejected the credentials in the proxy URL"
    )


@pytest_twisted.ensureDeferred
async def test_proxy_down_is_502_naming_it(
    sim: SimulatedCluster, gateway_factory: GatewayFactory, microsocks: ProxyFactory
) -> None:
    """Requests need the proxy: once it is stopped they fail with a 502 naming it."""
    proxy = await microsocks()
    gateway = await start(gateway_factory, secret(sim, proxy.url()))
    code, _ = await proxy_get(gateway, "c1")
    assert code == 200
    proxy.stop()
    # The pooled connection died with the proxy; the next one cannot be made.
    await wait_until(lambda: proxy.process.poll() is not None)
    for _ in range(2):
        code, status = await proxy_get(gateway, "c1")
        if code == 502:
            break
    assert code == 502
    assert status["message"] == (
        f"cluster c1: dial tcp {sim.server_address} via proxy socks5://127.0.0.1:{proxy.port}: "
        "connecting to the proxy: connection refused"
    )


@pytest_twisted.ensureDeferred
async def test_environment_https_proxy_and_no_proxy(
    sim: SimulatedCluster, gateway_factory: GatewayFactory, tinyproxy: ProxyFactory
) -> None:
    """Without proxy-url the gateway's HTTPS_PROXY applies (to a host name: Go never proxies
    localhost or loopback IPs), NO_PROXY exempts hosts, and proxy-url wins over both."""
    import socket

    host = socket.gethostname()  # resolves to 127.0.0.1 here; not "localhost"
    proxy = await tinyproxy(connect_ports=[sim.port])
    other = await tinyproxy(connect_ports=[sim.port])
    named = {
        "endpoint": f"https://{host}:{sim.port}",
        "extra_data": {"tls-server-name": "localhost"},
    }
    environ = {**os.environ, "HTTPS_PROXY": proxy.url(), "NO_PROXY": "exempt.invalid"}
    gateway = await start(
        gateway_factory,
        secret(sim, None, "env", **named),
        secret(sim, None, "loopback"),
        secret(sim, other.url(), "explicit", **named),
        environ=environ,
    )
    for name in ("env", "loopback", "explicit"):
        code, status = await proxy_get(gateway, name)
        assert code == 200, (name, status)
    assert proxy.connects() == [f"{host}:{sim.port}"]
    assert other.connects() == [f"{host}:{sim.port}"]

    exempt = await start(
        gateway_factory,
        secret(sim, None, "env", **named),
        environ={**environ, "NO_PROXY": f"example.com,{host}"},
    )
    code, _ = await proxy_get(exempt, "env")
    assert code == 200
    assert proxy.connects() == [f"{host}:{sim.port}"]  # no new tunnel
