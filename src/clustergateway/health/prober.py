"""The active health prober (``--cluster-health-probe-interval``).

Every interval each valid cluster gets one probe: ``GET /healthz`` through
that cluster's own credential, egress and connection pool
(:meth:`ClusterProxy.probe <clustergateway.proxy.resource.ClusterProxy.probe>`),
then ``GET /livez`` when ``/healthz`` answered something other than 200 (a
cluster that hides ``/healthz`` from its identity).  Probes start spread over
a jitter window, at most ``concurrency`` at a time, one per cluster at a time,
each bounded by a timeout, so a thousand clusters or a few dead ones do not
stall the others.

Verdicts: ``failure_threshold`` consecutive failures make a cluster
unhealthy, with the last failure as the reason; one success makes it healthy.
A verdict is handed to the :class:`~clustergateway.health.recorder.HealthRecorder`
only when it differs from the one on record, so a steady cluster costs no
write at all; the registry then shows it to every reader.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import ClassVar, Protocol

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from clustergateway.health.recorder import HealthRecorder
from clustergateway.observe.metrics import GatewayMetrics
from clustergateway.proxy.resource import ProbeAnswer, ProbeFailed
from clustergateway.registry.model import ClusterGateway

__all__ = ["ClusterHealthProber", "ProbeTarget", "probe_verdict"]

_PATHS = (b"/healthz", b"/livez")
_SHOWN_BODY = 80


class ProbeTarget(Protocol):
    """What sends a probe (``ClusterProxy`` provides it)."""

    async def probe(self, cluster: ClusterGateway, path: bytes, timeout: float) -> ProbeAnswer: ...


class ProbedRegistry(Protocol):
    """The clusters to probe (``SecretRegistry`` provides it)."""

    def gateways(self) -> list[ClusterGateway]: ...


def _answer_text(path: bytes, answer: ProbeAnswer) -> str:
    body = answer.body.decode("utf-8", "replace").strip().replace("\n", " ")
    if len(body) > _SHOWN_BODY:
        body = body[:_SHOWN_BODY] + "..."
    shown = f": {body}" if body else ""
    return f"GET {path.decode()} answered {answer.code}{shown}"


async def probe_verdict(target: ProbeTarget, cluster: ClusterGateway, timeout: float) -> str | None:
    """Probe ``cluster``; None when healthy, else the reason (safe to show a caller)."""
    reason = ""
    for path in _PATHS:
        try:
            answer = await target.probe(cluster, path, timeout)
        except ProbeFailed as e:
            # No HTTP answer: trying another path would only wait again.
            return f"GET {path.decode()}: {e}"
        if answer.code == 200:
            return None
        reason = _answer_text(path, answer)
    return reason


@attrs.define(eq=False)
class ClusterHealthProber(Service):
    """Probes every cluster of ``registry`` each ``interval`` seconds (see module)."""

    reactor: IReactorTime
    registry: ProbedRegistry
    target: ProbeTarget
    recorder: HealthRecorder
    interval: float
    failure_threshold: int = 3
    timeout: float = 5.0
    concurrency: int = 16
    #: Probes of a round start within the first ``jitter`` × ``interval`` seconds.
    jitter: float = 0.2
    random: Callable[[], float] = random.random
    metrics: GatewayMetrics | None = None
    _failures: dict[str, int] = attrs.field(factory=dict, init=False)
    _busy: set[str] = attrs.field(factory=set, init=False)
    _pending: dict[str, IDelayedCall] = attrs.field(factory=dict, init=False)
    _running: dict[str, Deferred[None]] = attrs.field(factory=dict, init=False)
    _loop: LoopingCall | None = attrs.field(default=None, init=False)
    _semaphore: DeferredSemaphore = attrs.field(init=False)
    #: Probes sent (for tests).
    probes: int = attrs.field(default=0, init=False)

    _log: ClassVar[Logger] = Logger()

    def __attrs_post_init__(self) -> None:
        self._semaphore = DeferredSemaphore(self.concurrency)

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        self._loop = LoopingCall(self.probe_all)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=True).addErrback(self._loop_failed)

    def stopService(self) -> Deferred[None]:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        for running in list(self._running.values()):
            running.cancel()
        return Deferred.fromCoroutine(self._settled())

    async def _settled(self) -> None:
        for running in list(self._running.values()):
            try:
                await running
            except BaseException:  # noqa: S110 - cancelled on purpose
                pass

    def _loop_failed(self, failure: Failure) -> None:
        self._log.failure("The cluster health prober stopped", failure)

    def probe_all(self) -> None:
        """Start a round: each cluster not still being probed gets one probe soon."""
        names = [g.name for g in self.registry.gateways()]
        self._forget(set(names))
        window = self.jitter * self.interval
        for name in names:
            if name in self._busy:
                continue
            self._busy.add(name)
            delay = self.random() * window
            self._pending[name] = self.reactor.callLater(delay, self._start, name)

    def _forget(self, names: Iterable[str]) -> None:
        known = set(names)
        for name in [n for n in self._failures if n not in known]:
            del self._failures[name]

    def _start(self, name: str) -> None:
        self._pending.pop(name, None)
        running = self._semaphore.run(lambda: Deferred.fromCoroutine(self._probe(name)))
        self._running[name] = running

        def done(result: object) -> None:
            self._running.pop(name, None)
            self._busy.discard(name)
            if isinstance(result, Failure) and not result.check(Exception):
                return
            if isinstance(result, Failure):
                self._log.failure("Probing cluster {cluster} failed", result, cluster=name)

        running.addBoth(done)

    async def _probe(self, name: str) -> None:
        cluster = next((g for g in self.registry.gateways() if g.name == name), None)
        if cluster is None:
            return
        started = self.reactor.seconds()
        self.probes += 1
        reason = await probe_verdict(self.target, cluster, self.timeout)
        if self.metrics is not None:
            self.metrics.health_probe(name, reason is None, self.reactor.seconds() - started)
        await self._judge(name, reason)

    async def _judge(self, name: str, reason: str | None) -> None:
        recorded = self.recorder.recorded(name)
        if recorded is None:
            return
        if reason is None:
            self._failures[name] = 0
            if not recorded[0]:
                await self.recorder.record(name, True, "")
            return
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        if failures == 1 or failures == self.failure_threshold:
            self._log.warn(
                "Health probe {count} of cluster {cluster} failed: {reason}",
                count=failures,
                cluster=name,
                reason=reason,
            )
        if failures >= self.failure_threshold and recorded[0]:
            await self.recorder.record(name, False, reason)
