"""The OCM addon-manager end to end, against the simulated hub.

The Go repository's sample ClusterManagementAddOn and a ClusterGatewayConfiguration
(``tests/fixtures/addon_samples.py``) are applied with the real ``kubectl``; the
addon-manager (in-process, its own watches on the hub client) installs the gateway;
then a gateway is started from the resulting Deployment's arguments, with the
``cluster-gateway-tls-cert`` Secret written where the pod would mount it (what a
kubelet does), and ``kubectl`` reaches a member cluster through it, authenticated
by the hub.  Member ``a`` stands behind ManagedCluster ``c1``; its token reaches the
gateway only through the ManagedServiceAccount token copy.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
import yaml

from clustergateway.addon.tap import AddonManagerConfig, AddonManagerService, build_service
from clustergateway.registry.samples import managed_cluster
from clustergateway.tap import GatewayService
from clustergateway.tap import build_service as build_gateway
from clustergateway.testing import SimulatedCluster
from tests.fixtures.addon_samples import CHART_CGC_DIRECT_MSA, SAMPLE_CGC, SAMPLE_CMA
from tests.fixtures.gateway import wait_until
from tests.fixtures.installs import LOCAL, parse
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e

MEMBER_TOKEN = "member-token"
INSTALL_NS = "vela-system"
CREDS = "open-cluster-management-credentials"
MANAGER_NS = "open-cluster-management-addon"


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@attrs.define
class Hub:
    sim: SimulatedCluster
    member: SimulatedCluster
    kubeconfig: Path
    tmp: Path

    async def kubectl(self, *args: str, stdin: bytes | None = None) -> bytes:
        done = await run_kubectl(
            kubectl_binary("1.33"), self.kubeconfig, *args, stdin=stdin, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.sim.store.get(resource, namespace, name)


@pytest_twisted.async_yield_fixture
async def hub(sim: SimulatedCluster, tmp_path: Path) -> AsyncIterator[Hub]:
    """The hub with ManagedCluster ``c1`` → running member ``a`` (accepting MEMBER_TOKEN)."""
    member = SimulatedCluster.create(tmp_path / "a", MEMBER_TOKEN, _reactor(), name="a")
    member.store.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "who", "namespace": "default"},
            "data": {"cluster": "a"},
        }
    )
    await member.start(port=0, interface="127.0.0.1")
    sim.store.put(managed_cluster("c1", url=member.url, ca=member.ca_pem))
    try:
        yield Hub(sim, member, sim.write_kubeconfig(tmp_path / "hub.kubeconfig"), tmp_path)
    finally:
        await member.stop()


def _config(hub: Hub, **changes: Any) -> AddonManagerConfig:
    values: dict[str, Any] = {
        "namespace": MANAGER_NS,
        "kubeconfig": str(hub.kubeconfig),
        "metrics_bind_address": "127.0.0.1:0",
        "health_probe_bind_address": "127.0.0.1:0",
        "probe_interval": 3600.0,  # the health test probes on its own
        "resync_period": 3600.0,  # every pass here comes from a watch event
    }
    values.update(changes)
    return AddonManagerConfig(**values)


@pytest_twisted.async_yield_fixture
async def manager(hub: Hub) -> AsyncIterator[AddonManagerService]:
    service = build_service(_reactor(), _config(hub))
    service.startService()
    try:
        yield service
    finally:
        await service.stopService()
        await service.hub.close()


def _token_secret(hub: Hub, cluster: str, token: str) -> bytes:
    """What the managed-serviceaccount addon writes: the token Secret in the cluster ns."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cluster-gateway", "namespace": cluster},
        "type": "Opaque",
        "data": {
            "token": base64.b64encode(token.encode()).decode(),
            "ca.crt": base64.b64encode(hub.member.ca_pem).decode(),
        },
    }
    return yaml.safe_dump(secret).encode()


