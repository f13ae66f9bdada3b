"""Watch streams of ``clustergateways`` and ``virtualclusters`` from registry changes.

The Go gateway could not watch; here ``?watch=true`` streams the events a
Kubernetes client expects:

* ``ADDED`` for the current state first, when the watch starts without a
  ``resourceVersion`` (or with ``0``, or with ``sendInitialEvents=true``, then
  followed by the ``k8s.io/initial-events-end`` bookmark);
* then ``ADDED``/``MODIFIED``/``DELETED`` as Secrets (and OCM ManagedClusters)
  change.  Visibility is decided per watch — a Secret that becomes
  unconvertible, or stops matching the label selector, is ``DELETED`` from the
  watch and comes back ``ADDED``;
* ``BOOKMARK`` events with ``allowWatchBookmarks=true``;
* a clean end after ``timeoutSeconds`` (default: a random 30–60 min, like the
  apiserver), and an ``ERROR`` event with a 410 ``Expired`` Status when the
  requested ``resourceVersion`` is older than the retained history (or from a
  previous incarnation of the gateway: newer than the current one).

:class:`ChangeLog` follows the registry once for the whole process and keeps
the last changes, each with the cluster's state before and after, so that a
watch resuming from a ``resourceVersion`` replays exactly what it missed and
computes visibility without any per-watch history.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import attrs
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from clustergateway import errors
from clustergateway.registry.model import RegistryEntry, RegistryEvent

__all__ = [
    "Change",
    "ChangeLog",
    "ClusterState",
    "WatchOptions",
    "WatchStream",
    "WatchView",
]

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@attrs.frozen
class ClusterState:
    """What the registry knows under one name: its Secret entry and/or OCM ManagedCluster."""

    entry: RegistryEntry | None = None
    managed: Mapping[str, Any] | None = attrs.field(default=None, eq=False)

    @property
    def empty(self) -> bool:
        return self.entry is None and self.managed is None


EMPTY = ClusterState()


@attrs.frozen
class Change:
    """One registry change: the state of ``name`` before and after, at ``resource_version``."""

    resource_version: int
    name: str
    before: ClusterState
    after: ClusterState


class FollowedRegistry(Protocol):
    """The registry as :class:`ChangeLog` follows it (``SecretRegistry`` provides it)."""

    @property
    def resource_version(self) -> int: ...

    def entries(self) -> list[RegistryEntry]: ...

    def subscribe(
        self, listener: Callable[[RegistryEvent, RegistryEntry, int], None]
    ) -> Callable[[], None]: ...


def _name_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else ""


@attrs.define(eq=False)
class ChangeLog:
    """Follows the registry; keeps the last ``capacity`` changes for resuming watches."""

    capacity: int = 4096
    _state: dict[str, ClusterState] = attrs.field(factory=dict, init=False)
    _history: deque[Change] = attrs.field(factory=deque, init=False)
    #: Every change newer than this is in ``_history``.
    _horizon: int = attrs.field(default=0, init=False)
    _version: int = attrs.field(default=0, init=False)
    _followers: list[Callable[[Change], None]] = attrs.field(factory=list, init=False)
    _detach: list[Callable[[], None]] = attrs.field(factory=list, init=False)
    #: The watch responses open now (ended cleanly at shutdown).
    watches: set[WatchStream] = attrs.field(factory=set, init=False)

    _log: ClassVar[Logger] = Logger()

    @classmethod
    def follow(cls, registry: FollowedRegistry, capacity: int = 4096) -> ChangeLog:
        """Start following ``registry`` from its current state."""
        log = cls(capacity)
        for entry in registry.entries():
            log._state[entry.name] = ClusterState(entry=entry)
        managed_clusters = getattr(registry, "managed_clusters", None)
        if managed_clusters is not None:
            for managed in managed_clusters():
                name = _name_of(managed)
                log._state[name] = attrs.evolve(log._state.get(name, EMPTY), managed=managed)
        log._horizon = log._version = registry.resource_version
        log._detach.append(registry.subscribe(log._on_secret))
        subscribe_managed = getattr(registry, "subscribe_managed_clusters", None)
        if subscribe_managed is not None:
            log._detach.append(subscribe_managed(log._on_managed))
        return log

    def close(self) -> None:
        """Stop following the registry."""
        for detach in self._detach:
            detach()
        self._detach.clear()

    @property
    def resource_version(self) -> int:
        return self._version

    def snapshot(self) -> tuple[int, dict[str, ClusterState]]:
        """The current version and state (a copy)."""
        return self._version, dict(self._state)

    def changes_since(self, resource_version: int) -> list[Change] | None:
        """The changes after ``resource_version``; None when they are no longer known."""
        if resource_version < self._horizon or resource_version > self._version:
            return None
        return [c for c in self._history if c.resource_version > resource_version]

    def add_follower(self, follower: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``follower(change)`` on every change; returns the function that stops it."""
        self._followers.append(follower)

        def remove() -> None:
            if follower in self._followers:
                self._followers.remove(follower)

        return remove

    @property
    def followers(self) -> int:
        return len(self._followers)

    def end_watches(self) -> int:
        """End every open watch cleanly (shutdown); returns how many."""
        watches = list(self.watches)
        for watch in watches:
            watch.end()
        return len(watches)

    def _on_secret(self, event: RegistryEvent, entry: RegistryEntry, version: int) -> None:
        before = self._state.get(entry.name, EMPTY)
        after = attrs.evolve(before, entry=None if event == "DELETED" else entry)
        self._record(version, entry.name, before, after)

    def _on_managed(self, event: RegistryEvent, managed: Mapping[str, Any], version: int) -> None:
        name = _name_of(managed)
        before = self._state.get(name, EMPTY)
        after = attrs.evolve(before, managed=None if event == "DELETED" else managed)
        self._record(version, name, before, after)

    def _record(self, version: int, name: str, before: ClusterState, after: ClusterState) -> None:
        if after.empty:
            self._state.pop(name, None)
        else:
            self._state[name] = after
        change = Change(version, name, before, after)
        self._history.append(change)
        while len(self._history) > self.capacity:
            self._horizon = self._history.popleft().resource_version
        self._version = version
        for follower in list(self._followers):
            try:
                follower(change)
            except Exception:
                self._log.failure("Watch follower failed on change of {name}", name=name)


