"""Streaming one ordinary (non-upgrade) request to a cluster and its response back.

The response is relayed as it arrives: status, headers and body verbatim
(hop-by-hop headers aside), each chunk written the moment it is read so watch
events are never delayed, with backpressure (the upstream connection is
registered as the response's producer, so a stalled client stops reads from
the cluster and memory stays flat), and with the exact length the cluster
sent (``Content-Length`` passed through, otherwise chunked).  A client that
leaves cancels the upstream request or closes its connection at once.  A body
the cluster cut short is not turned into a clean end: the client connection is
dropped so the client sees the truncation — except (:func:`tunnel_cut_is_clean`)
an open-ended stream (a watch) of a ``ClusterProxy`` cluster whose connection
was lost right after a complete line (a JSON watch event): a lost konnectivity
channel ends it cleanly, as the apiserver ends a watch, so clients re-watch
instead of reporting a broken response.  Twisted's
own additions (a ``Server`` header, an invented ``Content-Type``) are suppressed.

Failures before the response head become a ``Status``: 502 when the cluster
cannot be reached or breaks the connection, 504 when connecting, the TLS
handshake or the response head takes too long (no head timeout for
long-running requests such as watches).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed

from clustergateway.errors import (
    BadGateway,
    GatewayTimeout,
    ServiceUnavailable,
    StatusError,
    render_status,
)
from clustergateway.proxy.dial import DialError, DialTimeout, describe_failure
from clustergateway.proxy.h1client import NO_BODY_CODES, ResponseHead
from clustergateway.proxy.headers import response_header_pairs

__all__ = [
    "SHUTTING_DOWN",
    "StreamingForward",
    "break_response",
    "finish_with_status",
    "head_timeout_cause",
    "report_failure",
    "upstream_cause",
    "tunnel_cut_is_clean",
    "upstream_error",
]


def tunnel_cut_is_clean(reason: Failure, open_ended: bool, line_end: bool) -> bool:
    """May the response of a tunnelled (``ClusterProxy``) cluster whose upstream
    connection was lost after the head end cleanly?

    Only an open-ended body (no ``Content-Length``: a watch, ``logs -f``) whose last
    relayed byte ended a line (a JSON watch event, a log line; nothing relayed yet
    counts), and only for a lost connection (not a protocol error) — then the client
    has every complete event and re-watches, as after the apiserver's own end of a
    watch.  A lost konnectivity channel shows here as a lost connection: the TLS
    layer above the tunnel reports any end without ``close_notify`` as
    ``ConnectionLost``, whatever the tunnel said (``TunnelLost``).
    """
    return open_ended and line_end and reason.check(ConnectionLost, ConnectionDone) is not None


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


#: What a long-running request whose answer had not begun gets at shutdown.
SHUTTING_DOWN = "the gateway is shutting down; please retry"


def _reasons(failure: Failure) -> str:
    value: Any = failure.value
    if isinstance(value, ResponseFailed) and value.reasons:
        inner = [describe_failure(r.value) for r in value.reasons if not r.check(CancelledError)]
        return "; ".join(dict.fromkeys(inner)) or "the connection failed"
    return describe_failure(value)


def upstream_cause(failure: Failure) -> str:
    """Why a request failed before its response head (no cluster name, no credential)."""
    if isinstance(failure.value, DialError):
        return str(failure.value)
    return f"the request to the cluster failed: {_reasons(failure)}"


def upstream_error(cluster: str, failure: Failure) -> StatusError:
    """The ``Status`` for a request to ``cluster`` that failed before its response head."""
    message = f"cluster {cluster}: {upstream_cause(failure)}"
    if isinstance(failure.value, DialTimeout):
        return GatewayTimeout(message, {"name": cluster})
    return BadGateway(message, {"name": cluster})


def head_timeout_cause(timeout: float | None) -> str:
    """The cause of a response head that did not come in time."""
    return f"no response from the cluster within {timeout:g}s"


def report_failure(ticket: Any, failure: Failure) -> None:
    """Tell ``ticket`` (an ``admission.Ticket`` or None) how the cluster failed.

    A request cancelled because its caller left says nothing about the cluster.
    """
    if ticket is None:
        return
    value = failure.value
    if isinstance(value, CancelledError) or (
        isinstance(value, ResponseFailed)
        and value.reasons
        and all(r.check(CancelledError) for r in value.reasons)
    ):
        return
    ticket.unreachable(upstream_cause(failure))


@attrs.define(slots=True, eq=False)
class StreamingForward:
    """One request in flight: the client's ``request`` and the upstream exchange.

    Build one per request and call :meth:`start`; it answers the request by
    itself from then on.  It is the :class:`~clustergateway.proxy.h1client.ResponseSink`
    of the exchange: the head becomes the client's status and headers, each
    body piece one ``request.write``, the upstream connection the response's
    producer.
    """

    # Twisted's Request, reactor and DelayedCall are zope-interface/untyped
    # territory that mypy cannot check; they stay Any here.
    request: Any
    reactor: Any
    cluster: str
    _exchange: Any = None  # an h1client.Exchange or h2client.H2Exchange
    _timer: Any = None
    _timeout: float | None = None
    _gone: bool = False
    _head: bool = False
    _producing: bool = False
    _ticket: Any = None  # the request's admission.Ticket, told how the cluster answered
    #: No Content-Length (a stream), and whether its last byte relayed ended a line.
    _open_ended: bool = False
    _line_end: bool = True
    #: The cluster is reached through a konnectivity tunnel (``ClusterProxy``).
    _tunnelled: bool = False

    _log = Logger()

    def start(self, out: Any) -> None:
        """Send ``out`` (a ``resource.Outbound``); the response (or a Status) follows."""
        header_timeout = out.timeout
        request = self.request
        request.defaultContentType = None
        request.notifyFinish().addErrback(self._client_gone)
        self._ticket = out.ticket
        if header_timeout is not None:
            self._timeout = header_timeout
            self._timer = self.reactor.callLater(header_timeout, self._time_out)
        self._tunnelled = out.upstream.tunnelled
        self._exchange = out.upstream.send(self, out)

    def _time_out(self) -> None:
        self._timer = None
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()
        cause = head_timeout_cause(self._timeout)
        if self._ticket is not None:
            self._ticket.unreachable(cause)
        error = GatewayTimeout(f"cluster {self.cluster}: {cause}", {"name": self.cluster})
        finish_with_status(self.request, error)

    def end_cleanly(self) -> None:
        """Shutdown: end the response as if complete (a terminating chunk on HTTP/1.1,
        END_STREAM on HTTP/2), or with a 503 ``Status`` if it had not begun.

        A response of announced length cannot look complete: it is cut instead.
        """
        self._stop_timer()
        exchange, self._exchange = self._exchange, None
        self._gone = True  # the exchange's own end, if it comes, is ignored
        if exchange is not None:
            exchange.cancel()
        request = self.request
        if self._producing:
            self._producing = False
            request.unregisterProducer()
        if getattr(request, "_disconnected", False) or request.finished:
            return
        if not self._head:
            finish_with_status(
                request, ServiceUnavailable(f"cluster {self.cluster}: {SHUTTING_DOWN}")
            )
        elif request.responseHeaders.hasHeader(b"content-length"):
            break_response(request)
        else:
            request.finish()

    def _stop_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            if timer.active():
                timer.cancel()

    def _client_gone(self, reason: Failure) -> None:
        self._gone = True
        self._stop_timer()
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()

    # -- ResponseSink ------------------------------------------------------------------

    def head_received(self, head: ResponseHead, producer: Any) -> None:
        self._stop_timer()
        self._head = True
        if self._ticket is not None:
            self._ticket.answered()
        request = self.request
        code = head.code
        request.setResponseCode(code, head.phrase or None)
        out = request.responseHeaders
        # Twisted stamps its own Server and Date; the cluster's (if any) are used.
        out.removeHeader(b"server")
        out.removeHeader(b"date")
        add = out.addRawHeader
        for name, value in response_header_pairs(head.headers):
            add(name, value)
        length = head.length
        if length is not None and code not in NO_BODY_CODES:
            out.setRawHeaders(b"content-length", [b"%d" % length])
        request.registerProducer(producer, True)
        self._producing = True
        self._open_ended = length is None
        if length is None:
            # A stream (a watch, chunked or close-delimited): the head goes out now,
            # as the cluster sent it, not with the first event (client-go's Watch()
            # returns only once it has the head).
            request.write(b"")

    def body_received(self, data: bytes) -> None:
        self.request.write(data)
        self._line_end = data[-1:] == b"\n"

    def body_done(self) -> None:
        self._exchange = None
        request = self.request
        if self._producing:
            self._producing = False
            request.unregisterProducer()
        if self._gone:
            return
        request.finish()

    def failed(self, reason: Failure, head_received: bool) -> None:
        self._stop_timer()
        self._exchange = None
        request = self.request
        if self._producing:
            self._producing = False
            request.unregisterProducer()
        if self._gone:
            return
        if not head_received:
            report_failure(self._ticket, reason)
            error = upstream_error(self.cluster, reason)
            self._log.debug(
                "Proxy request to cluster {cluster} failed: {error}",
                cluster=self.cluster,
                error=error.message,
            )
            finish_with_status(request, error)
            return
        if self._tunnelled and tunnel_cut_is_clean(reason, self._open_ended, self._line_end):
            self.body_done()
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
