"""The installer reconcile against an in-memory hub (the simulated cluster's store)."""

from __future__ import annotations

import base64
import datetime

import pytest

from clustergateway.addon.installer import Installer
from clustergateway.addon.pki import Signer
from clustergateway.testing.memoryhub import StoreHubClient
from tests.fixtures.addon_samples import CHART_CGC_DIRECT_MSA, SAMPLE_CGC, SAMPLE_CMA, load
from tests.unit.addon.conftest import FakeTime, run

CREDS = "open-cluster-management-credentials"
ADDON_NS = "open-cluster-management-addon"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _proxy_secrets(hub: StoreHubClient) -> None:
    for name in ("proxy-server-ca", "proxy-client"):
        hub.store.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": ADDON_NS},
                "data": {"ca.crt" if name == "proxy-server-ca" else "tls.crt": _b64(name.encode())},
            }
        )


def _cluster(hub: StoreHubClient, name: str, token: bytes | None = b"tok") -> None:
    hub.store.put(
        {
            "apiVersion": "addon.open-cluster-management.io/v1alpha1",
            "kind": "ManagedClusterAddOn",
            "metadata": {"name": "cluster-gateway", "namespace": name},
        }
    )
    if token is not None:
        hub.store.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "cluster-gateway", "namespace": name},
                "data": {"token": _b64(token), "ca.crt": _b64(b"ca-" + name.encode())},
            }
        )


def _installer(hub: StoreHubClient, clock: FakeTime | None = None) -> Installer:
    return Installer(hub, "open-cluster-management-addon-manager", now=clock or FakeTime())


@pytest.fixture
def sample(hub: StoreHubClient) -> StoreHubClient:
    hub.store.put(load(SAMPLE_CMA))
    hub.store.put(load(SAMPLE_CGC))
    _proxy_secrets(hub)
    _cluster(hub, "c1")
    return hub


OWNED = [
    ("Namespace", None, ADDON_NS),
    ("Namespace", None, CREDS),
    ("Secret", ADDON_NS, "cluster-gateway-tls-cert"),
    ("ServiceAccount", ADDON_NS, "cluster-gateway"),
    ("Service", ADDON_NS, "cluster-gateway"),
    ("RoleBinding", "kube-system", "extension-apiserver-authentication-reader:cluster-gateway"),
    ("Role", CREDS, "cluster-gateway"),
    ("RoleBinding", CREDS, "cluster-gateway"),
    ("ClusterRole", None, "apiserver-aggregation:cluster-gateway"),
    ("ClusterRoleBinding", None, "apiserver-aggregation:cluster-gateway"),
    ("APIService", None, "v1alpha1.cluster.core.oam.dev"),
    ("Deployment", ADDON_NS, "gateway-deployment"),
    ("ManagedServiceAccount", "c1", "cluster-gateway"),
    ("Secret", CREDS, "c1"),
]
#: In the Go sample the proxy client Secrets' source namespace is the install
#: namespace, so the copies are the sources themselves (checked, not owned).


def test_sample_creates_every_object_then_a_second_pass_writes_nothing(sample):
    """Go's sample CMA + CGC: every §6.2 object with Go's name; then idempotent."""
    installer = _installer(sample)
    outcome = run(installer.reconcile())
    assert outcome.state == "installed", outcome
    for kind, namespace, name in OWNED:
        assert sample.store.get(kind, namespace, name) is not None, (kind, namespace, name)
    signer = sample.store.get(
        "secrets", "open-cluster-management-addon-manager", "cluster-gateway-signer"
    )
    api = sample.store.get("apiservices", None, "v1alpha1.cluster.core.oam.dev")
    assert api["spec"]["caBundle"] == signer["data"]["ca.crt"]
    copy = sample.store.get("secrets", CREDS, "c1")
    assert base64.b64decode(copy["data"]["token"]) == b"tok"
    cgc = sample.store.get("clustergatewayconfigurations", None, "cluster-gateway")
    conditions = {c["type"]: c for c in cgc["status"]["conditions"]}
    assert conditions["ClusterGatewayDeployed"]["status"] == "True"
    assert conditions["ClusterCredentialsCopied"]["status"] == "True"
    before = sample.store.revision
    sample.calls.clear()
    again = run(installer.reconcile())
    assert again.writes == () and sample.writes() == []
    assert sample.store.revision == before


@pytest.mark.parametrize("kind, namespace, name", OWNED)
def test_deleting_any_owned_object_gets_it_back(sample, kind, namespace, name):
    """Each object of the install, deleted, is there again after one pass."""
    installer = _installer(sample)
    run(installer.reconcile())
    assert sample.store.remove(kind, namespace, name)
    if sample.store.get("secrets", ADDON_NS, "proxy-client") is None:
        # the sample keeps the proxy client's source Secrets in the install namespace:
        # deleting that namespace takes them too; their owner (cluster-proxy) would
        # bring them back, and until then the pass refuses to install
        assert run(installer.reconcile()).state == "failed"
        _proxy_secrets(sample)
    run(installer.reconcile())
    for k, ns, n in OWNED:
        assert sample.store.get(k, ns, n) is not None, (k, ns, n)


