"""Graceful shutdown on SIGTERM, kube-apiserver's way.

twistd turns SIGTERM into ``reactor.stop()``, whose "before shutdown" phase
stops the services and waits for what they return; :meth:`GracefulShutdown.drain`
is that wait for the serving side (``tap.GatewayService.stopService``):

1. ``/readyz`` fails at once (the ``shutdown`` check), so the kube-aggregator's
   endpoints and load balancers move away; requests are still served for
   ``delay`` seconds (``--shutdown-delay-duration``) meanwhile.
2. The listener closes; HTTP/2 connections get GOAWAY (NO_ERROR, naming the last
   stream that will be answered), idle HTTP/1.1 connections are closed and busy
   ones close after their response.
3. Every open watch (the gateway's own and proxied ones) and every followed log
   ends as if complete: the terminating chunk on HTTP/1.1, END_STREAM on
   HTTP/2, never a reset; clients resume from their last ``resourceVersion``.
4. Upgraded sessions (exec, attach, port-forward) run on for up to ``grace``
   seconds (``--shutdown-grace-period``); those left are closed then.
   Connections still answering an ordinary request get the same time.
5. The remaining connections close; the process exits 0.

Each step is a non-blocking callback or a timer; every wait is bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from clustergateway.fence.twisted_web import channel_of
from clustergateway.proxy.drain import OpenStreams

__all__ = ["GracefulShutdown"]

#: How often connections still busy are looked at while the grace period runs.
_POLL = 0.1


@attrs.define(eq=False)
class GracefulShutdown:
    """Drains one gateway process (see module); build in ``tap``."""

    reactor: Any
    delay: float
    grace: float
    #: The site's open client connections (``GatewaySite.connections``).
    connections: Callable[[], list[Any]]
    #: ``end_watches()`` of the gateway's own watch streams (``ChangeLog``).
    end_watches: Callable[[], int]
    #: The proxy's open streams and sessions; None without a proxy.
    streams: OpenStreams | None = None
    draining: bool = False
    #: What the last drain did (for logs and tests).
    summary: dict[str, int] = attrs.field(factory=dict)

    _log: ClassVar[Logger] = Logger()

    def readiness(self) -> str | None:
        """The ``/readyz`` check: failing from the moment the shutdown began."""
        return "the gateway is shutting down" if self.draining else None

    async def drain(self, stop_listening: Callable[[], Any]) -> None:
        """Run steps 1–5 of the module docstring."""
        if self.draining:
            return
        self.draining = True
        self._log.info(
            "Shutting down: /readyz fails now, serving for {delay:g}s more",
            delay=self.delay,
        )
        if self.delay > 0:
            await deferLater(self.reactor, self.delay, lambda: None)
        stopped = stop_listening()
        if isinstance(stopped, Deferred):
            await stopped
        deadline = self.reactor.seconds() + self.grace
        self._go_away()
        ended = self.end_watches()
        if self.streams is not None:
            ended += self.streams.end_streams()
            await self._within(self.streams.sessions_done(), deadline)
            closed = self.streams.close_sessions()
        else:
            closed = 0
        while self._close_idle() and self.reactor.seconds() < deadline:
            await deferLater(self.reactor, _POLL, lambda: None)
        cut = 0
        for protocol in self.connections():
            transport = getattr(channel_of(protocol), "transport", None)
            if transport is not None:
                cut += 1
                transport.loseConnection()
        self.summary = {"streams_ended": ended, "sessions_closed": closed, "connections_cut": cut}
        self._log.info(
            "Drained: {streams_ended} streams ended cleanly, {sessions_closed} upgraded "
            "sessions closed after the grace period, {connections_cut} busy connections closed",
            **self.summary,
        )

    async def _within(self, waiting: Deferred[None], deadline: float) -> None:
        """Wait for ``waiting`` until ``deadline`` at most."""
        left = deadline - self.reactor.seconds()
        if waiting.called or left <= 0:
            return
        timer = self.reactor.callLater(left, waiting.cancel)
        try:
            await waiting
        except Exception:  # noqa: S110 - cancelled at the deadline
            pass
        finally:
            if timer.active():
                timer.cancel()

    def _go_away(self) -> None:
        for protocol in self.connections():
            channel = channel_of(protocol)
            if channel is None:
                continue
            go_away = getattr(channel, "go_away", None)
            if go_away is not None:
                go_away()  # HTTP/2, either engine: GOAWAY naming the last stream answered
            else:
                channel.persistent = False  # HTTP/1.1: close after the response in progress

    def _close_idle(self) -> bool:
        """Close connections with nothing in flight; True while some are still busy."""
        busy = False
        for protocol in self.connections():
            channel = channel_of(protocol)
            transport = getattr(channel, "transport", None)
            if channel is None or transport is None:
                continue
            in_flight = getattr(channel, "streams", None)
            if in_flight is None:
                in_flight = getattr(channel, "requests", None)
            if in_flight:
                busy = True
            else:
                transport.loseConnection()
        return busy
