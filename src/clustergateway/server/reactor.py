"""The gateway process's reactor: epoll without a logging context per I/O event.

Twisted's ``EPollReactor.doPoll`` runs every read/write readiness through
``log.callWithLogger``: a ``logPrefix()`` call, a context dict and two
context-manager layers per event, only so that *legacy* ``twisted.python.log``
messages emitted inside get a ``system`` field.  The gateway logs with
``twisted.logger`` (which never reads it), and under load that wrapping
measured ~7% of the process's CPU (py-spy, small-GET profile).  This reactor
dispatches straight to ``_doReadOrWrite``, which already catches and logs
errors from ``doRead``/``doWrite``; anything escaping it is still logged.

Only the entry point installs it (``tap.main``), before twistd picks the
default reactor.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.logger import Logger

__all__ = ["LeanEPollReactor", "install"]


class LeanEPollReactor(EPollReactor):
    """``EPollReactor`` whose ``doPoll`` skips ``log.callWithLogger``."""

    _log = Logger()

    def doPoll(self, timeout: float | None) -> None:  # noqa: N802 - Twisted's name
        if timeout is None:
            timeout = -1
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        dispatch = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                dispatch(selectable, fd, event)  # type: ignore[no-untyped-call]
            except Exception:
                self._log.failure("I/O dispatch failed for {selectable}", selectable=selectable)

    doIteration = doPoll  # noqa: N815 - Twisted's name


def install() -> Any:
    """Install :class:`LeanEPollReactor` as the global reactor (entry points only)."""
    from twisted.internet.main import installReactor

    reactor = LeanEPollReactor()  # type: ignore[no-untyped-call]
    installReactor(reactor)
    return reactor
