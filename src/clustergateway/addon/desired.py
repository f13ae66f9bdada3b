"""Every object the installer owns, computed from the configuration: pure functions.

Each builder returns the object exactly as the Go addon-manager
(``pkg/addon/controllers/installer.go`` at ``oam-dev/cluster-gateway``) builds
it: the same names, labels, owner references (the ClusterManagementAddOn, or the
ManagedClusterAddOn for a ManagedServiceAccount), arguments and volumes.  The one
deliberate difference: the Deployment mounts the proxy client Secrets under the
names the configuration gives (and the installer copies), where Go mounts the
hard-coded ``proxy-server-ca``/``proxy-client`` (spec §14 QUIRK 19); with the
chart's values the two agree.

The tests in ``tests/unit/addon/test_desired.py`` pin them against Go's values.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from clustergateway.addon.configuration import AddonReference, GatewayConfiguration
from clustergateway.addon.names import (
    ADDON_API_VERSION,
    ADDON_NAME,
    ADDON_NAME_LABEL,
    API_SERVICE_NAME,
    CREDENTIAL_TYPE_LABEL,
    DEPLOYMENT_NAME,
    ENDPOINT_TYPE_LABEL,
    GATEWAY_GROUP,
    GENERATION_LABEL,
    MSA_API_VERSION,
    SERVICE_NAME,
    TLS_SECRET_NAME,
)

__all__ = [
    "cluster_secret",
    "copied_secret",
    "gateway_deployment",
    "installed_objects",
    "managed_service_account",
    "merged_secret",
    "namespace",
    "owner_reference",
]

Object = dict[str, Any]

#: Go's ``Validity: time.Hour * 24 * 180`` as metav1.Duration writes it.
MSA_VALIDITY = "4320h0m0s"
_SECURE_PORT = 9443


def owner_reference(kind: str, name: str, uid: str, api_version: str = ADDON_API_VERSION) -> Object:
    """An owner reference as Go writes it (no ``controller``/``blockOwnerDeletion``)."""
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}


def _cma_owner(addon: AddonReference) -> list[Object]:
    return [owner_reference("ClusterManagementAddOn", addon.name, addon.uid)]


def _meta(addon: AddonReference, name: str, namespace: str | None = None) -> Object:
    meta: Object = {"name": name, "ownerReferences": _cma_owner(addon)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def namespace(name: str) -> Object:
    """A Namespace (Go creates the install and secret namespaces without an owner)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _service_account_subject(install_namespace: str) -> list[Object]:
    return [{"kind": "ServiceAccount", "namespace": install_namespace, "name": ADDON_NAME}]


