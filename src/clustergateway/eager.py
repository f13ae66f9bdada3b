"""Run a coroutine now, and only pay for a ``Deferred`` if it really has to wait.

``ensureDeferred`` already runs a coroutine up to its first suspension, but it
always builds a ``Deferred``, a cancellable wrapper and a context copy around
it.  On the gateway's hot path (an authenticated caller whose answers are all
cached, a static credential) nothing ever waits, and that wrapping was a
measurable share of a proxied request's CPU.  :func:`run_eagerly` steps the
coroutine itself: when it finishes without waiting, the caller gets the value
(or the exception) at once; when it awaits a ``Deferred`` that has not fired,
the rest of it continues under ``ensureDeferred``, exactly as it would have.

Awaiting a ``Deferred`` that has already fired does not suspend a coroutine
(``Deferred.send`` raises ``StopIteration`` with its result), which is why the
cached cases finish inside the first step.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred, ensureDeferred

__all__ = ["Pending", "run_eagerly"]

T = TypeVar("T")


@attrs.frozen
class Pending:
    """The coroutine is waiting: ``deferred`` fires with its value (or fails)."""

    deferred: Deferred[Any]


def run_eagerly(coro: Coroutine[Any, Any, T]) -> T | Pending:
    """Run ``coro`` until it finishes or waits.

    Returns its value if it finished; raises what it raised; returns a
    :class:`Pending` if it is waiting for a ``Deferred`` (cancelling
    ``Pending.deferred`` cancels what it waits for, as with ``ensureDeferred``).
    """
    try:
        waiting = coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    return Pending(ensureDeferred(_resume(coro, waiting)))


async def _resume(coro: Coroutine[Any, Any, T], waiting: Any) -> T:
    """Drive the rest of ``coro``, which yielded ``waiting`` (a ``Deferred``)."""
    while True:
        try:
            value = await waiting
        except BaseException as error:  # handed to the coroutine, as a suspension would
            try:
                waiting = coro.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                waiting = coro.send(value)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