def test_token_rotation_updates_the_copy_in_one_pass(sample):
    """A rotated MSA token reaches ``<secretNamespace>/<cluster>`` in the next pass."""
    installer = _installer(sample)
    run(installer.reconcile())
    token = sample.store.get("secrets", "c1", "cluster-gateway")
    token["data"]["token"] = _b64(b"rotated")
    sample.store.put(token)
    run(installer.reconcile())
    copy = sample.store.get("secrets", CREDS, "c1")
    assert base64.b64decode(copy["data"]["token"]) == b"rotated"
    assert copy["metadata"]["labels"]["cluster.core.oam.dev/cluster-endpoint-type"] == (
        "ClusterProxy"
    )


def test_drift_is_repaired_and_ca_bundle_reapplied(sample):
    """Edited owned fields (a Role's rules, the APIService caBundle) are put back."""
    installer = _installer(sample)
    run(installer.reconcile())
    role = sample.store.get("roles", CREDS, "cluster-gateway")
    role["rules"] = []
    sample.store.put(role)
    api = sample.store.get("apiservices", None, "v1alpha1.cluster.core.oam.dev")
    wanted = api["spec"]["caBundle"]
    api["spec"]["caBundle"] = _b64(b"stale")
    sample.store.put(api)
    run(installer.reconcile())
    assert sample.store.get("roles", CREDS, "cluster-gateway")["rules"][0]["resources"] == [
        "secrets"
    ]
    api = sample.store.get("apiservices", None, "v1alpha1.cluster.core.oam.dev")
    assert api["spec"]["caBundle"] == wanted


def test_deployment_follows_the_configuration_generation(sample):
    """Go's rule: a new generation rewrites the Deployment (image, label); same one leaves it."""
    installer = _installer(sample)
    run(installer.reconcile())
    deployment = sample.store.get("deployments", ADDON_NS, "gateway-deployment")
    deployment["spec"]["replicas"] = 5
    sample.store.put(deployment)
    run(installer.reconcile())
    assert sample.store.get("deployments", ADDON_NS, "gateway-deployment")["spec"]["replicas"] == 5
    cgc = sample.store.get("clustergatewayconfigurations", None, "cluster-gateway")
    cgc["spec"]["image"] = "oamdev/cluster-gateway:v1.9.0"
    sample.store.put(cgc)
    run(installer.reconcile())
    deployment = sample.store.get("deployments", ADDON_NS, "gateway-deployment")
    assert (
        deployment["metadata"]["labels"][
            "proxy.open-cluster-management.io/configuration-generation"
        ]
        == "2"
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("v1.9.0")
    assert deployment["spec"]["replicas"] == 3


def test_certificate_close_to_expiry_is_renewed_and_ca_bundle_follows(sample):
    """In the last fifth of its 180 days the serving pair is reissued; a new signer moves
    the APIService caBundle with it."""
    clock = FakeTime()
    installer = _installer(sample, clock)
    run(installer.reconcile())
    first = sample.store.get("secrets", ADDON_NS, "cluster-gateway-tls-cert")["data"]["tls.crt"]
    clock.now += datetime.timedelta(days=100)
    run(installer.reconcile())
    assert (
        sample.store.get("secrets", ADDON_NS, "cluster-gateway-tls-cert")["data"]["tls.crt"]
        == first
    )
    clock.now += datetime.timedelta(days=50)  # 150 of 180 days: past four fifths
    run(installer.reconcile())
    renewed = sample.store.get("secrets", ADDON_NS, "cluster-gateway-tls-cert")["data"]["tls.crt"]
    assert renewed != first
    # a replaced signer (another CA) makes the pair and the caBundle follow
    new_signer = Signer.generate(clock.now)
    sample.store.put(
        new_signer.secret("open-cluster-management-addon-manager", "cluster-gateway-signer")
    )
    fresh = _installer(sample, clock)
    run(fresh.reconcile())
    api = sample.store.get("apiservices", None, "v1alpha1.cluster.core.oam.dev")
    assert base64.b64decode(api["spec"]["caBundle"]) == new_signer.cert_pem
    pair = sample.store.get("secrets", ADDON_NS, "cluster-gateway-tls-cert")["data"]["tls.crt"]
    from cryptography import x509

    assert new_signer.signed(x509.load_pem_x509_certificate(base64.b64decode(pair)))


def test_missing_proxy_secret_is_a_condition_and_nothing_is_written(hub):
    """A configuration naming a missing Secret: a False condition naming it, no object made."""
    hub.store.put(load(SAMPLE_CMA))
    hub.store.put(load(SAMPLE_CGC))
    installer = _installer(hub)
    outcome = run(installer.reconcile())
    assert outcome.state == "failed"
    assert "open-cluster-management-addon/proxy-server-ca not found" in outcome.message
    cgc = hub.store.get("clustergatewayconfigurations", None, "cluster-gateway")
    (condition,) = cgc["status"]["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "ClusterGatewayDeployed",
        "False",
        "MissingSecret",
    )
    assert "proxy-server-ca" in condition["message"]
    assert hub.store.get("deployments", ADDON_NS, "gateway-deployment") is None
    assert hub.store.get("namespaces", None, CREDS) is None
    hub.calls.clear()
    run(installer.reconcile())
    assert hub.writes() == []  # the same condition is not written twice


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"image": "UPPER CASE"}, "spec.image"),
        ({"egress": {"type": "Tunnel"}}, "spec.egress.type"),
    ],
)
def test_invalid_image_or_egress_is_a_condition(hub, change, reason):
    """An invalid image or egress type: condition InvalidConfiguration naming the field."""
    hub.store.put(load(SAMPLE_CMA))
    cgc = load(CHART_CGC_DIRECT_MSA)
    cgc["spec"].update(change)
    hub.store.put(cgc)
    outcome = run(_installer(hub).reconcile())
    assert outcome.state == "failed" and reason in outcome.message
    (condition,) = hub.store.get("clustergatewayconfigurations", None, "cluster-gateway")["status"][
        "conditions"
    ]
    assert condition["reason"] == "InvalidConfiguration" and reason in condition["message"]
    assert hub.store.items("deployments") == []