@attrs.frozen
class WatchView:
    """How one watch shows clusters: which are visible and how each event object looks.

    ``project(name, state)`` returns the item the watch shows for the cluster
    (None when not visible: missing, unconvertible, not selected);
    ``render(item, resource_version)`` the event's object; ``bookmark(rv,
    initial_end)`` a BOOKMARK object; ``extras`` items present from the start
    that never change (``local`` for virtualclusters), already filtered.
    """

    project: Callable[[str, ClusterState], Any]
    render: Callable[[Any, int], dict[str, Any]]
    bookmark: Callable[[int, bool], dict[str, Any]]
    content_type: bytes = b"application/json"
    extras: tuple[Any, ...] = ()


@attrs.frozen
class WatchOptions:
    """The query parameters of a watch, parsed and validated."""

    resource_version: int | None = None
    timeout: float | None = None
    bookmarks: bool = False
    send_initial_events: bool = False

    @classmethod
    def parse(
        cls,
        resource_version: str | None,
        timeout_seconds: str | None,
        allow_bookmarks: bool,
        send_initial_events: str | None,
    ) -> WatchOptions:
        """Raise ``errors.BadRequest`` for values the apiserver would refuse."""
        version: int | None = None
        if resource_version not in (None, "", "0"):
            try:
                version = int(resource_version)
            except ValueError:
                raise errors.BadRequest(f'invalid resource version "{resource_version}"') from None
            if version < 0:
                raise errors.BadRequest(f'invalid resource version "{resource_version}"')
        timeout: float | None = None
        if timeout_seconds not in (None, ""):
            try:
                timeout = float(int(timeout_seconds))
            except ValueError:
                raise errors.BadRequest(
                    f'invalid value "{timeout_seconds}" for timeoutSeconds'
                ) from None
            if timeout <= 0:
                timeout = None
        send_initial = False
        if send_initial_events not in (None, ""):
            send_initial = send_initial_events.lower() in ("1", "t", "true")
            if send_initial and not allow_bookmarks:
                raise errors.UnprocessableEntity(
                    "sendInitialEvents requires setting allowWatchBookmarks to true"
                )
        return cls(version, timeout, allow_bookmarks, send_initial)


