"""The objects the installer computes, pinned to Go's ``installer.go`` values."""

from __future__ import annotations

import base64

import pytest

from clustergateway.addon import desired
from clustergateway.addon.configuration import (
    AddonReference,
    ConfigurationError,
    GatewayConfiguration,
    addon_reference,
)
from tests.fixtures.addon_samples import CHART_CGC_DIRECT_MSA, SAMPLE_CGC, SAMPLE_CMA, load
from tests.fixtures.go_command_lines import GO_COMMAND_LINES

GO_LINES = {line.name: line for line in GO_COMMAND_LINES}
ADDON = AddonReference("cluster-gateway", "uid-cma", "cluster-gateway")
OWNER = [
    {
        "apiVersion": "addon.open-cluster-management.io/v1alpha1",
        "kind": "ClusterManagementAddOn",
        "name": "cluster-gateway",
        "uid": "uid-cma",
    }
]


def _config(text: str = SAMPLE_CGC, generation: int = 3) -> GatewayConfiguration:
    obj = load(text)
    obj["metadata"]["generation"] = generation
    return GatewayConfiguration.from_object(obj)


def test_sample_configuration_parses_with_crd_defaults():
    """The Go sample (no secretManagement) reads as ManagedServiceAccount ``cluster-gateway``."""
    config = _config()
    assert (config.secret_management, config.managed_service_account_name) == (
        "ManagedServiceAccount",
        "cluster-gateway",
    )
    assert config.egress_type == "ClusterProxy" and config.endpoint_type == "ClusterProxy"
    assert config.cluster_proxy is not None and config.cluster_proxy.port == 8090
    assert _config(CHART_CGC_DIRECT_MSA).endpoint_type == "Const"


def test_addon_reference_only_for_ours():
    """Only the ClusterManagementAddOn ``cluster-gateway`` naming the CGC CRD is ours."""
    cma = load(SAMPLE_CMA)
    cma["metadata"]["uid"] = "u"
    assert addon_reference(cma) == AddonReference("cluster-gateway", "u", "cluster-gateway")
    other = load(SAMPLE_CMA)
    other["spec"]["addOnConfiguration"]["crdName"] = "x.example.com"
    assert addon_reference(other) is None
    renamed = load(SAMPLE_CMA)
    renamed["metadata"]["name"] = "other"
    assert addon_reference(renamed) is None


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("image",), "Not An Image!", "spec.image 'Not An Image!' is not a valid image reference"),
        (("egress", "type"), "Tunnel", "spec.egress.type 'Tunnel' is not one of"),
        (("secretManagement",), {"type": "Vault"}, "spec.secretManagement.type 'Vault'"),
        (("installNamespace",), "Bad_NS", "spec.installNamespace 'Bad_NS'"),
        (("egress", "clusterProxy", "proxyServerPort"), 0, "proxyServerPort 0"),
        (("egress", "clusterProxy"), None, "spec.egress.clusterProxy is required"),
    ],
)
def test_bad_configuration_names_the_field(path, value, reason):
    """Each bad value is refused with a message naming the field and the value."""
    obj = load(SAMPLE_CGC)
    target = obj["spec"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ConfigurationError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        GatewayConfiguration.from_object(obj)


def test_installed_objects_names_and_owners():
    """ServiceAccount, Service, RBAC and APIService with Go's names, namespaces and owner."""
    config = _config()
    objects = desired.installed_objects(ADDON, config, b"CA PEM")
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert names == [
        ("ServiceAccount", "open-cluster-management-addon", "cluster-gateway"),
        ("Service", "open-cluster-management-addon", "cluster-gateway"),
        (
            "RoleBinding",
            "kube-system",
            "extension-apiserver-authentication-reader:cluster-gateway",
        ),
        ("Role", "open-cluster-management-credentials", "cluster-gateway"),
        ("RoleBinding", "open-cluster-management-credentials", "cluster-gateway"),
        ("ClusterRole", None, "apiserver-aggregation:cluster-gateway"),
        ("ClusterRoleBinding", None, "apiserver-aggregation:cluster-gateway"),
        ("APIService", None, "v1alpha1.cluster.core.oam.dev"),
    ]
    assert all(o["metadata"]["ownerReferences"] == OWNER for o in objects)
    service = objects[1]["spec"]
    assert service == {
        "type": "ClusterIP",
        "selector": {"proxy.open-cluster-management.io/addon-name": "cluster-gateway"},
        "ports": [{"name": "https", "port": 9443}],
    }
    api = objects[-1]["spec"]
    assert api["service"] == {
        "namespace": "open-cluster-management-addon",
        "name": "cluster-gateway",
        "port": 9443,
    }
    assert (api["groupPriorityMinimum"], api["versionPriority"]) == (5000, 10)
    assert base64.b64decode(api["caBundle"]) == b"CA PEM"
    subjects = {str(o.get("subjects")) for o in objects if "subjects" in o}
    assert subjects == {
        str(
            [
                {
                    "kind": "ServiceAccount",
                    "namespace": "open-cluster-management-addon",
                    "name": "cluster-gateway",
                }
            ]
        )
    }


def test_deployment_cluster_proxy():
    """Go's Deployment: generation label, replicas, strategy, container, args and volumes."""
    deployment = desired.gateway_deployment(ADDON, _config(generation=7))
    assert deployment["metadata"]["name"] == "gateway-deployment"
    assert deployment["metadata"]["namespace"] == "open-cluster-management-addon"
    assert deployment["metadata"]["labels"] == {
        "proxy.open-cluster-management.io/configuration-generation": "7"
    }
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 1}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "cluster-gateway"
    (container,) = pod["containers"]
    assert (container["name"], container["image"], container["imagePullPolicy"]) == (
        "apiserver",
        "oamdev/cluster-gateway:v1.1.6.ocm",
        "IfNotPresent",
    )
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "200Mi"},
        "limits": {"cpu": "500m", "memory": "600Mi"},
    }
    # the same command line the gateway's own tests start (recorded from installer.go)
    assert container["args"] == list(GO_LINES["addon-manager-cluster-proxy"].args)
    assert pod["volumes"] == [
        {"name": "server", "secret": {"secretName": "cluster-gateway-tls-cert"}},
        {"name": "proxy-client-ca", "secret": {"secretName": "proxy-server-ca"}},
        {"name": "proxy-client", "secret": {"secretName": "proxy-client"}},
    ]
    assert [m["mountPath"] for m in container["volumeMounts"]] == [
        "/etc/server/",
        "/etc/ca/",
        "/etc/tls/",
    ]


