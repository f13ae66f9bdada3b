"""Defences of the HTTP/2 listener against peers that abuse the protocol.

The HTTP/2 attacks of 2019–2024 share a shape: frames that are cheap to send
and cost the server memory or work — a frame declared larger than allowed
and buffered in full before its length is checked, streams opened and reset
at once (rapid reset, CVE-2023-44487: each one starts a proxied request),
floods of PING, SETTINGS, WINDOW_UPDATE or empty frames (CVE-2019-9512,
-9515, -9518), endless CONTINUATION frames (2024).  What this module adds to
the ``h2`` library's own checks:

* :class:`BoundedFrameBuffer` refuses a frame as soon as its 9-byte header
  declares more than the SETTINGS_MAX_FRAME_SIZE we advertised, before its
  body is buffered (``h2`` checks only once the whole frame is in memory).
  ``h2`` already refuses more than 64 CONTINUATION frames in a header block
  and a header list larger than ours, so a header block costs at most
  64 × 16 KiB.
* :class:`FloodGuard` keeps a token bucket per kind of frame that is cheap to
  send and costly to receive; a peer that empties one gets a GOAWAY with
  ENHANCE_YOUR_CALM and loses the connection.  The buckets are generous: a
  burst a real client sends (an aggregator cancelling hundreds of watches, a
  client's pings) never meets them.
* :class:`GuardedH2Connection` is ``h2``'s connection with both in place.

Twisted already answers rapid reset (a token bucket of 1,000 resets, 33 a
second, then GOAWAY ENHANCE_YOUR_CALM) and bounds the control frames it
queues for a peer that does not read (17 KiB); neither is repeated here.
``BoundedFrameBuffer`` reads ``h2``'s private buffer (``FrameBuffer._data``), so it
lives in ``clustergateway.fence.h2``; ``tests/unit/server/test_h2guard.py`` pins it.
"""

from __future__ import annotations

from typing import Any

import attrs
import h2.connection
import h2.events
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from clustergateway.fence.h2 import BoundedFrameBuffer

__all__ = ["FloodGuard", "GuardedH2Connection", "TokenBucket"]


@attrs.define
class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; :meth:`take` says if one was left."""

    capacity: float
    rate: float
    tokens: float = attrs.field(default=attrs.Factory(lambda self: self.capacity, takes_self=True))
    stamp: float | None = None

    def take(self, now: float, count: int = 1) -> bool:
        if self.stamp is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= count
        return self.tokens >= 0


#: (capacity, refill per second) of each bucket.
LIMITS: dict[str, tuple[float, float]] = {
    # PING and SETTINGS: each asks for an answer.
    "PING and SETTINGS frames": (1000.0, 100.0),
    # WINDOW_UPDATE: a client acknowledges every stream's data with one.
    "WINDOW_UPDATE frames": (20000.0, 5000.0),
    # DATA without payload nor END_STREAM, or other frames that carry nothing.
    "empty frames": (1000.0, 100.0),
}


@attrs.define
class FloodGuard:
    """Counts the frames of :data:`LIMITS` per connection; names the first flood seen."""

    clock: Any
    buckets: dict[str, TokenBucket] = attrs.field(
        factory=lambda: {kind: TokenBucket(*limit) for kind, limit in LIMITS.items()}
    )

    def flood_in(self, events: list[Any]) -> str | None:
        """The kind of frame ``events`` overspent, or None while within the limits."""
        now = self.clock.seconds()
        counts: dict[str, int] = {}
        for event in events:
            kind = _kind(event)
            if kind is not None:
                counts[kind] = counts.get(kind, 0) + 1
        for kind, count in counts.items():
            if not self.buckets[kind].take(now, count):
                return kind
        return None


def _kind(event: Any) -> str | None:
    if isinstance(event, h2.events.PingReceived | h2.events.RemoteSettingsChanged):
        return "PING and SETTINGS frames"
    if isinstance(event, h2.events.WindowUpdated):
        return "WINDOW_UPDATE frames"
    if isinstance(event, h2.events.DataReceived) and not event.data and not event.stream_ended:
        return "empty frames"
    return None


class GuardedH2Connection(h2.connection.H2Connection):
    """``h2``'s server connection with :class:`BoundedFrameBuffer` and a :class:`FloodGuard`.

    A flood closes the connection with GOAWAY ENHANCE_YOUR_CALM (raised to
    the caller as a ``ProtocolError``, which Twisted's connection answers by
    writing the GOAWAY and closing); ``flooded`` names what was flooded.
    """

    def __init__(self, config: Any, guard: FloodGuard) -> None:
        super().__init__(config=config)
        self.incoming_buffer.__class__ = BoundedFrameBuffer
        self.guard = guard
        self.flooded: str | None = None

    def receive_data(self, data: Any) -> list[h2.events.Event]:
        events = super().receive_data(data)
        flood = self.guard.flood_in(events)
        if flood is not None:
            self.flooded = flood
            self.close_connection(
                error_code=ErrorCodes.ENHANCE_YOUR_CALM,
                additional_data=f"too many {flood}".encode(),
            )
            raise ProtocolError(f"too many {flood}")
        return events
