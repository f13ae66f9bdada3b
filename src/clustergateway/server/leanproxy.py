"""Proxied requests without body, answered without twisted.web's ``Request``.

A small proxied GET through twisted.web costs a ``Request`` (headers objects,
cookie and query parsing, resource traversal, response ``Headers`` filled one
sanitised header at a time), two coroutines wrapped in ``Deferred`` s (the
gate, the proxy) and three ``notifyFinish`` ``Deferred`` s.  In memory that was
~75 µs of Python per request, more than TLS and the sockets cost together.

:class:`LeanProxy` takes such a request straight from
:class:`~clustergateway.server.h1channel.H1Channel` once its head is parsed,
and :class:`LeanRequest` answers it: the same authentication and
authorization (the guard's coroutines, run by :func:`~clustergateway.eager.run_eagerly`,
so nothing is wrapped when nothing waits), the same
:meth:`ClusterProxy.outbound <clustergateway.proxy.resource.ClusterProxy.outbound>`
(credential, identity, headers), the same pooled client, and the response
head written once, in the bytes Twisted would have written (canonical header
names, ``Transfer-Encoding: chunked`` when the cluster gave no length,
``Connection: close`` when the caller asked for it).

HTTP/2 streams (what kubectl and the kube-aggregator speak) take the same
path: :class:`~clustergateway.server.h2channel.GatewayH2Connection` gives a
stream whose request ended with its headers an :class:`H2Head`, which hands
it to :meth:`LeanProxy.take_h2`; :class:`LeanH2Request` writes the response
through Twisted's ``H2Stream``, which keeps HTTP/2 flow control and
backpressure.  A failure after the head resets the stream, as twisted.web does.

What stays with twisted.web, so it behaves exactly as before: requests with a
body or ``Expect``, upgrades, HTTP/1.0, anything that is not a
``clustergateways/{name}/proxy`` path, pipelined requests queued behind
another, and every request when the access log or the audit log is on (both
read twisted.web's ``Request``).  The channel's own bookkeeping is Twisted's: the request sits in
``channel.requests`` (so ``connectionLost`` reaches it), bytes that arrive
meanwhile are parked by ``rawDataReceived``, and ``requestDone`` restores the
idle timeout and resumes parsing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, parse_qs
from twisted.web.http_headers import Headers, _nameEncoder

from clustergateway import errors
from clustergateway.api.types import GroupVersion
from clustergateway.auth.guard import RequestAttributes, RequestGuard
from clustergateway.eager import Pending, run_eagerly
from clustergateway.proxy.forward import (
    SHUTTING_DOWN,
    head_timeout_cause,
    report_failure,
    tunnel_cut_is_clean,
    upstream_error,
)
from clustergateway.proxy.h1client import NO_BODY_CODES, ResponseHead
from clustergateway.proxy.headers import response_header_pairs
from clustergateway.proxy.resource import ClusterProxy
from clustergateway.server.routes import ResourcePath, parse_apis_path, request_attributes

__all__ = ["H2Head", "HeadDeadlines", "LeanH2Request", "LeanProxy", "LeanRequest"]

#: Request headers after which twisted.web serves the request (canonical names).
_NOT_LEAN = (b"Content-Length", b"Transfer-Encoding", b"Expect", b"Upgrade")
_CLOSE = b"Connection: close\r\n"
#: Distinct ``(method, path)`` routes remembered.
_ROUTE_CACHE_SIZE = 4096


@attrs.define(eq=False)
class LeanProxy:
    """Decides which HTTP/1.1 requests are proxied lean, and serves them."""

    gv: GroupVersion
    guard: RequestGuard
    proxy: ClusterProxy
    reactor: Any
    #: ``/apis/<group>/<version>/clustergateways/``: every lean request starts so.
    prefix: bytes = attrs.field(init=False)
    #: Requests taken so far (tests and benchmarks check which path served them).
    served: int = attrs.field(default=0, init=False)
    #: Of those, the HTTP/2 streams.
    served_h2: int = attrs.field(default=0, init=False)
    #: ``(method, path)`` → ``(route, attributes)`` of proxy requests, or None for
    #: other paths; the same few targets repeat (bounded, cleared when full).
    _routes: dict[tuple[bytes, bytes], tuple[ResourcePath, RequestAttributes] | None] = attrs.field(
        factory=dict, init=False
    )
    deadlines: HeadDeadlines = attrs.field(init=False)

    _log = Logger()

    def __attrs_post_init__(self) -> None:
        self.prefix = f"/apis/{self.gv.group}/{self.gv.version}/clustergateways/".encode()
        self.deadlines = HeadDeadlines(self.reactor)

    def _route(self, method: bytes, path: bytes) -> tuple[ResourcePath, RequestAttributes] | None:
        """The proxy route of ``path`` and its authorization attributes, memoised.

        For the ``proxy`` subresource the attributes depend on the method and
        the path alone (``routes.request_attributes`` reads no query argument
        for it), so they can be kept with the route.
        """
        key = (method, path)
        try:
            return self._routes[key]
        except KeyError:
            pass
        route = parse_apis_path(path, self.gv)
        known = None
        if isinstance(route, ResourcePath) and route.subresource == "proxy":
            known = (route, request_attributes(method, path, route, {}, self.gv))
        if len(self._routes) >= _ROUTE_CACHE_SIZE:
            self._routes.clear()
        self._routes[key] = known
        return known

    def _lean_route(
        self, method: bytes, url: bytes, headers: Headers
    ) -> tuple[bytes, bytes, tuple[ResourcePath, RequestAttributes]] | None:
        """Path, query and known route of a request the lean path can take, else None."""
        if not url.startswith(self.prefix):
            return None
        raw = headers._rawHeaders
        for name in _NOT_LEAN:
            if name in raw:
                return None
        path, _, query = url.partition(b"?")
        known = self._route(method, path)
        if known is None:
            return None
        return path, query, known

    def take(self, channel: Any, method: bytes, url: bytes, headers: Headers) -> bool:
        """Serve this request (True), or leave it to twisted.web (False).

        Called by the channel for an HTTP/1.1 head with nothing queued before
        it; ``headers`` hold canonical names.
        """
        route = self._lean_route(method, url, headers)
        if route is None:
            return False
        path, query, known = route
        connection = headers._rawHeaders.get(b"Connection")
        persistent = not (connection and b"close" in [t.lower() for t in connection[0].split(b" ")])
        self.served += 1
        request = LeanRequest(self, channel, method, url, path, query, headers, persistent)
        # What HTTPChannel.allContentReceived does before handing a request over.
        channel.requests.append(request)
        channel.persistent = persistent
        channel.length = 0
        # Twisted stops the idle timer here and starts a new one at requestDone;
        # the lean path leaves it running (H1Channel re-arms it if it fires while
        # a request is handled) and pushes it back when the response is done.
        channel._savedTimeOut = None
        channel._handlingRequest = True
        request.start(*known)
        return True

    def take_h2(self, stream: Any, method: bytes, url: bytes, headers: Headers) -> bool:
        """Serve this HTTP/2 stream's request (True), or leave it to twisted.web (False).

        Called (by :class:`H2Head`) for a stream whose request ended with its
        headers, so it has no body; ``headers`` hold canonical names.
        """
        route = self._lean_route(method, url, headers)
        if route is None:
            return False
        path, query, known = route
        self.served += 1
        self.served_h2 += 1
        request = LeanH2Request(self, stream, method, url, path, query, headers, True)
        stream._request = request  # the stream tells it of resets and lost connections
        request.start(*known)
        return True


class H2Head:
    """The first request object of an HTTP/2 stream that may be proxied lean.

    Twisted's ``H2Stream`` builds its request before it has seen the headers
    and then feeds them in; this one only collects them.  When the stream's
    request is complete it asks :meth:`LeanProxy.take_h2`, and otherwise
    builds the site's twisted.web request and replays the head into it, so
    that request sees exactly what it would have seen from the start.
    """

    __slots__ = ("_length", "lean", "requestHeaders", "stream")

    def __init__(self, lean: LeanProxy, stream: Any) -> None:
        self.lean = lean
        self.stream = stream
        self.requestHeaders = Headers()  # noqa: N815 - twisted.web's name
        self._length: int | None = None

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - twisted.web's name
        self._length = length

    def parseCookies(self) -> None:  # noqa: N802 - twisted.web's name
        """Cookies are read by twisted.web's request, if it gets this one."""

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        if self.lean.take_h2(self.stream, command, path, self.requestHeaders):
            return
        stream = self.stream
        request = stream.site.requestFactory(stream, queued=False)
        request.requestHeaders = self.requestHeaders
        request.gotLength(self._length)
        request.parseCookies()
        stream._request = request
        request.requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - twisted.web's name
        """Reset before its request was complete: nothing was started."""


