"""Server-side ``Table`` responses with the Go gateway's columns (spec §1.2, §1.4).

``kubectl get`` asks for ``application/json;as=Table;v=v1;g=meta.k8s.io`` and
prints whatever columns the server sends, so these column definitions are what
users see.  Each row embeds the object, trimmed per the request's
``includeObject`` (``None`` | ``Metadata`` (default) | ``Object``), as the
apiserver does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from clustergateway.api.types import (
    GroupVersion,
    cluster_gateway_object,
    virtual_cluster_object,
)
from clustergateway.registry.model import ClusterGateway
from clustergateway.registry.virtualcluster import VirtualCluster

__all__ = [
    "CLUSTER_GATEWAY_COLUMNS",
    "VIRTUAL_CLUSTER_COLUMNS",
    "Column",
    "IncludeObject",
    "cluster_gateway_row",
    "partial_object_metadata",
    "table",
    "virtual_cluster_row",
]

IncludeObject = Literal["None", "Metadata", "Object"]


@attrs.frozen
class Column:
    """A ``TableColumnDefinition``; ``priority > 0`` columns show only with ``-o wide``."""

    name: str
    type: str
    description: str
    format: str = ""
    priority: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


CLUSTER_GATEWAY_COLUMNS: tuple[Column, ...] = (
    Column("Name", "string", "the name of the cluster", format="name"),
    Column("Provider", "string", "the cluster provider type"),
    Column("Credential-Type", "string", "the credential type"),
    Column("Endpoint-Type", "string", "the endpoint type"),
    Column("Healthy", "string", "the healthiness of the gateway"),
)

VIRTUAL_CLUSTER_COLUMNS: tuple[Column, ...] = (
    Column("Name", "string", "the name of the cluster", format="name"),
    Column("Alias", "string", "the alias of the cluster"),
    Column("Credential_Type", "string", "the credential type"),
    Column("Endpoint", "string", "the endpoint of the cluster"),
    Column("Accepted", "boolean", "whether the cluster is accepted by the hub"),
    Column("Labels", "string", "the labels of the cluster"),
    Column("Creation_Timestamp", "dateTime", "the creation time of the cluster", priority=10),
)


def partial_object_metadata(obj: Mapping[str, Any], table_version: str) -> dict[str, Any]:
    """The ``PartialObjectMetadata`` of ``obj`` (``includeObject=Metadata``)."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{table_version}",
        "metadata": dict(obj["metadata"]),
    }


def _row(
    cells: list[Any], obj: dict[str, Any], include: IncludeObject, table_version: str
) -> dict[str, Any]:
    row: dict[str, Any] = {"cells": cells}
    if include == "Object":
        row["object"] = obj
    elif include == "Metadata":
        row["object"] = partial_object_metadata(obj, table_version)
    return row


def cluster_gateway_row(
    gateway: ClusterGateway,
    gv: GroupVersion,
    include: IncludeObject = "Metadata",
    table_version: str = "v1",
    *,
    resource_version: int | None = None,
) -> dict[str, Any]:
    """A row: Name, Provider (always empty), Credential-Type, Endpoint-Type, Healthy."""
    credential_type = gateway.credential.type if gateway.credential else "<none>"
    cells: list[Any] = [
        gateway.name,
        "",
        credential_type,
        gateway.endpoint.type,
        "true" if gateway.healthy else "false",
    ]
    obj = cluster_gateway_object(gateway, gv, resource_version=resource_version)
    return _row(cells, obj, include, table_version)


def labels_cell(labels: Mapping[str, str]) -> str:
    """``k=v`` pairs joined by ``,``, sorted so the output is stable."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def virtual_cluster_row(
    cluster: VirtualCluster,
    gv: GroupVersion,
    include: IncludeObject = "Metadata",
    table_version: str = "v1",
    *,
    resource_version: int | None = None,
) -> dict[str, Any]:
    """A row: Name, Alias, Credential_Type, Endpoint, Accepted, Labels, Creation_Timestamp."""
    cells: list[Any] = [
        cluster.name,
        cluster.alias,
        cluster.credential_type,
        cluster.endpoint,
        cluster.accepted,
        labels_cell(cluster.labels),
        cluster.creation_timestamp,
    ]
    obj = virtual_cluster_object(cluster, gv, resource_version=resource_version)
    return _row(cells, obj, include, table_version)


def table(
    columns: Sequence[Column],
    rows: Iterable[dict[str, Any]],
    *,
    resource_version: int | None,
    table_version: str = "v1",
) -> dict[str, Any]:
    """A ``meta.k8s.io`` ``Table`` (``v1`` or ``v1beta1``, as the client asked)."""
    metadata: dict[str, Any] = {}
    if resource_version is not None:
        metadata["resourceVersion"] = str(resource_version)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{table_version}",
        "metadata": metadata,
        "columnDefinitions": [c.to_json() for c in columns],
        "rows": list(rows),
    }
