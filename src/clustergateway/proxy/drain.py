"""The proxied streams and sessions open now, so that a shutdown can end them well.

A rolling update must not cut a watch or a followed log mid-stream: on
shutdown :meth:`OpenStreams.end_streams` ends each long-running response the
way a complete one ends (the terminating chunk on HTTP/1.1, END_STREAM on
HTTP/2), so clients resume from their last ``resourceVersion`` as after any
watch timeout.  Upgraded sessions (exec, attach, port-forward) cannot be ended
that way: :meth:`OpenStreams.sessions_done` fires when the last one closes by
itself, and :meth:`OpenStreams.close_sessions` closes those left after the
grace period.

The relay (``forward.Relay``) registers long-running responses here and
``ClusterProxy`` upgraded sessions; nothing is tracked for ordinary requests,
which end on their own within their timeouts.
"""

from __future__ import annotations

from typing import Protocol

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

__all__ = ["Endable", "OpenStreams", "Session"]


class Endable(Protocol):
    """A long-running response that can end as if complete."""

    def end_cleanly(self) -> None: ...


class Session(Protocol):
    """An upgraded session; ``shut_down`` closes both of its connections."""

    def shut_down(self) -> None: ...


@attrs.define(eq=False)
class OpenStreams:
    """The long-running responses and upgraded sessions open now (see module)."""

    streams: set[Endable] = attrs.field(factory=set)
    sessions: set[Session] = attrs.field(factory=set)
    _waiters: list[Deferred[None]] = attrs.field(factory=list)

    _log = Logger()

    def add_session(self, session: Session) -> None:
        self.sessions.add(session)

    def discard_session(self, session: Session) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def end_streams(self) -> int:
        """End every long-running response cleanly; returns how many."""
        streams = list(self.streams)
        for stream in streams:
            try:
                stream.end_cleanly()
            except Exception:
                self._log.failure("Ending a stream on shutdown failed")
            self.streams.discard(stream)
        return len(streams)

    def sessions_done(self) -> Deferred[None]:
        """Fires once no upgraded session is open."""
        if not self.sessions:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def close_sessions(self) -> int:
        """Close the sessions still open; returns how many."""
        sessions = list(self.sessions)
        for session in sessions:
            try:
                session.shut_down()
            except Exception:
                self._log.failure("Closing an upgraded session on shutdown failed")
            self.discard_session(session)
        return len(sessions)
