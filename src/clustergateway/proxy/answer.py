"""How a caller's request is answered, whatever carried it: the one interface of the request path.

A request reaches the gateway in one of three forms: an HTTP/1.1 head read by
our channel (``server.callers.H1Answer``), an HTTP/2 stream
(``server.callers.H2Answer``), or twisted.web's ``Request`` for whatever
needs it — bodies, upgrades, HTTP/1.0, the access and audit logs
(:class:`WebAnswer`).  Each is adapted to :class:`Answer`, so what is done
with a request (authentication, authorization, admission, the relay of the
cluster's response, every ``Status``) is written once, against this
interface, the way mitmproxy turns HTTP/1 and HTTP/2 into the same events.

:func:`write_status` is the one writer of error answers: a ``Status`` when
nothing was sent yet, otherwise the response is cut so the caller cannot
mistake it for a complete one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.web.http import datetimeToString

from clustergateway.errors import StatusError, retry_after, status_body
from clustergateway.fence.twisted_web import request_disconnected
from clustergateway.proxy.h1client import NO_BODY_CODES

__all__ = ["Answer", "OverHook", "WebAnswer", "write_status"]

#: Called once when a request is over: ``gone`` is True when the caller left
#: (or the response was cut) before it finished.
OverHook = Callable[[bool], None]


class Answer(Protocol):
    """What the request path needs from a caller's request, and how it answers.

    ``request`` is what the guards, the identity resolver and the outbound
    request read (``method``, ``uri``, ``path``, ``args``, ``requestHeaders``,
    ``getHeader``, ``getClientAddress``, ``channel``): twisted.web's
    ``Request``, or the answer itself where it offers those.
    """

    @property
    def request(self) -> Any: ...

    @property
    def code(self) -> int:
        """The status code answered so far (200 before the head)."""

    @property
    def sent(self) -> int:
        """Body bytes written to the caller."""

    @property
    def started(self) -> bool:
        """The response head went out: too late for a ``Status``."""

    @property
    def done(self) -> bool:
        """Finished, cut, or the caller left: nothing more can be written."""

    def body(self) -> bytes | None:
        """The request body, or None when the request had none."""

    def body_length(self) -> int:
        """The request body's length (for the metrics), without reading it."""

    def http_date(self) -> bytes:
        """``Date`` now, as the site formats it."""

    def head(
        self,
        code: int,
        phrase: bytes | None,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
    ) -> None:
        """Write the response head; ``length`` None means an open-ended body."""

    def write(self, data: bytes) -> None: ...

    def finish(self) -> None:
        """The response is complete."""

    def cut(self) -> None:
        """The response cannot be completed: the caller must see it cut short
        (HTTP/1.1: the connection closes; HTTP/2: the stream is reset)."""

    def produce(self, producer: Any) -> None:
        """Pause ``producer`` while the caller does not read (backpressure)."""

    def unproduce(self) -> None: ...

    def when_over(self, hook: OverHook) -> None:
        """Call ``hook`` once, when the request is over (see :data:`OverHook`)."""


def write_status(answer: Answer, error: StatusError) -> None:
    """Answer with ``error`` as a ``Status`` if the caller can still be answered.

    After the head went out the response is cut instead: a broken stream must
    not look complete.  The headers are in the order every path writes them.
    """
    if answer.done:
        return
    if answer.started:
        answer.cut()
        return
    body = status_body(error)
    headers = [(b"Date", answer.http_date()), (b"Content-Type", b"application/json")]
    retry = retry_after(error)
    if retry is not None:
        headers.append((b"Retry-After", retry))
    answer.head(error.code, None, headers, len(body))
    answer.write(body)
    answer.finish()


class WebAnswer:
    """twisted.web's ``Request`` as an :class:`Answer`.

    It serves what the channels do not take: requests with a body, upgrades
    (the splice takes the channel over), HTTP/1.0, and everything when the
    access or audit log is on (both read this ``Request``).
    """

    __slots__ = ("_hooks", "request")

    def __init__(self, request: Any) -> None:
        self.request = request
        self._hooks: list[OverHook] | None = None
        # Twisted would invent ``Content-Type: text/html`` for a body we relay.
        request.defaultContentType = None

    @property
    def code(self) -> int:
        return int(self.request.code)

    @property
    def sent(self) -> int:
        return int(self.request.sentLength)

    @property
    def started(self) -> bool:
        return bool(self.request.startedWriting)

    @property
    def done(self) -> bool:
        request = self.request
        return bool(request.finished or request_disconnected(request))

    def body(self) -> bytes | None:
        """The buffered body; None when the request had none, so no length is invented."""
        request = self.request
        content = request.content
        if content is None:
            return None
        content.seek(0)
        data: bytes = content.read()
        if data:
            return data
        headers = request.requestHeaders
        if headers.hasHeader(b"content-length") or headers.hasHeader(b"transfer-encoding"):
            return b""
        return None

    def body_length(self) -> int:
        """The body's length without reading it (it is all in by now)."""
        content = self.request.content
        if content is None:
            return 0
        position = content.tell()
        length: int = content.seek(0, 2)
        content.seek(position)
        return length

    def http_date(self) -> bytes:
        """The gateway site's cached ``Date``; Twisted's formatting on a plain ``Site``."""
        http_date = getattr(self.request.channel.site, "http_date", None)
        return datetimeToString() if http_date is None else bytes(http_date())

    def head(
        self,
        code: int,
        phrase: bytes | None,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
    ) -> None:
        request = self.request
        request.setResponseCode(code, phrase or None)
        out = request.responseHeaders
        # A plain Site stamps its own Server and dates the request when it
        # arrives; the cluster's (or the Status's) are used.
        out.removeHeader(b"server")
        out.removeHeader(b"date")
        add = out.addRawHeader
        for name, value in headers:
            add(name, value)
        if length is not None and code not in NO_BODY_CODES:
            out.setRawHeaders(b"content-length", [b"%d" % length])
        # The head goes out now, as the cluster sent it, not with the first
        # event of a stream (client-go's Watch() returns once it has the head).
        request.write(b"")

    def write(self, data: bytes) -> None:
        self.request.write(data)

    def finish(self) -> None:
        self.request.finish()

    def cut(self) -> None:
        request = self.request
        if request.clientproto == b"HTTP/2":
            # loseConnection would send END_STREAM, a clean end: reset the stream.
            abort = getattr(request.channel, "abortConnection", None)
            if abort is not None:
                abort()
                return
        request.loseConnection()

    def produce(self, producer: Any) -> None:
        self.request.registerProducer(producer, True)

    def unproduce(self) -> None:
        self.request.unregisterProducer()

    def when_over(self, hook: OverHook) -> None:
        hooks = self._hooks
        if hooks is None:
            hooks = self._hooks = []
            self.request.notifyFinish().addCallbacks(
                self._over, self._over, (False,), None, (True,)
            )
        hooks.append(hook)

    def _over(self, _: object, gone: bool) -> None:
        hooks, self._hooks = self._hooks or [], []
        for hook in hooks:
            hook(gone)
