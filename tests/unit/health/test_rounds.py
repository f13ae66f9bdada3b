"""The pacing both probers share: jitter, one probe per name, a bounded number at a time,
the retry and the stop, on a Clock."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from clustergateway.health.rounds import ProbeRounds


class Probes:
    """Names to list and probes the test answers by hand."""

    def __init__(self, *names: str) -> None:
        self.listed = list(names)
        self.started: list[tuple[str, float]] = []
        self.waiting: dict[str, Deferred[bool]] = {}
        self.failures: list[tuple[str, Failure]] = []

    async def names(self) -> Iterable[str]:
        return list(self.listed)

    def probe(self, clock: Clock) -> Any:
        def start(name: str) -> Deferred[bool]:
            self.started.append((name, clock.seconds()))
            self.waiting[name] = Deferred()
            return self.waiting[name]

        return start


def _rounds(probes: Probes, clock: Clock, **options: Any) -> ProbeRounds:
    settings: dict[str, Any] = {"jitter": 0.5, "random": lambda: 1.0}
    settings.update(options)
    return ProbeRounds(
        clock,
        probes.names,
        probes.probe(clock),
        10.0,
        on_failure=lambda name, f: probes.failures.append((name, f)),
        **settings,
    )


def test_rounds_start_within_the_jitter_window_and_skip_busy_names() -> None:
    """Each name starts at ``interval × jitter × random()``; a name still being probed
    at the next round gets no second probe."""
    probes, clock = Probes("a", "b"), Clock()
    rounds = _rounds(probes, clock)
    rounds.start()
    clock.advance(4.9)
    assert probes.started == []
    clock.advance(0.1)
    assert probes.started == [("a", 5.0), ("b", 5.0)]
    probes.waiting["a"].callback(False)
    clock.advance(10.0)  # round two: a is free, b still running
    clock.advance(5.0)
    assert probes.started[2:] == [("a", 20.0)]
    rounds.stop()


def test_concurrency_bounds_running_probes() -> None:
    """A probe waits for a slot; the slot's release starts it."""
    probes, clock = Probes("a", "b", "c"), Clock()
    rounds = _rounds(probes, clock, concurrency=2, jitter=0.0)
    rounds.round()
    clock.advance(0)
    assert [n for n, _ in probes.started] == ["a", "b"]
    probes.waiting["b"].callback(False)
    assert [n for n, _ in probes.started] == ["a", "b", "c"]
    rounds.stop()


def test_retry_after_a_request_or_a_failure_only_when_configured() -> None:
    """True from the probe, or a failure (told to ``on_failure``), starts it again
    ``retry`` s later; without ``retry`` the next round does."""
    probes, clock = Probes(), Clock()
    rounds = _rounds(probes, clock, retry=5.0)
    rounds.schedule("a", 0)
    clock.advance(0)
    probes.waiting["a"].callback(True)
    clock.advance(5.0)
    assert [t for _, t in probes.started] == [0.0, 5.0]
    probes.waiting["a"].errback(RuntimeError("boom"))
    assert [n for n, _ in probes.failures] == ["a"]
    clock.advance(5.0)
    assert [t for _, t in probes.started] == [0.0, 5.0, 10.0]
    probes.waiting["a"].callback(False)
    clock.advance(60.0)
    assert len(probes.started) == 3

    once = Probes()
    plain = _rounds(once, clock)
    plain.schedule("a", 0)
    clock.advance(0)
    once.waiting["a"].callback(True)
    clock.advance(60.0)
    assert len(once.started) == 1


def test_stop_cancels_waiting_and_running_probes_without_retry() -> None:
    """Stop leaves no timer behind, cancels a running probe (not a failure), and fires."""
    probes, clock = Probes("a", "b"), Clock()
    rounds = _rounds(probes, clock, concurrency=1, retry=5.0)
    rounds.start()
    clock.advance(5.0)
    assert [n for n, _ in probes.started] == ["a"]
    stopped = rounds.stop()
    assert stopped.called
    assert clock.getDelayedCalls() == []
    assert probes.failures == []
    assert [n for n, _ in probes.started] == ["a"]
