"""VirtualCluster: the credential-free view of clusters (spec §1.4, §2.6), pure functions.

Derived from the cluster Secrets and from OCM ManagedClusters, plus the hub
itself as ``local``.  Differences from Go, on purpose:

- quirk 17 fixed: ``endpoint`` is the real endpoint (the Secret's ``endpoint``
  data, a ManagedCluster's first client-config URL), never the endpoint-type
  label's value.  A ``ClusterProxy`` Secret without ``endpoint`` data shows
  ``-`` (it is reached by name through the tunnel), as do ``local`` and a
  ManagedCluster whose client config has no URL.
- error texts say what is wrong (Go printed "no credential type found" for a
  missing endpoint too).
- a Secret without the credential-type label is not a cluster at all: it is
  absent (404), not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from clustergateway import errors
from clustergateway.registry.convert import secret_data, secret_ref
from clustergateway.registry.keys import (
    alias_annotation,
    control_plane_label,
    credential_type_label,
    endpoint_type_label,
)
from clustergateway.registry.selector import LabelSelector

__all__ = [
    "LOCAL_CLUSTER_NAME",
    "VirtualCluster",
    "VirtualClusterError",
    "get_virtual_cluster",
    "is_cluster_secret",
    "list_virtual_clusters",
    "local_cluster",
    "virtual_cluster_from_managed_cluster",
    "virtual_cluster_from_secret",
]

LOCAL_CLUSTER_NAME = "local"
_NO_ENDPOINT = "-"


class VirtualClusterError(Exception):
    """A Secret or ManagedCluster that is not a valid VirtualCluster; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attrs.frozen
class VirtualCluster:
    """One ``VirtualCluster`` object's content (``spec`` fields and metadata)."""

    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    alias: str = ""
    accepted: bool = False
    endpoint: str = ""
    credential_type: str = ""
    creation_timestamp: str | None = None


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _labels(raw: Mapping[str, str], group: str) -> dict[str, str]:
    """The object's labels minus the group's own keys, plus ``control-plane: "false"``."""
    labels = {k: v for k, v in raw.items() if not k.startswith(group)}
    labels[control_plane_label(group)] = "false"
    return labels


def local_cluster(group: str) -> VirtualCluster:
    """The hub itself, always present, never read from the API."""
    return VirtualCluster(
        name=LOCAL_CLUSTER_NAME,
        labels={control_plane_label(group): "true"},
        accepted=True,
        endpoint=_NO_ENDPOINT,
        credential_type="Internal",
    )


def is_cluster_secret(secret: Mapping[str, Any], group: str) -> bool:
    """True when the Secret carries the credential-type label (the Go list selector)."""
    return credential_type_label(group) in _strings(_meta(secret).get("labels"))


def virtual_cluster_from_secret(secret: Mapping[str, Any], *, group: str) -> VirtualCluster:
    """The VirtualCluster of a cluster Secret; :class:`VirtualClusterError` if invalid."""
    meta = _meta(secret)
    ref = secret_ref(secret)
    raw_labels = _strings(meta.get("labels"))
    credential_type = raw_labels.get(credential_type_label(group), "")
    if not credential_type:
        raise VirtualClusterError(
            f'secret {ref} is not a valid cluster secret: no label "{credential_type_label(group)}"'
        )
    try:
        data = secret_data(secret)
        endpoint = data.get("endpoint", b"").decode()
    except (ValueError, UnicodeDecodeError) as e:
        raise VirtualClusterError(f"secret {ref} is not a valid cluster secret: {e}") from None
    endpoint = endpoint[:-1] if endpoint.endswith("\n") else endpoint
    if not endpoint:
        if raw_labels.get(endpoint_type_label(group)) != "ClusterProxy":
            raise VirtualClusterError(
                f'secret {ref} is not a valid cluster secret: missing data key "endpoint"'
            )
        endpoint = _NO_ENDPOINT
    timestamp = meta.get("creationTimestamp")
    return VirtualCluster(
        name=str(meta.get("name") or ""),
        labels=_labels(raw_labels, group),
        alias=_strings(meta.get("annotations")).get(alias_annotation(group), ""),
        accepted=True,
        endpoint=endpoint,
        credential_type=credential_type,
        creation_timestamp=str(timestamp) if timestamp else None,
    )


