"""Streaming one ordinary (non-upgrade) request to a cluster and its response back.

:class:`Relay` is the one relay of every request path: it writes to an
:class:`~clustergateway.proxy.answer.Answer`, whichever protocol carried the
request.  The response is relayed as it arrives: status, headers and body verbatim
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

from clustergateway.errors import BadGateway, GatewayTimeout, ServiceUnavailable, StatusError
from clustergateway.proxy.answer import Answer, write_status
from clustergateway.proxy.dial import DialError, DialTimeout, describe_failure
from clustergateway.proxy.h1client import NO_BODY_CODES, ResponseHead
from clustergateway.proxy.headers import response_header_pairs

__all__ = [
    "SHUTTING_DOWN",
    "HeadDeadlines",
    "Relay",
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


@attrs.define(eq=False)
class HeadDeadlines:
    """Response-head deadlines: one timer for every request, checked each second.

    A ``callLater`` and its ``cancel`` per request were a visible cost; the
    deadline only bounds a wait of minutes (75 s by default), so it fires
    between one and two seconds late at most, never early.
    """

    reactor: Any
    _buckets: dict[int, set[Relay]] = attrs.field(factory=dict)
    _timer: Any = None

    def add(self, relay: Relay, timeout: float) -> int:
        """Time ``relay`` out after ``timeout`` s; returns its bucket, for :meth:`remove`."""
        second = int(self.reactor.seconds() + timeout) + 1
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = set()
        bucket.add(relay)
        if self._timer is None:
            self._timer = self.reactor.callLater(1.0, self._expire)
        return second

    def remove(self, relay: Relay, second: int) -> None:
        bucket = self._buckets.get(second)
        if bucket is not None:
            bucket.discard(relay)

    def _expire(self) -> None:
        self._timer = None
        now = self.reactor.seconds()
        for second in sorted(s for s in self._buckets if s <= now):
            for relay in self._buckets.pop(second):
                relay.time_out()
        if self._buckets:
            self._timer = self.reactor.callLater(1.0, self._expire)

    def stop(self) -> None:
        """Cancel the timer (shutdown); pending requests are not timed out."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class Relay:
    """One request sent to a cluster, and its response relayed to the caller's :class:`Answer`.

    The one relay of every request path.  It is the
    :class:`~clustergateway.proxy.h1client.ResponseSink` of the exchange: the
    head becomes the caller's head, each body piece one write, the upstream
    connection the response's producer.  It bounds the wait for the head
    (``HeadDeadlines``), tells the request's admission ticket how the cluster
    answered, and registers long-running responses (``OpenStreams``) so a
    shutdown can end them cleanly.
    """

    __slots__ = (
        "_deadline",
        "_exchange",
        "_length_known",
        "_line_end",
        "_open_ended",
        "_producing",
        "_ticket",
        "_timeout",
        "_tunnelled",
        "answer",
        "cluster",
        "deadlines",
        "streams",
    )

    _log = Logger()

    def __init__(
        self, answer: Answer, cluster: str, deadlines: HeadDeadlines, streams: Any
    ) -> None:
        self.answer = answer
        self.cluster = cluster
        self.deadlines = deadlines
        #: ``drain.OpenStreams`` (long-running responses open now).
        self.streams = streams
        self._exchange: Any = None  # an h1client.Exchange or h2client.H2Exchange
        #: The response-head deadline's bucket (``HeadDeadlines``), None when none runs.
        self._deadline: int | None = None
        self._timeout: float | None = None
        self._ticket: Any = None  # the request's admission.Ticket
        self._producing = False
        self._length_known = False
        #: No Content-Length (a stream), and whether its last byte relayed ended a line.
        self._open_ended = False
        self._line_end = True
        #: The cluster is reached through a konnectivity tunnel (``ClusterProxy``).
        self._tunnelled = False

    def start(self, out: Any) -> None:
        """Send ``out`` (a ``resource.Outbound``); the response (or a Status) follows."""
        self._ticket = out.ticket
        timeout = self._timeout = out.timeout
        if timeout is not None:
            self._deadline = self.deadlines.add(self, timeout)
        else:
            self.streams.streams.add(self)
        self.answer.when_over(self._over)
        self._tunnelled = out.upstream.tunnelled
        self._exchange = out.upstream.send(self, out)

    def _over(self, gone: bool) -> None:
        """The request is over: stop the clock, forget it; a caller who left cancels."""
        self._stop_timer()
        self.streams.streams.discard(self)
        exchange, self._exchange = self._exchange, None
        if gone and exchange is not None:
            exchange.cancel()

    def time_out(self) -> None:
        """No response head within the timeout (``HeadDeadlines``): 504."""
        if self._deadline is None:  # answered meanwhile
            return
        self._deadline = None
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()
        cause = head_timeout_cause(self._timeout)
        if self._ticket is not None:
            self._ticket.unreachable(cause)
        write_status(
            self.answer, GatewayTimeout(f"cluster {self.cluster}: {cause}", {"name": self.cluster})
        )

    def _stop_timer(self) -> None:
        second = self._deadline
        if second is not None:
            self._deadline = None
            self.deadlines.remove(self, second)

    def end_cleanly(self) -> None:
        """Shutdown: end the response as if complete (a terminating chunk on HTTP/1.1,
        END_STREAM on HTTP/2), or with a 503 ``Status`` if it had not begun.

        A response of announced length cannot look complete: it is cut instead.
        """
        exchange, self._exchange = self._exchange, None
        self._exchange_over()
        try:
            answer = self.answer
            if answer.done:
                return
            if not answer.started:
                write_status(answer, ServiceUnavailable(f"cluster {self.cluster}: {SHUTTING_DOWN}"))
            elif self._length_known:
                answer.cut()
            else:
                answer.finish()
        finally:
            if exchange is not None:  # after the end: its failure must not cut the response
                exchange.cancel()

    def _exchange_over(self) -> None:
        """The cluster's side ended: its connection no longer feeds the caller's."""
        self._exchange = None
        if self._producing:
            self._producing = False
            self.answer.unproduce()

    # -- ResponseSink ------------------------------------------------------------------

    def head_received(self, head: ResponseHead, producer: Any) -> None:
        self._stop_timer()
        if self._ticket is not None:
            self._ticket.answered()
        answer = self.answer
        if answer.done:
            return
        code = head.code
        length = head.length
        self._open_ended = length is None
        self._length_known = (
            length is not None and code not in NO_BODY_CODES and answer.request.method != b"HEAD"
        )
        answer.head(code, head.phrase, response_header_pairs(head.headers), length)
        answer.produce(producer)
        self._producing = True

    def body_received(self, data: bytes) -> None:
        self.answer.write(data)
        self._line_end = data[-1:] == b"\n"

    def body_done(self) -> None:
        self._exchange_over()
        answer = self.answer
        if not answer.done:
            answer.finish()

    def failed(self, reason: Failure, head_received: bool) -> None:
        self._stop_timer()
        self._exchange_over()
        answer = self.answer
        if answer.done:
            return
        if not head_received:
            report_failure(self._ticket, reason)
            error = upstream_error(self.cluster, reason)
            self._log.debug(
                "Proxy request to cluster {cluster} failed: {error}",
                cluster=self.cluster,
                error=error.message,
            )
            write_status(answer, error)
            return
        if self._tunnelled and tunnel_cut_is_clean(reason, self._open_ended, self._line_end):
            answer.finish()
            return
        # Truncated by the cluster (or the network): never a clean end.
        self._log.debug(
            "Response body from cluster {cluster} cut short: {reason}",
            cluster=self.cluster,
            reason=_reasons(reason),
        )
        answer.cut()