MCA = b"""\
apiVersion: addon.open-cluster-management.io/v1alpha1
kind: ManagedClusterAddOn
metadata:
  name: cluster-gateway
  namespace: c1
spec:
  installNamespace: open-cluster-management-cluster-gateway
"""

INSTALLED = [
    ("namespace", None, INSTALL_NS),
    ("namespace", None, CREDS),
    ("secret", MANAGER_NS, "cluster-gateway-signer"),
    ("secret", INSTALL_NS, "cluster-gateway-tls-cert"),
    ("serviceaccount", INSTALL_NS, "cluster-gateway"),
    ("service", INSTALL_NS, "cluster-gateway"),
    ("rolebinding", "kube-system", "extension-apiserver-authentication-reader:cluster-gateway"),
    ("role", CREDS, "cluster-gateway"),
    ("rolebinding", CREDS, "cluster-gateway"),
    ("clusterrole", None, "apiserver-aggregation:cluster-gateway"),
    ("clusterrolebinding", None, "apiserver-aggregation:cluster-gateway"),
    ("apiservice", None, "v1alpha1.cluster.core.oam.dev"),
    ("deployment", INSTALL_NS, "gateway-deployment"),
    ("managedserviceaccount", "c1", "cluster-gateway"),
    ("secret", CREDS, "c1"),
]


async def _apply_install(hub: Hub, cgc: str = CHART_CGC_DIRECT_MSA) -> None:
    await hub.kubectl("create", "namespace", "c1")
    await hub.kubectl("apply", "-f", "-", stdin=MCA)
    await hub.kubectl("apply", "-f", "-", stdin=_token_secret(hub, "c1", MEMBER_TOKEN))
    await hub.kubectl("apply", "-f", "-", stdin=SAMPLE_CMA.encode())
    await hub.kubectl("apply", "-f", "-", stdin=cgc.encode())


def _installed(hub: Hub) -> bool:
    return all(hub.get(kind, ns, name) is not None for kind, ns, name in INSTALLED)


