"""The Secret-backed cluster registry: current state, change events, lookups.

Sources (the hub's list+watch, a local directory) push Secrets in with
:meth:`SecretRegistry.replace_all` (a full list) and
:meth:`SecretRegistry.apply` (one watch event); readers (the API, the proxy)
use the :class:`~clustergateway.registry.model.ClusterRegistry` side.  A
Secret is converted once per change, never per request, and an event is
emitted only for a real change, so a periodic full resync costs a dict
comparison per Secret and is silent when nothing changed.

Only Secrets labelled ``<group>/cluster-credential-type`` are clusters.  A
labelled Secret that cannot be converted stays in the registry as an entry
with an ``error``: left out of lists by the API, its GET answers 503 naming
the Secret and the cause, and it is logged once per change (never with its
data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from clustergateway import errors
from clustergateway.registry.convert import (
    ConversionError,
    EndpointSource,
    convert_secret_with_warnings,
    recorded_health,
    secret_ref,
)
from clustergateway.registry.features import FeatureGates
from clustergateway.registry.keys import HEALTHY_ANNOTATION, HEALTHY_REASON_ANNOTATION
from clustergateway.registry.model import (
    ClusterGateway,
    RegistryEntry,
    RegistryEvent,
    RegistryListener,
)
from clustergateway.registry.ocm import (
    ManagedClusterError,
    OCMHealth,
    combine_health,
    managed_cluster_endpoint,
    managed_cluster_health,
)
from clustergateway.registry.selector import LabelSelector
from clustergateway.registry.virtualcluster import (
    VirtualCluster,
    get_virtual_cluster,
    is_cluster_secret,
    list_virtual_clusters,
)

__all__ = ["ManagedClusterListener", "SecretRegistry", "combine_circuit"]

#: ``listener(event_type, managed_cluster, resource_version)``.
ManagedClusterListener = Callable[[RegistryEvent, Mapping[str, Any], int], None]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _name(obj: Mapping[str, Any]) -> str:
    name = _meta(obj).get("name")
    return name if isinstance(name, str) else ""


def _int_version(obj: Mapping[str, Any]) -> int | None:
    value = _meta(obj).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _string_annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    value = _meta(obj).get("annotations")
    if not isinstance(value, Mapping):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _is_stale(current: Mapping[str, Any], incoming: Mapping[str, Any]) -> bool:
    """True if ``incoming`` is an older version of ``current``.

    resourceVersions are opaque to clients in general, but etcd-backed ones
    (and the simulated hub's) are integers; when both are, an older one is a
    late event from a watch that a newer list already overtook.
    """
    have, got = _int_version(current), _int_version(incoming)
    return have is not None and got is not None and got < have


def combine_circuit(gateway: ClusterGateway, cause: str | None) -> ClusterGateway:
    """``gateway`` with an open circuit (``cause``) as a health source.

    It only adds: a cluster another source already calls unhealthy keeps that
    reason (the same precedence as :func:`combine_health`).
    """
    if cause is None or not gateway.healthy:
        return gateway
    return attrs.evolve(
        gateway, healthy=False, healthy_reason=f"CircuitOpen: {cause}", circuit_open=True
    )


@attrs.define
class SecretRegistry:
    """The clusters known from Secrets (and OCM ManagedClusters).

    ``group`` is the API group (label keys derive from it); ``gates`` the
    feature gates the conversion honours.  With ``ocm_integration`` a
    cluster whose OCM ManagedCluster exists takes its endpoint, CA and
    ``Available`` condition from it (``registry.ocm``); a ManagedCluster
    change re-derives the cluster and emits MODIFIED like a Secret change, so
    pools are rebuilt and ``clustergateways`` watches see it.  Secret-only
    clusters stay (Go's hybrid mode) unless ``managed_clusters_only``.

    The health a cluster shows is the one every reader sees (list, get,
    watch, the ``health`` subresource, the proxy's refusal): its Secret's
    status annotations — or, for a registry without a hub to write to
    (``--secrets-dir``), what :meth:`record_health` recorded in memory in
    their place — combined with OCM's verdict (``registry.ocm``).
    """

    group: str
    gates: FeatureGates = attrs.field(factory=FeatureGates)
    ocm_integration: bool = False
    managed_clusters_only: bool = False
    _entries: dict[str, RegistryEntry] = attrs.field(factory=dict, init=False, repr=False)
    _managed: dict[str, Mapping[str, Any]] = attrs.field(factory=dict, init=False, repr=False)
    _version: int = attrs.field(default=0, init=False)
    _synced: bool = attrs.field(default=False, init=False)
    _sync_waiters: list[Deferred[None]] = attrs.field(factory=list, init=False, repr=False)
    _listeners: list[RegistryListener] = attrs.field(factory=list, init=False, repr=False)
    _managed_listeners: list[ManagedClusterListener] = attrs.field(
        factory=list, init=False, repr=False
    )
    #: (kind of problem, name) → marker (e.g. resourceVersion) last reported.
    _reported: dict[tuple[str, str], object] = attrs.field(factory=dict, init=False, repr=False)
    #: Health recorded in memory in place of the Secret's annotations.
    _recorded: dict[str, tuple[bool, str]] = attrs.field(factory=dict, init=False, repr=False)
    #: Clusters whose circuit is open in this process, with the cause.
    _circuits: dict[str, str] = attrs.field(factory=dict, init=False, repr=False)

    _log: ClassVar[Logger] = Logger()

    # -- the read side (ClusterRegistry) ------------------------------------------------

    @property
    def resource_version(self) -> int:
        """Grows by one with every change (Secrets and ManagedClusters alike)."""
        return self._version

    @property
    def synced(self) -> bool:
        """True once a source applied its first full list."""
        return self._synced

    def when_synced(self) -> Deferred[None]:
        """A Deferred that fires (with None) once :attr:`synced` is true."""
        if self._synced:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._sync_waiters.append(waiter)
        return waiter

    def get(self, name: str) -> ClusterGateway:
        """The cluster ``name``.

        Raises ``errors.NotFound`` when no cluster Secret has that name and
        ``errors.ServiceUnavailable`` (naming the Secret and the cause) when
        its Secret cannot be converted.
        """
        entry = self._entries.get(name)
        if entry is None:
            raise errors.NotFound.for_object("clustergateways", self.group, name)
        if entry.hidden:
            found = errors.NotFound.for_object("clustergateways", self.group, name)
            raise errors.NotFound(f"{found.message}: {entry.error}", found.details)
        if entry.gateway is None:
            raise errors.ServiceUnavailable(
                f'clustergateways.{self.group} "{name}" is unavailable: {entry.error}',
                {"name": name, "group": self.group, "kind": "clustergateways"},
            )
        return entry.gateway

    def entry(self, name: str) -> RegistryEntry | None:
        """The entry of ``name``, valid or not; None if unknown."""
        return self._entries.get(name)

    def entries(self) -> list[RegistryEntry]:
        """All entries, valid or not, sorted by name."""
        return [self._entries[name] for name in sorted(self._entries)]

    def gateways(self) -> list[ClusterGateway]:
        """The valid clusters, sorted by name (what a list shows)."""
        return [e.gateway for e in self.entries() if e.gateway is not None]

    def subscribe(self, listener: RegistryListener) -> Callable[[], None]:
        """Call ``listener(event, entry, resource_version)`` on every Secret change."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def managed_clusters(self) -> list[Mapping[str, Any]]:
        """The OCM ManagedClusters known (empty unless a source feeds them), by name."""
        return [self._managed[name] for name in sorted(self._managed)]

    def subscribe_managed_clusters(self, listener: ManagedClusterListener) -> Callable[[], None]:
        """Call ``listener(event, managed_cluster, resource_version)`` on every change."""
        self._managed_listeners.append(listener)
        return lambda: (
            self._managed_listeners.remove(listener)
            if listener in self._managed_listeners
            else None
        )

    def virtual_clusters(self, selector: LabelSelector | None = None) -> list[VirtualCluster]:
        """The VirtualCluster list (``local`` first, then newest first), filtered."""
        return list_virtual_clusters(
            (e.secret for e in self.entries()),
            self.managed_clusters(),
            group=self.group,
            selector=selector,
        )

    def virtual_cluster(self, name: str) -> VirtualCluster:
        """The VirtualCluster ``name``; ``errors.NotFound``/``ServiceUnavailable`` otherwise."""
        entry = self._entries.get(name)
        return get_virtual_cluster(
            name,
            entry.secret if entry is not None else None,
            self._managed.get(name),
            group=self.group,
        )

    # -- the write side (sources) -------------------------------------------------------

    def replace_all(self, secrets: Iterable[Mapping[str, Any]]) -> None:
        """Make the registry hold exactly the cluster Secrets among ``secrets``.

        Emits DELETED for clusters gone, then ADDED/MODIFIED for new or changed
        ones (by name); unchanged Secrets emit nothing.  Marks the registry
        synced.  Secrets without the credential-type label are ignored; of two
        Secrets with one name (a directory may hold several namespaces), the
        first wins.
        """
        incoming: dict[str, Mapping[str, Any]] = {}
        for secret in secrets:
            if not isinstance(secret, Mapping) or not is_cluster_secret(secret, self.group):
                continue
            name = _name(secret)
            if not name:
                self._log.warn("Ignoring a cluster secret without metadata.name")
                continue
            if name in incoming:
                self._report(
                    "duplicate",
                    name,
                    (secret_ref(incoming[name]), secret_ref(secret)),
                    "Ignoring secret {ignored}: cluster {name} is already defined by {kept}",
                    ignored=secret_ref(secret),
                    kept=secret_ref(incoming[name]),
                )
                continue
            incoming[name] = secret
        for name in sorted(set(self._entries) - set(incoming)):
            self._remove(name)
        for name in sorted(incoming):
            self._upsert(name, incoming[name], check_stale=False)
        self._mark_synced()

    def apply(self, event_type: str, secret: Mapping[str, Any]) -> None:
        """Apply one watch event (``ADDED``/``MODIFIED``/``DELETED``; others are ignored).

        A Secret that loses its credential-type label leaves the registry; an
        event older than what the registry holds (integer resourceVersions)
        is dropped.
        """
        if not isinstance(secret, Mapping):
            return
        name = _name(secret)
        if not name or event_type not in ("ADDED", "MODIFIED", "DELETED"):
            return
        if event_type != "DELETED" and is_cluster_secret(secret, self.group):
            self._upsert(name, secret, check_stale=True)
        else:
            self._remove(name)

    def replace_managed_clusters(self, managed_clusters: Iterable[Mapping[str, Any]]) -> None:
        """Make the registry hold exactly ``managed_clusters`` (a full list)."""
        incoming = {_name(m): m for m in managed_clusters if _name(m)}
        for name in sorted(set(self._managed) - set(incoming)):
            self.apply_managed_cluster("DELETED", self._managed[name])
        for name in sorted(incoming):
            self.apply_managed_cluster("ADDED", incoming[name])

    def apply_managed_cluster(self, event_type: str, managed: Mapping[str, Any]) -> None:
        """Apply one ManagedCluster watch event."""
        name = _name(managed)
        if not name or event_type not in ("ADDED", "MODIFIED", "DELETED"):
            return
        old = self._managed.get(name)
        event: RegistryEvent
        if event_type == "DELETED":
            if old is None:
                return
            del self._managed[name]
            event = "DELETED"
        else:
            if old is not None and (old == managed or _is_stale(old, managed)):
                return
            self._managed[name] = managed
            event = "ADDED" if old is None else "MODIFIED"
        self._version += 1
        for listener in list(self._managed_listeners):
            try:
                listener(event, managed, self._version)
            except Exception:
                self._log.failure("ManagedCluster listener failed")
        if self.ocm_integration:
            self._refresh(name)

    # -- health -------------------------------------------------------------------------

    def recorded_health(self, name: str) -> tuple[bool, str] | None:
        """The health recorded for ``name`` (annotations, or in memory); None if unknown.

        This is the recorded source alone, before OCM's verdict: what a
        prober compares its result with to decide whether to write.
        """
        if name in self._recorded:
            return self._recorded[name]
        entry = self._entries.get(name)
        if entry is None:
            return None
        return recorded_health(_string_annotations(entry.secret))

    def record_health(self, name: str, healthy: bool, reason: str) -> None:
        """Record health in memory in place of the Secret's annotations (no hub).

        Kept until the cluster's Secret goes; a change emits MODIFIED.
        """
        if name not in self._entries:
            return
        self._recorded[name] = (healthy, reason)
        self._refresh(name)

    def set_circuit(self, name: str, cause: str | None) -> None:
        """The gateway's circuit to ``name`` opened (``cause``) or closed (None).

        A third health source, kept in this process only (never written to
        the Secret): while open, a cluster no other source calls unhealthy
        shows ``healthy: false`` with ``CircuitOpen: <cause>``; a change emits
        MODIFIED like any other health change.
        """
        if cause is None:
            if self._circuits.pop(name, None) is None:
                return
        else:
            if self._circuits.get(name) == cause:
                return
            self._circuits[name] = cause
        self._refresh(name)

    def with_recorded_health(self, name: str, healthy: bool, reason: str) -> ClusterGateway:
        """The cluster as it shows once ``healthy``/``reason`` are recorded for it.

        What a ``health`` PUT answers: the same combination every reader
        sees, so an OCM verdict still shows.  Raises like :meth:`get`.
        """
        gateway = self.get(name)
        health, _problem = self._ocm_health(name)
        gateway = attrs.evolve(gateway, healthy=healthy, healthy_reason=reason, circuit_open=False)
        return combine_circuit(combine_health(gateway, health), self._circuits.get(name))

    # -- internals --------------------------------------------------------------------

    def _upsert(self, name: str, secret: Mapping[str, Any], *, check_stale: bool) -> None:
        old = self._entries.get(name)
        if old is not None:
            if old.secret == secret:
                return
            if check_stale and _is_stale(old.secret, secret):
                return
        self._version += 1
        entry = self._convert(name, secret, self._version)
        self._entries[name] = entry
        self._notify("ADDED" if old is None else "MODIFIED", entry)

    def _refresh(self, name: str) -> None:
        """Re-derive ``name`` from its stored Secret (a ManagedCluster or recorded
        health changed); emit MODIFIED if what readers see changed."""
        old = self._entries.get(name)
        if old is None:
            return
        entry = self._convert(name, old.secret, self._version + 1)
        if (entry.gateway, entry.error, entry.hidden) == (old.gateway, old.error, old.hidden):
            return
        self._version += 1
        self._entries[name] = entry
        self._notify("MODIFIED", entry)

    def _remove(self, name: str) -> None:
        old = self._entries.pop(name, None)
        self._reported.pop(("conversion", name), None)
        self._recorded.pop(name, None)
        self._circuits.pop(name, None)
        if old is None:
            return
        self._version += 1
        self._notify("DELETED", old)

    def _ocm_health(self, name: str) -> tuple[OCMHealth | None, str | None]:
        """OCM's verdict on ``name`` (None: no say) and the problem met reading it."""
        managed = self._managed.get(name) if self.ocm_integration else None
        if managed is None:
            return None, None
        try:
            return managed_cluster_health(managed), None
        except ManagedClusterError as e:
            return OCMHealth(False, str(e)), str(e)

    def _endpoint_source(self, name: str) -> EndpointSource | None:
        managed = self._managed.get(name) if self.ocm_integration else None
        if managed is None:
            return None

        return lambda: managed_cluster_endpoint(managed)

    def _report_managed(self, name: str, managed: Mapping[str, Any], problem: str) -> None:
        self._report(
            "managedcluster",
            name,
            (_meta(managed).get("resourceVersion"), problem),
            "OCM ManagedCluster of cluster {name} is unusable: {cause}",
            cause=problem,
        )

    def _effective_secret(self, name: str, secret: Mapping[str, Any]) -> Mapping[str, Any]:
        """``secret`` with the in-memory recorded health as its status annotations."""
        recorded = self._recorded.get(name)
        if recorded is None:
            return secret
        meta = dict(_meta(secret))
        annotations = dict(_string_annotations(secret))
        annotations[HEALTHY_ANNOTATION] = "true" if recorded[0] else "false"
        annotations[HEALTHY_REASON_ANNOTATION] = recorded[1]
        meta["annotations"] = annotations
        return {**secret, "metadata": meta}

    def _convert(self, name: str, secret: Mapping[str, Any], version: int) -> RegistryEntry:
        if self.managed_clusters_only and name not in self._managed:
            return RegistryEntry(
                name,
                secret,
                error=f'there is no OCM ManagedCluster "{name}" '
                "(--ocm-managed-clusters-only hides clusters without one)",
                resource_version=version,
                hidden=True,
            )
        endpoint_from = self._endpoint_source(name)
        try:
            conversion = convert_secret_with_warnings(
                self._effective_secret(name, secret),
                group=self.group,
                gates=self.gates,
                endpoint_from=endpoint_from,
            )
        except ConversionError as e:
            self._report(
                "conversion",
                name,
                (_meta(secret).get("resourceVersion") or secret, e.cause),
                "Cluster secret {secret} cannot be converted: {cause}",
                secret=e.ref,
                cause=e.cause,
            )
            message = e.message
            if (
                self.ocm_integration
                and endpoint_from is None
                and e.cause.startswith('missing data key "endpoint"')
            ):
                message += f' and there is no OCM ManagedCluster "{name}" to take it from'
            return RegistryEntry(name, secret, error=message, resource_version=version)
        except Exception:
            # A bug in conversion must not take the registry down; never log the data.
            self._log.failure(
                "Converting cluster secret {secret} failed", secret=secret_ref(secret)
            )
            error = f"secret {secret_ref(secret)}: internal error while converting it"
            return RegistryEntry(name, secret, error=error, resource_version=version)
        self._reported.pop(("conversion", name), None)
        for warning in conversion.warnings:
            self._log.warn("{warning}", warning=warning)
        health, problem = self._ocm_health(name)
        if problem is not None:
            self._report_managed(name, self._managed[name], problem)
        gateway = combine_circuit(
            combine_health(conversion.gateway, health), self._circuits.get(name)
        )
        return RegistryEntry(name, secret, gateway=gateway, resource_version=version)

    def _report(
        self, problem: str, name: str, marker: object, template: str, **fields: object
    ) -> None:
        """Log ``template`` once per (``problem``, ``name``, ``marker``)."""
        key = (problem, name)
        if key in self._reported and self._reported[key] == marker:
            return
        self._reported[key] = marker
        self._log.warn(template, name=name, **fields)

    def _notify(self, event: RegistryEvent, entry: RegistryEntry) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, entry, self._version)
            except Exception:
                self._log.failure(
                    "Registry listener failed on {event} {name}", event=event, name=entry.name
                )

    def _mark_synced(self) -> None:
        if self._synced:
            return
        self._synced = True
        waiters, self._sync_waiters = self._sync_waiters, []
        for waiter in waiters:
            waiter.callback(None)
