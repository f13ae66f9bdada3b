"""The pacing both health probers share: jittered rounds, bounded concurrency, clean stop.

The gateway's own prober (:mod:`clustergateway.health.prober`, each cluster
through its own credential) and the addon-manager's
(:mod:`clustergateway.addon.prober`, each cluster through the gateway) differ in
what a probe is and where its verdict goes, not in how probes are paced.  That
part is written here once:

* every ``interval`` seconds a round asks for the names to probe and gives each
  one a start within the first ``jitter`` × ``interval`` seconds, so a thousand
  clusters do not all dial at once;
* a name already waiting or being probed is skipped, so one slow cluster never
  has two probes;
* at most ``concurrency`` probes run at a time (the rest wait for a slot);
* a probe that asks for it (an unhealthy verdict) or that fails is started
  again ``retry`` seconds after its slot is released, when ``retry`` is set
  (the addon-manager's 5 s, Go's requeue), instead of at the next round;
* :meth:`stop` cancels the timer, every waiting start and every running probe,
  and fires once they have all let go.

The probe's logic stays with its prober; what it returns says only whether to
retry soon.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

import attrs
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["PacedService", "ProbeRounds"]


def _log_failure(name: str, failure: Failure) -> None:
    ProbeRounds._log.failure("Probing cluster {cluster} failed", failure, cluster=name)


@attrs.define(eq=False)
class ProbeRounds:
    """Starts ``probe(name)`` for every name of ``names()``, paced as the module says."""

    reactor: IReactorTime
    #: The names to probe this round (a hub list, or the registry's clusters).
    names: Callable[[], Awaitable[Iterable[str]]]
    #: One probe; True asks for another one ``retry`` seconds after it ends.
    probe: Callable[[str], Awaitable[bool]]
    interval: float
    concurrency: int = 16
    #: Fraction of ``interval`` over which a round's probes start.
    jitter: float = 0.2
    random: Callable[[], float] = random.random
    #: Seconds before a probe that asked for it (or failed) runs again; None: next round.
    retry: float | None = None
    #: Told every probe that raised (a cancelled one excepted).
    on_failure: Callable[[str, Failure], None] = _log_failure
    #: Who is pacing, for the one log line if the rounds themselves die.
    describe: str = "the health prober"
    _semaphore: DeferredSemaphore = attrs.field(init=False)
    _loop: LoopingCall | None = attrs.field(default=None, init=False)
    _scheduled: dict[str, IDelayedCall] = attrs.field(factory=dict, init=False)
    _inflight: dict[str, Deferred[Any]] = attrs.field(factory=dict, init=False)
    _stopped: bool = attrs.field(default=False, init=False)

    _log: ClassVar[Logger] = Logger()

    def __attrs_post_init__(self) -> None:
        self._semaphore = DeferredSemaphore(self.concurrency)

    def start(self) -> None:
        """A round now, then one every ``interval`` seconds."""
        self._stopped = False
        self._loop = LoopingCall(self.round)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=True).addErrback(self._loop_failed)

    def _loop_failed(self, failure: Failure) -> None:
        self._log.failure("Rounds of {what} stopped", failure, what=self.describe)

    def stop(self) -> Deferred[Any]:
        """Cancel what is waiting and running; fires when every probe has let go."""
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for call in self._scheduled.values():
            if call.active():
                call.cancel()
        self._scheduled.clear()
        pending = list(self._inflight.values())
        # Newest first: those still waiting for a slot go before the running probe
        # whose cancellation frees a slot, so none of them starts on the way out.
        for running in reversed(pending):
            running.cancel()
        return DeferredList(pending)

    def round(self) -> Deferred[None]:
        """Ask for the names and give each a jittered start."""
        return Deferred.fromCoroutine(self._round())

    async def _round(self) -> None:
        window = self.interval * self.jitter
        for name in await self.names():
            self.schedule(name, window * self.random())

    def schedule(self, name: str, delay: float) -> None:
        """Probe ``name`` after ``delay`` seconds unless a probe is due or running."""
        if name in self._inflight or name in self._scheduled:
            return
        self._scheduled[name] = self.reactor.callLater(delay, self._start, name)

    def _start(self, name: str) -> None:
        self._scheduled.pop(name, None)
        running: Deferred[Any] = self._semaphore.run(
            lambda: Deferred.fromCoroutine(self._probe(name))
        )
        self._inflight[name] = running
        running.addBoth(self._done, name)

    async def _probe(self, name: str) -> bool:
        return await self.probe(name)

    def _done(self, outcome: bool | Failure, name: str) -> None:
        self._inflight.pop(name, None)
        if isinstance(outcome, Failure):
            if outcome.check(CancelledError):
                return
            self.on_failure(name, outcome)
            again = True
        else:
            again = outcome
        if again and self.retry is not None and not self._stopped:
            self.schedule(name, self.retry)


class PacedService(Service):
    """A prober as a Service: its ``rounds`` run while it runs."""

    rounds: ProbeRounds

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        self.rounds.start()

    def stopService(self) -> Deferred[Any]:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]
        return self.rounds.stop()
