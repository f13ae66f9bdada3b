"""Build cluster Secrets as the gateway expects them (for tests, the demo and examples).

The inverse of :mod:`clustergateway.registry.convert`: given where a cluster
is and how to authenticate, return the ``v1 Secret`` dict (data base64) that
converts into it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from clustergateway.registry.keys import credential_type_label, endpoint_type_label

__all__ = ["DEFAULT_GROUP", "cluster_secret", "managed_cluster"]

DEFAULT_GROUP = "cluster.core.oam.dev"


def _b64(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode()


def cluster_secret(
    name: str,
    *,
    credential_type: str | None = "ServiceAccountToken",
    endpoint: str | None = "https://127.0.0.1:6443",
    namespace: str | None = "vela-system",
    group: str = DEFAULT_GROUP,
    endpoint_type: str | None = None,
    token: str | None = None,
    ca: bytes | None = None,
    certificate: bytes | None = None,
    private_key: bytes | None = None,
    exec_config: Mapping[str, Any] | str | None = None,
    proxy_url: str | None = None,
    extra_data: Mapping[str, str | bytes] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    resource_version: str | None = None,
    creation_timestamp: str | None = None,
) -> dict[str, Any]:
    """A Secret dict for cluster ``name``; ``None`` leaves a key or label out."""
    data: dict[str, str | bytes] = {}
    if endpoint is not None:
        data["endpoint"] = endpoint
    if token is not None:
        data["token"] = token
    if ca is not None:
        data["ca.crt"] = ca
    if certificate is not None:
        data["tls.crt"] = certificate
    if private_key is not None:
        data["tls.key"] = private_key
    if exec_config is not None:
        data["exec"] = exec_config if isinstance(exec_config, str) else json.dumps(exec_config)
    if proxy_url is not None:
        data["proxy-url"] = proxy_url
    data.update(extra_data or {})
    all_labels = dict(labels or {})
    if credential_type is not None:
        all_labels[credential_type_label(group)] = credential_type
    if endpoint_type is not None:
        all_labels[endpoint_type_label(group)] = endpoint_type
    metadata: dict[str, Any] = {"name": name, "labels": all_labels}
    if namespace is not None:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = dict(annotations)
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    if creation_timestamp is not None:
        metadata["creationTimestamp"] = creation_timestamp
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": {key: _b64(value) for key, value in data.items()},
    }


def managed_cluster(
    name: str,
    *,
    url: str | None = "https://127.0.0.1:6443",
    ca: bytes | None = None,
    available: str | None = "True",
    reason: str = "",
    message: str = "",
    resource_version: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An OCM ``ManagedCluster`` dict (``cluster.open-cluster-management.io/v1``).

    ``url=None`` leaves out the client configs; ``available`` is the status of
    its ``ManagedClusterConditionAvailable`` condition (None: no condition).
    """
    spec: dict[str, Any] = {"hubAcceptsClient": True}
    if url is not None:
        config: dict[str, Any] = {"url": url}
        if ca is not None:
            config["caBundle"] = _b64(ca)
        spec["managedClusterClientConfigs"] = [config]
    conditions: list[dict[str, Any]] = []
    if available is not None:
        conditions.append(
            {
                "type": "ManagedClusterConditionAvailable",
                "status": available,
                "reason": reason
                or (
                    "ManagedClusterAvailable"
                    if available == "True"
                    else "ManagedClusterLeaseUpdateStopped"
                ),
                "message": message,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        )
    metadata: dict[str, Any] = {"name": name, "labels": dict(labels or {})}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "cluster.open-cluster-management.io/v1",
        "kind": "ManagedCluster",
        "metadata": metadata,
        "spec": spec,
        "status": {"conditions": conditions},
    }
