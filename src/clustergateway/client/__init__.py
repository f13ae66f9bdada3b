"""Reach clusters through the gateway from Python programs (the ``kubernetes`` package).

Synchronous helpers for users' programs, never used by the server:
:func:`for_cluster` and :func:`routing_client` + :func:`cluster` route an
``ApiClient``'s requests through the ``proxy`` subresource; the others read
the gateway's resources at the hub.
"""

from clustergateway.client.clusters import (
    Health,
    get_health,
    list_cluster_gateways,
    list_virtual_clusters,
    update_health,
)
from clustergateway.client.hub import (
    DEFAULT_GROUP,
    LOCAL_CLUSTER,
    load_hub_configuration,
    proxy_path,
)
from clustergateway.client.routing import (
    ClusterGatewayApiClient,
    NoClusterSelected,
    cluster,
    current_cluster,
    for_cluster,
    routing_client,
)

__all__ = [
    "DEFAULT_GROUP",
    "LOCAL_CLUSTER",
    "ClusterGatewayApiClient",
    "Health",
    "NoClusterSelected",
    "cluster",
    "current_cluster",
    "for_cluster",
    "get_health",
    "list_cluster_gateways",
    "list_virtual_clusters",
    "load_hub_configuration",
    "proxy_path",
    "routing_client",
    "update_health",
]
