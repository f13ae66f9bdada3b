"""Proxied requests taken straight from the channels: HTTP/1.1 heads and HTTP/2 streams.

A small proxied GET through twisted.web costs a ``Request`` (headers objects,
cookie and query parsing, resource traversal, response ``Headers`` filled one
sanitised header at a time) and three ``notifyFinish`` ``Deferred`` s; in
memory that was ~75 µs of Python per request, more than TLS and the sockets
cost together.  So the channels hand such requests to :class:`ProxyEntry`
once their head is complete, and the answer is written straight to the
connection: :class:`H1Answer` for an HTTP/1.1 head
(:class:`~clustergateway.fence.h1channel.H1Channel`), :class:`H2Answer` for
an HTTP/2 stream whose request ended with its headers (:class:`H2Head`, from
:class:`~clustergateway.fence.h2channel.GatewayH2Connection`).

Both are :class:`~clustergateway.proxy.answer.Answer` s, like twisted.web's
``Request`` (``WebAnswer``): what is done with the request — the ``Gate``
(authentication, authorization), :meth:`ClusterProxy.serve
<clustergateway.proxy.resource.ClusterProxy.serve>` (cluster, admission,
credential, identity), the :class:`~clustergateway.proxy.forward.Relay` and
every ``Status`` — is the same code on every path.  What differs is only how
bytes reach the caller: the response head written once, in the bytes Twisted
would have written (canonical header names, ``Transfer-Encoding: chunked``
when the cluster gave no length, ``Connection: close`` when the caller asked
for it); on HTTP/2 through Twisted's ``H2Stream``, which keeps flow control
and backpressure, a cut response resetting the stream.

What stays with twisted.web: requests with a body or ``Expect``, upgrades,
HTTP/1.0, anything that is not a ``clustergateways/{name}/proxy`` path,
pipelined requests queued behind another, and every request when the access
log or the audit log is on (both read twisted.web's ``Request``).  The
HTTP/1.1 channel's own bookkeeping is Twisted's: the request sits in
``channel.requests`` (so ``connectionLost`` reaches it), bytes that arrive
meanwhile are parked by ``rawDataReceived``, and ``requestDone`` restores the
idle timeout and resumes parsing.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, parse_qs
from twisted.web.http_headers import Headers

from clustergateway.api.types import GroupVersion
from clustergateway.auth.guard import RequestAttributes
from clustergateway.auth.user import UserInfo
from clustergateway.fence.twisted_web import (
    HEADER_NAME_ENCODER,
    hold_request,
    raw_headers,
    set_stream_request,
    stream_connection,
)
from clustergateway.proxy.answer import OverHook
from clustergateway.proxy.h1client import NO_BODY_CODES
from clustergateway.proxy.resource import ClusterProxy
from clustergateway.server.routes import ResourcePath, parse_apis_path, request_attributes
from clustergateway.server.tree import Gate

__all__ = ["H1Answer", "H2Answer", "H2Head", "ProxyEntry"]

#: Request headers after which twisted.web serves the request (canonical names).
_NOT_TAKEN = (b"Content-Length", b"Transfer-Encoding", b"Expect", b"Upgrade")
_CLOSE = b"Connection: close\r\n"
#: Distinct ``(method, path)`` routes remembered.
_ROUTE_CACHE_SIZE = 4096


@attrs.define(eq=False)
class ProxyEntry:
    """Decides which requests the channels answer themselves, and starts them on the path."""

    gate: Gate
    proxy: ClusterProxy
    #: ``/apis/<group>/<version>/clustergateways/``: every request taken starts so.
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

    def __attrs_post_init__(self) -> None:
        gv: GroupVersion = self.gate.gv
        self.prefix = f"/apis/{gv.group}/{gv.version}/clustergateways/".encode()

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
        gv = self.gate.gv
        route = parse_apis_path(path, gv)
        known = None
        if isinstance(route, ResourcePath) and route.subresource == "proxy":
            known = (route, request_attributes(method, path, route, {}, gv))
        if len(self._routes) >= _ROUTE_CACHE_SIZE:
            self._routes.clear()
        self._routes[key] = known
        return known

    def _taken_route(
        self, method: bytes, url: bytes, headers: Headers
    ) -> tuple[bytes, bytes, tuple[ResourcePath, RequestAttributes]] | None:
        """Path, query and known route of a request the channels answer, else None."""
        if not url.startswith(self.prefix):
            return None
        raw = raw_headers(headers)
        for name in _NOT_TAKEN:
            if name in raw:
                return None
        path, _, query = url.partition(b"?")
        known = self._route(method, path)
        if known is None:
            return None
        return path, query, known

    def take(self, channel: Any, method: bytes, url: bytes, headers: Headers) -> bool:
        """Serve this HTTP/1.1 request (True), or leave it to twisted.web (False).

        Called by the channel for a head with nothing queued before it;
        ``headers`` hold canonical names.
        """
        route = self._taken_route(method, url, headers)
        if route is None:
            return False
        path, query, known = route
        connection = raw_headers(headers).get(b"Connection")
        persistent = not (connection and b"close" in [t.lower() for t in connection[0].split(b" ")])
        self.served += 1
        answer = H1Answer(channel, method, url, path, query, headers, persistent)
        hold_request(channel, answer, persistent)
        self._start(answer, *known)
        return True

    def take_h2(self, stream: Any, method: bytes, url: bytes, headers: Headers) -> bool:
        """Serve this HTTP/2 stream's request (True), or leave it to twisted.web (False).

        Called (by :class:`H2Head`) for a stream whose request ended with its
        headers, so it has no body; ``headers`` hold canonical names.
        """
        route = self._taken_route(method, url, headers)
        if route is None:
            return False
        path, query, known = route
        self.served += 1
        self.served_h2 += 1
        answer = H2Answer(stream, method, url, path, query, headers, True)
        set_stream_request(stream, answer)
        self._start(answer, *known)
        return True

    def _start(self, answer: H1Answer, route: ResourcePath, attributes: RequestAttributes) -> None:
        proxy = self.proxy
        name, subpath = route.name, route.subpath

        def handler(user: UserInfo) -> Any:
            return proxy.serve(answer, name, subpath, user)

        self.gate.serve(answer, attributes, handler)


class H2Head:
    """The first request object of an HTTP/2 stream that the channel may answer itself.

    Twisted's ``H2Stream`` builds its request before it has seen the headers
    and then feeds them in; this one only collects them.  When the stream's
    request is complete it asks :meth:`ProxyEntry.take_h2`, and otherwise
    builds the site's twisted.web request and replays the head into it, so
    that request sees exactly what it would have seen from the start.
    """

    __slots__ = ("_length", "entry", "requestHeaders", "stream")

    def __init__(self, entry: ProxyEntry, stream: Any) -> None:
        self.entry = entry
        self.stream = stream
        self.requestHeaders = Headers()  # noqa: N815 - twisted.web's name
        self._length: int | None = None

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - twisted.web's name
        self._length = length

    def parseCookies(self) -> None:  # noqa: N802 - twisted.web's name
        """Cookies are read by twisted.web's request, if it gets this one."""

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        if self.entry.take_h2(self.stream, command, path, self.requestHeaders):
            return
        stream = self.stream
        request = stream.site.requestFactory(stream, queued=False)
        request.requestHeaders = self.requestHeaders
        request.gotLength(self._length)
        request.parseCookies()
        set_stream_request(stream, request)
        request.requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - twisted.web's name
        """Reset before its request was complete: nothing was started."""


