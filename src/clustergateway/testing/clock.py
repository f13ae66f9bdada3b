"""A test clock with the gateway reactor's pass-end hook (``fence.reactor.at_pass_end``)."""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import MemoryReactorClock

__all__ = ["PassEndClock"]


class PassEndClock(MemoryReactorClock):
    """``MemoryReactorClock`` plus ``at_pass_end``: :meth:`end_pass` runs what a pass
    left for its end, as ``LeanEPollReactor`` does before the pass's writes."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.at_end: list[Any] = []

    def at_pass_end(self, call: Any) -> None:
        self.at_end.append(call)

    def end_pass(self) -> None:
        while self.at_end:
            calls, self.at_end = self.at_end, []
            for call in calls:
                call()
