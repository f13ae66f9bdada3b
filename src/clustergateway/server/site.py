"""The ``Site`` and ``Request`` of the gateway: Kubernetes-grade HTTP serving on twisted.web.

What changes from Twisted's defaults, and why (twisted-notes §1.2, §1.3, §3, §5):

* errors are ``Status`` JSON, never Twisted's HTML pages or tracebacks;
* no ``Server:`` header, no invented ``Content-Type: text/html``;
* request line / header limits raised to Go's 1 MiB: a 20 KiB ``labelSelector``
  would otherwise make Twisted drop the connection without an answer;
* request bodies are kept in memory and capped (kube-apiserver's 3 MiB):
  Twisted would spool every chunked body to a temporary file; a bigger body
  is discarded as it arrives and answered 413;
* the idle timeout (60 s) closes an HTTP/1.1 connection between requests and
  an HTTP/2 connection with no open stream, never one carrying a quiet watch
  (Twisted's h2 timer runs while streams are open; ``h2channel`` re-arms it);
  TCP keepalive finds dead peers;
* ``TCP_NODELAY``, as Go's server sets it: TLS on the socket sends each record
  with its own ``send``, and with Nagle's algorithm on the kernel holds back
  all but the first until the client acknowledges it, which it may delay by
  40 ms or more (a spliced exec or port-forward stream waited that long in a
  third of the rounds; ``proxy.dial`` does the same toward clusters);
* no access line per request unless an access log is installed
  (``request_log``; twisted.web would format one string per request);
* HTTP/1.1 request heads are parsed by llhttp
  (:class:`~clustergateway.fence.h1channel.H1Channel`), not line by line.
"""

from __future__ import annotations

import io
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes as unquote

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import IResource

from clustergateway import errors
from clustergateway.fence.h1channel import H1Channel
from clustergateway.fence.h2channel import ChannelSwitch
from clustergateway.fence.twisted_web import (
    GenericHTTPChannelProtocol,
    channel_of,
    handle_star,
    set_switch_timeout,
)
from clustergateway.proxy.answer import WebAnswer, write_status

__all__ = [
    "CappedBody",
    "GatewayRequest",
    "GatewaySite",
    "MAX_HEADER_BYTES",
    "MAX_REQUEST_BODY",
]

#: Go's ``http.DefaultMaxHeaderBytes``.
MAX_HEADER_BYTES = 1 << 20
#: kube-apiserver's ``MaxRequestBodyBytes``.
MAX_REQUEST_BODY = 3 * 1024 * 1024


