"""REST paths of the kinds the addon-manager touches, and small object helpers.

The hub client speaks paths, not kinds; this table maps each kind the
installer and prober read or write to its collection, the way a RESTMapper
would for exactly these kinds (no discovery round trip needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["HubApi", "KINDS", "collection_path", "merged", "object_path", "subset"]


class HubApi(Protocol):
    """The JSON requests the addon-manager makes (``HubClient`` provides them)."""

    async def get_json(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]: ...

    async def post_json(
        self, path: str, body: Any, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]: ...

    async def put_json(
        self, path: str, body: Any, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]: ...


#: (apiVersion, kind) → (plural, namespaced)
KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Service"): ("services", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("apiregistration.k8s.io/v1", "APIService"): ("apiservices", False),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
    ("addon.open-cluster-management.io/v1alpha1", "ClusterManagementAddOn"): (
        "clustermanagementaddons",
        False,
    ),
    ("addon.open-cluster-management.io/v1alpha1", "ManagedClusterAddOn"): (
        "managedclusteraddons",
        True,
    ),
    ("authentication.open-cluster-management.io/v1alpha1", "ManagedServiceAccount"): (
        "managedserviceaccounts",
        True,
    ),
    ("proxy.open-cluster-management.io/v1alpha1", "ClusterGatewayConfiguration"): (
        "clustergatewayconfigurations",
        False,
    ),
}


def collection_path(api_version: str, kind: str, namespace: str | None = None) -> str:
    """``/api/v1/namespaces/<ns>/secrets``; all namespaces when ``namespace`` is None."""
    plural, namespaced = KINDS[(api_version, kind)]
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced and namespace is not None:
        return f"{root}/namespaces/{namespace}/{plural}"
    return f"{root}/{plural}"


def object_path(obj: Mapping[str, Any]) -> str:
    """The path of ``obj`` (found by its apiVersion, kind, namespace and name)."""
    meta = obj.get("metadata") or {}
    path = collection_path(str(obj["apiVersion"]), str(obj["kind"]), meta.get("namespace") or "")
    return f"{path}/{meta['name']}"


def subset(wanted: Any, have: Any) -> bool:
    """True if everything in ``wanted`` is in ``have`` (server-filled defaults ignored)."""
    if isinstance(wanted, Mapping):
        return isinstance(have, Mapping) and all(subset(v, have.get(k)) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(have, list)
            and len(wanted) == len(have)
            and all(subset(w, h) for w, h in zip(wanted, have, strict=True))
        )
    return bool(wanted == have)


def merged(have: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """``have`` with ``wanted`` written over it (maps merged, lists and scalars replaced)."""
    out = dict(have)
    for key, value in wanted.items():
        if isinstance(value, Mapping) and isinstance(have.get(key), Mapping):
            out[key] = merged(have[key], value)
        else:
            out[key] = value
    return out
