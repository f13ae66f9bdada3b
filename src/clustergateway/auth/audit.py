"""The audit log: one JSON line per request (``--audit-log-path``, ``-`` = stdout).

Each line says who called (user, groups), what they asked for (method, verb,
path, resource, cluster), as whom the request went upstream (the identity
decision of :mod:`clustergateway.auth.identity`), and how it ended (status
code, latency, response bytes, whether the client went away).  It never
contains a credential: no header is copied, the query string is left out
(exec ``command=`` arguments and the like may carry secrets), and the
identity summary holds names only.

A record starts when the request is authenticated (see :class:`AuditingGuard`,
which wraps any request guard, so standalone mode is audited too) and is
written when Twisted reports the response finished.  Lines go into a buffered
file that is flushed shortly after (``flush_delay``), so the reactor never
waits on the disk for every request.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import IO, Any, Protocol

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from clustergateway.auth.subpath import parse_request_info
from clustergateway.auth.user import UserInfo

__all__ = ["AuditLog", "AuditRecord", "AuditingGuard", "DEFAULT_API_GROUP"]

DEFAULT_API_GROUP = "cluster.core.oam.dev"


def _rfc3339(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


@attrs.define
class AuditRecord:
    """What is known about one request so far; filled in as it progresses."""

    started: float
    method: str
    path: str
    remote: str = ""
    user_agent: str = ""
    user: UserInfo | None = None

    def line(
        self, request: IRequest, finished: float, aborted: bool, api_group: str
    ) -> dict[str, Any]:
        """The JSON object written for this request."""
        info = parse_request_info(self.method, self.path, {})
        caller: UserInfo | None = getattr(request, "cg_caller", None)
        user = self.user or caller
        out: dict[str, Any] = {
            "time": _rfc3339(self.started),
            "user": user.name if user else "",
            "groups": list(user.groups) if user else [],
            "method": self.method,
            "verb": info.verb,
            "path": self.path,
        }
        if caller is not None and caller != user:
            out["impersonatedBy"] = caller.name
        if info.is_resource_request and info.api_group == api_group:
            out["resource"] = info.resource + (f"/{info.subresource}" if info.subresource else "")
            if info.resource == "clustergateways" and info.name:
                out["cluster"] = info.name
        identity = getattr(request, "cg_identity", None)
        if identity is not None:
            out["identity"] = identity.describe()
        out["code"] = int(getattr(request, "code", 0) or 0)
        out["latencySeconds"] = round(max(finished - self.started, 0.0), 6)
        out["bytes"] = int(getattr(request, "sentLength", 0) or 0)
        if aborted and out["code"] != 101:  # a spliced connection always ends by closing
            out["aborted"] = True
        out["remote"] = self.remote
        if self.user_agent:
            out["userAgent"] = self.user_agent
        return out


@attrs.define
class AuditLog:
    """Writes audit lines to a text stream, flushing soon after each burst.

    Build with :meth:`open` (a path or ``-``); ``close`` flushes and closes a
    file (never stdout).
    """

    clock: IReactorTime
    stream: IO[str]
    close_stream: bool = False
    api_group: str = DEFAULT_API_GROUP
    flush_delay: float = 0.2
    _flush_call: IDelayedCall | None = attrs.field(default=None, init=False)
    _log = Logger()

    @classmethod
    def open(cls, path: str, clock: IReactorTime, api_group: str = DEFAULT_API_GROUP) -> AuditLog:
        """``-`` → stdout; else append to ``path`` (``OSError`` if it cannot be opened)."""
        if path == "-":
            return cls(clock, sys.stdout, False, api_group)
        stream = open(path, "a", encoding="utf-8", buffering=64 * 1024)  # noqa: SIM115
        return cls(clock, stream, True, api_group)

    def write(self, event: dict[str, Any]) -> None:
        """Append one JSON line; a failing disk is logged, never raised into a request."""
        try:
            self.stream.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
        except (OSError, ValueError) as exc:
            self._log.error("Cannot write the audit log: {error}", error=str(exc))
            return
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(self.flush_delay, self.flush)

    def flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        try:
            self.stream.flush()
        except (OSError, ValueError) as exc:
            self._log.error("Cannot flush the audit log: {error}", error=str(exc))

    def close(self) -> None:
        self.flush()
        if self.close_stream:
            self.stream.close()

    def start(self, request: IRequest) -> AuditRecord:
        """Begin the record of ``request``; it is written when the response ends."""
        peer = request.getClientAddress()
        record = AuditRecord(
            started=self.clock.seconds(),
            method=_text(request.method),
            path=_text(request.path),
            remote=str(getattr(peer, "host", "") or ""),
            user_agent=_text(request.getHeader(b"user-agent")),
        )

        def finished(result: object) -> None:
            aborted = isinstance(result, Failure)
            self.write(record.line(request, self.clock.seconds(), aborted, self.api_group))

        request.notifyFinish().addBoth(finished)  # type: ignore[attr-defined]
        return record


class _Guard(Protocol):
    async def authenticate(self, request: IRequest) -> UserInfo: ...

    async def authorize(self, user: UserInfo, attributes: Any) -> None: ...


@attrs.define
class AuditingGuard:
    """A request guard that records every request it sees in the audit log.

    Wraps the real guard (delegating or standalone) so that both are audited
    alike; unauthenticated requests appear with an empty user and their 401.
    """

    inner: _Guard
    audit: AuditLog

    async def authenticate(self, request: IRequest) -> UserInfo:
        record = self.audit.start(request)
        user = await self.inner.authenticate(request)
        record.user = user
        return user

    async def authorize(self, user: UserInfo, attributes: Any) -> None:
        await self.inner.authorize(user, attributes)