@attrs.define(eq=False)
class HeadDeadlines:
    """Response-head deadlines of lean requests: one timer for all, checked each second.

    A ``callLater`` and its ``cancel`` per request were a visible cost; the
    deadline only bounds a wait of minutes (75 s by default), so it fires
    between one and two seconds late at most, never early.
    """

    reactor: Any
    _buckets: dict[int, set[LeanRequest]] = attrs.field(factory=dict)
    _timer: Any = None

    def add(self, request: LeanRequest, timeout: float) -> int:
        """Time ``request`` out after ``timeout`` s; returns its bucket, for :meth:`remove`."""
        second = int(self.reactor.seconds() + timeout) + 1
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = set()
        bucket.add(request)
        if self._timer is None:
            self._timer = self.reactor.callLater(1.0, self._expire)
        return second

    def remove(self, request: LeanRequest, second: int) -> None:
        bucket = self._buckets.get(second)
        if bucket is not None:
            bucket.discard(request)

    def _expire(self) -> None:
        self._timer = None
        now = self.reactor.seconds()
        for second in sorted(s for s in self._buckets if s <= now):
            for request in self._buckets.pop(second):
                request._time_out()
        if self._buckets:
            self._timer = self.reactor.callLater(1.0, self._expire)

    def stop(self) -> None:
        """Cancel the timer (shutdown); pending requests are not timed out."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class LeanRequest:
    """One proxied request and its response, written straight to the channel.

    It offers the attributes of twisted.web's ``Request`` that the guard, the
    identity resolver and :meth:`ClusterProxy.outbound` read (``method``,
    ``uri``, ``path``, ``args``, ``requestHeaders``, ``channel``,
    ``getClientAddress``...), and is the pooled client's ``ResponseSink``.
    """

    __slots__ = (
        "_args",
        "_chunked",
        "_line_end",
        "_open_ended",
        "_tunnelled",
        "_disconnected",
        "_ended",
        "_exchange",
        "_lean",
        "_length_known",
        "_no_body",
        "_pending",
        "_producing",
        "_query",
        "_release",
        "_ticket",
        "_timeout",
        "_timer",
        "cg_caller",
        "cg_identity",
        "channel",
        "cluster",
        "code",
        "finished",
        "gateway_user",
        "method",
        "path",
        "persistent",
        "requestHeaders",
        "sentLength",
        "startedWriting",
        "uri",
    )

    clientproto = b"HTTP/1.1"
    content = None

    def __init__(
        self,
        lean: LeanProxy,
        channel: Any,
        method: bytes,
        uri: bytes,
        path: bytes,
        query: bytes,
        headers: Headers,
        persistent: bool,
    ) -> None:
        self._lean = lean
        self.channel = channel
        self.method = method
        self.uri = uri
        self.path = path
        self._query = query
        self.requestHeaders = headers  # noqa: N815 - twisted.web's name
        self.persistent = persistent
        self._args: dict[bytes, list[bytes]] | None = None
        self.code = 200
        self.sentLength = 0  # noqa: N815 - twisted.web's name
        self.startedWriting = False  # noqa: N815 - twisted.web's name
        self.finished = False
        self._disconnected = False
        self._exchange: Any = None
        #: The response-head deadline's bucket (``HeadDeadlines``), None when none runs.
        self._timer: int | None = None
        self._timeout: float | None = None
        self._pending: Any = None
        self._producing = False
        self._chunked = False
        self._length_known = False
        #: No Content-Length (a stream), and whether its last byte relayed ended a line.
        self._open_ended = False
        self._line_end = True
        self._tunnelled = False
        self._no_body = method == b"HEAD"
        self._ended: Callable[[int, int], None] | None = None
        self._release: Callable[[], None] | None = None
        self._ticket: Any = None
        self.cluster = ""

    # -- the parts of twisted.web's Request that others read ---------------------------

    @property
    def args(self) -> dict[bytes, list[bytes]]:
        """The query's arguments, parsed on first use (as twisted.web does, blanks kept)."""
        args = self._args
        if args is None:
            args = self._args = parse_qs(self._query, True) if self._query else {}
        return args

    def getHeader(self, name: bytes) -> bytes | None:  # noqa: N802 - twisted.web's name
        values = self.requestHeaders.getRawHeaders(name)
        return None if values is None else values[-1]

    def getClientAddress(self) -> Any:  # noqa: N802 - twisted.web's name
        return self.channel.transport.getPeer()

    def release_at_end(self, release: Callable[[], None]) -> None:
        """Call ``release`` once when this request ends (``ClusterProxy.outbound``)."""
        self._release = release

    # -- serving ----------------------------------------------------------------------

    def start(self, route: ResourcePath, attributes: RequestAttributes) -> None:
        """Authenticate, authorize and send the request upstream (the Gate's steps)."""
        try:
            outcome = run_eagerly(self._serve(route, attributes))
        except BaseException:  # _serve answers every error itself; this is a bug
            self._crashed(Failure())
            return
        if isinstance(outcome, Pending):
            self._pending = outcome.deferred
            outcome.deferred.addErrback(self._crashed)

    async def _serve(self, route: ResourcePath, attributes: RequestAttributes) -> None:
        lean = self._lean
        proxy = lean.proxy
        try:
            # The guards read only the attributes of IRequest this class offers.
            user = await lean.guard.authenticate(self)  # type: ignore[arg-type]
            self.gateway_user = user
            await lean.guard.authorize(user, attributes)
            metrics = proxy.metrics
            if metrics is not None:
                self._ended = proxy.record_start(
                    metrics, route.name, self.method, route.subpath, self.uri, 0
                )
            cluster = proxy.registry.get(route.name)
            self.cluster = cluster.name
            out = await proxy.outbound(self, cluster, route.subpath, user)
        except CancelledError:
            return
        except errors.StatusError as e:
            self._respond_status(e)
            return
        if out is None or self._disconnected:
            return
        self._ticket = out.ticket
        self._timeout = timeout = out.timeout
        if timeout is not None:
            self._timer = lean.deadlines.add(self, timeout)
        else:
            proxy.open_streams.streams.add(self)
        self._tunnelled = out.upstream.tunnelled
        self._exchange = out.upstream.send(self, out)

    def _crashed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            return
        self._lean._log.failure(
            "Serving {method} {path} failed",
            failure,
            method=self.method.decode("ascii", "replace"),
            path=self.path.decode("utf-8", "replace"),
        )
        self._respond_status(errors.InternalError("Internal error occurred: see the gateway log"))

    def _time_out(self) -> None:
        if self._timer is None:  # answered meanwhile
            return
        self._timer = None
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()
        cause = head_timeout_cause(self._timeout)
        if self._ticket is not None:
            self._ticket.unreachable(cause)
        self._respond_status(
            errors.GatewayTimeout(f"cluster {self.cluster}: {cause}", {"name": self.cluster})
        )

    def _stop_timer(self) -> None:
        second = self._timer
        if second is not None:
            self._timer = None
            self._lean.deadlines.remove(self, second)

    # -- writing the response ---------------------------------------------------------

    def _respond_status(self, error: errors.StatusError) -> None:
        """Answer with a ``Status``; after the head went out, cut the response short."""
        if self.finished or self._disconnected:
            return
        if self.startedWriting:
            self._break()
            return
        body = errors.status_body(error)
        self.code = error.code
        self.sentLength = len(body)
        self._write_status(error.code, body, errors.retry_after(error))
        self._finish()

    def _write_status(self, code: int, body: bytes, retry_after: bytes | None) -> None:
        head = [b"HTTP/1.1 %d %s\r\n" % (code, RESPONSES.get(code, b"Unknown Status"))]
        if not self.persistent:
            head.append(_CLOSE)
        head.append(b"Date: %s\r\n" % self.channel.site.http_date())
        head.append(b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body))
        if retry_after is not None:  # in render_status's order
            head.append(b"Retry-After: %s\r\n" % retry_after)
        head.append(b"\r\n")
        self.startedWriting = True
        transport = self.channel.transport
        transport.write(b"".join(head))
        if not self._no_body:
            transport.write(body)

    def head_received(self, head: ResponseHead, producer: Any) -> None:
        self._stop_timer()
        if self._ticket is not None:
            self._ticket.answered()
        self.code = code = head.code
        lines = [
            b"HTTP/1.1 %d %s\r\n" % (code, head.phrase or RESPONSES.get(code, b"Unknown Status"))
        ]
        if not self.persistent:
            lines.append(_CLOSE)
        encode = _nameEncoder.encode
        for name, value in response_header_pairs(head.headers):
            lines += (encode(name), b": ", value, b"\r\n")
        length = head.length
        if code in NO_BODY_CODES:
            self._no_body = True
        elif length is not None:
            self._length_known = True
            lines.append(b"Content-Length: %d\r\n" % length)
        elif not self._no_body:
            self._chunked = self._open_ended = True
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines.append(b"\r\n")
        self.startedWriting = True
        self.channel.transport.write(b"".join(lines))
        self.channel.registerProducer(producer, True)
        self._producing = True

    def body_received(self, data: bytes) -> None:
        self.sentLength += len(data)
        if self._no_body or not data:
            return
        if self._chunked:
            self.channel.transport.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))
            self._line_end = data[-1:] == b"\n"
        else:
            self.channel.transport.write(data)

    def _exchange_over(self) -> None:
        """The cluster's side ended: its connection no longer feeds the caller's."""
        self._exchange = None
        if self._producing:
            self._producing = False
            self.channel.unregisterProducer()

    def body_done(self) -> None:
        self._exchange_over()
        if self._disconnected or self.finished:
            return
        if self._chunked:
            self.channel.transport.write(b"0\r\n\r\n")
        self._finish()

    def failed(self, reason: Failure, head_received: bool) -> None:
        self._stop_timer()
        self._exchange_over()
        if self._disconnected or self.finished:
            return
        if not head_received:
            report_failure(self._ticket, reason)
            self._respond_status(upstream_error(self.cluster, reason))
            return
        if self._tunnelled and tunnel_cut_is_clean(reason, self._open_ended, self._line_end):
            self.body_done()
            return
        self._break()

    def _break(self) -> None:
        """The response cannot be completed: close the connection (no clean end)."""
        self.channel.loseConnection()

    def end_cleanly(self) -> None:
        """Shutdown: end the response as if complete (terminating chunk, END_STREAM),
        or with a 503 ``Status`` if it had not begun; one of announced length is cut."""
        exchange, self._exchange = self._exchange, None
        self._exchange_over()
        try:
            self._end_now()
        finally:
            if exchange is not None:  # after the end: its failure must not cut the response
                exchange.cancel()

    def _end_now(self) -> None:
        if self.finished or self._disconnected:
            return
        if not self.startedWriting:
            self._respond_status(
                errors.ServiceUnavailable(f"cluster {self.cluster}: {SHUTTING_DOWN}")
            )
        elif self._length_known and not self._no_body:
            self._break()
        else:
            if self._chunked:
                self.channel.transport.write(b"0\r\n\r\n")
            self._finish()

    def _finish(self) -> None:
        self.finished = True
        self._lean.proxy.open_streams.streams.discard(self)
        self._stop_timer()
        ended, self._ended = self._ended, None
        if ended is not None:
            ended(self.code, self.sentLength)
        release, self._release = self._release, None
        if release is not None:
            release()
        self._done()

    def _done(self) -> None:
        """Hand the connection back to the channel."""
        channel = self.channel
        channel.resetTimeout()  # the idle time starts now
        channel.requestDone(self)

    # -- the caller leaving -----------------------------------------------------------

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - twisted.web's name
        """The channel lost its connection (HTTPChannel tells every request it holds)."""
        self._disconnected = True
        self._lean.proxy.open_streams.streams.discard(self)
        self._stop_timer()
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        ended, self._ended = self._ended, None
        if ended is not None:
            ended(self.code, self.sentLength)
        release, self._release = self._release, None
        if release is not None:
            release()