def test_deployment_mounts_the_configured_proxy_secret_names():
    """Unlike Go (QUIRK 19), the volumes use the Secret names the configuration copies."""
    obj = load(SAMPLE_CGC)
    obj["spec"]["egress"]["clusterProxy"]["credentials"]["proxyClientSecretName"] = "my-client"
    volumes = desired.gateway_deployment(ADDON, GatewayConfiguration.from_object(obj))["spec"][
        "template"
    ]["spec"]["volumes"]
    assert volumes[2] == {"name": "proxy-client", "secret": {"secretName": "my-client"}}


def test_direct_deployment_has_no_proxy_args():
    """Direct egress: the six base arguments and the serving volume only."""
    deployment = desired.gateway_deployment(ADDON, _config(CHART_CGC_DIRECT_MSA))
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == list(GO_LINES["addon-manager-direct"].args)
    assert len(pod["volumes"]) == 1


def test_managed_service_account_and_cluster_secret():
    """The MSA (owned by the addon, 4320h rotation) and the cluster Secret's labels/data."""
    mca = {"metadata": {"name": "cluster-gateway", "namespace": "c1", "uid": "uid-mca"}}
    msa = desired.managed_service_account(mca)
    assert msa["metadata"] == {
        "name": "cluster-gateway",
        "namespace": "c1",
        "ownerReferences": [
            {
                "apiVersion": "addon.open-cluster-management.io/v1alpha1",
                "kind": "ManagedClusterAddOn",
                "name": "cluster-gateway",
                "uid": "uid-mca",
            }
        ],
    }
    assert msa["spec"] == {"rotation": {"enabled": True, "validity": "4320h0m0s"}}
    token = {"data": {"token": "dG9r", "ca.crt": "Y2E=", "namespace": "eA=="}}
    secret = desired.cluster_secret(ADDON, _config(), "c1", token)
    assert secret["metadata"]["namespace"] == "open-cluster-management-credentials"
    assert secret["metadata"]["name"] == "c1"
    assert secret["metadata"]["labels"] == {
        "cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken",
        "cluster.core.oam.dev/cluster-endpoint-type": "ClusterProxy",
    }
    assert secret["metadata"]["ownerReferences"] == OWNER
    assert (secret["type"], secret["data"]) == ("Opaque", {"ca.crt": "Y2E=", "token": "dG9r"})
    assert desired.updated_cluster_secret(secret, secret) is None
    rotated = desired.cluster_secret(ADDON, _config(), "c1", {"data": {"token": "bmV3"}})
    assert desired.updated_cluster_secret(secret, rotated)["data"]["token"] == "bmV3"


def test_secret_copy_and_merge():
    """Go's CopySecret: a copy in the target namespace; later, source keys merged in."""
    source = {
        "metadata": {"name": "proxy-client", "namespace": "src", "uid": "x", "labels": {"a": "b"}},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Yw==", "tls.key": "aw=="},
    }
    copy = desired.copied_secret(source, "dst")
    assert copy["metadata"] == {"name": "proxy-client", "namespace": "dst", "labels": {"a": "b"}}
    assert copy["type"] == "kubernetes.io/tls" and copy["data"] == source["data"]
    target = {**copy, "data": {**copy["data"], "extra": "ZQ=="}}
    assert desired.merged_secret(source, target) is None
    changed = {**source, "data": {"tls.crt": "bmV3", "tls.key": "aw=="}}
    assert desired.merged_secret(changed, target)["data"] == {
        "tls.crt": "bmV3",
        "tls.key": "aw==",
        "extra": "ZQ==",
    }
