"""``cluster-gateway patch``: the Go image's ``/patch`` Job against the simulated hub.

The hub holds the APIService as the vela-core chart renders it (placeholder
``caBundle``); the subcommand runs as a process with the Job's exact arguments
(``$KUBECONFIG`` standing in for the in-cluster service account).  After it,
a gateway serving the Secret's pair (as the chart mounts it) is trusted by
kubectl configured with nothing but the APIService's ``caBundle`` and the
Service name the aggregator dials.
"""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
import yaml
from cryptography import x509
from twisted.internet.threads import deferToThread

from clustergateway.testing import SimulatedCluster
from tests.fixtures.gateway import token_cluster
from tests.fixtures.go_command_lines import VELA_API_SERVICE, VELA_PATCH_ARGS
from tests.fixtures.installs import BY_NAME, ready, start_line
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

SCRIPT = str(Path(sys.executable).parent / "cluster-gateway")
APISERVICE = "v1alpha1.cluster.core.oam.dev"
SECRET = ("vela-system", "kubevela-vela-core-cluster-gateway-tls-v2")
SERVICE_DNS = "kubevela-cluster-gateway-service.vela-system.svc"


async def patch(sim: SimulatedCluster, tmp_path: Path, *args: str) -> Any:
    """Run ``cluster-gateway patch ARGS`` as a process; the finished process."""
    kubeconfig = sim.write_kubeconfig(tmp_path / "hub.kubeconfig")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
    return await deferToThread(
        subprocess.run, [SCRIPT, "patch", *args], capture_output=True, env=env, timeout=60
    )


def api_service(sim: SimulatedCluster) -> dict[str, Any]:
    found = sim.store.get("apiservices", None, APISERVICE)
    assert found is not None
    return dict(found)


def secret_data(sim: SimulatedCluster) -> dict[str, bytes]:
    found = sim.store.get("secrets", *SECRET)
    assert found is not None
    return {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}


def aggregator_kubeconfig(path: Path, server: str, ca_bundle: str, token: str, name: str) -> Path:
    """A kubeconfig that verifies like the aggregator: caBundle as CA, the Service's name."""
    cluster: dict[str, Any] = {"server": server, "certificate-authority-data": ca_bundle}
    if name:
        cluster["tls-server-name"] = name
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gw", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "gw", "context": {"cluster": "gw", "user": "u"}}],
                "current-context": "gw",
            }
        )
    )
    return path


