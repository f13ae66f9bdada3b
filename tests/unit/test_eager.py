"""run_eagerly: the value at once when nothing waits, a Deferred only when something does."""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError, Deferred, succeed

from clustergateway.eager import Pending, run_eagerly


async def add(a: Deferred[int], b: Deferred[int]) -> int:
    return (await a) + (await b)


def test_finishes_without_a_deferred_when_nothing_waits() -> None:
    assert run_eagerly(add(succeed(1), succeed(2))) == 3


def test_raises_at_once_what_the_coroutine_raised() -> None:
    async def broken() -> None:
        await succeed(None)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        run_eagerly(broken())


def test_failed_fired_deferred_raises_inside_and_can_be_caught() -> None:
    async def caught() -> str:
        failing: Deferred[int] = Deferred()
        failing.errback(KeyError("k"))
        try:
            await failing
        except KeyError:
            return "handled"
        return "not reached"

    assert run_eagerly(caught()) == "handled"


def test_waits_then_continues_under_a_deferred() -> None:
    first: Deferred[int] = Deferred()
    second: Deferred[int] = Deferred()
    outcome = run_eagerly(add(first, second))
    assert isinstance(outcome, Pending)
    results: list[int] = []
    outcome.deferred.addCallback(results.append)
    first.callback(10)
    assert results == []
    second.callback(5)
    assert results == [15]


def test_an_error_after_waiting_fails_the_deferred_and_reaches_the_coroutine() -> None:
    waiting: Deferred[int] = Deferred()

    async def recovering() -> str:
        try:
            await waiting
        except ZeroDivisionError:
            return "recovered"
        return "no error"

    outcome = run_eagerly(recovering())
    assert isinstance(outcome, Pending)
    results: list[str] = []
    outcome.deferred.addCallback(results.append)
    waiting.errback(ZeroDivisionError())
    assert results == ["recovered"]


def test_cancelling_the_pending_deferred_cancels_what_it_waits_for() -> None:
    waiting: Deferred[int] = Deferred()
    seen: list[str] = []

    async def watcher() -> None:
        try:
            await waiting
        except CancelledError:
            seen.append("cancelled inside")
            raise

    outcome = run_eagerly(watcher())
    assert isinstance(outcome, Pending)
    errors: list[type] = []
    outcome.deferred.addErrback(lambda f: errors.append(f.type))
    outcome.deferred.cancel()
    assert seen == ["cancelled inside"]
    assert errors == [CancelledError]
