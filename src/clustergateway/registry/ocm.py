"""OCM ManagedCluster → what it adds to a ClusterGateway: pure functions (spec §6.1, §5).

With ``--ocm-integration`` the cluster Secrets that OCM's addon-manager copies
carry only ``token`` and ``ca.crt``; the endpoint comes from the
``ManagedCluster`` of the same name: ``spec.managedClusterClientConfigs[0]``
``url`` and ``caBundle`` (base64 in JSON, PEM inside).  Its
``ManagedClusterConditionAvailable`` condition is OCM's own view of the
cluster's health.

Differences from Go, on purpose:

- a ManagedCluster without client configs (or with a malformed URL or CA) is
  an error naming the ManagedCluster and the field, not Go's
  ``missing label key: api-endpoint``;
- ``ClusterProxy`` Secrets keep ignoring the URL (as Go), but still take the
  health;
- Go never read the ``Available`` condition (spec §5): here a condition that
  is present and not ``True`` makes the cluster unhealthy, with the
  condition's reason and message as ``healthyReason``.  A ManagedCluster
  without that condition (not yet joined, or a hub that does not report it)
  has no say, so a fresh ManagedCluster does not shut a working Secret out.

Precedence (:func:`combine_health`): a cluster is healthy only when no
source says otherwise.  The Secret's health annotations (written by the
gateway's prober, by Go's addon-manager through the ``health`` subresource, or
by anyone with ``clustergateways/health``) go first, because they describe the
path the gateway itself uses; OCM's condition second.  So when the prober and
OCM disagree, the cluster is refused until both agree it is fine: a false
"healthy" costs callers a dial to a dead cluster, a false "unhealthy" lasts
one OCM lease or one probe interval.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import attrs
from cryptography import x509

from clustergateway.registry.convert import endpoint_address
from clustergateway.registry.model import ClusterGateway

__all__ = [
    "AVAILABLE_CONDITION",
    "ManagedClusterError",
    "OCMHealth",
    "managed_cluster_health",
    "managed_cluster_ref",
    "managed_cluster_endpoint",
    "combine_health",
]

AVAILABLE_CONDITION = "ManagedClusterConditionAvailable"


class ManagedClusterError(ValueError):
    """A ManagedCluster the gateway cannot take an endpoint from; says which and why."""


@attrs.frozen
class OCMHealth:
    """OCM's verdict: ``healthy`` and, when not, the condition's reason and message."""

    healthy: bool
    reason: str = ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def managed_cluster_ref(managed: Mapping[str, Any]) -> str:
    """``ManagedCluster "<name>"``, for messages."""
    name = _mapping(managed.get("metadata")).get("name")
    return f'ManagedCluster "{name if isinstance(name, str) else "<unnamed>"}"'


def managed_cluster_endpoint(managed: Mapping[str, Any]) -> tuple[str, bytes | None]:
    """The apiserver URL and CA bundle (PEM, None when empty) of the first client config.

    Raises :class:`ManagedClusterError` naming the ManagedCluster and the field.
    """
    ref = managed_cluster_ref(managed)
    configs = _mapping(managed.get("spec")).get("managedClusterClientConfigs")
    if configs is not None and not isinstance(configs, list):
        raise ManagedClusterError(f"{ref}: spec.managedClusterClientConfigs is not a list")
    if not configs:
        raise ManagedClusterError(f"{ref} has no spec.managedClusterClientConfigs")
    first = configs[0]
    if not isinstance(first, Mapping):
        raise ManagedClusterError(f"{ref}: spec.managedClusterClientConfigs[0] is not an object")
    field = "spec.managedClusterClientConfigs[0]"
    url = first.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ManagedClusterError(f"{ref}: {field}.url is empty")
    try:
        address = endpoint_address(url.strip())
    except ValueError as e:
        cause = str(e).replace('data key "endpoint"', f"{field}.url")
        raise ManagedClusterError(f"{ref}: {cause}") from None
    raw_ca = first.get("caBundle")
    if raw_ca in (None, ""):
        return address, None
    if not isinstance(raw_ca, str):
        raise ManagedClusterError(f"{ref}: {field}.caBundle is not a base64 string")
    try:
        ca = base64.b64decode(raw_ca.replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise ManagedClusterError(f"{ref}: {field}.caBundle is not valid base64") from None
    if ca.strip():
        try:
            x509.load_pem_x509_certificates(ca)
        except ValueError:
            raise ManagedClusterError(
                f"{ref}: {field}.caBundle is not a PEM certificate bundle"
            ) from None
    return address, ca or None


def managed_cluster_health(managed: Mapping[str, Any]) -> OCMHealth | None:
    """OCM's health of the cluster from ``status.conditions``; None: no say.

    A condition list that is not a list (or an ``Available`` condition that is
    not an object) raises :class:`ManagedClusterError`: the caller reports the
    cluster unhealthy with that message, since OCM's view cannot be read.
    """
    ref = managed_cluster_ref(managed)
    conditions = _mapping(managed.get("status")).get("conditions")
    if conditions is None:
        return None
    if not isinstance(conditions, list):
        raise ManagedClusterError(f"{ref}: status.conditions is not a list")
    for condition in conditions:
        if not isinstance(condition, Mapping) or condition.get("type") != AVAILABLE_CONDITION:
            continue
        status = condition.get("status")
        if status == "True":
            return OCMHealth(True)
        reason = str(condition.get("reason") or f"{AVAILABLE_CONDITION}{status or 'Unknown'}")
        message = str(condition.get("message") or "")
        text = f"{reason}: {message}" if message else reason
        return OCMHealth(False, f"{ref} is not available: {text}")
    return None


def combine_health(gateway: ClusterGateway, health: OCMHealth | None) -> ClusterGateway:
    """``gateway`` (health from its Secret's annotations) with OCM's verdict applied.

    The Secret's unhealthy verdict wins (its reason is kept); otherwise an
    unhealthy OCM verdict makes the cluster unhealthy with OCM's reason.
    """
    if not gateway.healthy or health is None or health.healthy:
        return gateway
    return attrs.evolve(gateway, healthy=False, healthy_reason=health.reason)
