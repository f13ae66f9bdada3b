"""The hub registry source: cluster Secrets (and OCM ManagedClusters) by list + watch.

:class:`ListWatch` is a small reflector, the loop client-go's informers run:

1. **list** the collection (paged) and hand the full list to the registry,
   which emits events only for real differences;
2. **watch** from the list's ``resourceVersion`` with bookmarks, applying each
   event; a watch the hub ends cleanly is resumed from the last version seen;
3. on ``410 Gone`` relist at once; on any other failure (hub down, TLS,
   broken stream) relist after an exponential, capped, jittered backoff —
   the registry keeps serving its last known state meanwhile, and nothing is
   ever raised out of the loop;
4. every ``resync_period`` seconds a ``LoopingCall`` ends the current watch and
   forces a fresh list + watch.  Relisting (not just replaying a cache, as
   client-go's resync does) is what heals an event the hub or the network
   lost; restarting the watch from the new list's version keeps list and
   stream coherent, so a late event can never overwrite newer listed state.

Decisions: Secrets are listed and watched with the label selector
``<group>/cluster-credential-type`` (exists), not the whole namespace as Go's
SecretCache informer does: only those are clusters, the apiserver sends
DELETED/ADDED when the label is removed/added, and unrelated Secrets (TLS
certs, Helm releases, service-account tokens) never reach the gateway's
memory.  The default resync period is 30 s: a missed event heals within it,
at the cost of one list of the cluster Secrets per period.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import attrs
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from clustergateway import errors
from clustergateway.hubclient import HubClient, status_error_from_response
from clustergateway.registry.keys import credential_type_label
from clustergateway.registry.store import SecretRegistry

__all__ = [
    "Backoff",
    "DEFAULT_RESYNC_PERIOD",
    "HubManagedClusterSource",
    "HubSecretSource",
    "ListWatch",
]

DEFAULT_RESYNC_PERIOD = 30.0
_T = TypeVar("_T")
_PAGE_SIZE = 500
_OCM_GROUP_VERSION = "/apis/cluster.open-cluster-management.io/v1"


@attrs.define
class Backoff:
    """Exponential delays, capped, with jitter (each delay in [½, 1] of its step)."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    random: Callable[[], float] = random.random
    _attempt: int = attrs.field(default=0, init=False)

    def next(self) -> float:
        step = min(self.maximum, self.initial * self.factor**self._attempt)
        self._attempt += 1
        return step * (0.5 + self.random() / 2)

    def reset(self) -> None:
        self._attempt = 0

    @property
    def failing(self) -> bool:
        """True after a failure, until :meth:`reset`."""
        return self._attempt > 0


class _RestartWatch(Exception):
    """The watch was ended on purpose (resync tick, client-side deadline): relist."""


