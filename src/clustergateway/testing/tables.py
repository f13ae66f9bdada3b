"""``meta.k8s.io/v1`` Table and PartialObjectMetadata forms, as kubectl ``get`` prints them.

Columns follow kube-apiserver's printers for the served kinds (pods: Name,
Ready, Status, Restarts, Age, and IP/Node/Nominated Node/Readiness Gates at
priority 1) and the OCM CRD's printer columns for ManagedClusters.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import Any

from clustergateway.testing.kinds import ResourceType

__all__ = ["human_duration", "partial_metadata", "table_for", "table_columns"]

Object = dict[str, Any]
Column = tuple[str, str, str, int]  # name, type, format, priority


def _parse_time(value: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except (TypeError, ValueError):
        return None


def human_duration(seconds: float) -> str:
    """kubectl's ``duration.HumanDuration``: ``5s``, ``3m10s``, ``4h``, ``2d3h``..."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(obj: Object, now: datetime.datetime) -> str:
    created = _parse_time(obj.get("metadata", {}).get("creationTimestamp", ""))
    if created is None:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


def _name(obj: Object) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _pod_cells(obj: Object) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    if obj.get("metadata", {}).get("deletionTimestamp"):
        reason = "Terminating"
    return [
        f"{ready}/{total}",
        reason,
        restarts,
        None,
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def _condition(obj: Object, kind: str) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status", ""))
    return ""


_EXTRA_COLUMNS: dict[tuple[str, str], tuple[list[Column], Callable[[Object], list[Any]]]] = {
    ("", "namespaces"): (
        [("Status", "string", "", 0)],
        lambda o: [(o.get("status") or {}).get("phase", "")],
    ),
    ("", "configmaps"): (
        [("Data", "string", "", 0)],
        lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {})],
    ),
    ("", "secrets"): (
        [("Type", "string", "", 0), ("Data", "string", "", 0)],
        lambda o: [o.get("type", ""), len(o.get("data") or {})],
    ),
    ("cluster.open-cluster-management.io", "managedclusters"): (
        [
            ("Hub Accepted", "boolean", "", 0),
            ("Managed Cluster URLs", "string", "", 0),
            ("Joined", "string", "", 0),
            ("Available", "string", "", 0),
        ],
        lambda o: [
            bool((o.get("spec") or {}).get("hubAcceptsClient", False)),
            ",".join(
                str(c.get("url", ""))
                for c in (o.get("spec") or {}).get("managedClusterClientConfigs") or []
            ),
            _condition(o, "ManagedClusterJoined"),
            _condition(o, "ManagedClusterConditionAvailable"),
        ],
    ),
}

_POD_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0),
    ("Ready", "string", "", 0),
    ("Status", "string", "", 0),
    ("Restarts", "string", "", 0),
    ("Age", "string", "", 0),
    ("IP", "string", "", 1),
    ("Node", "string", "", 1),
    ("Nominated Node", "string", "", 1),
    ("Readiness Gates", "string", "", 1),
]


def table_columns(rtype: ResourceType) -> list[dict[str, Any]]:
    """The ``columnDefinitions`` for ``rtype``."""
    if (rtype.group, rtype.resource) == ("", "pods"):
        columns = _POD_COLUMNS
    else:
        extra = _EXTRA_COLUMNS.get((rtype.group, rtype.resource), ([], None))[0]
        columns = [("Name", "string", "name", 0), *extra, ("Age", "date", "", 0)]
    return [
        {"name": n, "type": t, "format": f, "description": n, "priority": p}
        for n, t, f, p in columns
    ]


def _cells(rtype: ResourceType, obj: Object, now: datetime.datetime) -> list[Any]:
    if (rtype.group, rtype.resource) == ("", "pods"):
        cells = _pod_cells(obj)
        cells[3] = _age(obj, now)
        return [_name(obj), *cells]
    extra = _EXTRA_COLUMNS.get((rtype.group, rtype.resource))
    middle = extra[1](obj) if extra else []
    return [_name(obj), *middle, _age(obj, now)]


def partial_metadata(obj: Object, version: str = "v1") -> Object:
    """``PartialObjectMetadata``: type fields and metadata only."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": obj.get("metadata", {}),
    }


def table_for(
    rtype: ResourceType,
    objects: Iterable[Object],
    *,
    version: str = "v1",
    include_object: str = "Metadata",
    list_meta: Object | None = None,
    with_columns: bool = True,
    now: datetime.datetime | None = None,
) -> Object:
    """A Table of ``objects`` (``include_object``: ``None``, ``Metadata`` or ``Object``)."""
    moment = now or datetime.datetime.now(datetime.UTC)
    rows = []
    for obj in objects:
        row: Object = {"cells": _cells(rtype, obj, moment)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj, version)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": list_meta or {},
        "columnDefinitions": table_columns(rtype) if with_columns else [],
        "rows": rows,
    }
