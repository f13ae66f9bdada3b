"""What runs the installer: Twisted-native informers on the hub client, and one runner.

Framework decision: Twisted-native, not ``kopf``.  The project already has a
list+watch+resync reflector on its Twisted hub client
(:class:`~clustergateway.registry.hub_source.ListWatch`, with backoff, 410
relists and periodic relists), the same process model as the gateway (twistd
plugin, ``twisted.logger``, one reactor), and the prober needs the gateway's
own ``clustergateways/<c>/health`` calls on that client.  ``kopf`` would bring a
second event loop (asyncio), its own client and its own logging, for a
controller that reduces to "something relevant changed → run one idempotent
pass".

The installer is level-triggered: an event says only *that* something changed.
Every watched collection kicks one :class:`ReconcileRunner`; kicks that arrive
while a pass runs coalesce into a single rerun, failures are retried after a
jittered, capped backoff, and a resync timer runs a pass anyway so that a
missed event heals (and certificates are checked for rotation) without any
watch at all.  What is watched mirrors Go's triggers: the ClusterManagementAddOn,
ClusterGatewayConfigurations, ManagedClusterAddOns, ManagedServiceAccounts
(their token Secrets are found through them), and the owned kinds, whose
events count only when the object is owned by the addon or carries a name the
install uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from clustergateway.addon.names import ADDON_NAME, API_SERVICE_NAME, DEPLOYMENT_NAME
from clustergateway.addon.resources import collection_path
from clustergateway.hubclient import HubClient
from clustergateway.registry.hub_source import Backoff, ListWatch

__all__ = ["InstallerController", "ReconcileRunner", "WATCHED", "relevant"]

#: (apiVersion, kind) of every collection whose changes may need a pass.
WATCHED: tuple[tuple[str, str], ...] = (
    ("addon.open-cluster-management.io/v1alpha1", "ClusterManagementAddOn"),
    ("proxy.open-cluster-management.io/v1alpha1", "ClusterGatewayConfiguration"),
    ("addon.open-cluster-management.io/v1alpha1", "ManagedClusterAddOn"),
    ("authentication.open-cluster-management.io/v1alpha1", "ManagedServiceAccount"),
    ("v1", "Secret"),
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("apiregistration.k8s.io/v1", "APIService"),
)
_ALWAYS = {
    "ClusterManagementAddOn",
    "ClusterGatewayConfiguration",
    "ManagedClusterAddOn",
    "ManagedServiceAccount",
}
_NAMES = {ADDON_NAME, API_SERVICE_NAME, DEPLOYMENT_NAME}


def relevant(kind: str, obj: dict[str, Any], extra_names: Iterable[str] = ()) -> bool:
    """Whether an event about ``obj`` may change what a pass does."""
    if kind in _ALWAYS:
        return True
    meta = obj.get("metadata") or {}
    if any(
        ref.get("kind") == "ClusterManagementAddOn" and ref.get("name") == ADDON_NAME
        for ref in meta.get("ownerReferences") or []
    ):
        return True
    name = meta.get("name")
    return name in _NAMES or name in set(extra_names) or kind == "Namespace"


@attrs.define(eq=False)
class ReconcileRunner:
    """Runs ``action`` one pass at a time; kicks during a pass coalesce into one rerun."""

    reactor: IReactorTime
    action: Callable[[], Awaitable[Any]]
    backoff: Backoff = attrs.field(factory=lambda: Backoff(initial=1.0, maximum=60.0))
    #: Seconds between a kick and the pass (lets a burst of events become one pass).
    settle: float = 0.05
    passes: int = attrs.field(default=0, init=False)
    failures: int = attrs.field(default=0, init=False)
    _pending: IDelayedCall | None = attrs.field(default=None, init=False)
    _running: Deferred[None] | None = attrs.field(default=None, init=False)
    _again: bool = attrs.field(default=False, init=False)
    _stopped: bool = attrs.field(default=False, init=False)
    _log: ClassVar[Logger] = Logger()

    def kick(self, delay: float | None = None) -> None:
        """Ask for a pass soon (a no-op if one is already due or will rerun)."""
        if self._stopped:
            return
        if self._running is not None:
            self._again = True
            return
        wait = self.settle if delay is None else delay
        if self._pending is not None and self._pending.active():
            if self._pending.getTime() <= self.reactor.seconds() + wait:
                return
            self._pending.cancel()
        self._pending = self.reactor.callLater(wait, self._start)

    def _start(self) -> None:
        self._pending = None
        self._again = False
        running = Deferred.fromCoroutine(self._pass())
        # A pass that never waited (an in-memory hub) has already cleared ``_running``;
        # keeping its spent Deferred would make every later kick wait for a rerun forever.
        if not running.called:
            self._running = running

    async def _pass(self) -> None:
        try:
            await self.action()
        except Exception as e:
            self.failures += 1
            delay = self.backoff.next()
            self._log.failure(
                "Reconcile failed ({error}); retrying in {delay:.1f}s",
                Failure(e),
                error=str(e),
                delay=delay,
            )
            self._running = None
            self.kick(delay)
            return
        self.passes += 1
        self.backoff.reset()
        self._running = None
        if self._again:
            self.kick()

    def resume(self) -> None:
        """Accept kicks again after :meth:`stop` (a replica that leads again)."""
        self._stopped = False

    def stop(self) -> Deferred[None]:
        self._stopped = True
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        running = self._running
        if running is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        running.addBoth(lambda _: done.callback(None))
        return done


@attrs.define(eq=False)
class InstallerController(Service):
    """Watches the hub and runs ``runner`` on every relevant change, and every ``resync``."""

    reactor: IReactorTime
    client: HubClient
    runner: ReconcileRunner
    resync: float = 60.0
    #: Relist period of each watched collection (the runner's resync does the healing).
    relist: float = 300.0
    #: More names whose Secret events count (the signer, MSA and proxy Secrets).
    extra_names: Callable[[], Iterable[str]] = lambda: ()
    _watches: list[ListWatch] = attrs.field(factory=list, init=False)
    _timer: LoopingCall | None = attrs.field(default=None, init=False)

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        self.runner.resume()
        for api_version, kind in WATCHED:
            watch = ListWatch(
                self.reactor,
                self.client,
                collection_path(api_version, kind),
                lambda _items: self.runner.kick(),
                self._on_event(kind),
                resync_period=self.relist,
                describe=f"{kind} (addon-manager)",
            )
            self._watches.append(watch)
            watch.start()
        self._timer = LoopingCall(self.runner.kick)
        self._timer.clock = self.reactor
        self._timer.start(self.resync, now=True)

    def _on_event(self, kind: str) -> Callable[[str, dict[str, Any]], None]:
        def on_event(_type: str, obj: dict[str, Any]) -> None:
            if relevant(kind, obj, self.extra_names()):
                self.runner.kick()

        return on_event

    def stopService(self) -> Deferred[Any]:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        stops = [w.stop() for w in self._watches]
        self._watches.clear()
        for d in stops:
            d.addErrback(lambda _: None)
        stops.append(self.runner.stop())
        return DeferredList(stops)
