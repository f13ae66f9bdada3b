"""A stop's outcome is handed over on the next reactor turn (see ``clustergateway.stopping``)."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock

from clustergateway.stopping import on_next_turn


def test_result_waits_for_the_next_turn() -> None:
    """Firing the inner Deferred (as a connection's dataReceived would) does not fire the
    outer one on the same stack; the clock's next turn does, with the same value."""
    clock, inner = Clock(), Deferred[str]()
    outer = on_next_turn(clock, inner)
    inner.callback("stopped")
    assert not outer.called
    clock.advance(0)
    assert outer.result == "stopped"


def test_failure_is_handed_over_too() -> None:
    """A failed stop stays a failure, also on the next turn."""
    clock, inner = Clock(), Deferred[None]()
    outer = on_next_turn(clock, inner)
    inner.errback(RuntimeError("boom"))
    assert not outer.called
    clock.advance(0)
    failure = outer.result
    outer.addErrback(lambda _: None)
    assert failure.check(RuntimeError)


def test_cancel_reaches_the_inner_deferred() -> None:
    """Cancelling the handed-over Deferred cancels what it waits for."""
    clock, inner = Clock(), Deferred[None]()
    outer = on_next_turn(clock, inner)
    outer.cancel()
    assert inner.called
    clock.advance(0)
    failure = outer.result
    outer.addErrback(lambda _: None)
    assert failure.check(CancelledError)
