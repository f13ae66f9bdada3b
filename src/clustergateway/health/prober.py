"""The active health prober (``--cluster-health-probe-interval``).

Every interval each valid cluster gets one probe (paced by
:class:`~clustergateway.health.rounds.ProbeRounds`): ``GET /healthz`` through
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
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from clustergateway.health.recorder import HealthRecorder
from clustergateway.health.rounds import PacedService, ProbeRounds
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
class ClusterHealthProber(PacedService):
    """Probes every cluster of ``registry`` each ``interval`` seconds (see module).

    The pacing is :class:`~clustergateway.health.rounds.ProbeRounds`, shared
    with the addon-manager's prober; this class judges and records verdicts.
    """

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
    rounds: ProbeRounds = attrs.field(init=False)
    #: Probes sent (for tests).
    probes: int = attrs.field(default=0, init=False)

    _log: ClassVar[Logger] = Logger()

    def __attrs_post_init__(self) -> None:
        self.rounds = ProbeRounds(
            self.reactor,
            self._cluster_names,
            self._probe,
            self.interval,
            concurrency=self.concurrency,
            jitter=self.jitter,
            random=self.random,
            describe="the cluster health prober",
        )

    def probe_all(self) -> Deferred[None]:
        """Start a round: each cluster not still being probed gets one probe soon."""
        return self.rounds.round()

    async def _cluster_names(self) -> list[str]:
        names = [g.name for g in self.registry.gateways()]
        self._forget(names)
        return names

    def _forget(self, names: Iterable[str]) -> None:
        known = set(names)
        for name in [n for n in self._failures if n not in known]:
            del self._failures[name]

    async def _probe(self, name: str) -> bool:
        """One probe and its verdict; never asks for an early retry (the threshold counts
        rounds)."""
        cluster = next((g for g in self.registry.gateways() if g.name == name), None)
        if cluster is None:
            return False
        started = self.reactor.seconds()
        self.probes += 1
        reason = await probe_verdict(self.target, cluster, self.timeout)
        if self.metrics is not None:
            self.metrics.health_probe(name, reason is None, self.reactor.seconds() - started)
        await self._judge(name, reason)
        return False

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
