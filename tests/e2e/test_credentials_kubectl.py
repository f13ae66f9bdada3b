"""Every way a cluster Secret says to authenticate and to trust the cluster, with the real
kubectl through the gateway to a simulated cluster, which records who each request came
as: bearer tokens, client certificates, exec plugins (Dynamic) and the TLS trust keys."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import globalLogPublisher

from clustergateway.auth.user import UserInfo
from clustergateway.certs import make_ca
from clustergateway.registry.samples import cluster_secret
from clustergateway.testing import SimulatedCluster
from tests.fixtures.egress import exec_plugin_runs, proxy_get, write_exec_plugin
from tests.fixtures.gateway import PROXY_PATH, RunningGateway, wait_until
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e

GatewayFactory = Callable[..., Awaitable[RunningGateway]]
V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"


def kubectl() -> str:
    return kubectl_binary("1.33")


async def start(gateway_factory: GatewayFactory, *secrets: dict[str, Any], **config: Any) -> Any:
    gateway = await gateway_factory(mode="memory", secrets=list(secrets), **config)
    await wait_until(lambda: gateway.registry.synced)
    return gateway


async def kubectl_get_namespaces(gateway: RunningGateway, cluster: str) -> Any:
    return await run_kubectl(
        kubectl(), gateway.proxy_kubeconfig(cluster), "get", "namespaces", "-o", "name"
    )


async def kubectl_raw(gateway: RunningGateway, cluster: str) -> Any:
    """``kubectl get --raw`` on the proxy path: no discovery first, so kubectl prints the
    Status message."""
    path = PROXY_PATH.format(cluster=cluster) + "/api/v1/namespaces"
    return await run_kubectl(kubectl(), gateway.kubeconfig, "get", "--raw", path)


def last_user(sim: SimulatedCluster) -> UserInfo | None:
    return sim.requests[-1].user


def exec_secret(sim: SimulatedCluster, name: str, config: dict[str, Any]) -> dict[str, Any]:
    return cluster_secret(
        name, credential_type="Dynamic", endpoint=sim.url, ca=sim.ca_pem, exec_config=config
    )


@pytest_twisted.ensureDeferred
async def test_service_account_token(
    sim: SimulatedCluster, gateway_factory: GatewayFactory
) -> None:
    """ServiceAccountToken: the cluster sees the token's user."""
    sim.add_token("tok-alice", UserInfo("alice", ("team-a",)))
    gateway = await start(
        gateway_factory, cluster_secret("c1", endpoint=sim.url, ca=sim.ca_pem, token="tok-alice")
    )
    result = await kubectl_get_namespaces(gateway, "c1")
    assert result.returncode == 0, result.stderr
    assert b"namespace/default" in result.stdout
    user = last_user(sim)
    assert user is not None and user.name == "alice" and "team-a" in user.groups


@pytest_twisted.ensureDeferred
async def test_x509_client_certificate(
    sim: SimulatedCluster, gateway_factory: GatewayFactory
) -> None:
    """X509Certificate: the cluster sees the certificate's CN as user and its O as groups."""
    pair = sim.issue_client_cert("bob", ["devs", "ops"])
    secret = cluster_secret(
        "c1",
        credential_type="X509Certificate",
        endpoint=sim.url,
        ca=sim.ca_pem,
        certificate=pair.cert_pem,
        private_key=pair.key_pem,
    )
    gateway = await start(gateway_factory, secret)
    result = await kubectl_get_namespaces(gateway, "c1")
    assert result.returncode == 0, result.stderr
    user = last_user(sim)
    assert user is not None and user.name == "bob"
    assert {"devs", "ops"} <= set(user.groups)


