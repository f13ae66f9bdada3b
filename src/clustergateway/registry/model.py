"""The registry's values: what a cluster Secret converts into.

These are the contract between the registry (which builds them from Secrets),
the API layer (which renders them as ``ClusterGateway``/``VirtualCluster``
JSON) and the proxy (which dials with them).  All are frozen and hashable, so
an :class:`ClusterGateway`'s :meth:`~ClusterGateway.access_key` can key
connection pools: a Secret change that alters how the cluster is reached gives
a new key, hence a new pool, while in-flight streams finish on the old one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import attrs

__all__ = [
    "ClusterGateway",
    "ClusterRegistry",
    "CredentialSpec",
    "EndpointSpec",
    "RegistryEntry",
    "RegistryEvent",
    "RegistryListener",
]


def _frozen_mapping(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return dict(value or {})


@attrs.frozen
class EndpointSpec:
    """Where a cluster's apiserver is and how to trust it.

    ``type`` is ``Const`` (``address`` is the apiserver URL) or ``ClusterProxy``
    (reached through the konnectivity tunnel as ``https://<cluster-name>``).
    ``ca_bundle`` is None when the Secret had no ``ca.crt``/``ca`` key; with
    ``insecure`` the server certificate is not verified.
    """

    type: str = "Const"
    address: str = ""
    ca_bundle: bytes | None = None
    insecure: bool = False
    #: May carry proxy credentials (``http://user:pass@host``): kept out of reprs.
    proxy_url: str | None = attrs.field(default=None, repr=False)
    tls_server_name: str | None = None


@attrs.frozen
class CredentialSpec:
    """How the gateway authenticates to the cluster.

    ``type`` is ``ServiceAccountToken`` (``token``), ``X509Certificate``
    (``certificate``/``private_key``, PEM) or ``Dynamic`` (``exec_config``: the
    client-go ExecConfig JSON, kept as canonical JSON text so it hashes; the
    plugin is run by the proxy's credential provider, never by conversion).
    """

    type: str
    token: str = attrs.field(default="", repr=False)
    certificate: bytes = attrs.field(default=b"", repr=False)
    private_key: bytes = attrs.field(default=b"", repr=False)
    exec_config: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class ClusterGateway:
    """One managed cluster, as converted from its Secret."""

    name: str
    endpoint: EndpointSpec
    credential: CredentialSpec | None
    creation_timestamp: str | None = None
    healthy: bool = False
    healthy_reason: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)
    annotations: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False, repr=False
    )
    #: The per-cluster ClientIdentityExchanger configuration (parsed
    #: annotation), when the ``ClientIdentityPenetration`` gate is on.
    proxy_config: Mapping[str, Any] | None = attrs.field(default=None, hash=False, repr=False)
    #: Unhealthy only because the gateway's circuit to it is open (``proxy.circuit``):
    #: the health refusal leaves such a cluster to the circuit, whose trial
    #: request is how it is seen to come back.
    circuit_open: bool = attrs.field(default=False, hash=False)

    def access_key(self) -> tuple[str, EndpointSpec, CredentialSpec | None]:
        """What decides how the cluster is reached: the key of its connection pool."""
        return (self.name, self.endpoint, self.credential)


@attrs.frozen
class RegistryEntry:
    """A Secret the registry knows, with its conversion or the reason it failed.

    Exactly one of ``gateway`` and ``error`` is set.  ``error`` names the Secret
    and the cause (e.g. ``secret vela-system/c1: missing data key "endpoint"``).
    ``secret`` is the Secret object as read (dict), kept for the VirtualCluster
    view, which derives labels and alias from it.
    """

    name: str
    secret: Mapping[str, Any] = attrs.field(hash=False, repr=False)
    gateway: ClusterGateway | None = None
    error: str | None = None
    #: The registry's ``resource_version`` at which this entry last changed.
    resource_version: int = 0
    #: Not served at all (``--ocm-managed-clusters-only`` and no ManagedCluster
    #: of this name): a GET answers 404 with ``error`` as the reason.
    hidden: bool = False


RegistryEvent = Literal["ADDED", "MODIFIED", "DELETED"]

#: ``listener(event_type, entry, resource_version)``; for DELETED, ``entry``
#: is the last known entry.
RegistryListener = Callable[[RegistryEvent, RegistryEntry, int], None]


class ClusterRegistry(Protocol):
    """Read side of the Secret-backed registry, as the API and proxy layers use it."""

    @property
    def resource_version(self) -> int:
        """Grows by one with every change; lists report it, watches resume from it."""

    @property
    def synced(self) -> bool:
        """True once the first full list from the source has been applied."""

    def get(self, name: str) -> ClusterGateway:
        """The cluster, or raise ``errors.NotFound`` (no such Secret) or
        ``errors.ServiceUnavailable`` (the Secret exists but cannot be
        converted; the message names the Secret and the cause)."""

    def entry(self, name: str) -> RegistryEntry | None:
        """The raw entry, valid or not."""

    def entries(self) -> list[RegistryEntry]:
        """All entries, valid or not, sorted by name."""

    def subscribe(self, listener: RegistryListener) -> Callable[[], None]:
        """Call ``listener`` on every change; returns the unsubscribe function."""
