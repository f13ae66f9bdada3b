"""A TTL cache of hub reviews where concurrent identical lookups share one review.

TokenReview and SubjectAccessReview answers are cached for a few seconds
(the apiserver's defaults: 10 s) so that a burst of requests from one caller
costs the hub one review, not one per request.  While a review is in flight,
further requests for the same key wait for it instead of sending their own.

The review runs detached from the request that started it: when that caller
goes away (its Deferred is cancelled) the others still get the answer.
Failures are never cached.  The cache is bounded; expired entries go first,
then the oldest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

__all__ = ["ReviewCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@attrs.define
class ReviewCache(Generic[K, V]):
    """``get(key, lookup, ttl_for)``: cached value, or one shared ``lookup()``.

    ``ttl_for(value)`` says how long a value stays (0 = not cached), so allowed
    and denied decisions can live for different times.
    """

    clock: IReactorTime
    max_entries: int = 10_000
    _entries: dict[K, tuple[float, V]] = attrs.field(factory=dict, init=False)
    _inflight: dict[K, list[Deferred[V]]] = attrs.field(factory=dict, init=False)

    def get(
        self, key: K, lookup: Callable[[], Awaitable[V]], ttl_for: Callable[[V], float]
    ) -> Deferred[V]:
        hit = self._entries.get(key)
        if hit is not None:
            if hit[0] > self.clock.seconds():
                return succeed(hit[1])
            del self._entries[key]
        waiter: Deferred[V] = Deferred()
        waiters = self._inflight.get(key)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._inflight[key] = [waiter]

        async def run() -> V:
            return await lookup()

        ensureDeferred(run()).addBoth(self._settle, key, ttl_for)
        return waiter

    def _settle(self, result: V | Failure, key: K, ttl_for: Callable[[V], float]) -> None:
        waiters = self._inflight.pop(key, [])
        if not isinstance(result, Failure):
            ttl = ttl_for(result)
            if ttl > 0:
                self._store(key, result, self.clock.seconds() + ttl)
        for waiter in waiters:
            if waiter.called:  # its caller gave up (cancelled)
                continue
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    def _store(self, key: K, value: V, expires: float) -> None:
        if len(self._entries) >= self.max_entries:
            now = self.clock.seconds()
            for old in [k for k, (t, _) in self._entries.items() if t <= now]:
                del self._entries[old]
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
        self._entries[key] = (expires, value)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every cached answer (e.g. after the trust configuration changed)."""
        self._entries.clear()