def virtual_cluster_from_managed_cluster(
    managed: Mapping[str, Any], *, group: str
) -> VirtualCluster:
    """The VirtualCluster of an OCM ManagedCluster; :class:`VirtualClusterError` if invalid."""
    meta = _meta(managed)
    name = str(meta.get("name") or "")
    spec = managed.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    configs = spec.get("managedClusterClientConfigs")
    if not isinstance(configs, list) or not configs:
        raise VirtualClusterError(f"managed cluster {name} has no client config")
    first = configs[0] if isinstance(configs[0], Mapping) else {}
    timestamp = meta.get("creationTimestamp")
    return VirtualCluster(
        name=name,
        labels=_labels(_strings(meta.get("labels")), group),
        alias=_strings(meta.get("annotations")).get(alias_annotation(group), ""),
        accepted=bool(spec.get("hubAcceptsClient", False)),
        endpoint=str(first.get("url") or _NO_ENDPOINT),
        credential_type="ManagedCluster",
        creation_timestamp=str(timestamp) if timestamp else None,
    )


def list_virtual_clusters(
    secrets: Iterable[Mapping[str, Any]],
    managed_clusters: Iterable[Mapping[str, Any]],
    *,
    group: str,
    selector: LabelSelector | None = None,
) -> list[VirtualCluster]:
    """``local``, the valid cluster Secrets, then ManagedClusters not already present.

    As Go: the caller's selector minus its ``control-plane`` requirements is
    applied to the object's own labels, then the whole selector to the
    computed labels; invalid objects are left out.  Sorted ``local`` first,
    then by creation time, newest first.
    """
    selector = selector or LabelSelector()
    source_selector = selector.without_key(control_plane_label(group))
    found: dict[str, VirtualCluster] = {}

    def admit(obj: Mapping[str, Any], cluster: VirtualCluster) -> None:
        own_labels = _strings(_meta(obj).get("labels"))
        if source_selector.matches(own_labels) and selector.matches(cluster.labels):
            found[cluster.name] = cluster

    for secret in secrets:
        if not is_cluster_secret(secret, group):
            continue
        try:
            admit(secret, virtual_cluster_from_secret(secret, group=group))
        except VirtualClusterError:
            continue
    secret_names = set(found)
    for managed in managed_clusters:
        if str(_meta(managed).get("name") or "") in secret_names:
            continue
        try:
            admit(managed, virtual_cluster_from_managed_cluster(managed, group=group))
        except VirtualClusterError:
            continue
    local = local_cluster(group)
    result = [local] if selector.matches(local.labels) else []
    # Newest first; equal (or missing, last) timestamps by name: sort is stable.
    others = sorted(found.values(), key=lambda c: c.name)
    others.sort(key=lambda c: c.creation_timestamp or "", reverse=True)
    result.extend(others)
    return result


def get_virtual_cluster(
    name: str,
    secret: Mapping[str, Any] | None,
    managed_cluster: Mapping[str, Any] | None,
    *,
    group: str,
) -> VirtualCluster:
    """The VirtualCluster ``name`` from its Secret and/or ManagedCluster (either may be None).

    Precedence as Go: a valid Secret, then a valid ManagedCluster.  Raises
    ``errors.NotFound`` when neither exists and ``errors.ServiceUnavailable``
    carrying the reasons when those present are invalid.
    """
    if name == LOCAL_CLUSTER_NAME:
        return local_cluster(group)
    problems: list[str] = []
    if secret is not None and is_cluster_secret(secret, group):
        try:
            return virtual_cluster_from_secret(secret, group=group)
        except VirtualClusterError as e:
            problems.append(e.message)
    if managed_cluster is not None:
        try:
            return virtual_cluster_from_managed_cluster(managed_cluster, group=group)
        except VirtualClusterError as e:
            problems.append(e.message)
    details = {"name": name, "group": group, "kind": "virtualclusters"}
    if not problems:
        raise errors.NotFound.for_object("virtualclusters", group, name)
    message = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
    raise errors.ServiceUnavailable(f'virtualclusters.{group} "{name}": {message}', details)