class H1Answer:
    """An HTTP/1.1 request answered straight on its channel: an ``Answer``.

    It is its own ``request``: it offers the attributes of twisted.web's
    ``Request`` that the guards, the identity resolver and the outbound
    request read (``method``, ``uri``, ``path``, ``args``, ``requestHeaders``,
    ``channel``, ``getClientAddress``...), and ``connectionLost``, which the
    channel calls on every request it holds.
    """

    __slots__ = (
        "_args",
        "_chunked",
        "_hooks",
        "_no_body",
        "_query",
        "cg_caller",
        "cg_identity",
        "channel",
        "code",
        "done",
        "finished",
        "gateway_user",
        "method",
        "path",
        "persistent",
        "requestHeaders",
        "sent",
        "started",
        "uri",
    )

    clientproto = b"HTTP/1.1"
    content = None

    def __init__(
        self,
        channel: Any,
        method: bytes,
        uri: bytes,
        path: bytes,
        query: bytes,
        headers: Headers,
        persistent: bool,
    ) -> None:
        self.channel = channel
        self.method = method
        self.uri = uri
        self.path = path
        self._query = query
        self.requestHeaders = headers  # noqa: N815 - twisted.web's name
        self.persistent = persistent
        self._args: dict[bytes, list[bytes]] | None = None
        self.code = 200
        self.sent = 0
        self.started = False
        #: The response is complete (``finish``).
        self.finished = False
        #: Finished, or the caller left.
        self.done = False
        self._hooks: list[OverHook] = []
        self._chunked = False
        self._no_body = method == b"HEAD"

    # -- the parts of twisted.web's Request that others read ---------------------------

    @property
    def request(self) -> H1Answer:
        return self

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

    # -- Answer -----------------------------------------------------------------------

    def body(self) -> bytes | None:
        return None

    def body_length(self) -> int:
        return 0

    def http_date(self) -> bytes:
        return bytes(self.channel.site.http_date())

    def when_over(self, hook: OverHook) -> None:
        self._hooks.append(hook)

    def _over(self, gone: bool) -> None:
        self.done = True
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook(gone)

    def head(
        self,
        code: int,
        phrase: bytes | None,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
    ) -> None:
        self.code = code
        lines = [b"HTTP/1.1 %d %s\r\n" % (code, phrase or RESPONSES.get(code, b"Unknown Status"))]
        if not self.persistent:
            lines.append(_CLOSE)
        encode = HEADER_NAME_ENCODER.encode
        for name, value in headers:
            lines += (encode(name), b": ", value, b"\r\n")
        if code in NO_BODY_CODES:
            self._no_body = True
        elif length is not None:
            lines.append(b"Content-Length: %d\r\n" % length)
        elif not self._no_body:
            self._chunked = True
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines.append(b"\r\n")
        self.started = True
        self.channel.transport.write(b"".join(lines))

    def write(self, data: bytes) -> None:
        self.sent += len(data)
        if self._no_body or not data:
            return
        if self._chunked:
            self.channel.transport.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            self.channel.transport.write(data)

    def produce(self, producer: Any) -> None:
        self.channel.registerProducer(producer, True)

    def unproduce(self) -> None:
        self.channel.unregisterProducer()

    def finish(self) -> None:
        if self.done:
            return
        if self._chunked:
            self.channel.transport.write(b"0\r\n\r\n")
        self.finished = True
        self._over(False)
        channel = self.channel
        channel.resetTimeout()  # the idle time starts now
        channel.requestDone(self)

    def cut(self) -> None:
        """Close the connection: the caller sees no clean end (``connectionLost`` follows)."""
        self.channel.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - twisted.web's name
        """The channel lost its connection (HTTPChannel tells every request it holds)."""
        if not self.done:
            self._over(True)


class H2Answer(H1Answer):
    """A request on an HTTP/2 stream: answered through the stream (Twisted's
    ``H2Stream``, its ``channel``), which keeps HTTP/2's flow control and
    backpressure."""

    __slots__ = ()

    clientproto = b"HTTP/2"

    def getClientAddress(self) -> Any:  # noqa: N802 - twisted.web's name
        return self.channel.getPeer()

    def head(
        self,
        code: int,
        phrase: bytes | None,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
    ) -> None:
        self.code = code
        if code in NO_BODY_CODES:
            self._no_body = True
        elif length is not None:
            headers = [*headers, (b"content-length", b"%d" % length)]
        self.started = True
        stream = self.channel
        stream_connection(stream).writeHeaders(
            b"HTTP/2", b"%d" % code, b"", headers, stream.streamID
        )

    def write(self, data: bytes) -> None:
        self.sent += len(data)
        if self._no_body or not data:
            return
        self.channel.write(data)

    def finish(self) -> None:
        if self.done:
            return
        self.finished = True
        self._over(False)
        self.channel.requestDone(self)  # the stream ends (END_STREAM)

    def cut(self) -> None:
        """Reset the stream: the caller sees it cut short, the connection lives on."""
        self.channel.abortConnection()
