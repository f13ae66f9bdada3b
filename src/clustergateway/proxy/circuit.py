"""Per-cluster circuit breakers: a cluster that cannot be reached is refused at once.

A black-holed cluster costs every request the whole connect timeout, and each
of those holds a slot and memory meanwhile.  :class:`CircuitBreaker` is one
cluster's pure state machine (time is passed in, nothing is scheduled):

- **closed**: requests pass; each dial, TLS or response-head failure counts,
  an answer resets the count.  ``failure_threshold`` consecutive failures open it.
- **open**: requests are refused without dialing until the cooldown has passed.
  The first cooldown is ``cooldown``; each failed trial doubles it, up to
  ``max_cooldown``.
- **half-open**: the cooldown has passed; one request goes through as the
  trial while the others are still refused.  Its answer closes the circuit, its
  failure opens it again for a longer cooldown, and a trial the caller abandoned
  (left before an answer) lets the next request be the trial.

An answer from any request closes the circuit: it proves the cluster can be
reached, whenever it was sent.  :class:`CircuitBreakers` holds one breaker per
cluster and tells ``on_change`` when one opens (with the cause) or closes, so
the registry shows it as the cluster's health and metrics count it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "CircuitBreaker",
    "CircuitBreakers",
    "CircuitSettings",
]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


@attrs.frozen
class CircuitSettings:
    """``failure_threshold`` consecutive failures open a circuit (0: never);
    it stays open ``cooldown`` seconds, doubled per failed trial up to ``max_cooldown``."""

    failure_threshold: int = 5
    cooldown: float = 1.0
    max_cooldown: float = 30.0

    @property
    def enabled(self) -> bool:
        return self.failure_threshold > 0


@attrs.define(eq=False)
class CircuitBreaker:
    """One cluster's circuit (see the module); every method takes the time as ``now``."""

    settings: CircuitSettings
    state: str = CLOSED
    #: Consecutive failures while closed.
    failures: int = 0
    #: The current cooldown (seconds); 0 while closed.
    cooldown: float = 0.0
    #: When an open circuit lets a trial through.
    reopen_at: float = 0.0
    #: The last failure's cause (safe to show a caller).
    last_cause: str = ""
    #: A half-open trial is in flight.
    trial_out: bool = False

    def admit(self, now: float) -> bool | None:
        """None: refuse; False: pass; True: pass as the half-open trial."""
        state = self.state
        if state == CLOSED:
            return False
        if state == OPEN:
            if now < self.reopen_at:
                return None
            self.state = HALF_OPEN
            self.trial_out = False
        if self.trial_out:
            return None
        self.trial_out = True
        return True

    def retry_in(self, now: float) -> int:
        """Whole seconds a refused caller should wait (at least 1)."""
        if self.state == OPEN:
            return max(1, math.ceil(self.reopen_at - now))
        return 1  # half-open, its trial in flight: known within its timeouts

    def succeeded(self) -> bool:
        """The cluster answered; True if that closed the circuit."""
        self.failures = 0
        if self.state == CLOSED:
            return False
        self.state = CLOSED
        self.cooldown = 0.0
        self.trial_out = False
        return True

    def failed(self, cause: str, now: float, trial: bool) -> bool:
        """A dial, TLS or response-head failure; True if the circuit opened (again)."""
        self.last_cause = cause
        if self.state == CLOSED:
            self.failures += 1
            if self.failures < self.settings.failure_threshold:
                return False
            self.failures = 0
            self._open(self.settings.cooldown, now)
            return True
        if trial and self.state == HALF_OPEN:
            self._open(min(self.cooldown * 2, self.settings.max_cooldown), now)
            return True
        return False  # sent before the circuit opened: it is open already

    def abandoned(self, trial: bool) -> None:
        """A request ended without a verdict (the caller left, a cap refused it)."""
        if trial and self.state == HALF_OPEN:
            self.trial_out = False

    def _open(self, cooldown: float, now: float) -> None:
        self.state = OPEN
        self.cooldown = cooldown
        self.reopen_at = now + cooldown
        self.trial_out = False


#: ``on_change(cluster, cause)``: the circuit opened (``cause``) or closed (None).
CircuitListener = Callable[[str, "str | None"], None]


@attrs.define(eq=False)
class CircuitBreakers:
    """One :class:`CircuitBreaker` per cluster name, created on first failure."""

    settings: CircuitSettings = attrs.field(factory=CircuitSettings)
    on_change: CircuitListener | None = None
    _breakers: dict[str, CircuitBreaker] = attrs.field(factory=dict, init=False)

    def get(self, cluster: str) -> CircuitBreaker | None:
        return self._breakers.get(cluster)

    def admit(self, cluster: str, now: float) -> bool | None:
        """See :meth:`CircuitBreaker.admit`; a cluster that never failed passes."""
        breaker = self._breakers.get(cluster)
        return False if breaker is None else breaker.admit(now)

    def succeeded(self, cluster: str) -> None:
        breaker = self._breakers.get(cluster)
        if breaker is not None and breaker.succeeded():
            self._tell(cluster, None)

    def failed(self, cluster: str, cause: str, now: float, trial: bool) -> None:
        if not self.settings.enabled:
            return
        breaker = self._breakers.get(cluster)
        if breaker is None:
            breaker = self._breakers[cluster] = CircuitBreaker(self.settings)
        if breaker.failed(cause, now, trial):
            self._tell(cluster, cause)

    def abandoned(self, cluster: str, trial: bool) -> None:
        breaker = self._breakers.get(cluster)
        if breaker is not None:
            breaker.abandoned(trial)

    def forget(self, cluster: str) -> None:
        """The cluster is gone (or reached another way now): start afresh."""
        breaker = self._breakers.pop(cluster, None)
        if breaker is not None and breaker.state != CLOSED:
            self._tell(cluster, None)

    def open_clusters(self) -> dict[str, str]:
        """Clusters whose circuit is not closed, with the last cause."""
        return {n: b.last_cause for n, b in self._breakers.items() if b.state != CLOSED}

    def _tell(self, cluster: str, cause: str | None) -> None:
        if self.on_change is not None:
            self.on_change(cluster, cause)