class LeanH2Request(LeanRequest):
    """A lean request on an HTTP/2 stream: the same serving, the response
    written through the stream (Twisted's ``H2Stream``, its ``channel``), which
    keeps HTTP/2's flow control and backpressure."""

    __slots__ = ()

    clientproto = b"HTTP/2"

    def getClientAddress(self) -> Any:  # noqa: N802 - twisted.web's name
        return self.channel.getPeer()

    def _write_head(self, code: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.startedWriting = True
        stream = self.channel
        stream._conn.writeHeaders(b"HTTP/2", b"%d" % code, b"", headers, stream.streamID)

    def _write_status(self, code: int, body: bytes, retry_after: bytes | None) -> None:
        headers = [
            (b"date", self.channel.site.http_date()),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ]
        if retry_after is not None:
            headers.append((b"retry-after", retry_after))
        self._write_head(code, headers)
        if not self._no_body:
            self.channel.write(body)

    def head_received(self, head: ResponseHead, producer: Any) -> None:
        self._stop_timer()
        if self._ticket is not None:
            self._ticket.answered()
        self.code = code = head.code
        headers = response_header_pairs(head.headers)
        length = head.length
        if code in NO_BODY_CODES:
            self._no_body = True
        elif length is not None:
            self._length_known = True
            headers.append((b"content-length", b"%d" % length))
        else:
            self._open_ended = True
        self._write_head(code, headers)
        self.channel.registerProducer(producer, True)
        self._producing = True

    def body_received(self, data: bytes) -> None:
        self.sentLength += len(data)
        if self._no_body or not data:
            return
        self.channel.write(data)
        self._line_end = data[-1:] == b"\n"

    def body_done(self) -> None:
        self._exchange_over()
        if not self._disconnected and not self.finished:
            self._finish()

    def _break(self) -> None:
        """Reset the stream: the caller sees it cut short, the connection lives on."""
        self.channel.abortConnection()

    def _done(self) -> None:
        self.channel.requestDone(self)  # the stream ends (END_STREAM)
