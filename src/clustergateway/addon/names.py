"""The names, labels and constants of the Go addon-manager, in one place.

Every object name and label below is what ``pkg/addon/controllers/installer.go``,
``pkg/common/constants.go`` and ``cmd/addon-manager/main.go`` of
``oam-dev/cluster-gateway`` use, so an install made by the Go addon-manager keeps
working when this one takes over (and the other way round).
"""

from __future__ import annotations

from clustergateway.registry.keys import credential_type_label, endpoint_type_label

__all__ = [
    "ADDON_API_VERSION",
    "ADDON_NAME",
    "ADDON_NAME_LABEL",
    "API_SERVICE_NAME",
    "CGC_API_VERSION",
    "CGC_CRD_NAME",
    "CREDENTIAL_TYPE_LABEL",
    "DEPLOYMENT_NAME",
    "ENDPOINT_TYPE_LABEL",
    "GATEWAY_GROUP",
    "GENERATION_LABEL",
    "LEASE_NAME",
    "MSA_API_VERSION",
    "SERVICE_NAME",
    "SIGNER_SECRET_NAME",
    "TLS_SECRET_NAME",
]

ADDON_NAME = "cluster-gateway"
ADDON_API_VERSION = "addon.open-cluster-management.io/v1alpha1"
CGC_API_VERSION = "proxy.open-cluster-management.io/v1alpha1"
CGC_CRD_NAME = "clustergatewayconfigurations.proxy.open-cluster-management.io"
MSA_API_VERSION = "authentication.open-cluster-management.io/v1alpha1"
#: The gateway's API group (Go's ``config.MetaApiGroupName`` default).
GATEWAY_GROUP = "cluster.core.oam.dev"
API_SERVICE_NAME = f"v1alpha1.{GATEWAY_GROUP}"
ADDON_NAME_LABEL = "proxy.open-cluster-management.io/addon-name"
GENERATION_LABEL = "proxy.open-cluster-management.io/configuration-generation"
CREDENTIAL_TYPE_LABEL = credential_type_label(GATEWAY_GROUP)
ENDPOINT_TYPE_LABEL = endpoint_type_label(GATEWAY_GROUP)
SERVICE_NAME = "cluster-gateway"
TLS_SECRET_NAME = "cluster-gateway-tls-cert"
DEPLOYMENT_NAME = "gateway-deployment"
SIGNER_SECRET_NAME = "cluster-gateway-signer"
LEASE_NAME = "cluster-gateway-addon-manager"
