"""A fake hub for the review tests: records each call, answers when the test says."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred


class FakeHub:
    """``post_json``/``get_json`` return Deferreds the test fires (or an immediate answer)."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.pending: list[Deferred[Any]] = []
        self.answer = answer  # a callable(path, body) -> answer, or None to hold

    async def post_json(self, path: str, body: Any) -> Any:
        self.calls.append((path, body))
        if self.answer is not None:
            result = self.answer(path, body)
            if isinstance(result, Exception):
                raise result
            return result
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        return await d

    async def get_json(self, path: str) -> Any:
        return await self.post_json(path, None)

    def release(self, value: Any) -> None:
        """Fire every held call with ``value`` (an answer or an exception)."""
        pending, self.pending = self.pending, []
        for d in pending:
            if isinstance(value, Exception):
                d.errback(value)
            else:
                d.callback(value)
