"""Streaming one ordinary (non-upgrade) request to a cluster and its response back.

The response is relayed as it arrives: status, headers and body verbatim
(hop-by-hop headers aside), each chunk written the moment it is read so watch
events are never delayed, with backpressure (the upstream connection is
registered as the response's producer, so a stalled client stops reads from
the cluster and memory stays flat), and with the exact length the cluster
sent (``Content-Length`` passed through, otherwise chunked).  A client that
leaves cancels the upstream request or closes its connection at once.  A body
the cluster cut short is not turned into a clean end: the client connection is
dropped so the client sees the truncation.  Twisted's own additions (a
``Server`` header, an invented ``Content-Type``) are suppressed.

Failures before the response head become a ``Status``: 502 when the cluster
cannot be reached or breaks the connection, 504 when connecting, the TLS
handshake or the response head takes too long (no head timeout for
long-running requests such as watches).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from clustergateway.errors import BadGateway, GatewayTimeout, StatusError, render_status
from clustergateway.proxy.dial import DialError, DialTimeout, describe_failure
from clustergateway.proxy.headers import response_headers

__all__ = [
    "BytesBody",
    "StreamingForward",
    "break_response",
    "finish_with_status",
    "upstream_error",
]

_NO_BODY_CODES = frozenset({204, 304})


@implementer(IBodyProducer)
@attrs.define
class BytesBody:
    """A request body already in memory (Twisted buffers request bodies; the
    apiserver caps them at ~3 MiB), written in one go with a known length."""

    data: bytes
    length: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.length = len(self.data)

    def startProducing(self, consumer: Any) -> Deferred[None]:  # noqa: N802
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


def break_response(request: Any) -> None:
    """End a response the client must see as incomplete.

    HTTP/1.1: close the connection (no terminal chunk, or fewer bytes than
    announced).  HTTP/2: reset the stream — ``loseConnection`` there would send
    END_STREAM, a clean end.
    """
    if request.clientproto == b"HTTP/2":
        abort = getattr(request.channel, "abortConnection", None)
        if abort is not None:
            abort()
            return
    request.loseConnection()


def finish_with_status(request: Any, error: StatusError) -> None:
    """Answer ``request`` with ``error`` if it can still be answered.

    After the response head went out, the response is broken off instead: the
    client must not mistake a broken stream for a complete one.
    """
    if getattr(request, "_disconnected", False) or request.finished:
        return
    if request.startedWriting:
        break_response(request)
        return
    request.write(render_status(request, error))
    request.finish()


def _reasons(failure: Failure) -> str:
    value: Any = failure.value
    if isinstance(value, ResponseFailed) and value.reasons:
        inner = [describe_failure(r.value) for r in value.reasons if not r.check(CancelledError)]
        return "; ".join(dict.fromkeys(inner)) or "the connection failed"
    return describe_failure(value)


def upstream_error(cluster: str, failure: Failure) -> StatusError:
    """The ``Status`` for a request to ``cluster`` that failed before its response head."""
    if isinstance(failure.value, DialTimeout):
        return GatewayTimeout(f"cluster {cluster}: {failure.value}", {"name": cluster})
    if isinstance(failure.value, DialError):
        return BadGateway(f"cluster {cluster}: {failure.value}", {"name": cluster})
    return BadGateway(
        f"cluster {cluster}: the request to the cluster failed: {_reasons(failure)}",
        {"name": cluster},
    )


class _BodyRelay(Protocol):
    """Receives the upstream body and writes it into the client's response."""

    def __init__(self, exchange: StreamingForward) -> None:
        self.exchange = exchange

    def connectionMade(self) -> None:  # noqa: N802
        self.exchange.body_started(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.exchange.request.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.exchange.body_ended(reason)


@attrs.define(slots=True, eq=False)
class StreamingForward:
    """One request in flight: the client's ``request`` and the upstream exchange.

    Build one per request and call :meth:`start`; it answers the request by
    itself from then on.
    """

    # Twisted's Request, reactor and DelayedCall are zope-interface/untyped
    # territory that mypy cannot check; they stay Any here.
    request: Any
    reactor: Any
    cluster: str
    _deferred: Deferred[Any] | None = None
    _body: _BodyRelay | None = None
    _timer: Any = None
    _timeout: float | None = None
    _gone: bool = False
    _timed_out: bool = False
    _producing: bool = False

    _log = Logger()

    def start(
        self,
        agent: Any,
        method: bytes,
        url: bytes,
        headers: Headers,
        body: Any,
        header_timeout: float | None,
    ) -> None:
        """Send the request; the response (or a Status) is written when it comes."""
        request = self.request
        request.defaultContentType = None
        request.notifyFinish().addErrback(self._client_gone)
        try:
            d = agent.request(method, url, headers, body)
        except Exception as e:  # a request Twisted refuses to send (should not happen)
            finish_with_status(request, BadGateway(f"cluster {self.cluster}: {e}"))
            return
        self._deferred = d
        d.addCallbacks(self._got_response, self._failed)
        # Still waiting (a fired Deferred may also be waiting on an inner one,
        # so look at our own bookkeeping, not ``d.called``)?
        if header_timeout is not None and self._deferred is not None:
            self._timeout = header_timeout
            self._timer = self.reactor.callLater(header_timeout, self._time_out)

    def _time_out(self) -> None:
        self._timer = None
        self._timed_out = True
        if self._deferred is not None:
            self._deferred.cancel()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _client_gone(self, reason: Failure) -> None:
        self._gone = True
        self._stop_timer()
        if self._body is not None:
            transport = self._body.transport
            if transport is not None:
                transport.stopProducing()
        elif self._deferred is not None:
            self._deferred.cancel()

    def _failed(self, failure: Failure) -> None:
        self._stop_timer()
        self._deferred = None
        if self._gone:
            return
        if self._timed_out:
            error: StatusError = GatewayTimeout(
                f"cluster {self.cluster}: no response from the cluster within {self._timeout:g}s",
                {"name": self.cluster},
            )
        else:
            error = upstream_error(self.cluster, failure)
        self._log.debug(
            "Proxy request to cluster {cluster} failed: {error}",
            cluster=self.cluster,
            error=error.message,
        )
        finish_with_status(self.request, error)

    def _got_response(self, response: Any) -> None:
        self._stop_timer()
        self._deferred = None
        if self._gone:
            response.deliverBody(_BodyRelay(self))  # connects, then stops at once
            return
        request = self.request
        code = response.code
        request.setResponseCode(code, response.phrase)
        out = request.responseHeaders
        # Twisted stamps its own Server and Date; the cluster's (if any) are used.
        out.removeHeader(b"server")
        out.removeHeader(b"date")
        for name, values in response_headers(response.headers.getAllRawHeaders()):
            out.setRawHeaders(name, values)
        length = response.length
        if (
            length is not UNKNOWN_LENGTH
            and code not in _NO_BODY_CODES
            and request.method != b"HEAD"
        ):
            out.setRawHeaders(b"content-length", [b"%d" % length])
        response.deliverBody(_BodyRelay(self))

    def body_started(self, relay: _BodyRelay) -> None:
        self._body = relay
        transport: Any = relay.transport
        if self._gone:
            transport.stopProducing()
            return
        self.request.registerProducer(transport, True)
        self._producing = True

    def body_ended(self, reason: Failure) -> None:
        self._body = None
        if self._gone:
            return
        request = self.request
        if self._producing:
            self._producing = False
            request.unregisterProducer()
        if isinstance(reason.value, ResponseDone | PotentialDataLoss):
            request.finish()
            return
        # Truncated by the cluster (or the network): never a clean end.
        self._log.debug(
            "Response body from cluster {cluster} cut short: {reason}",
            cluster=self.cluster,
            reason=_reasons(reason),
        )
        if not request.startedWriting:
            request.write(b"")
        break_response(request)