def test_missing_token_waits_for_that_cluster_only(hub):
    """A ManagedServiceAccount whose token never appears: named in a condition; the other
    cluster's Secret is copied and the gateway installed."""
    hub.store.put(load(SAMPLE_CMA))
    hub.store.put(load(CHART_CGC_DIRECT_MSA))
    _cluster(hub, "c1")
    _cluster(hub, "c2", token=None)
    outcome = run(_installer(hub).reconcile())
    assert outcome.state == "installed" and outcome.waiting == ("c2",)
    assert hub.store.get("secrets", CREDS, "c1") is not None
    assert hub.store.get("secrets", CREDS, "c2") is None
    assert hub.store.get("managedserviceaccounts", "c2", "cluster-gateway") is not None
    conditions = {
        c["type"]: c
        for c in hub.store.get("clustergatewayconfigurations", None, "cluster-gateway")["status"][
            "conditions"
        ]
    }
    assert conditions["ClusterGatewayDeployed"]["status"] == "True"
    credentials = conditions["ClusterCredentialsCopied"]
    assert (credentials["status"], credentials["reason"]) == ("False", "TokenMissing")
    assert "c2" in credentials["message"] and "c1" not in credentials["message"]


def test_missing_msa_api_is_a_condition(hub):
    """No ManagedServiceAccount API on the hub: Go's message, as a condition."""
    hub.missing_groups.add("authentication.open-cluster-management.io/v1alpha1")
    hub.store.put(load(SAMPLE_CMA))
    hub.store.put(load(CHART_CGC_DIRECT_MSA))
    outcome = run(_installer(hub).reconcile())
    assert outcome.message == "failed to discover ManagedServiceAccount resource in the cluster"


def test_not_ours_or_missing_configuration(hub):
    """No CMA: nothing; a CMA naming a missing configuration: Go's error text."""
    assert run(_installer(hub).reconcile()).state == "skipped"
    hub.store.put(load(SAMPLE_CMA))
    outcome = run(_installer(hub).reconcile())
    assert (outcome.state, outcome.message) == ("failed", "no such configuration: cluster-gateway")
    assert hub.writes() == []


def test_proxy_secrets_copied_from_their_namespace_and_healed(sample):
    """Credentials in another namespace are copied into the install namespace (same
    names), merged when the source changes, and copied again when deleted."""
    cgc = sample.store.get("clustergatewayconfigurations", None, "cluster-gateway")
    cgc["spec"]["egress"]["clusterProxy"]["credentials"]["namespace"] = "proxy-src"
    sample.store.put(cgc)
    for name in ("proxy-server-ca", "proxy-client"):
        source = sample.store.get("secrets", ADDON_NS, name)
        source["metadata"] = {"name": name, "namespace": "proxy-src"}
        sample.store.put(source)
        sample.store.remove("secrets", ADDON_NS, name)
    installer = _installer(sample)
    run(installer.reconcile())
    assert sample.store.get("secrets", ADDON_NS, "proxy-client")["data"] == {
        "tls.crt": _b64(b"proxy-client")
    }
    source = sample.store.get("secrets", "proxy-src", "proxy-client")
    source["data"]["tls.crt"] = _b64(b"renewed")
    sample.store.put(source)
    sample.store.remove("secrets", ADDON_NS, "proxy-server-ca")
    run(installer.reconcile())
    assert sample.store.get("secrets", ADDON_NS, "proxy-client")["data"]["tls.crt"] == _b64(
        b"renewed"
    )
    assert sample.store.get("secrets", ADDON_NS, "proxy-server-ca") is not None