@attrs.define(eq=False)
class ListWatch:
    """Keeps ``on_list``/``on_event`` fed from a hub collection, forever, until stopped.

    ``path`` is the collection (``/api/v1/namespaces/ns/secrets``);
    ``on_list(items)`` receives every full list, ``on_event(type, object)``
    every ADDED/MODIFIED/DELETED watch event.
    """

    reactor: IReactorTime
    client: HubClient
    path: str
    on_list: Callable[[list[dict[str, Any]]], None]
    on_event: Callable[[str, dict[str, Any]], None]
    label_selector: str | None = None
    resync_period: float = DEFAULT_RESYNC_PERIOD
    #: The hub ends each watch after a random time in [min, 2×min), as kubectl does.
    min_watch_seconds: int = 300
    backoff: Backoff = attrs.field(factory=Backoff)
    describe: str = ""
    _random: random.Random = attrs.field(factory=random.Random, init=False)
    _version: str = attrs.field(default="", init=False)
    _loop: Deferred[None] | None = attrs.field(default=None, init=False)
    _watch: Deferred[None] | None = attrs.field(default=None, init=False)
    _current: Deferred[Any] | None = attrs.field(default=None, init=False)
    _restart_reason: str | None = attrs.field(default=None, init=False)
    _deadline: IDelayedCall | None = attrs.field(default=None, init=False)
    _resync: LoopingCall | None = attrs.field(default=None, init=False)
    _stopping: bool = attrs.field(default=False, init=False)
    #: Counters for tests and metrics.
    lists: int = attrs.field(default=0, init=False)
    watches: int = attrs.field(default=0, init=False)

    _log: ClassVar[Logger] = Logger()

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (list, event or bookmark)."""
        return self._version

    def start(self) -> None:
        """Run the loop (and the resync timer) in the background."""
        self._stopping = False
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(self._loop_failed)
        if self.resync_period > 0:
            self._resync = LoopingCall(self.resync)
            self._resync.clock = self.reactor
            self._resync.start(self.resync_period, now=False)

    def stop(self) -> Deferred[None]:
        """End the loop and any open watch; fires when done.

        Safe to call from inside ``on_list``/``on_event`` (e.g. a registry
        listener): the loop is not cancelled mid-step, it stops at its next
        step, and the returned Deferred fires then.
        """
        self._stopping = True
        if self._resync is not None and self._resync.running:
            self._resync.stop()
        self._resync = None
        self._cancel_deadline()
        if self._current is not None and not self._current.called:
            self._current.cancel()
        loop, self._loop = self._loop, None
        return loop if loop is not None else succeed(None)

    def resync(self) -> None:
        """Relist now: end the current watch (a list or backoff in progress is left alone)."""
        self._restart("resync")

    def _restart(self, reason: str) -> None:
        if self._watch is not None and not self._watch.called:
            self._restart_reason = reason
            self._watch.cancel()

    def _loop_failed(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            self._log.failure("Registry source loop for {what} died", failure, what=self.describe)

    async def _wait(self, operation: Deferred[_T]) -> _T:
        """Await ``operation``, which :meth:`stop` cancels if it is still pending."""
        self._current = operation
        try:
            return await operation
        finally:
            self._current = None

    async def _run(self) -> None:
        need_list = True
        while not self._stopping:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                    if self.backoff.failing:
                        self._log.info("Hub is back: {what} listed again", what=self.describe)
                    self.backoff.reset()
                if not self._stopping:
                    await self._watch_once()
            except _RestartWatch as restart:
                self._log.debug("Relisting {what}: {why}", what=self.describe, why=str(restart))
                need_list = True
            except CancelledError:
                if self._stopping:
                    return
                raise
            except errors.Gone:
                self._log.info("Watch of {what} expired; relisting", what=self.describe)
                need_list = True
            except errors.StatusError as e:
                need_list = True
                await self._pause(e.message)
            except Exception as e:  # a bug here must not end the source
                self._log.failure("Registry source {what} failed", what=self.describe)
                need_list = True
                await self._pause(repr(e))

    async def _pause(self, problem: str) -> None:
        if self._stopping:
            return
        delay = self.backoff.next()
        self._log.warn(
            "Hub request for {what} failed ({problem}); retrying in {delay:.1f}s, "
            "serving the last known state",
            what=self.describe,
            problem=problem,
            delay=delay,
        )
        try:
            await self._wait(deferLater(self.reactor, delay))
        except CancelledError:
            if not self._stopping:
                raise

    async def _list(self) -> None:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": _PAGE_SIZE}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        while True:
            page = await self._wait(ensureDeferred(self.client.get_json(self.path, params)))
            if self._stopping:
                return
            items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
            metadata = page.get("metadata") or {}
            cont = metadata.get("continue")
            if not cont:
                break
            params = {**params, "continue": cont}
        self._version = str(metadata.get("resourceVersion") or "")
        self.lists += 1
        self.on_list(items)

    async def _watch_once(self) -> None:
        timeout = self._random.randrange(self.min_watch_seconds, 2 * self.min_watch_seconds)
        params: dict[str, Any] = {
            "resourceVersion": self._version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout,
        }
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        self._restart_reason = None
        self._watch = self.client.watch(self.path, params, self._event)
        self.watches += 1
        # The hub should end the watch itself; if it goes silent instead, we do.
        self._deadline = self.reactor.callLater(timeout + 60, self._restart, "watch deadline")
        try:
            await self._wait(self._watch)
        except CancelledError:
            if self._restart_reason is not None and not self._stopping:
                raise _RestartWatch(self._restart_reason) from None
            raise
        finally:
            self._watch = None
            self._cancel_deadline()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if kind == "ERROR":
            raw_code = obj.get("code")
            code = raw_code if isinstance(raw_code, int) else 500
            raise status_error_from_response(code, _json_bytes(obj))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.on_event(kind, obj)
        if version:
            self._version = str(version)


def _json_bytes(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def _ignore_cancel(failure: Failure) -> None:
    failure.trap(CancelledError)


@attrs.define(eq=False)
class HubSecretSource(Service):
    """Feeds ``registry`` from the cluster Secrets of ``namespace`` on the hub."""

    reactor: IReactorTime
    client: HubClient
    namespace: str
    registry: SecretRegistry
    resync_period: float = DEFAULT_RESYNC_PERIOD
    group: str = ""
    backoff: Backoff = attrs.field(factory=Backoff)
    #: Called after each full list (first, resync, after a reconnect) has been
    #: applied, e.g. ``GatewayMetrics.registry_synced``.
    on_synced: Callable[[], object] | None = None
    _reflector: ListWatch | None = attrs.field(default=None, init=False)

    @property
    def reflector(self) -> ListWatch | None:
        return self._reflector

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        group = self.group or self.registry.group
        self._reflector = ListWatch(
            self.reactor,
            self.client,
            f"/api/v1/namespaces/{self.namespace}/secrets",
            self._replace_all,
            self.registry.apply,
            label_selector=credential_type_label(group),
            resync_period=self.resync_period,
            backoff=self.backoff,
            describe=f"cluster secrets in {self.namespace}",
        )
        self._reflector.start()

    def _replace_all(self, items: list[dict[str, Any]]) -> None:
        self.registry.replace_all(items)
        if self.on_synced is not None:
            self.on_synced()

    def stopService(self) -> Deferred[None]:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]
        reflector, self._reflector = self._reflector, None
        if reflector is None:
            return succeed(None)
        done = reflector.stop()
        done.addErrback(_ignore_cancel)
        return done


@attrs.define(eq=False)
class HubManagedClusterSource(Service):
    """Feeds ``registry`` with OCM ManagedClusters, when the hub serves them.

    Whether ``cluster.open-cluster-management.io/v1`` is served is asked
    first (retried with backoff while the hub is unreachable); if it is not,
    this logs it once, as Go does, and asks again every ``recheck_period``
    without logging, so a CRD installed later is picked up without a restart.
    """

    reactor: IReactorTime
    client: HubClient
    registry: SecretRegistry
    resync_period: float = DEFAULT_RESYNC_PERIOD
    backoff: Backoff = attrs.field(factory=Backoff)
    #: Seconds between asking again whether the hub serves ManagedClusters.
    recheck_period: float = 60.0
    _reflector: ListWatch | None = attrs.field(default=None, init=False)
    _probe: Deferred[None] | None = attrs.field(default=None, init=False)
    #: None until known; then whether the hub serves ManagedClusters.
    served: bool | None = attrs.field(default=None, init=False)

    _log: ClassVar[Logger] = Logger()

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        self._probe = Deferred.fromCoroutine(self._start())
        self._probe.addErrback(_ignore_cancel)

    async def _start(self) -> None:
        absent_logged = False
        while True:
            served = await self._discover()
            self.served = served
            if served:
                break
            if not absent_logged:
                absent_logged = True
                self._log.info(
                    "OCM ManagedCluster CRD not installed, skip watching OCM ManagedClusters "
                    "(asking again every {period:.0f}s)",
                    period=self.recheck_period,
                )
            # The CRD may be installed later (OCM set up after the gateway): ask
            # again, quietly, so that clusters from ManagedClusters appear then.
            await deferLater(self.reactor, self.recheck_period)
        if absent_logged:
            self._log.info("OCM ManagedClusters are served now; watching them")
        self.backoff.reset()
        self._reflector = ListWatch(
            self.reactor,
            self.client,
            f"{_OCM_GROUP_VERSION}/managedclusters",
            self.registry.replace_managed_clusters,
            self.registry.apply_managed_cluster,
            resync_period=self.resync_period,
            backoff=self.backoff,
            describe="OCM managed clusters",
        )
        self._reflector.start()

    async def _discover(self) -> bool:
        """Whether the hub serves ``managedclusters``; retried while the hub fails."""
        while True:
            try:
                discovery = await self.client.get_json(_OCM_GROUP_VERSION)
            except errors.NotFound:
                return False
            except errors.StatusError as e:
                delay = self.backoff.next()
                self._log.warn(
                    "Cannot ask the hub whether it serves ManagedClusters ({problem}); "
                    "retrying in {delay:.1f}s",
                    problem=e.message,
                    delay=delay,
                )
                await deferLater(self.reactor, delay)
                continue
            resources = discovery.get("resources") or []
            return any(
                isinstance(r, dict) and r.get("name") == "managedclusters" for r in resources
            )

    def stopService(self) -> Deferred[None]:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]
        if self._probe is not None and not self._probe.called:
            self._probe.cancel()
        reflector, self._reflector = self._reflector, None
        if reflector is None:
            return succeed(None)
        done = reflector.stop()
        done.addErrback(_ignore_cancel)
        return done
