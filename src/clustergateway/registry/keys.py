"""The label, annotation and data keys of a cluster Secret (spec §2.2).

Label keys derive from the API group (``--api-group``), as the Go build-time
override does; the status and proxy-configuration annotations are fixed
strings in Go and stay fixed here, whatever the group.
"""

from __future__ import annotations

__all__ = [
    "CREDENTIAL_TYPES",
    "ENDPOINT_TYPES",
    "HEALTHY_ANNOTATION",
    "HEALTHY_REASON_ANNOTATION",
    "PROXY_CONFIG_ANNOTATION",
    "alias_annotation",
    "control_plane_label",
    "credential_type_label",
    "endpoint_type_label",
]

HEALTHY_ANNOTATION = "status.cluster.core.oam.dev/healthy"
HEALTHY_REASON_ANNOTATION = "status.cluster.core.oam.dev/healthy-reason"
PROXY_CONFIG_ANNOTATION = "cluster.core.oam.dev/cluster-gateway-proxy-configuration"

CREDENTIAL_TYPES = ("ServiceAccountToken", "X509Certificate", "Dynamic")
ENDPOINT_TYPES = ("Const", "ClusterProxy")


def credential_type_label(group: str) -> str:
    """``<group>/cluster-credential-type``: marks a Secret as a cluster (required)."""
    return f"{group}/cluster-credential-type"


def endpoint_type_label(group: str) -> str:
    """``<group>/cluster-endpoint-type``: ``Const`` (default) or ``ClusterProxy``."""
    return f"{group}/cluster-endpoint-type"


def alias_annotation(group: str) -> str:
    """``<group>/cluster-alias``: the VirtualCluster's ``spec.alias``."""
    return f"{group}/cluster-alias"


def control_plane_label(group: str) -> str:
    """``<group>/control-plane``: ``"true"`` on ``local`` only, ``"false"`` elsewhere."""
    return f"{group}/control-plane"
