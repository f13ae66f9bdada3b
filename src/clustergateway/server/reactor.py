"""The gateway process's reactor: epoll without a logging context per I/O event.

Twisted's ``EPollReactor.doPoll`` runs every read/write readiness through
``log.callWithLogger``: a ``logPrefix()`` call, a context dict and two
context-manager layers per event, only so that *legacy* ``twisted.python.log``
messages emitted inside get a ``system`` field.  The gateway logs with
``twisted.logger`` (which never reads it), and under load that wrapping
measured ~7% of the process's CPU (py-spy, small-GET profile).  This reactor
dispatches straight to ``_doReadOrWrite``, which already catches and logs
errors from ``doRead``/``doWrite``; anything escaping it is still logged.

It also offers ``write_soon(transport)``: the transport's ``doWrite`` runs
once the events of the current pass are handled (and before the next poll,
for writes made by timers), instead of after registering for writability
and polling again.  ``clustergateway.tlssocket`` uses it; see its
``startWriting``.

The entry point installs it (``tap.main``), before twistd picks the
default reactor; the test suite runs on it too (``tests/conftest.py``).
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet.epollreactor import EPOLLOUT, EPollReactor
from twisted.logger import Logger

__all__ = ["LeanEPollReactor", "install"]


class LeanEPollReactor(EPollReactor):
    """``EPollReactor`` whose ``doPoll`` skips ``log.callWithLogger``."""

    _log = Logger()

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._write_soon: list[Any] = []

    def write_soon(self, selectable: Any) -> None:
        """Call ``selectable.doWrite()`` at the end of this pass, as if it were writable.

        Its result is handled as a real writability event's would be (an
        exception or ``CONNECTION_DONE`` ends the connection).
        """
        self._write_soon.append(selectable)

    def _flush_writes(self) -> None:
        dispatch = self._doReadOrWrite
        while self._write_soon:
            pending, self._write_soon = self._write_soon, []
            for selectable in pending:
                if selectable.disconnected:
                    continue
                try:
                    dispatch(selectable, selectable.fileno(), EPOLLOUT)  # type: ignore[no-untyped-call]
                except Exception:
                    self._log.failure("Write failed for {selectable}", selectable=selectable)

    def doPoll(self, timeout: float | None) -> None:  # noqa: N802 - Twisted's name
        if self._write_soon:  # written by timers and threads' calls since the last pass
            self._flush_writes()
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
        if self._write_soon:
            self._flush_writes()

    doIteration = doPoll  # noqa: N815 - Twisted's name


def install() -> Any:
    """Install :class:`LeanEPollReactor` as the global reactor (entry points only)."""
    from twisted.internet.main import installReactor

    reactor = LeanEPollReactor()
    installReactor(reactor)
    return reactor
