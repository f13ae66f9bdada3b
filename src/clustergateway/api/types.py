"""The JSON forms of ``ClusterGateway`` and ``VirtualCluster``, exactly as the Go gateway.

Pure functions from registry values to JSON-ready dicts (spec §1.2, §1.4).  The
rules that existing KubeVela/OCM tooling relies on:

* ``[]byte`` fields (``caBundle``, x509 ``certificate``/``privateKey``) are
  standard base64 strings;
* ``omitempty`` fields are left out when empty, ``spec.provider`` and
  ``status.healthy`` are always present;
* the proxy URL key is hyphenated: ``proxy-url``;
* ``metadata`` carries only ``name`` and ``creationTimestamp`` (``null`` when
  unknown, as Go marshals a zero ``metav1.Time``) — plus ``resourceVersion``
  only on objects inside watch events, where clients resume from it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import attrs

from clustergateway.registry.model import ClusterGateway, CredentialSpec, EndpointSpec
from clustergateway.registry.virtualcluster import VirtualCluster

__all__ = [
    "DEFAULT_GROUP",
    "VERSION",
    "GroupVersion",
    "cluster_gateway_list",
    "cluster_gateway_object",
    "list_object",
    "virtual_cluster_list",
    "virtual_cluster_object",
]

DEFAULT_GROUP = "cluster.core.oam.dev"
VERSION = "v1alpha1"


@attrs.frozen
class GroupVersion:
    """The served API group/version; ``--api-group`` changes the group and all it names."""

    group: str = DEFAULT_GROUP
    version: str = VERSION

    @property
    def api_version(self) -> str:
        """``<group>/<version>``, the ``apiVersion`` of every served object."""
        return f"{self.group}/{self.version}"

    @property
    def path(self) -> str:
        """``/apis/<group>/<version>``, the prefix of every resource URL."""
        return f"/apis/{self.group}/{self.version}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _metadata(
    name: str, creation_timestamp: str | None, resource_version: int | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": creation_timestamp}
    if resource_version is not None:
        meta["resourceVersion"] = str(resource_version)
    return meta


def endpoint_json(endpoint: EndpointSpec) -> dict[str, Any]:
    """``spec.access.endpoint``: ``const`` is omitted for ``ClusterProxy``."""
    body: dict[str, Any] = {"type": endpoint.type}
    if endpoint.type == "ClusterProxy":
        return body
    const: dict[str, Any] = {"address": endpoint.address}
    if endpoint.ca_bundle:
        const["caBundle"] = _b64(endpoint.ca_bundle)
    if endpoint.insecure:
        const["insecure"] = True
    if endpoint.proxy_url:
        const["proxy-url"] = endpoint.proxy_url
    body["const"] = const
    return body


def credential_json(credential: CredentialSpec) -> dict[str, Any]:
    """``spec.access.credential``; ``x509`` appears for certificate credentials only."""
    body: dict[str, Any] = {"type": credential.type}
    if credential.token:
        body["serviceAccountToken"] = credential.token
    if credential.type == "X509Certificate" or credential.certificate or credential.private_key:
        body["x509"] = {
            "certificate": _b64(credential.certificate),
            "privateKey": _b64(credential.private_key),
        }
    return body


def cluster_gateway_object(
    gateway: ClusterGateway, gv: GroupVersion, *, resource_version: int | None = None
) -> dict[str, Any]:
    """A ``ClusterGateway`` object, credentials included (the resource is admin-only)."""
    access: dict[str, Any] = {"endpoint": endpoint_json(gateway.endpoint)}
    if gateway.credential is not None:
        access["credential"] = credential_json(gateway.credential)
    status: dict[str, Any] = {"healthy": gateway.healthy}
    if gateway.healthy_reason:
        status["healthyReason"] = gateway.healthy_reason
    return {
        "kind": "ClusterGateway",
        "apiVersion": gv.api_version,
        "metadata": _metadata(gateway.name, gateway.creation_timestamp, resource_version),
        "spec": {"provider": "", "access": access},
        "status": status,
    }


def virtual_cluster_object(
    cluster: VirtualCluster, gv: GroupVersion, *, resource_version: int | None = None
) -> dict[str, Any]:
    """A ``VirtualCluster`` object: labels in metadata, four ``omitempty`` spec fields."""
    metadata = _metadata(cluster.name, cluster.creation_timestamp, resource_version)
    if cluster.labels:
        metadata["labels"] = dict(cluster.labels)
    spec: dict[str, Any] = {}
    if cluster.alias:
        spec["alias"] = cluster.alias
    if cluster.accepted:
        spec["accepted"] = True
    if cluster.endpoint:
        spec["endpoint"] = cluster.endpoint
    if cluster.credential_type:
        spec["credential-type"] = cluster.credential_type
    return {
        "kind": "VirtualCluster",
        "apiVersion": gv.api_version,
        "metadata": metadata,
        "spec": spec,
    }


def list_object(
    kind: str, api_version: str, items: Iterable[dict[str, Any]], resource_version: int
) -> dict[str, Any]:
    """A ``<Kind>List`` whose ``metadata.resourceVersion`` is where a watch resumes."""
    return {
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": str(resource_version)},
        "items": list(items),
    }


def cluster_gateway_list(
    gateways: Iterable[ClusterGateway], gv: GroupVersion, resource_version: int
) -> dict[str, Any]:
    """A ``ClusterGatewayList``."""
    items = (cluster_gateway_object(g, gv) for g in gateways)
    return list_object("ClusterGatewayList", gv.api_version, items, resource_version)


def virtual_cluster_list(
    clusters: Iterable[VirtualCluster], gv: GroupVersion, resource_version: int
) -> dict[str, Any]:
    """A ``VirtualClusterList``."""
    items = (virtual_cluster_object(c, gv) for c in clusters)
    return list_object("VirtualClusterList", gv.api_version, items, resource_version)