@pytest_twisted.ensureDeferred
async def test_patch_creates_the_pair_sets_the_bundle_and_kubectl_trusts_the_gateway(
    tmp_path: Path, sim: SimulatedCluster
) -> None:
    """``--create-secret`` fills the missing Secret (CA + pair for the APIService's
    Service); the Job's own arguments then set caBundle and switch insecureSkipTLSVerify
    off; a gateway serving that pair is trusted by kubectl with only the caBundle, under
    the Service's name, and not under another name."""
    sim.store.put(copy.deepcopy(dict(VELA_API_SERVICE)))
    sim.store.put(token_cluster("c1"))
    created = await patch(sim, tmp_path, *VELA_PATCH_ARGS, "--create-secret")
    assert created.returncode == 0, created.stderr
    assert created.stdout.decode().splitlines() == [
        f"cluster-gateway patch: created Secret {SECRET[0]}/{SECRET[1]} (CA and serving pair "
        "for kubevela-cluster-gateway-service, kubevela-cluster-gateway-service.vela-system, "
        f"{SERVICE_DNS})",
        f"cluster-gateway patch: APIService {APISERVICE} now verifies its service with the CA "
        f"bundle in Secret {SECRET[0]}/{SECRET[1]} (key 'ca'); insecureSkipTLSVerify is off",
    ]
    data = secret_data(sim)
    assert sorted(data) == ["ca", "tls.crt", "tls.key"]
    spec = api_service(sim)["spec"]
    assert base64.b64decode(spec["caBundle"]) == data["ca"]
    assert spec["insecureSkipTLSVerify"] is False
    assert spec["service"] == VELA_API_SERVICE["spec"]["service"]  # type: ignore[index]
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert SERVICE_DNS in names.get_values_for_type(x509.DNSName)

    # The Job again, as the chart re-runs it on upgrade: nothing to change, nothing changed.
    before = api_service(sim)["metadata"]["resourceVersion"]
    again = await patch(sim, tmp_path, *VELA_PATCH_ARGS)
    assert again.returncode == 0, again.stderr
    assert b"already trusts the CA" in again.stdout
    assert api_service(sim)["metadata"]["resourceVersion"] == before
    assert secret_data(sim) == data

    # The gateway as the chart runs it, its --tls-* files being the Secret's keys.
    service, installed = await start_line(BY_NAME["vela-core"], tmp_path, sim)
    try:
        mounted = tmp_path / "root" / "etc" / "k8s-cluster-gateway-certs"
        (mounted / "tls.crt").write_bytes(data["tls.crt"])
        (mounted / "tls.key").write_bytes(data["tls.key"])
        trusted = aggregator_kubeconfig(
            tmp_path / "trusted.kubeconfig",
            service.listener.url,
            spec["caBundle"],
            sim.token,
            SERVICE_DNS,
        )
        # The mounted files were written after the start: the reload serves them.
        assert b"readyz check passed" in await ready(trusted)
        listed = await run_kubectl(
            kubectl_binary("1.33"), trusted, "get", "clustergateways", "-o", "name"
        )
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split() == [b"clustergateway.cluster.core.oam.dev/c1"]
        other_name = aggregator_kubeconfig(
            tmp_path / "other.kubeconfig",
            service.listener.url,
            spec["caBundle"],
            sim.token,
            "gateway.example",
        )
        refused = await run_kubectl(kubectl_binary("1.29"), other_name, "get", "--raw", "/readyz")
        assert refused.returncode != 0
        assert b"x509: certificate is valid for kubevela-cluster-gateway-service, " in (
            refused.stderr
        )
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_missing_key_changes_nothing(tmp_path: Path, sim: SimulatedCluster) -> None:
    """A Secret without the CA key: exit 1 with one line naming the Secret and the key;
    the APIService keeps its placeholder bundle and resourceVersion."""
    sim.store.put(copy.deepcopy(dict(VELA_API_SERVICE)))
    sim.store.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET[1], "namespace": SECRET[0]},
            "data": {"tls.crt": base64.b64encode(b"x").decode()},
        }
    )
    before = api_service(sim)
    result = await patch(sim, tmp_path, *VELA_PATCH_ARGS, "--create-secret")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        f"cluster-gateway patch: Secret {SECRET[0]}/{SECRET[1]} has no key 'ca'; nothing changed"
    ]
    assert api_service(sim) == before
    assert sorted(secret_data(sim)) == ["tls.crt"]


@pytest_twisted.ensureDeferred
async def test_missing_secret_or_bad_bundle_changes_nothing(
    tmp_path: Path, sim: SimulatedCluster
) -> None:
    """No Secret (and no --create-secret), or a key that holds no PEM certificate: exit 1
    naming the Secret; nothing is created or changed."""
    sim.store.put(copy.deepcopy(dict(VELA_API_SERVICE)))
    before = api_service(sim)
    missing = await patch(sim, tmp_path, *VELA_PATCH_ARGS)
    assert missing.returncode == 1
    assert f"Secret {SECRET[0]}/{SECRET[1]} not found".encode() in missing.stderr
    assert sim.store.get("secrets", *SECRET) is None
    sim.store.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET[1], "namespace": SECRET[0]},
            "data": {"ca": base64.b64encode(b"not a certificate").decode()},
        }
    )
    garbled = await patch(sim, tmp_path, *VELA_PATCH_ARGS)
    assert garbled.returncode == 1
    assert b"key 'ca' holds no PEM certificate" in garbled.stderr
    missing_api = await patch(sim, tmp_path, *VELA_PATCH_ARGS, "--target-APIService=v1.nope.io")
    assert missing_api.returncode == 1
    assert b"reading APIService v1.nope.io: the hub answered 404" in missing_api.stderr
    assert api_service(sim) == before
