"""Let a service's stop finish on a fresh reactor turn, never inside a connection's callback.

``twistd`` stops the application from a ``before shutdown`` trigger and, as soon
as the Deferred that ``stopService`` returned fires, runs the ``during`` phase:
``reactor.disconnectAll()``, which calls ``connectionLost`` on every open
connection at once.  A stop that waits for network I/O (the installer's pass in
flight, the Lease released with a PUT, the last drained request) fires from
inside some connection's ``dataReceived``.  ``disconnectAll`` then tears down
that very connection underneath its own ``dataReceived``: Twisted's
``TLSMemoryBIOProtocol`` drops its ``_tlsConnection`` in ``connectionLost`` and,
back in ``_flushReceiveBIO``, calls ``None.bio_read`` — an "Unhandled Error" in
the shutdown log.  Handing the result over on the next reactor turn lets every
callback on the stack return first; the cost is one reactor iteration.

Pinned by ``tests/unit/test_stopping.py`` and, as a process,
``tests/e2e/test_addon_manager.py::test_console_script_process_installs``.
"""

from __future__ import annotations

from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

__all__ = ["on_next_turn"]

T = TypeVar("T")


def on_next_turn(clock: IReactorTime, result: Deferred[T]) -> Deferred[T]:
    """A Deferred with ``result``'s outcome, fired from ``clock`` once ``result`` has fired.

    Cancelling the returned Deferred cancels ``result``.
    """
    handed: Deferred[T] = Deferred(lambda _: result.cancel())

    def fire(outcome: T | Failure) -> None:
        if handed.called:
            return  # cancelled meanwhile: Deferred.cancel already failed it
        if isinstance(outcome, Failure):
            handed.errback(outcome)
        else:
            handed.callback(outcome)

    def later(outcome: T | Failure) -> None:
        clock.callLater(0, fire, outcome)

    result.addBoth(later)
    return handed
