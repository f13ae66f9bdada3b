"""The circuit breaker's state machine, on a ``Clock``."""

from __future__ import annotations

from twisted.internet.task import Clock

from clustergateway.proxy.circuit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    CircuitBreakers,
    CircuitSettings,
)

SETTINGS = CircuitSettings(failure_threshold=3, cooldown=2.0, max_cooldown=5.0)


def _opened(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker(SETTINGS)
    for _ in range(3):
        assert breaker.admit(clock.seconds()) is False
        breaker.failed("connection refused", clock.seconds(), trial=False)
    return breaker


def test_threshold_consecutive_failures_open() -> None:
    """Fewer failures than the threshold keep it closed; an answer resets the count."""
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS)
    breaker.failed("x", clock.seconds(), False)
    breaker.failed("x", clock.seconds(), False)
    breaker.succeeded()
    breaker.failed("x", clock.seconds(), False)
    breaker.failed("x", clock.seconds(), False)
    assert breaker.state == CLOSED
    assert breaker.failed("dial timeout", clock.seconds(), False) is True
    assert breaker.state == OPEN
    assert breaker.last_cause == "dial timeout"


def test_open_refuses_until_cooldown_then_one_trial() -> None:
    """While open everything is refused with the time left; then exactly one trial passes."""
    clock = Clock()
    breaker = _opened(clock)
    assert breaker.admit(clock.seconds()) is None
    assert breaker.retry_in(clock.seconds()) == 2
    clock.advance(1.5)
    assert breaker.admit(clock.seconds()) is None
    assert breaker.retry_in(clock.seconds()) == 1
    clock.advance(0.5)
    assert breaker.admit(clock.seconds()) is True
    assert breaker.state == HALF_OPEN
    assert breaker.admit(clock.seconds()) is None  # the trial is out


def test_trial_answer_closes() -> None:
    """The trial's answer closes the circuit and resets the cooldown."""
    clock = Clock()
    breaker = _opened(clock)
    clock.advance(2)
    assert breaker.admit(clock.seconds()) is True
    assert breaker.succeeded() is True
    assert breaker.state == CLOSED
    assert breaker.admit(clock.seconds()) is False
    assert breaker.cooldown == 0


def test_failed_trials_double_the_cooldown_up_to_the_cap() -> None:
    """Each failed trial reopens for twice as long, never longer than max_cooldown."""
    clock = Clock()
    breaker = _opened(clock)
    seen = []
    for _ in range(4):
        clock.advance(breaker.reopen_at - clock.seconds())
        assert breaker.admit(clock.seconds()) is True
        assert breaker.failed("still down", clock.seconds(), trial=True) is True
        seen.append(breaker.cooldown)
    assert seen == [4.0, 5.0, 5.0, 5.0]
    assert breaker.state == OPEN


def test_abandoned_trial_lets_the_next_request_try() -> None:
    """A trial whose caller left gives no verdict: the next request becomes the trial."""
    clock = Clock()
    breaker = _opened(clock)
    clock.advance(2)
    assert breaker.admit(clock.seconds()) is True
    breaker.abandoned(trial=True)
    assert breaker.state == HALF_OPEN
    assert breaker.admit(clock.seconds()) is True


def test_late_failures_of_earlier_requests_do_not_extend_the_cooldown() -> None:
    """Requests sent before the circuit opened fail later without reopening it."""
    clock = Clock()
    breaker = _opened(clock)
    clock.advance(1)
    assert breaker.failed("late", clock.seconds(), trial=False) is False
    assert breaker.reopen_at == 2.0
    assert breaker.last_cause == "late"


def test_breakers_tell_open_and_close_once() -> None:
    """The collection reports each opening (with its cause) and each closing."""
    clock = Clock()
    changes: list[tuple[str, str | None]] = []
    breakers = CircuitBreakers(SETTINGS, lambda name, cause: changes.append((name, cause)))
    assert breakers.admit("c1", clock.seconds()) is False
    for _ in range(3):
        breakers.failed("c1", "refused", clock.seconds(), False)
    breakers.failed("c1", "refused", clock.seconds(), False)
    assert changes == [("c1", "refused")]
    assert breakers.open_clusters() == {"c1": "refused"}
    assert breakers.admit("c2", clock.seconds()) is False
    clock.advance(2)
    assert breakers.admit("c1", clock.seconds()) is True
    breakers.succeeded("c1")
    breakers.succeeded("c1")
    assert changes == [("c1", "refused"), ("c1", None)]
    assert breakers.open_clusters() == {}


def test_forget_closes_and_threshold_zero_never_opens() -> None:
    """Forgetting a cluster closes its circuit; a threshold of 0 turns breaking off."""
    clock = Clock()
    changes: list[tuple[str, str | None]] = []
    breakers = CircuitBreakers(SETTINGS, lambda name, cause: changes.append((name, cause)))
    for _ in range(3):
        breakers.failed("c1", "refused", clock.seconds(), False)
    breakers.forget("c1")
    assert changes == [("c1", "refused"), ("c1", None)]
    assert breakers.admit("c1", clock.seconds()) is False
    off = CircuitBreakers(CircuitSettings(failure_threshold=0))
    for _ in range(10):
        off.failed("c1", "refused", clock.seconds(), False)
    assert off.admit("c1", clock.seconds()) is False