def _line(event_type: str, obj: Mapping[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


@implementer(IPushProducer)
@attrs.define(eq=False)
class WatchStream:
    """One watch response: events from a :class:`ChangeLog` written to ``request``.

    Registered as the request's push producer to learn when the client stops
    reading: events are still written (they are small) but once more than
    ``max_buffered`` bytes pile up for a paused client the watch ends cleanly,
    and the client resumes from the last ``resourceVersion`` it saw, as it
    does when the apiserver drops a slow watcher.
    """

    request: IRequest
    changes: ChangeLog
    view: WatchView
    clock: IReactorTime
    options: WatchOptions
    #: Watches without ``timeoutSeconds`` last a random [min, 2*min) seconds.
    min_request_timeout: float = 1800.0
    bookmark_interval: float = 60.0
    max_buffered: int = 4 * 1024 * 1024
    _stop_following: Callable[[], None] | None = attrs.field(default=None, init=False)
    _timers: list[IDelayedCall] = attrs.field(factory=list, init=False)
    _paused: bool = attrs.field(default=False, init=False)
    _buffered: int = attrs.field(default=0, init=False)
    _done: bool = attrs.field(default=False, init=False)

    _log: ClassVar[Logger] = Logger()

    def start(self) -> None:
        """Send the response head and the initial events, then follow the registry."""
        request = self.request
        request.setResponseCode(200)
        request.responseHeaders.setRawHeaders(b"content-type", [self.view.content_type])
        request.responseHeaders.setRawHeaders(b"cache-control", [b"no-cache, private"])
        request.registerProducer(self, True)  # type: ignore[attr-defined]
        request.notifyFinish().addBoth(self._finished)  # type: ignore[attr-defined]
        opts = self.options
        if opts.resource_version is None or opts.send_initial_events:
            version, state = self.changes.snapshot()
            self._initial(version, state)
        else:
            missed = self.changes.changes_since(opts.resource_version)
            if missed is None:
                self._expired(opts.resource_version)
                return
            request.write(b"")  # the head goes out now, not with the first event
            for change in missed:
                self.apply(change)
        if self._done:
            return
        self._stop_following = self.changes.add_follower(self.apply)
        self.changes.watches.add(self)
        timeout = opts.timeout
        if timeout is None:
            timeout = self.min_request_timeout * (1 + random.random())
        self._timers.append(self.clock.callLater(timeout, self.end))
        if opts.bookmarks:
            self._schedule_bookmark()

    def _initial(self, version: int, state: Mapping[str, ClusterState]) -> None:
        self.request.write(b"")
        for item in self.view.extras:
            self._write(_line("ADDED", self.view.render(item, version)))
        for name in sorted(state):
            item = self.view.project(name, state[name])
            if item is not None:
                self._write(_line("ADDED", self.view.render(item, version)))
        if self.options.send_initial_events:
            self._write(_line("BOOKMARK", self.view.bookmark(version, True)))

    def _expired(self, requested: int) -> None:
        current = self.changes.resource_version
        status = errors.Gone(f"too old resource version: {requested} ({current})")
        self._write(_line("ERROR", status.to_dict()))
        self.end(bookmark=False)

    def apply(self, change: Change) -> None:
        """Turn one registry change into at most one event for this watch."""
        if self._done:
            return
        before = self.view.project(change.name, change.before)
        after = self.view.project(change.name, change.after)
        version = change.resource_version
        if after is not None and after == before:
            return  # nothing this watch shows changed (e.g. a VirtualCluster's token rotated)
        if after is not None:
            kind = "MODIFIED" if before is not None else "ADDED"
            self._write(_line(kind, self.view.render(after, version)))
        elif before is not None:
            self._write(_line("DELETED", self.view.render(before, version)))

    def _write(self, line: bytes) -> None:
        if self._done:
            return
        if self._paused:
            self._buffered += len(line)
            if self._buffered > self.max_buffered:
                self._log.warn(
                    "Ending watch {uri}: the client reads too slowly",
                    uri=self.request.uri.split(b"?")[0].decode("utf-8", "replace"),
                )
                self.request.write(line)
                self.end(bookmark=False)
                return
        self.request.write(line)

    def _schedule_bookmark(self) -> None:
        self._timers.append(self.clock.callLater(self.bookmark_interval, self._bookmark))

    def _bookmark(self) -> None:
        if self._done:
            return
        version = self.changes.resource_version
        self._write(_line("BOOKMARK", self.view.bookmark(version, False)))
        self._schedule_bookmark()

    def end(self, bookmark: bool = True) -> None:
        """End the watch cleanly (the client re-watches from its last resourceVersion)."""
        if self._done:
            return
        if bookmark and self.options.bookmarks:
            version = self.changes.resource_version
            self.request.write(_line("BOOKMARK", self.view.bookmark(version, False)))
        self._cleanup()
        self.request.unregisterProducer()  # type: ignore[attr-defined]
        self.request.finish()

    def _cleanup(self) -> None:
        self._done = True
        self.changes.watches.discard(self)
        if self._stop_following is not None:
            self._stop_following()
            self._stop_following = None
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def _finished(self, result: None | Failure) -> None:
        """The response ended: finished by us, or the client went away."""
        self._cleanup()

    # IPushProducer

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._paused = True

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._paused = False
        self._buffered = 0

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._cleanup()