@pytest_twisted.ensureDeferred
async def test_dynamic_token_from_plugin_on_path(
    sim: SimulatedCluster, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """Dynamic (v1): the plugin is found on the gateway's PATH, gets its args, its env
    on top of the gateway's and KUBERNETES_EXEC_INFO; the cluster sees the token's user."""
    sim.add_token("tok-carol", UserInfo("carol"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = write_exec_plugin(bin_dir / "issue-token", token="tok-carol", expires_in=3600)
    config = {
        "apiVersion": V1,
        "command": "issue-token",
        "args": ["--cluster", "c1"],
        "env": [{"name": "PLUGIN_ENV", "value": "from-secret"}],
    }
    environ = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    gateway = await start(gateway_factory, exec_secret(sim, "c1", config), environ=environ)
    result = await kubectl_get_namespaces(gateway, "c1")
    assert result.returncode == 0, result.stderr
    user = last_user(sim)
    assert user is not None and user.name == "carol"
    [run] = exec_plugin_runs(plugin)
    assert run["argv"] == ["--cluster", "c1"] and run["env"] == "from-secret"
    assert json.loads(run["info"]) == {
        "kind": "ExecCredential",
        "apiVersion": V1,
        "spec": {"interactive": False},
    }


@pytest_twisted.ensureDeferred
async def test_dynamic_client_certificate_v1beta1(
    sim: SimulatedCluster, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """Dynamic (v1beta1) issuing a client certificate: the cluster sees its CN."""
    pair = sim.issue_client_cert("dave", ["plugin-users"])
    plugin = write_exec_plugin(
        tmp_path / "issue-cert",
        api_version=V1BETA1,
        cert_pem=pair.cert_pem,
        key_pem=pair.key_pem,
    )
    config = {"apiVersion": V1BETA1, "command": str(plugin)}
    gateway = await start(gateway_factory, exec_secret(sim, "c1", config))
    result = await kubectl_get_namespaces(gateway, "c1")
    assert result.returncode == 0, result.stderr
    user = last_user(sim)
    assert user is not None and user.name == "dave" and "plugin-users" in user.groups


@pytest_twisted.ensureDeferred
async def test_dynamic_runs_once_for_concurrent_requests_and_again_after_expiry(
    sim: SimulatedCluster, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """Twenty concurrent requests wait for one plugin run; the credential is reused until a
    minute before expirationTimestamp, then the plugin runs again."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    sim.add_token("tok-erin", UserInfo("erin"))
    # Expires 66 s after the run: reusable for about 5 s (seconds granularity).
    plugin = write_exec_plugin(tmp_path / "slow-plugin", token="tok-erin", expires_in=66, sleep=0.5)
    gateway = await start(
        gateway_factory, exec_secret(sim, "c1", {"apiVersion": V1, "command": str(plugin)})
    )
    results = await gatherResults(
        [Deferred.fromCoroutine(proxy_get(gateway, "c1")) for _ in range(20)]
    )
    assert [code for code, _ in results] == [200] * 20
    assert len(exec_plugin_runs(plugin)) == 1
    assert {r.user.name for r in sim.requests if r.user} == {"erin"}

    code, _ = await proxy_get(gateway, "c1")  # still fresh
    assert code == 200 and len(exec_plugin_runs(plugin)) == 1
    first_run = exec_plugin_runs(plugin)[0]["at"]
    import time

    await deferLater(reactor, max(0.0, first_run + 6.5 - time.time()), lambda: None)
    code, _ = await proxy_get(gateway, "c1")
    assert code == 200
    assert len(exec_plugin_runs(plugin)) == 2
    metrics = gateway.service.metrics
    assert metrics is not None
    runs = metrics.registry.get_sample_value(
        "ocm_proxy_exec_credential_runs_total", {"cluster": "c1"}
    )
    assert runs == 2


@pytest_twisted.ensureDeferred
async def test_dynamic_failures_are_503_with_the_cause(
    sim: SimulatedCluster, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """A failing, hanging, missing or misbehaving plugin gives kubectl a 503 Status naming
    the cluster and client-go's cause; the plugin's stderr is logged, never returned."""
    failing = write_exec_plugin(tmp_path / "failing", exit_code=2, stderr="no credentials\n")
    hanging = write_exec_plugin(tmp_path / "hanging", token="t", sleep=30)
    wrong = write_exec_plugin(tmp_path / "wrong", api_version=V1BETA1, token="secret-tok")
    secrets = [
        exec_secret(sim, "failing", {"apiVersion": V1, "command": str(failing)}),
        exec_secret(sim, "hanging", {"apiVersion": V1, "command": str(hanging)}),
        exec_secret(sim, "missing", {"apiVersion": V1, "command": "no-such-plugin"}),
        exec_secret(sim, "wrong", {"apiVersion": V1, "command": str(wrong)}),
    ]
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        gateway = await start(gateway_factory, *secrets, exec_plugin_timeout=1.0)
        expected = {
            "failing": f"exec: executable {failing} failed with exit code 2",
            "hanging": f"exec: executable {hanging} did not finish within 1s and was killed",
            "missing": "exec: executable no-such-plugin not found",
            "wrong": f"exec plugin is configured to use API version {V1}, "
            f"plugin returned version {V1BETA1}",
        }
        for name, cause in expected.items():
            message = f"cluster {name}: failed to issue credential from external command: {cause}"
            code, status = await proxy_get(gateway, name)
            assert code == 503, (name, status)
            assert status["kind"] == "Status" and status["reason"] == "ServiceUnavailable"
            assert status["message"] == message
            result = await kubectl_raw(gateway, name)
            assert result.returncode == 1
            assert message.encode() in result.stderr, result.stderr
            assert b"secret-tok" not in result.stderr
    finally:
        globalLogPublisher.removeObserver(events.append)
    from twisted.logger import formatEvent

    metrics = gateway.service.metrics
    assert metrics is not None
    failures = metrics.registry.get_sample_value(
        "ocm_proxy_exec_credential_failures_total", {"cluster": "failing"}
    )
    assert failures == 2  # one per request: failures are not cached
    logged = "\n".join(formatEvent(e) for e in events)
    assert "no credentials" in logged  # the failing plugin's stderr
    assert "secret-tok" not in logged  # stdout never is


@pytest_twisted.ensureDeferred
async def test_wrong_ca_is_502_saying_verification_failed(
    sim: SimulatedCluster, gateway_factory: GatewayFactory
) -> None:
    """A CA that did not sign the cluster's certificate: 502 saying the server certificate
    verification failed, and why."""
    other = make_ca("not-the-cluster-ca")
    gateway = await start(
        gateway_factory, cluster_secret("c1", endpoint=sim.url, ca=other.cert_pem, token=sim.token)
    )
    code, status = await proxy_get(gateway, "c1")
    assert code == 502 and status["reason"] == "BadGateway"
    assert status["message"] == (
        f"cluster c1: TLS handshake with {sim.server_address} failed: server certificate "
        "verification failed (certificate verify failed): the server's chain ends in a CA "
        "that is not in the cluster's CA bundle (ca.crt)"
    )
    result = await kubectl_raw(gateway, "c1")
    assert result.returncode == 1
    assert b"server certificate verification failed" in result.stderr, result.stderr


@pytest_twisted.ensureDeferred
async def test_trust_keys(sim: SimulatedCluster, gateway_factory: GatewayFactory) -> None:
    """insecure-skip-tls-verify "true" ignores a wrong CA; no CA key is insecure as in Go
    (logged once per cluster, however many requests); tls-server-name is the name
    verified (and a wrong one fails)."""
    other = make_ca("not-the-cluster-ca")
    base = {"endpoint": sim.url, "token": sim.token}
    secrets = [
        cluster_secret(
            "skip", ca=other.cert_pem, extra_data={"insecure-skip-tls-verify": "true"}, **base
        ),
        cluster_secret("noca", **base),
        cluster_secret("named", ca=sim.ca_pem, extra_data={"tls-server-name": "localhost"}, **base),
        cluster_secret(
            "misnamed", ca=sim.ca_pem, extra_data={"tls-server-name": "wrong.example"}, **base
        ),
    ]
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        gateway = await start(gateway_factory, *secrets)
        for name in ("skip", "noca", "named"):
            for _ in range(3):
                result = await kubectl_get_namespaces(gateway, name)
                assert result.returncode == 0, (name, result.stderr)
        code, status = await proxy_get(gateway, "misnamed")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert code == 502
    assert "the server certificate is not valid for the expected name" in status["message"]
    from twisted.logger import formatEvent

    warnings = [formatEvent(e) for e in events if "NOT verified" in e.get("log_format", "")]
    assert sorted(warnings) == [
        "Cluster noca: the server certificate is NOT verified "
        "(its Secret has no ca.crt (or ca) key)",
        "Cluster skip: the server certificate is NOT verified "
        '(its Secret sets insecure-skip-tls-verify: "true")',
    ]
