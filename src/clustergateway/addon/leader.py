"""Leader election with a ``coordination.k8s.io/v1`` Lease, client-go's algorithm.

``--leader-elect`` makes replicas compete for Lease
``<namespace>/cluster-gateway-addon-manager`` (Go's ``LeaderElectionID``) with
controller-runtime's timings (lease 15 s, renew deadline 10 s, retry 2 s).
Every ``retry_period`` a candidate tries to acquire or renew, as client-go's
``tryAcquireOrRenew`` does: create the Lease if there is none; take it over
when the holder has not renewed for ``lease_duration`` seconds *as observed
by this replica's own clock* (the time it last saw the record change, never
the holder's timestamps, so clock skew between nodes does not matter); every
write carries the resourceVersion read, so of two replicas racing for an
expired Lease exactly one wins (the other gets 409).

A leader that cannot renew within ``renew_deadline`` stops leading (its
services are stopped before another replica can take over, since takeover
waits the longer ``lease_duration``); on shutdown it releases the Lease
(holder emptied, duration 1 s) so a successor starts at once.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from clustergateway import errors
from clustergateway.addon.resources import HubApi, collection_path

__all__ = ["LeaseElector"]


def _version(lease: Mapping[str, Any]) -> Any:
    """What tells two reads of the Lease apart (every write bumps resourceVersion)."""
    return (lease.get("metadata") or {}).get("resourceVersion") or lease.get("spec")


def _micro_time() -> str:
    """``metav1.MicroTime`` of now (RFC 3339 with microseconds)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@attrs.define(eq=False)
class LeaseElector(Service):
    """Calls ``on_started_leading``/``on_stopped_leading`` as this replica wins or loses."""

    reactor: IReactorTime
    client: HubApi
    namespace: str
    name: str
    identity: str
    on_started_leading: Callable[[], None]
    on_stopped_leading: Callable[[], Any]
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    wall_time: Callable[[], str] = _micro_time
    leading: bool = attrs.field(default=False, init=False)
    _observed: dict[str, Any] | None = attrs.field(default=None, init=False)
    _observed_at: float = attrs.field(default=0.0, init=False)
    _renewed_at: float = attrs.field(default=0.0, init=False)
    _loop: LoopingCall | None = attrs.field(default=None, init=False)
    _log: ClassVar[Logger] = Logger()

    @property
    def path(self) -> str:
        return collection_path("coordination.k8s.io/v1", "Lease", self.namespace) + f"/{self.name}"

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        self._log.info(
            "Attempting to acquire leader lease {namespace}/{name} as {identity}",
            namespace=self.namespace,
            name=self.name,
            identity=self.identity,
        )
        self._loop = LoopingCall(lambda: Deferred.fromCoroutine(self.tick()))
        self._loop.clock = self.reactor
        self._loop.start(self.retry_period, now=True).addErrback(
            lambda f: self._log.failure("Leader election stopped", f)
        )

    def stopService(self) -> Deferred[Any]:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if not self.leading:
            return succeed(None)
        return Deferred.fromCoroutine(self._release())

    async def tick(self) -> None:
        """One try to acquire or renew; start or stop leading as the outcome says."""
        now = self.reactor.seconds()
        try:
            held = await self._try_acquire_or_renew(now)
        except errors.StatusError as e:
            self._log.warn("Cannot reach the leader lease: {error}", error=e.message)
            held = False
        if held:
            self._renewed_at = now
            if not self.leading:
                self.leading = True
                self._log.info("Became the leader ({identity})", identity=self.identity)
                self.on_started_leading()
        elif self.leading and (
            now - self._renewed_at > self.renew_deadline or self._held_by_other()
        ):
            self.leading = False
            self._log.warn("Leader lease lost ({identity})", identity=self.identity)
            self.on_stopped_leading()

    def _held_by_other(self) -> bool:
        spec = (self._observed or {}).get("spec") or {}
        holder = spec.get("holderIdentity")
        return bool(holder) and holder != self.identity

    def _spec(self, previous: Mapping[str, Any]) -> dict[str, Any]:
        now = self.wall_time()
        spec = dict(previous)
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if spec.get("holderIdentity") else 0
            )
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = int(self.lease_duration)
        spec["renewTime"] = now
        return spec

    async def _try_acquire_or_renew(self, now: float) -> bool:
        try:
            lease = await self.client.get_json(self.path)
        except errors.NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec({"leaseTransitions": 0}),
            }
            try:
                self._observe(await self.client.post_json(self.path.rsplit("/", 1)[0], body), now)
            except (errors.AlreadyExists, errors.Conflict):
                return False
            return True
        spec = lease.get("spec") or {}
        if self._observed is None or _version(self._observed) != _version(lease):
            self._observe(lease, now)  # the record changed: the holder is alive
        holder = spec.get("holderIdentity")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self._observed_at + duration > now:
            return False
        try:
            updated = await self.client.put_json(self.path, {**lease, "spec": self._spec(spec)})
        except errors.Conflict:
            return False
        self._observe(updated, now)
        return True

    def _observe(self, lease: dict[str, Any], now: float) -> None:
        self._observed = lease
        self._observed_at = now

    async def _release(self) -> None:
        self.leading = False
        try:
            lease = await self.client.get_json(self.path)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {
                    **lease["spec"],
                    "holderIdentity": "",
                    "leaseDurationSeconds": 1,
                    "renewTime": self.wall_time(),
                }
                await self.client.put_json(self.path, {**lease, "spec": spec})
        except errors.StatusError as e:
            self._log.warn("Cannot release the leader lease: {error}", error=e.message)
        result = self.on_stopped_leading()
        if isinstance(result, Deferred):
            await result
