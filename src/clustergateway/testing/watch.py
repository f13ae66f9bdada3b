"""One watch response: a chunked stream of JSON event lines fed by the store.

Semantics follow kube-apiserver's watch cache:

- ``resourceVersion`` unset or ``"0"`` (and ``sendInitialEvents`` not false):
  synthetic ``ADDED`` events for the current state first;
- ``resourceVersion=N``: every change after ``N``; ``N`` older than the history
  window gives an ``ERROR`` event carrying a 410 ``Status``, then the stream ends;
- ``sendInitialEvents=true``: current state, then a ``BOOKMARK`` annotated
  ``k8s.io/initial-events-end: "true"``;
- ``allowWatchBookmarks=true``: a ``BOOKMARK`` every ``bookmark_interval`` seconds;
- ``timeoutSeconds``: the stream ends cleanly (terminal chunk) after that long;
  without it the stream never ends on its own;
- an object that starts or stops matching the selectors arrives as ``ADDED`` /
  ``DELETED``.

Each event is written with ``request.write`` at once; a stalled cluster
(``faults.stall``) holds events back until the stall clears.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from clustergateway.errors import StatusError
from clustergateway.fence.twisted_web import request_disconnected
from clustergateway.testing.faults import Faults
from clustergateway.testing.kinds import ResourceType
from clustergateway.testing.selectors import (
    FieldRequirement,
    LabelRequirement,
    matches_fields,
    matches_labels,
)
from clustergateway.testing.store import ObjectStore, Subscription, WatchEvent

__all__ = ["WatchOptions", "WatchStream", "event_line"]

Object = dict[str, Any]


def event_line(event_type: str, obj: Object) -> bytes:
    """One watch event as a JSON line."""
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


@attrs.frozen
class WatchOptions:
    """The query parameters of a watch, parsed."""

    namespace: str = ""
    labels: tuple[LabelRequirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()
    resource_version: str = ""
    send_initial_events: bool | None = None
    allow_bookmarks: bool = False
    timeout_seconds: float | None = None


@attrs.define(eq=False)
class WatchStream:
    """Streams events of one resource type into one request until either side ends."""

    reactor: IReactorTime
    store: ObjectStore
    faults: Faults
    rtype: ResourceType
    request: Request
    options: WatchOptions
    #: Turns a stored object into what goes on the wire (Table row, metadata...).
    render_object: Callable[[Object], Object]
    bookmark_interval: float = 5.0
    on_close: Callable[[WatchStream], None] | None = None
    _log: Logger = attrs.field(factory=Logger, init=False)
    _subscription: Subscription | None = attrs.field(default=None, init=False)
    _bookmarks: LoopingCall | None = attrs.field(default=None, init=False)
    _timeout: IDelayedCall | None = attrs.field(default=None, init=False)
    _held: list[bytes] = attrs.field(factory=list, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _last_sent: int = attrs.field(default=0, init=False)

    def start(self) -> None:
        """Write the head, the initial or replayed events, and subscribe."""
        opts = self.options
        self.request.setResponseCode(200)
        self.request.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
        self.request.responseHeaders.setRawHeaders(b"cache-control", [b"no-cache, private"])
        self.request.notifyFinish().addBoth(self._finished)
        self.faults.stall_listeners.append(self._stall_changed)
        self.request.write(b"")  # flush the response head now, as the apiserver does

        rv = opts.resource_version
        initial = opts.send_initial_events
        if initial is None:
            initial = rv in ("", "0")
        try:
            start_rv = int(rv) if rv not in ("", "0") else self.store.revision
        except ValueError:
            start_rv = self.store.revision
        try:
            replay = [] if initial else self.store.events_since(self.rtype, start_rv)
        except StatusError as gone:
            self._emit(event_line("ERROR", gone.to_dict()))
            self.close()
            return
        self._last_sent = start_rv
        if initial:
            start_rv = self.store.revision
            page = self.store.list(
                self.rtype, opts.namespace, labels=opts.labels, fields=opts.fields
            )
            for obj in page.items:
                self._emit(event_line("ADDED", self.render_object(obj)))
            self._last_sent = start_rv
            if opts.send_initial_events and opts.allow_bookmarks:
                self._emit(
                    event_line(
                        "BOOKMARK",
                        self._bookmark(start_rv, {"k8s.io/initial-events-end": "true"}),
                    )
                )
        for event in replay:
            self._deliver(event)
        self._subscription = self.store.subscribe(self.rtype, self._deliver)
        if opts.allow_bookmarks and self.bookmark_interval > 0:
            self._bookmarks = LoopingCall(self._send_bookmark)
            self._bookmarks.clock = self.reactor
            self._bookmarks.start(self.bookmark_interval, now=False)
        if opts.timeout_seconds is not None:
            self._timeout = self.reactor.callLater(max(opts.timeout_seconds, 0), self.close)

    def _bookmark(self, revision: int, annotations: dict[str, str] | None = None) -> Object:
        metadata: Object = {"resourceVersion": str(revision)}
        if annotations:
            metadata["annotations"] = annotations
        return {"kind": self.rtype.kind, "apiVersion": self.rtype.api_version, "metadata": metadata}

    def _send_bookmark(self) -> None:
        self._emit(
            event_line("BOOKMARK", self._bookmark(max(self._last_sent, self.store.revision)))
        )

    def _matches(self, obj: Object | None) -> bool:
        if obj is None:
            return False
        opts = self.options
        if opts.namespace and self.rtype.namespaced:
            if obj.get("metadata", {}).get("namespace") != opts.namespace:
                return False
        return matches_labels(opts.labels, obj) and matches_fields(opts.fields, obj)

    def _deliver(self, event: WatchEvent) -> None:
        now = self._matches(event.object)
        if event.type == "MODIFIED":
            before = self._matches(event.previous)
            if now and before:
                kind = "MODIFIED"
            elif now:
                kind = "ADDED"
            elif before:
                kind = "DELETED"
            else:
                return
        elif now:
            kind = event.type
        else:
            return
        self._last_sent = event.resource_version
        self._emit(event_line(kind, self.render_object(event.object)))

    def _emit(self, line: bytes) -> None:
        if self._closed:
            return
        if self.faults.stall or self._held:
            self._held.append(line)
            return
        self.request.write(line)

    def _stall_changed(self, stalled: bool) -> None:
        if stalled or self._closed:
            return
        held, self._held = self._held, []
        for line in held:
            self.request.write(line)

    def close(self) -> None:
        """End the stream cleanly (terminal chunk) and stop all timers."""
        if self._closed:
            return
        self._stop()
        if not self.request.finished and not request_disconnected(self.request):
            self.request.finish()

    def abandon(self) -> None:
        """Stop feeding the stream without ending it (the connection is being dropped)."""
        if not self._closed:
            self._stop()

    def _stop(self) -> None:
        self._closed = True
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        if self._bookmarks is not None and self._bookmarks.running:
            self._bookmarks.stop()
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        if self._stall_changed in self.faults.stall_listeners:
            self.faults.stall_listeners.remove(self._stall_changed)
        if self.on_close is not None:
            self.on_close(self)

    def _finished(self, result: object) -> None:
        if isinstance(result, Failure):
            self._log.debug("watch client went away: {reason}", reason=result.getErrorMessage())
        if not self._closed:
            self._stop()