def installed_objects(
    addon: AddonReference, config: GatewayConfiguration, ca_pem: bytes
) -> list[Object]:
    """ServiceAccount, Service, RBAC and APIService, in Go's order (``targets``)."""
    ns = config.install_namespace
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(addon, ADDON_NAME, ns),
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(addon, SERVICE_NAME, ns),
            "spec": {
                "type": "ClusterIP",
                "selector": {ADDON_NAME_LABEL: ADDON_NAME},
                "ports": [{"name": "https", "port": _SECURE_PORT}],
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(
                addon, "extension-apiserver-authentication-reader:cluster-gateway", "kube-system"
            ),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            "subjects": _service_account_subject(ns),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(addon, ADDON_NAME, config.secret_namespace),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "verbs": ["get", "list", "watch", "update"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(addon, ADDON_NAME, config.secret_namespace),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": ADDON_NAME,
            },
            "subjects": _service_account_subject(ns),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(addon, "apiserver-aggregation:cluster-gateway"),
            "rules": [
                {
                    "apiGroups": ["cluster.open-cluster-management.io"],
                    "resources": ["managedclusters"],
                    "verbs": ["get", "list", "watch"],
                },
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
                {
                    "apiGroups": ["admissionregistration.k8s.io"],
                    "resources": [
                        "mutatingwebhookconfigurations",
                        "validatingwebhookconfigurations",
                        "validatingadmissionpolicies",
                        "validatingadmissionpolicybindings",
                    ],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["flowcontrol.apiserver.k8s.io"],
                    "resources": ["prioritylevelconfigurations", "flowschemas"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["subjectaccessreviews"],
                    "verbs": ["*"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(addon, "apiserver-aggregation:cluster-gateway"),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "apiserver-aggregation:cluster-gateway",
            },
            "subjects": _service_account_subject(ns),
        },
        api_service(addon, ns, ca_pem),
    ]


def api_service(addon: AddonReference, install_namespace: str, ca_pem: bytes) -> Object:
    """The APIService ``v1alpha1.cluster.core.oam.dev`` → ``<ns>/cluster-gateway:9443``."""
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": _meta(addon, API_SERVICE_NAME),
        "spec": {
            "group": GATEWAY_GROUP,
            "version": "v1alpha1",
            "service": {"namespace": install_namespace, "name": SERVICE_NAME, "port": _SECURE_PORT},
            "groupPriorityMinimum": 5000,
            "versionPriority": 10,
            "caBundle": base64.b64encode(ca_pem).decode(),
        },
    }


def gateway_args(config: GatewayConfiguration) -> list[str]:
    """The gateway container's arguments (Go's ``newClusterGatewayDeployment``)."""
    args = [
        f"--secure-port={_SECURE_PORT}",
        f"--secret-namespace={config.secret_namespace}",
        "--ocm-integration=true",
        "--tls-cert-file=/etc/server/tls.crt",
        "--tls-private-key-file=/etc/server/tls.key",
        "--feature-gates=HealthinessCheck=true,SecretCache=true",
    ]
    if config.cluster_proxy is not None:
        args += [
            f"--proxy-host={config.cluster_proxy.host}",
            f"--proxy-port={config.cluster_proxy.port}",
            "--proxy-ca-cert=/etc/ca/ca.crt",
            "--proxy-cert=/etc/tls/tls.crt",
            "--proxy-key=/etc/tls/tls.key",
        ]
    return args


def gateway_deployment(addon: AddonReference, config: GatewayConfiguration) -> Object:
    """Deployment ``<installNamespace>/gateway-deployment`` labelled with the generation."""
    volumes: list[Object] = [{"name": "server", "secret": {"secretName": TLS_SECRET_NAME}}]
    mounts: list[Object] = [{"name": "server", "mountPath": "/etc/server/", "readOnly": True}]
    if config.cluster_proxy is not None:
        volumes += [
            {
                "name": "proxy-client-ca",
                "secret": {"secretName": config.cluster_proxy.ca_secret_name},
            },
            {
                "name": "proxy-client",
                "secret": {"secretName": config.cluster_proxy.client_secret_name},
            },
        ]
        mounts += [
            {"name": "proxy-client-ca", "mountPath": "/etc/ca/"},
            {"name": "proxy-client", "mountPath": "/etc/tls/"},
        ]
    pod_labels = {ADDON_NAME_LABEL: ADDON_NAME}
    meta = _meta(addon, DEPLOYMENT_NAME, config.install_namespace)
    meta["labels"] = {GENERATION_LABEL: str(config.generation)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": dict(pod_labels)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": {
                    "serviceAccountName": ADDON_NAME,
                    "containers": [
                        {
                            "name": "apiserver",
                            "image": config.image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": gateway_args(config),
                            "volumeMounts": mounts,
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "200Mi"},
                                "limits": {"cpu": "500m", "memory": "600Mi"},
                            },
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def managed_service_account(mca: Mapping[str, Any]) -> Object:
    """ManagedServiceAccount ``cluster-gateway`` in the addon's (cluster's) namespace."""
    meta = mca.get("metadata") or {}
    return {
        "apiVersion": MSA_API_VERSION,
        "kind": "ManagedServiceAccount",
        "metadata": {
            "name": ADDON_NAME,
            "namespace": meta.get("namespace"),
            "ownerReferences": [
                owner_reference("ManagedClusterAddOn", str(meta.get("name")), str(meta.get("uid")))
            ],
        },
        "spec": {"rotation": {"enabled": True, "validity": MSA_VALIDITY}},
    }


def cluster_secret(
    addon: AddonReference,
    config: GatewayConfiguration,
    cluster: str,
    token_secret: Mapping[str, Any],
) -> Object:
    """The cluster Secret ``<secretNamespace>/<cluster>`` from the MSA's token Secret."""
    data = token_secret.get("data") or {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": cluster,
            "namespace": config.secret_namespace,
            "labels": {
                CREDENTIAL_TYPE_LABEL: "ServiceAccountToken",
                ENDPOINT_TYPE_LABEL: config.endpoint_type,
            },
            "ownerReferences": _cma_owner(addon),
        },
        "data": {key: data.get(key, "") for key in ("ca.crt", "token")},
    }


def updated_cluster_secret(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> Object | None:
    """``current`` with ``wanted``'s token, CA and labels, or None when it already has them.

    Go compares the token only; the CA and the two labels are compared too, so a
    Secret whose labels someone removed (and so stopped being a cluster) heals.
    """
    data = dict(current.get("data") or {})
    meta = dict(current.get("metadata") or {})
    labels = dict(meta.get("labels") or {})
    wanted_labels = wanted["metadata"]["labels"]
    if all(data.get(k) == v for k, v in wanted["data"].items()) and all(
        labels.get(k) == v for k, v in wanted_labels.items()
    ):
        return None
    data.update(wanted["data"])
    labels.update(wanted_labels)
    meta["labels"] = labels
    return {**current, "metadata": meta, "data": data}


def copied_secret(source: Mapping[str, Any], target_namespace: str) -> Object:
    """A copy of ``source`` for ``target_namespace`` (Go's ``CopySecret`` on create)."""
    meta = source.get("metadata") or {}
    copy: Object = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": meta.get("name"), "namespace": target_namespace},
        "data": dict(source.get("data") or {}),
    }
    for key in ("labels", "annotations"):
        if meta.get(key):
            copy["metadata"][key] = dict(meta[key])
    if source.get("type"):
        copy["type"] = source["type"]
    return copy


def merged_secret(source: Mapping[str, Any], target: Mapping[str, Any]) -> Object | None:
    """``target`` with ``source``'s keys merged in (extra keys kept), or None if a subset."""
    data = dict(target.get("data") or {})
    wanted = source.get("data") or {}
    if all(data.get(k) == v for k, v in wanted.items()):
        return None
    data.update(wanted)
    return {**target, "data": data}
