"""The gateway's own resources at the hub: ClusterGateways, VirtualClusters, health.

Each helper takes an ``ApiClient`` for the hub (not a routing client) and
returns the objects as the API serves them (dicts); errors are the
``kubernetes`` package's ``ApiException`` with the hub's ``Status``.
"""

from __future__ import annotations

from typing import Any, cast

import attrs
from kubernetes import client

from clustergateway.client.hub import DEFAULT_GROUP, VERSION, check_cluster_name

__all__ = [
    "Health",
    "get_health",
    "list_cluster_gateways",
    "list_virtual_clusters",
    "update_health",
]


@attrs.frozen
class Health:
    """A cluster's healthiness as the ``health`` subresource records it."""

    healthy: bool
    reason: str = ""

    @classmethod
    def from_cluster_gateway(cls, gateway: dict[str, Any]) -> Health:
        status = gateway.get("status") or {}
        return cls(bool(status.get("healthy")), str(status.get("healthyReason") or ""))


def _list(api_client: client.ApiClient, plural: str, group: str, selector: str) -> list[Any]:
    api = client.CustomObjectsApi(api_client)
    listed = api.list_cluster_custom_object(group, VERSION, plural, label_selector=selector)
    return list(cast(dict[str, Any], listed).get("items") or [])


def list_cluster_gateways(
    api_client: client.ApiClient, *, group: str = DEFAULT_GROUP
) -> list[dict[str, Any]]:
    """Every ClusterGateway (with its credentials: needs ``list clustergateways``)."""
    return _list(api_client, "clustergateways", group, "")


def list_virtual_clusters(
    api_client: client.ApiClient, *, label_selector: str = "", group: str = DEFAULT_GROUP
) -> list[dict[str, Any]]:
    """The VirtualClusters (``local`` first; no credentials), filtered by ``label_selector``."""
    return _list(api_client, "virtualclusters", group, label_selector)


def _health_call(
    api_client: client.ApiClient, method: str, name: str, group: str, body: Any = None
) -> Health:
    path = f"/apis/{group}/{VERSION}/clustergateways/{check_cluster_name(name)}/health"
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = api_client.param_serialize(method, path, header_params=headers, body=body)
    response = api_client.call_api(*request)
    response.read()  # type: ignore[no-untyped-call]
    # Raises ApiException (with the hub's Status) on anything but 2xx.
    answer = api_client.response_deserialize(response, {"200": "object"}).data
    return Health.from_cluster_gateway(answer if isinstance(answer, dict) else {})


def get_health(api_client: client.ApiClient, name: str, *, group: str = DEFAULT_GROUP) -> Health:
    """``GET …/clustergateways/NAME/health`` (Go's ``GetHealthiness``)."""
    return _health_call(api_client, "GET", name, group)


def update_health(
    api_client: client.ApiClient,
    name: str,
    healthy: bool,
    reason: str = "",
    *,
    group: str = DEFAULT_GROUP,
) -> Health:
    """``PUT …/clustergateways/NAME/health`` (Go's ``UpdateHealthiness``): records
    ``healthy`` and ``reason`` on the cluster's Secret; returns what the hub stored."""
    body = {
        "apiVersion": f"{group}/{VERSION}",
        "kind": "ClusterGateway",
        "metadata": {"name": name},
        "status": {"healthy": healthy, "healthyReason": reason},
    }
    return _health_call(api_client, "PUT", name, group, body)
