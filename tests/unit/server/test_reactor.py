"""``server.reactor``: the epoll reactor without a logging context per I/O event."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.logger import LogLevel, globalLogPublisher

from clustergateway.server.reactor import LeanEPollReactor


class Reader(FileDescriptor):
    """Reads one socket of a socketpair; optionally blows up past Twisted's own guard."""

    def __init__(self, reactor: Any, sock: socket.socket) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.data = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:  # noqa: N802
        self.data += self.sock.recv(100)


def test_reads_are_dispatched_without_callwithlogger() -> None:
    """A readable descriptor is read by ``doPoll``; errors escaping the dispatch are logged,
    never raised out of the reactor loop."""
    reactor = LeanEPollReactor()
    a, b = socket.socketpair()
    try:
        reader = Reader(reactor, a)
        reactor.addReader(reader)
        b.send(b"ping")
        reactor.doPoll(1.0)
        assert reader.data == b"ping"

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)

        def broken(*_: Any) -> None:
            raise RuntimeError("boom")

        reactor._doReadOrWrite = broken  # type: ignore[method-assign]
        try:
            b.send(b"again")
            reactor.doPoll(1.0)
        finally:
            globalLogPublisher.removeObserver(events.append)
        failures = [e for e in events if e.get("log_level") == LogLevel.critical]
        assert failures and failures[0]["log_failure"].check(RuntimeError)
        reactor.removeReader(reader)
    finally:
        a.close()
        b.close()
        reactor._poller.close()
