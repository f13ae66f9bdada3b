"""The HTTP layer of the simulated cluster: Site, channel and request classes.

Differences from stock ``twisted.web`` that a Kubernetes client notices:

- no HTML anywhere: a malformed request, an over-long line and a failing
  handler all answer with a ``Status`` (twisted-notes §1.3: the stock channel
  drops the connection or writes a bare 400);
- request line and header limits raised to 1 MiB, like Go's server;
- request bodies kept in memory and capped at 3 MiB (kube-apiserver's limit);
- HTTP/2 (ALPN ``h2``, as kube-apiserver) with the gateway's own HTTP/2
  connection (``fence.h2channel``: frames leave in the pass they are ready),
  without an idle timer that would end quiet watches; HTTP/1.1 only when
  ``http2`` is off;
- the ``drop_after_bytes`` fault cuts a response after that many body bytes;
- every live connection is tracked, so ``stop()`` can drop them and ``stall``
  can stop reading them.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request, Site

from clustergateway.errors import (
    BadRequest,
    InternalError,
    RequestEntityTooLarge,
    StatusError,
    status_body,
)
from clustergateway.fence.h2channel import ChannelSwitch
from clustergateway.fence.twisted_web import (
    BadRequestHookChannel,
    channel_of,
    request_disconnected,
    set_switch_timeout,
    switch_site,
)
from clustergateway.testing.faults import Faults

__all__ = ["MAX_BODY_BYTES", "SimChannel", "SimRequest", "SimSite"]

#: kube-apiserver refuses request bodies above 3 MiB.
MAX_BODY_BYTES = 3 * 1024 * 1024
_LINE_LIMIT = 1024 * 1024


def _status_response(error: StatusError, close: bool = True) -> bytes:
    body = status_body(error)
    head = (
        f"HTTP/1.1 {error.code} {error.reason}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


class SimChannel(BadRequestHookChannel):
    """``HTTPChannel`` with Go-sized limits and ``Status`` answers to broken requests."""

    MAX_LENGTH = _LINE_LIMIT
    totalHeadersSize = _LINE_LIMIT
    maxHeaders = 1000

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        site = getattr(self, "site", None)
        if isinstance(site, SimSite):
            site.connection_opened(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        site = getattr(self, "site", None)
        if isinstance(site, SimSite):
            site.connection_closed(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def answer_bad_request(self) -> None:
        if self.transport is not None:
            self.transport.write(_status_response(BadRequest("malformed HTTP request")))
        self.loseConnection()  # type: ignore[no-untyped-call]

    def lineLengthExceeded(self, line: bytes) -> None:
        if self.transport is not None:
            self.transport.write(
                _status_response(BadRequest("request line or header longer than 1 MiB"))
            )
        self.loseConnection()  # type: ignore[no-untyped-call]


class _SimSwitch(ChannelSwitch):
    """The ALPN switch; the site tracks whichever channel serves the connection."""

    def _switch_to_h2(self) -> None:
        old = channel_of(self)
        super()._switch_to_h2()
        site = switch_site(self)
        if isinstance(site, SimSite):
            site.connections.discard(old)
            site.connections.add(channel_of(self))

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        site = switch_site(self)
        channel = channel_of(self)
        if isinstance(site, SimSite) and not isinstance(channel, SimChannel):
            site.connections.discard(channel)
        super().connectionLost(reason)


def _channel_factory(self: SimSite) -> _SimSwitch:
    protocol = _SimSwitch(SimChannel())  # type: ignore[no-untyped-call]
    # An HTTP/2 connection carrying only quiet watches stays.
    set_switch_timeout(protocol, None)
    return protocol


class SimRequest(Request):
    """A request whose failures are ``Status`` objects and whose body is capped."""

    _log = Logger()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.body_too_large = False
        self._body_size = 0
        self._sent_bytes = 0
        self._dropped = False

    def handleContentChunk(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size > MAX_BODY_BYTES:
            self.body_too_large = True
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def processingFailed(self, reason: Failure) -> Failure:
        self._log.failure("request failed", failure=reason)
        error = InternalError("an internal error occurred in the simulated cluster")
        if self.startedWriting:
            self.loseConnection()  # type: ignore[no-untyped-call]
            return reason
        body = status_body(error)
        self.setResponseCode(error.code)
        self.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
        self.responseHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
        self.write(body)
        self.finish()
        return reason

    def _faults(self) -> Faults | None:
        site = getattr(self.channel, "site", None)
        return getattr(site, "faults", None)

    def write(self, data: bytes) -> None:
        if self._dropped:
            return
        faults = self._faults()
        limit = faults.drop_after_bytes if faults is not None else None
        if limit is not None and self._sent_bytes + len(data) > limit:
            room = max(limit - self._sent_bytes, 0)
            super().write(data[:room])  # type: ignore[no-untyped-call]
            self._dropped = True
            self.loseConnection()  # type: ignore[no-untyped-call]
            return
        self._sent_bytes += len(data)
        super().write(data)  # type: ignore[no-untyped-call]

    def finish(self) -> None:
        if self._dropped or request_disconnected(self) or self.finished:
            return
        super().finish()  # type: ignore[no-untyped-call]

    @property
    def gone(self) -> bool:
        """True once the client disconnected or the response was cut."""
        return request_disconnected(self) or self._dropped

    def too_large_error(self) -> StatusError:
        return RequestEntityTooLarge("the request body exceeds 3 MiB")


class SimSite(Site):
    """The simulated cluster's ``Site``: no access log, HTTP/1.1, tracked connections."""

    requestFactory = SimRequest
    protocol = _channel_factory
    displayTracebacks = False

    def __init__(self, resource: Any, faults: Faults, reactor: Any, http2: bool = True) -> None:
        super().__init__(resource, reactor=reactor)  # type: ignore[no-untyped-call]
        self.faults = faults
        self.http2 = http2
        #: The HTTP/1.1 channels and HTTP/2 connections serving now.
        self.connections: set[Any] = set()
        faults.stall_listeners.append(self._stall_changed)

    def log(self, request: Any) -> None:
        """No access log: tests record requests through the cluster instead."""

    def acceptableProtocols(self) -> list[bytes]:  # noqa: N802 - Twisted's name
        return [b"h2", b"http/1.1"] if self.http2 else [b"http/1.1"]

    def getContentFile(self, length: int | None) -> io.BytesIO:
        return io.BytesIO()

    def connection_opened(self, channel: SimChannel) -> None:
        self.connections.add(channel)
        if self.faults.stall and channel.transport is not None:
            channel.transport.pauseProducing()  # type: ignore[attr-defined]

    def connection_closed(self, channel: SimChannel) -> None:
        self.connections.discard(channel)

    @staticmethod
    def protocol_of(connection: Any) -> str:
        """``"http/1.1"`` for an HTTP/1.1 channel, ``"h2"`` for an HTTP/2 connection."""
        return "http/1.1" if isinstance(connection, SimChannel) else "h2"

    def _stall_changed(self, stalled: bool) -> None:
        for channel in list(self.connections):
            transport = channel.transport
            if transport is None:
                continue
            if stalled:
                transport.pauseProducing()
            else:
                transport.resumeProducing()

    def drop_connections(self) -> None:
        """Abort every open connection (the apiserver process died)."""
        for channel in list(self.connections):
            if channel.transport is not None:
                channel.transport.abortConnection()
        self.connections.clear()

    def detach(self) -> None:
        if self._stall_changed in self.faults.stall_listeners:
            self.faults.stall_listeners.remove(self._stall_changed)