def _local_kubeconfig(path: Path, server: str, ca: bytes, token: str) -> Path:
    """A kubeconfig reaching the gateway as its Service name (the serving cert's SAN)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ca_path = path.with_suffix(".ca.crt")
    ca_path.write_bytes(ca)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "gw",
                        "cluster": {
                            "server": server,
                            "certificate-authority": str(ca_path),
                            "tls-server-name": f"cluster-gateway.{INSTALL_NS}.svc",
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "gw", "context": {"cluster": "gw", "user": "u"}}],
                "current-context": "gw",
            }
        )
    )
    return path


def start_gateway_from_deployment(hub: Hub, root: Path) -> GatewayService:
    """Run the Deployment's container the way a kubelet would, in-process.

    Each secret volume is written under ``root`` + its mountPath; the container's
    arguments are rewritten to those places; only a loopback port and the hub's
    kubeconfig (in place of the pod's service account) are appended.
    """
    deployment = hub.get("deployment", INSTALL_NS, "gateway-deployment")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"]}
    mounts = {}
    for mount in container["volumeMounts"]:
        secret = hub.get("secret", INSTALL_NS, volumes[mount["name"]])
        assert secret is not None, volumes[mount["name"]]
        target = root / mount["mountPath"].strip("/")
        target.mkdir(parents=True, exist_ok=True)
        for key, value in secret["data"].items():
            (target / key).write_bytes(base64.b64decode(value))
        mounts[mount["mountPath"].rstrip("/")] = target
    args = []
    for arg in container["args"]:
        flag, sep, value = arg.partition("=")
        for mounted, local in mounts.items():
            if sep and value.startswith(mounted + "/"):
                arg = f"{flag}={local}{value[len(mounted) :]}"
        args.append(arg)
    service: GatewayService = build_gateway(
        _reactor(), parse([*args, *LOCAL, f"--kubeconfig={hub.kubeconfig}"])
    )
    service.startService()
    return service


def _signer_pem(hub: Hub) -> bytes:
    signer = hub.get("secret", MANAGER_NS, "cluster-gateway-signer")
    assert signer is not None
    return base64.b64decode(signer["data"]["ca.crt"])


@pytest_twisted.ensureDeferred
async def test_samples_install_and_a_gateway_from_the_deployment_serves_the_cluster(
    hub: Hub, manager: AddonManagerService
) -> None:
    """kubectl-applied samples → every §6.2 object with Go's names (read back with
    kubectl); a second pass writes nothing; the Deployment's own arguments start a
    gateway that serves ``c1`` from the copied token, and kubectl reaches member ``a``
    through it.  The APIService's caBundle verifies the gateway's certificate."""
    await _apply_install(hub)
    await wait_until(lambda: _installed(hub), timeout=30)

    def reported() -> bool:  # the pass writes the configuration's status last
        cgc = hub.get("clustergatewayconfiguration", None, "cluster-gateway") or {}
        return len((cgc.get("status") or {}).get("conditions") or []) == 2

    await wait_until(reported, timeout=15)
    listed = await hub.kubectl(
        "get", "deployment,service,serviceaccount", "-n", INSTALL_NS, "-o", "name"
    )
    assert set(listed.split()) >= {
        b"deployment.apps/gateway-deployment",
        b"service/cluster-gateway",
        b"serviceaccount/cluster-gateway",
    }
    copied = hub.get("secret", CREDS, "c1")
    assert copied is not None
    assert copied["metadata"]["labels"] == {
        "cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken",
        "cluster.core.oam.dev/cluster-endpoint-type": "Const",
    }
    owner = hub.get("clustermanagementaddon", None, "cluster-gateway")
    assert owner is not None
    assert copied["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    api = hub.get("apiservice", None, "v1alpha1.cluster.core.oam.dev")
    assert api is not None and base64.b64decode(api["spec"]["caBundle"]) == _signer_pem(hub)
    cgc = yaml.safe_load(
        await hub.kubectl("get", "clustergatewayconfiguration", "cluster-gateway", "-o", "yaml")
    )
    conditions = {c["type"]: c["status"] for c in cgc["status"]["conditions"]}
    assert conditions == {"ClusterGatewayDeployed": "True", "ClusterCredentialsCopied": "True"}

    revision = hub.sim.store.revision
    outcome = await manager.installer.reconcile()
    assert outcome.writes == () and hub.sim.store.revision == revision

    gateway = start_gateway_from_deployment(hub, hub.tmp / "pod")
    try:
        base = gateway.listener.url
        through = _local_kubeconfig(
            hub.tmp / "c1.kubeconfig",
            base + "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy",
            base64.b64decode(api["spec"]["caBundle"]),
            hub.sim.token,
        )
        await wait_until(lambda: gateway.registry.entry("c1") is not None, timeout=10)
        who = await run_kubectl(
            kubectl_binary("1.33"),
            through,
            "get",
            "configmap",
            "who",
            "-n",
            "default",
            "-o",
            "jsonpath={.data.cluster}",
        )
        assert (who.returncode, who.stdout) == (0, b"a"), who.stderr
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_deleted_objects_come_back_and_rotated_token_is_copied(
    hub: Hub, manager: AddonManagerService
) -> None:
    """Deleting owned objects with kubectl gets them back from the watch-triggered pass;
    a rotated ManagedServiceAccount token reaches the copy without any resync."""
    await _apply_install(hub)
    await wait_until(lambda: _installed(hub), timeout=30)
    await hub.kubectl("delete", "deployment", "gateway-deployment", "-n", INSTALL_NS)
    await hub.kubectl("delete", "clusterrolebinding", "apiserver-aggregation:cluster-gateway")
    await hub.kubectl("delete", "secret", "c1", "-n", CREDS)
    await wait_until(lambda: _installed(hub), timeout=15)
    await hub.kubectl("apply", "-f", "-", stdin=_token_secret(hub, "c1", "rotated-token"))

    def rotated() -> bool:
        copy = hub.get("secret", CREDS, "c1")
        return copy is not None and base64.b64decode(copy["data"]["token"]) == b"rotated-token"

    await wait_until(rotated, timeout=15)


@pytest_twisted.ensureDeferred
async def test_sample_with_missing_proxy_secrets_reports_a_condition(
    hub: Hub, manager: AddonManagerService
) -> None:
    """The Go sample (ClusterProxy egress) without its proxy client Secrets: the
    configuration gets ClusterGatewayDeployed=False naming the Secret and nothing is
    installed; once the Secrets appear the install completes."""
    await _apply_install(hub, SAMPLE_CGC)

    def condition() -> dict[str, Any] | None:
        cgc = hub.get("clustergatewayconfiguration", None, "cluster-gateway") or {}
        for c in (cgc.get("status") or {}).get("conditions") or []:
            if c["type"] == "ClusterGatewayDeployed":
                return dict(c)
        return None

    await wait_until(lambda: condition() is not None, timeout=30)
    failed = condition()
    assert failed is not None
    assert (failed["status"], failed["reason"]) == ("False", "MissingSecret")
    assert "open-cluster-management-addon/proxy-server-ca" in failed["message"]
    assert hub.get("deployment", MANAGER_NS, "gateway-deployment") is None
    assert hub.get("namespace", None, MANAGER_NS) is None  # nothing written, not even that
    await hub.kubectl("create", "namespace", MANAGER_NS)
    for name in ("proxy-server-ca", "proxy-client"):
        await hub.kubectl(
            "create", "secret", "generic", name, "-n", MANAGER_NS, "--from-literal=ca.crt=x"
        )
    await wait_until(lambda: (condition() or {}).get("status") == "True", timeout=30)
    assert hub.get("deployment", MANAGER_NS, "gateway-deployment") is not None


def _serving_pem(hub: Hub) -> bytes:
    secret = hub.get("secret", INSTALL_NS, "cluster-gateway-tls-cert")
    assert secret is not None
    return base64.b64decode(secret["data"]["tls.crt"])


@pytest_twisted.ensureDeferred
async def test_certificate_close_to_expiry_renewed_and_ca_bundle_follows_the_signer(
    hub: Hub, manager: AddonManagerService
) -> None:
    """A serving pair with a day left (of 180) is replaced on its Secret's event; deleting
    the signer makes a new CA, the pair is reissued by it and the APIService caBundle
    follows, all without a restart or a resync."""
    import datetime

    from cryptography import x509

    from clustergateway.addon.pki import Signer, serving_secret

    await _apply_install(hub)
    await wait_until(lambda: _installed(hub), timeout=30)
    signer = Signer.from_secret(hub.get("secret", MANAGER_NS, "cluster-gateway-signer") or {})
    now = datetime.datetime.now(datetime.UTC)
    old = serving_secret(
        INSTALL_NS, signer, now - datetime.timedelta(days=179), datetime.timedelta(days=180)
    )
    await hub.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(old).encode())
    old_pem = base64.b64decode(old["data"]["tls.crt"])

    def renewed() -> bool:
        return _serving_pem(hub) != old_pem

    await wait_until(renewed, timeout=15)
    cert = x509.load_pem_x509_certificate(_serving_pem(hub))
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=179)
    assert signer.signed(cert)

    await hub.kubectl("delete", "secret", "cluster-gateway-signer", "-n", MANAGER_NS)

    def moved() -> bool:
        secret = hub.get("secret", MANAGER_NS, "cluster-gateway-signer")
        api = hub.get("apiservice", None, "v1alpha1.cluster.core.oam.dev")
        if secret is None or api is None or secret["data"]["ca.crt"] != api["spec"]["caBundle"]:
            return False
        return Signer.from_secret(secret).signed(x509.load_pem_x509_certificate(_serving_pem(hub)))

    await wait_until(moved, timeout=15)
    assert _signer_pem(hub) != signer.cert_pem


@pytest_twisted.ensureDeferred
async def test_health_prober_flips_cluster_health_and_addon_available(
    hub: Hub, manager: AddonManagerService
) -> None:
    """Probing through a gateway started from the Deployment: member ``a`` up → the
    addon's Available is True (SuccessfullyProbedHealthz); ``a`` dark → the cluster's
    health (the Secret's annotations, read back through the gateway) and Available turn
    False (FailedProbingHealthz, with the error); back → both True again.  Health is
    written only on change."""
    from clustergateway.addon.prober import AddonHealthProber
    from clustergateway.hubclient import HubClient, HubConfig

    await _apply_install(hub)
    await wait_until(lambda: _installed(hub), timeout=30)
    gateway = start_gateway_from_deployment(hub, hub.tmp / "pod")
    api = hub.get("apiservice", None, "v1alpha1.cluster.core.oam.dev")
    assert api is not None
    client = HubClient.from_config(
        _reactor(),
        HubConfig(
            server=gateway.listener.url,
            ca_pem=base64.b64decode(api["spec"]["caBundle"]),
            tls_server_name=f"cluster-gateway.{INSTALL_NS}.svc",
            authorization=lambda: f"Bearer {hub.sim.token}",
        ),
    )
    prober = AddonHealthProber(_reactor(), manager.hub, client, timeout=5.0)
    try:
        await wait_until(lambda: gateway.registry.entry("c1") is not None, timeout=10)

        def available() -> dict[str, Any]:
            mca = hub.get("managedclusteraddon", "c1", "cluster-gateway") or {}
            conditions = (mca.get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c["type"] == "Available"), {})

        def annotations() -> dict[str, str]:
            secret = hub.get("secret", CREDS, "c1") or {}
            return dict((secret.get("metadata") or {}).get("annotations") or {})

        health_path = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/health"
        before = await client.get_json(health_path)
        # no health annotation yet: the gateway shows the cluster healthy, so (as in Go)
        # a healthy probe has nothing to write on it
        assert before["status"]["healthy"] is True and annotations() == {}
        version = (hub.get("secret", CREDS, "c1") or {})["metadata"]["resourceVersion"]
        assert await prober.probe("c1") is True
        assert (hub.get("secret", CREDS, "c1") or {})["metadata"]["resourceVersion"] == version
        assert (available()["status"], available()["reason"]) == (
            "True",
            "SuccessfullyProbedHealthz",
        )
        assert available()["message"] == "Returned OK"

        await hub.member.go_dark()
        assert await prober.probe("c1") is False
        condition = available()
        assert (condition["status"], condition["reason"]) == ("False", "FailedProbingHealthz")
        assert condition["message"]
        assert annotations()["status.cluster.core.oam.dev/healthy"] == "false"
        assert annotations()["status.cluster.core.oam.dev/healthy-reason"] == condition["message"]
        await wait_until(
            lambda: gateway.registry.recorded_health("c1") == (False, condition["message"])
        )
        health = await client.get_json(health_path)
        assert health["status"]["healthy"] is False
        version = (hub.get("secret", CREDS, "c1") or {})["metadata"]["resourceVersion"]
        assert await prober.probe("c1") is False
        assert (hub.get("secret", CREDS, "c1") or {})["metadata"]["resourceVersion"] == version

        await hub.member.come_back()
        assert await prober.probe("c1") is True
        assert available()["status"] == "True"
        assert annotations()["status.cluster.core.oam.dev/healthy"] == "true"
        assert annotations()["status.cluster.core.oam.dev/healthy-reason"] == ""
    finally:
        await client.close()
        await gateway.stopService()


def _http_get(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


@pytest_twisted.ensureDeferred
async def test_two_replicas_elect_one_leader_with_metrics_and_healthz(hub: Hub) -> None:
    """Two ``--leader-elect`` replicas on one hub: exactly one holds the Lease and
    installs; both serve /healthz and /metrics on their own ports (the leader gauge
    says which leads); when the leader stops, the other takes over and keeps the
    install healed."""
    from twisted.internet.threads import deferToThread

    await hub.kubectl("create", "namespace", MANAGER_NS)
    timings = {
        "leader_elect": True,
        "lease_duration": 2.0,
        "renew_deadline": 1.5,
        "retry_period": 0.2,
    }
    replicas = [
        build_service(_reactor(), _config(hub, identity=name, **timings)) for name in ("r1", "r2")
    ]
    for replica in replicas:
        replica.startService()
    stopped: list[AddonManagerService] = []
    try:

        def leaders() -> list[AddonManagerService]:
            return [r for r in replicas if r.elector is not None and r.elector.leading]

        await wait_until(lambda: len(leaders()) == 1, timeout=10)
        (leader,) = leaders()
        other = next(r for r in replicas if r is not leader)
        lease = hub.get("lease", MANAGER_NS, "cluster-gateway-addon-manager")
        assert lease is not None and lease["spec"]["holderIdentity"] == leader.elector.identity
        assert leader.controller.running and not other.controller.running
        await _apply_install(hub)
        await wait_until(lambda: _installed(hub), timeout=30)
        assert other.runner.passes == 0
        for replica in replicas:
            health = replica.listeners["health"]._port.getHost().port
            metrics = replica.listeners["metrics"]._port.getHost().port
            status, body = await deferToThread(_http_get, f"http://127.0.0.1:{health}/healthz")
            assert (status, body) == (200, b"ok")
            status, body = await deferToThread(_http_get, f"http://127.0.0.1:{metrics}/metrics")
            assert status == 200
            leading = 1.0 if replica is leader else 0.0
            assert (
                f'leader_election_master_status{{name="cluster-gateway-addon-manager"}} {leading}'
                in body.decode()
            )
        await leader.stopService()
        stopped.append(leader)
        await wait_until(lambda: leaders() == [other], timeout=10)
        await hub.kubectl("delete", "deployment", "gateway-deployment", "-n", INSTALL_NS)
        await wait_until(lambda: _installed(hub), timeout=15)  # only ``other`` runs passes
        await wait_until(lambda: other.runner.passes > 0, timeout=15)
    finally:
        for replica in replicas:
            if replica not in stopped:
                await replica.stopService()
            await replica.hub.close()


@pytest_twisted.ensureDeferred
async def test_console_script_process_installs(hub: Hub) -> None:
    """``cluster-gateway-addon-manager`` as its own process (twistd underneath), with
    ``--leader-elect=true`` as the chart runs it, installs the samples against the hub,
    serves /healthz on its probe port, and shuts down on SIGTERM without an unhandled
    error (the Lease release answered on a hub TLS connection must not let twistd
    disconnect that connection under its own dataReceived: ``clustergateway.stopping``)."""
    import shutil
    import signal
    import socket
    import subprocess
    import sys

    from twisted.internet.threads import deferToThread

    script = shutil.which("cluster-gateway-addon-manager", path=str(Path(sys.executable).parent))
    assert script is not None
    await hub.kubectl("create", "namespace", MANAGER_NS)  # where the pod, and its Lease, live
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [
            script,
            f"--kubeconfig={hub.kubeconfig}",
            f"--namespace={MANAGER_NS}",
            "--leader-elect=true",
            "--metrics-bind-address=0",
            f"--health-probe-bind-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await _apply_install(hub)
        await wait_until(lambda: _installed(hub), timeout=60, interval=0.2)
        status, body = await deferToThread(_http_get, f"http://127.0.0.1:{port}/healthz")
        assert (status, body) == (200, b"ok")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await deferToThread(process.communicate, timeout=30)
    # twistd ends a SIGTERM by re-raising it after a clean shutdown
    assert process.returncode in (0, -signal.SIGTERM), output.decode(errors="replace")[-2000:]
    assert b"Server Shut Down." in output
    log = output.decode(errors="replace")
    assert "Unhandled Error" not in log and "Traceback" not in log, log[-4000:]
