"""The drain's order and bounds, on a ``Clock`` with fake streams and sessions."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from clustergateway.proxy.drain import OpenStreams
from clustergateway.server.shutdown import GracefulShutdown


class _Stream:
    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    def end_cleanly(self) -> None:
        self.log.append(f"end {self.name}")


class _Session:
    def __init__(self, log: list[str], streams: OpenStreams) -> None:
        self.log = log
        self.streams = streams

    def shut_down(self) -> None:
        self.log.append("session closed")

    def finish(self) -> None:
        self.streams.discard_session(self)


def _drain(
    clock: Clock, streams: OpenStreams, log: list[str]
) -> tuple[GracefulShutdown, Deferred[None]]:
    shutdown = GracefulShutdown(
        clock, 2.0, 5.0, lambda: [], lambda: log.append("watches ended") or 3, streams
    )
    done = Deferred.fromCoroutine(shutdown.drain(lambda: log.append("stopped listening")))
    return shutdown, done


def test_ready_fails_at_once_then_delay_then_streams_end() -> None:
    """/readyz fails from the start; listening stops only after the delay; then every
    stream ends; with no session the drain is over at once."""
    clock = Clock()
    log: list[str] = []
    streams = OpenStreams()
    streams.streams.update({_Stream(log, "a"), _Stream(log, "b")})
    shutdown, done = _drain(clock, streams, log)
    assert shutdown.readiness() == "the gateway is shutting down"
    assert log == []
    clock.advance(1.9)
    assert log == []
    clock.advance(0.1)
    assert log[:2] == ["stopped listening", "watches ended"]
    assert sorted(log[2:]) == ["end a", "end b"]
    assert done.called
    assert shutdown.summary == {"streams_ended": 5, "sessions_closed": 0, "connections_cut": 0}
    assert not streams.streams


def test_sessions_get_the_grace_period_then_are_closed() -> None:
    """A session that ends within the grace period is not closed; one still open at its
    end is."""
    clock = Clock()
    log: list[str] = []
    streams = OpenStreams()
    quick, slow = _Session(log, streams), _Session(log, streams)
    streams.add_session(quick)
    streams.add_session(slow)
    shutdown, done = _drain(clock, streams, log)
    clock.advance(2.0)
    clock.advance(1.0)
    quick.finish()
    assert not done.called
    clock.advance(3.9)
    assert not done.called and "session closed" not in log
    clock.advance(0.1)
    assert done.called
    assert log.count("session closed") == 1
    assert shutdown.summary["sessions_closed"] == 1


def test_all_sessions_ending_early_end_the_wait() -> None:
    """When the last session ends by itself the drain does not wait for the grace period."""
    clock = Clock()
    log: list[str] = []
    streams = OpenStreams()
    only = _Session(log, streams)
    streams.add_session(only)
    _, done = _drain(clock, streams, log)
    clock.advance(2.5)
    only.finish()
    assert done.called
    assert "session closed" not in log
    assert not clock.getDelayedCalls()
