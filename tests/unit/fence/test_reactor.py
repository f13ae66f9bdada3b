"""``fence.reactor``: the epoll reactor without a logging context per I/O event."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.logger import LogLevel, globalLogPublisher

from clustergateway.fence.reactor import LeanEPollReactor


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


class ScriptedPoller:
    """Stands in for the epoll object: records each poll's timeout, answers from a script."""

    def __init__(self, answers: list[list[tuple[int, int]]]) -> None:
        self.answers = answers
        self.timeouts: list[float] = []

    def poll(self, timeout: float, size: int) -> list[tuple[int, int]]:
        self.timeouts.append(timeout)
        return self.answers.pop(0) if self.answers else []

    def close(self) -> None:
        pass


def spinning_reactor(answers: list[list[tuple[int, int]]], spin: float) -> Any:
    reactor = LeanEPollReactor()
    reactor._poller.close()
    reactor._poller = ScriptedPoller(answers)  # type: ignore[assignment]
    reactor.spin_seconds = spin
    return reactor


def test_after_work_it_polls_without_sleeping_before_it_blocks() -> None:
    """A pass with events is followed by non-blocking polls (here the third finds the
    answer, no blocking poll at all); a pass without events sleeps at once."""
    event = [(999, 1)]  # an unknown descriptor: dispatched to nobody
    reactor = spinning_reactor([event, [], [], event, []], spin=1.0)
    reactor.doPoll(5.0)
    assert reactor._poller.timeouts == [5.0]  # idle before: straight to epoll_wait
    reactor.doPoll(5.0)
    assert reactor._poller.timeouts == [5.0, 0, 0, 0]
    reactor.doPoll(5.0)  # the spin finds nothing (script empty) within...
    assert reactor._poller.timeouts[-1] == 5.0  # ...its time, then it blocks
    assert 0 in reactor._poller.timeouts[4:]
    reactor.doPoll(5.0)  # nothing happened in the last pass: no spin
    assert reactor._poller.timeouts[-2:] == [5.0, 5.0]


def test_spin_is_bounded_and_can_be_turned_off() -> None:
    event = [(999, 1)]
    reactor = spinning_reactor([event], spin=0.002)
    reactor.doPoll(5.0)
    reactor.doPoll(5.0)
    spins = reactor._poller.timeouts[1:-1]
    assert spins and set(spins) == {0} and reactor._poller.timeouts[-1] == 5.0
    off = spinning_reactor([event], spin=0.0)
    off.doPoll(5.0)
    off.doPoll(5.0)
    assert off._poller.timeouts == [5.0, 5.0]
    timers_due = spinning_reactor([event], spin=1.0)
    timers_due.doPoll(5.0)
    timers_due.doPoll(0)  # a timer is due: poll once, never spin
    assert timers_due._poller.timeouts == [5.0, 0]


def test_pass_end_calls_run_after_the_passs_events_and_before_its_writes() -> None:
    """``at_pass_end``: after every event of the pass is dispatched, before the writes
    asked for with ``write_soon`` (including those the call itself asks for); a failing
    call is logged and the others still run."""
    order: list[str] = []
    a, b = socket.socketpair()
    reactor = LeanEPollReactor()
    try:

        class Writer(Reader):
            def doRead(self) -> None:  # noqa: N802
                super().doRead()
                order.append("read")
                reactor.at_pass_end(lambda: order.append("end"))
                reactor.at_pass_end(broken)
                reactor.at_pass_end(lambda: reactor.write_soon(self))

            def doWrite(self) -> None:  # noqa: N802
                order.append("write")

        def broken() -> None:
            raise RuntimeError("boom")

        writer = Writer(reactor, a)
        reactor.addReader(writer)
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        try:
            b.send(b"x")
            reactor.doPoll(1.0)
        finally:
            globalLogPublisher.removeObserver(events.append)
        assert order == ["read", "end", "write"]
        assert any(e.get("log_failure") and e["log_failure"].check(RuntimeError) for e in events)
        reactor.removeReader(writer)
    finally:
        a.close()
        b.close()
        reactor._poller.close()