class CappedBody(io.BytesIO):
    """An in-memory request body that stops storing (and says so) beyond ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.received = 0
        self.overflowed = False

    def write(self, data: Any) -> int:
        size = len(data)
        self.received += size
        if self.overflowed:
            return size
        if self.received > self.limit:
            self.overflowed = True
            self.seek(0)
            self.truncate()
            return size
        return super().write(data)


class GatewayRequest(server.Request):
    """A request whose every error is a ``Status`` and whose head has no ``Server:``."""

    defaultContentType = None  # noqa: N815 - Twisted's name
    _log = Logger()  # as http.Request declares it (not a ClassVar there)

    def process(self) -> None:
        """``twisted.web.server.Request.process`` without its per-request waste.

        No ``Server:`` header is set (the gateway sends none), the ``Date:``
        string is made once per second (:meth:`GatewaySite.http_date`; Twisted
        formats it per request), and no encoder is looked up (no resource of
        the gateway offers one).  Otherwise the same steps: the resource
        tree is walked and the resource rendered; an error becomes a 500.
        """
        site = self.channel.site  # type: ignore[attr-defined]  # set by Site.buildProtocol
        self.site = site
        content = self.content
        if isinstance(content, CappedBody) and content.overflowed:
            error = errors.RequestEntityTooLarge(
                f"the request body is larger than {content.limit} bytes"
            )
            write_status(WebAnswer(self), error)
            return
        self.responseHeaders.setRawHeaders(b"date", [site.http_date()])
        self.prepath = []
        self.postpath = list(map(unquote, self.path[1:].split(b"/")))
        if self.path == b"*":
            handle_star(self)
            return
        try:
            self.render(site.getResourceFor(self))  # type: ignore[no-untyped-call]
        except BaseException:
            self.processingFailed(Failure())

    def processingFailed(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        """An exception escaped a resource: log it, answer a 500 ``Status`` without details."""
        self._log.failure(
            "Unhandled error serving {method} {path}",
            failure=reason,
            method=self.method.decode("ascii", "replace"),
            path=self.path.decode("utf-8", "replace"),
        )
        error = errors.InternalError("Internal error occurred: the request could not be served")
        write_status(WebAnswer(self), error)  # cut short instead if the head went out


def _channel_factory(site: server.Site) -> GenericHTTPChannelProtocol:
    """``HTTPFactory.protocol``: the ALPN switch (``h2channel``) in front of an H1Channel."""
    return ChannelSwitch(H1Channel())  # type: ignore[no-untyped-call]


class GatewaySite(server.Site):
    """The ``Site`` serving the gateway's Resource tree."""

    requestFactory = GatewayRequest  # noqa: N815 - Twisted's name
    noisy = False
    protocol = _channel_factory

    def __init__(
        self,
        resource: IResource,
        *,
        reactor: IReactorTime,
        max_request_body: int = MAX_REQUEST_BODY,
        max_header_bytes: int = MAX_HEADER_BYTES,
        request_log: Callable[[server.Request], None] | None = None,
        idle_timeout: float | None = 60.0,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            resource,
            requestFactory=GatewayRequest,
            parsePOSTFormSubmission=False,
            timeout=idle_timeout,
            reactor=reactor,
        )
        self._date_second = -1
        self._date = b""
        self.max_request_body = max_request_body
        self.max_header_bytes = max_header_bytes
        self.request_log = request_log
        #: Proxied requests (HTTP/1.1 heads, HTTP/2 streams) answered without twisted.web's Request
        #: (``server.callers.ProxyEntry``); None: twisted.web serves all.
        self.proxy_entry: Any = None
        #: The HTTP/2 engine a connection that negotiates ``h2`` gets: ``native``
        #: (``fence.h2engine_ngh2``) or ``python`` (``fence.h2channel``); the tap sets it
        #: from ``--h2-engine`` (``server.h2engine.choose``).
        self.h2_engine = "native"
        #: Every client connection's protocol, while it lives (shutdown drains them).
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()

    def getContentFile(self, length: int | None) -> CappedBody:  # noqa: N802 - Twisted's name
        """Request bodies stay in memory, capped (Twisted spools big ones to disk)."""
        return CappedBody(self.max_request_body)

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - Twisted's name
        protocol = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        self._connections.add(protocol)
        channel = channel_of(protocol)
        channel.MAX_LENGTH = self.max_header_bytes
        channel.totalHeadersSize = self.header_list_size
        channel.maxHeaders = 1000
        channel.proxy_entry = self.proxy_entry
        # Only an h2 connection that replaces the HTTP/1.1 channel reads this:
        # closed when it has had no open stream for that long (h2channel).
        set_switch_timeout(protocol, self.timeOut)
        make_connection = protocol.makeConnection

        def make_connection_with_socket_options(transport: Any) -> None:
            try:
                transport.setTcpKeepAlive(True)
                transport.setTcpNoDelay(True)
            except Exception:  # not TCP (tests use in-memory transports)
                pass
            make_connection(transport)

        protocol.makeConnection = make_connection_with_socket_options
        return protocol

    @property
    def header_list_size(self) -> int:
        """The largest request head accepted, on HTTP/1.1 and as HTTP/2's header list size."""
        return self.max_header_bytes + 64 * 1024

    def open_connections(self) -> list[Any]:
        """The protocols of the client connections still open."""
        found = []
        for protocol in list(self._connections):
            transport = getattr(channel_of(protocol), "transport", None)
            if transport is None or getattr(transport, "disconnected", False):
                continue
            if not getattr(transport, "disconnecting", False):
                found.append(protocol)
        return found

    def http_date(self) -> bytes:
        """The ``Date:`` header value for now, formatted once per second."""
        second = int(self.reactor.seconds())
        if second != self._date_second:
            self._date_second = second
            self._date = http.datetimeToString(second)
        return self._date

    def log(self, request: server.Request) -> None:  # type: ignore[override]  # ours build server.Request
        """The access log hook (``observe.logs.AccessLog.log_request``); silent without one."""
        if self.request_log is not None:
            self.request_log(request)
