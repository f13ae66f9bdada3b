"""The gateway's HTTP/1.1 server channel: request heads parsed by llhttp, not line by line.

``twisted.web.http.HTTPChannel`` reads a request head one line at a time in
pure Python (``LineReceiver.dataReceived`` → ``lineReceived`` →
``headerReceived``); with small proxied GETs that is about a seventh of the
gateway's CPU.  :class:`H1Channel` replaces only that reading.  It finds the
end of a head (the first ``\\r\\n\\r\\n``, exactly where Twisted's line framing
ends it), lets ``httptools`` (llhttp, in C) split and check the request line
and headers, and then drives the very state Twisted's own code works with
afterwards:

* the request: ``requestFactory``, ``requests``, ``_command``/``_path``/
  ``_version``, ``requestHeaders``, then Twisted's ``allHeadersReceived``
  (cookies, persistence, ``gotLength`` → ``site.getContentFile``,
  ``100 Continue``) and ``allContentReceived`` (idle timer off,
  ``_handlingRequest``, ``requestReceived``);
* the body: Twisted's ``_maybeChooseTransferDecoder`` and its decoders, fed
  through Twisted's ``rawDataReceived``, which also parks bytes in
  ``_dataBuffer`` while a request is handled (pausing the transport beyond
  16 KiB);
* pipelining: ``requestDone`` → ``setLineMode(parked bytes)`` resumes parsing.

Where llhttp accepts a head that Twisted reads differently (measured byte by
byte, ``tests/unit/server/test_h1channel.py``), we follow Twisted: llhttp also
takes ``HTTP/0.9``, ``HTTP/2.0`` and ``RTSP/1.0`` request lines, runs of
spaces and leading blank lines, so the request line must equal its canonical
``METHOD SP target SP HTTP/1.x CRLF`` form; and llhttp keeps trailing blanks
in header values, which Twisted strips, so we strip them.

Every head llhttp refuses or that fails those checks — an unknown or
lower-case method, bytes llhttp does not allow in the target or a header
value (Twisted does), folded headers, bare LFs, a head larger than the
line/head limits, more than ``maxHeaders`` headers — is handed, with all its
bytes, to ``HTTPChannel``'s own line parser for the rest of the connection, so
its verdict (a request, a 400, a silent close for an over-long line) is
Twisted's own.  Nothing of a request exists before its head is complete,
which keeps that switch clean.

Upgrades (``takeover.take_over`` inside ``render``) see what they saw with
Twisted: the bytes after the head (and after any body) arrive through
``rawDataReceived``, which ``take_over`` points at the new protocol, or wait
in ``_dataBuffer``, which it drains.  As heads are framed here, llhttp's
``HttpParserUpgrade`` always points at the end of the bytes it was given.
"""

from __future__ import annotations

from typing import Any

import httptools
from twisted.protocols.basic import LineReceiver
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers, InvalidHeaderName, _nameEncoder
from twisted.web.iweb import INonQueuedRequestFactory

__all__ = ["H1Channel"]

_HEAD_END = b"\r\n\r\n"
#: The versions Twisted accepts (it answers 400 to every other).
_VERSIONS = frozenset({b"HTTP/1.1", b"HTTP/1.0"})
#: Header names (canonical, as Twisted checks them) that decide the body's framing.
_FRAMING = frozenset({b"Content-Length", b"Transfer-Encoding"})


class _Refused(Exception):
    """Raised from an llhttp callback: this head is for Twisted's parser to judge."""


class _Head:
    """What llhttp reports about the request head being received, and its bytes so far."""

    __slots__ = ("complete", "ended", "headers", "max_headers", "parts", "size", "url")

    def __init__(self, max_headers: int) -> None:
        self.max_headers = max_headers
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        #: llhttp saw the end of the headers.
        self.complete = False
        #: llhttp saw the end of the message (no body, or an upgrade): it is ready
        #: for the next head.
        self.ended = False
        #: Bytes of this head from earlier packets (to find its end, and for Twisted).
        self.parts: list[bytes] = []
        self.size = 0

    # httptools callbacks

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        headers.append((name, value))
        if len(headers) > self.max_headers:
            raise _Refused()

    def on_headers_complete(self) -> None:
        self.complete = True

    def on_message_complete(self) -> None:
        self.ended = True


class H1Channel(HTTPChannel):
    """An ``HTTPChannel`` whose request heads are parsed by llhttp (see the module doc)."""

    #: llhttp and what it reports; kept from one head to the next unless a body
    #: follows (Twisted's decoders read it, so llhttp would not be between messages).
    _parser: Any = None
    _head: _Head | None = None
    #: Twisted's line parser took over (a head llhttp refused or would misread).
    _line_parsing = False
    #: Inside :meth:`_parse`; bytes handed in meanwhile wait in ``_more``.
    _busy = False
    _more = b""
    #: ``requestFactory`` and whether it provides ``INonQueuedRequestFactory``
    #: (Twisted asks zope for every request; the answer changes with the factory).
    _factory: Any = None
    _unqueued = False
    #: Answers proxied requests without twisted.web's ``Request`` when it takes them
    #: (``server.callers.ProxyEntry``, set by the site); None: all go to twisted.web.
    proxy_entry: Any = None

    # -- what Twisted calls ----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        """``HTTPChannel.dataReceived``, with our parser in place of ``LineReceiver``'s.

        Bytes restart the idle timer except while a request head is coming in:
        a head must be complete within the idle timeout of its first packet,
        so a client that dribbles one (slowloris) is closed at that timeout
        rather than never.  Under Twisted's line parser, where a head
        stands is Twisted's private state, only body bytes restart it (the
        end of each request does, as always).
        """
        if self._line_parsing:
            if self._transferDecoder is not None:
                self.resetTimeout()  # type: ignore[no-untyped-call]
            LineReceiver.dataReceived(self, data)
            return
        head = self._head
        if head is None or not head.parts:
            self.resetTimeout()  # type: ignore[no-untyped-call]
        self._parse(data)

    def setLineMode(self, extra: bytes = b"") -> None:  # noqa: N802 - Twisted's name
        """``requestDone`` resumes parsing here, with the bytes parked meanwhile."""
        if self._line_parsing:
            super().setLineMode(extra)  # type: ignore[no-untyped-call]
        elif extra:
            self._parse(extra)

    def timeoutConnection(self) -> None:  # noqa: N802 - Twisted's name
        """The idle timer fired: close, unless a request is being handled.

        twisted.web stops the timer while it handles a request; a request the
        channel answers itself (``server.callers``) leaves it running, so it
        is re-armed here instead.
        """
        if self._handlingRequest:
            self.setTimeout(self.timeOut)  # type: ignore[no-untyped-call]
            return
        super().timeoutConnection()  # type: ignore[no-untyped-call]

    def setRawMode(self) -> None:  # noqa: N802 - Twisted's name
        """``allContentReceived`` calls this; our mode follows ``_handlingRequest``/the decoder."""
        if self._line_parsing:
            super().setRawMode()  # type: ignore[no-untyped-call]

    # -- parsing ---------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        """Give ``data`` to the head parser, the body decoder or ``_dataBuffer``, in turn.

        A request finished inside this loop (``requestDone``) hands its parked
        bytes back through :meth:`setLineMode`; as in ``LineReceiver``, they
        queue behind what the loop still holds instead of being parsed re-entrantly.
        Parsing stops when the transport is closing (after a 400, or the answer
        to a request that ends the connection).
        """
        if self._busy:
            self._more += data
            return
        self._busy = True
        try:
            while data:
                if self._handlingRequest or self._transferDecoder is not None:
                    # Twisted's: the body to its decoder, or bytes parked while a
                    # request is handled; ``take_over`` points it at the new protocol.
                    self.rawDataReceived(data)
                    data = b""
                else:
                    data = self._head_received(data)
                if self._more:
                    data, self._more = data + self._more, b""
                if self._line_parsing:
                    if data:
                        LineReceiver.dataReceived(self, data)
                    return
                transport: Any = self.transport
                if transport is None or transport.disconnecting:
                    return
        finally:
            self._busy = False

    def _head_received(self, data: bytes) -> bytes:
        """Read head bytes from ``data``; returns what follows a completed head."""
        parser = self._parser
        head = self._head
        if parser is None or head is None:
            head = self._head = _Head(self.maxHeaders)
            parser = self._parser = httptools.HttpRequestParser(head)
        stop = _head_end(head.parts, data)
        size = head.size + (len(data) if stop < 0 else stop)
        if size > self.MAX_LENGTH or size > self.totalHeadersSize:
            return self._refuse(data)
        if stop < 0:
            if not self._feed(data):
                return self._refuse(data)
            head.parts.append(data)
            head.size = size
            return b""
        piece = data if stop == len(data) else data[:stop]
        if not self._feed(piece) or not head.complete:
            return self._refuse(data)
        method = parser.get_method()
        url = head.url
        version = _version(b"".join(head.parts) + piece if head.parts else piece, method, url)
        if version is None:
            return self._refuse(data)
        headers = head.headers
        if head.ended:
            head.reset()
        else:
            # A body follows, which Twisted's decoders read: llhttp is left behind.
            self._parser = self._head = None
        self._head_complete(method, url, version, headers)
        return data[stop:]

    def _feed(self, piece: bytes) -> bool:
        """Give head bytes to llhttp; False when it refuses them."""
        try:
            self._parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            # ``Connection: upgrade`` or ``CONNECT``: llhttp stops at the end of the
            # head, the end of ``piece``, and is ready for another message (httptools
            # resumes it).  Twisted reads any body and hands what follows to ``take_over``.
            pass
        except httptools.HttpParserError:
            return False
        return True

    def _refuse(self, data: bytes) -> bytes:
        """Hand this head (``data`` from the current packet on) to Twisted's line parser."""
        head = self._head
        if head is not None and head.parts:
            data = b"".join(head.parts) + data
        self._parser = self._head = None
        self._line_parsing = True
        return data

    def _head_complete(
        self, method: bytes, url: bytes, version: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """What ``lineReceived``/``headerReceived`` do with a head, then the body or the request."""
        # Twisted's Headers store (canonical name → values): addRawHeader would
        # canonicalise each name a second time and look for the CR/LF llhttp refused.
        received = Headers()
        raw = received._rawHeaders
        encode = _nameEncoder.encode
        framing: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            try:
                name = encode(name)
            except InvalidHeaderName:
                self._respondToBadRequestAndDisconnect()  # type: ignore[no-untyped-call]
                return
            value = value.rstrip(b" \t")
            if name in _FRAMING:
                framing.append((name, value))
            values = raw.get(name)
            if values is None:
                raw[name] = [value]
            else:
                values.append(value)
        entry = self.proxy_entry
        if (
            entry is not None
            and not framing
            and not self.requests
            and version == b"HTTP/1.1"
            and entry.take(self, method, url, received)
        ):
            return
        factory = self.requestFactory
        if factory is not self._factory:
            self._factory = factory
            self._unqueued = INonQueuedRequestFactory.providedBy(factory)
        request = factory(self) if self._unqueued else factory(self, len(self.requests))
        self.requests.append(request)
        self._command = method
        self._path = url
        self._version = version
        request.requestHeaders = received
        for name, value in framing:
            if not self._maybeChooseTransferDecoder(name, value):  # type: ignore[no-untyped-call]
                return  # answered 400
        self.allHeadersReceived()  # type: ignore[no-untyped-call]
        if self.length == 0:
            self.allContentReceived()  # type: ignore[no-untyped-call]


def _version(head: bytes, method: bytes, url: bytes) -> bytes | None:
    """The version of ``head``'s request line if it is ``METHOD SP target SP HTTP/1.x CRLF``.

    That is the only form Twisted accepts; llhttp also takes runs of spaces,
    leading blank lines, ``HTTP/0.9`` (no version), ``HTTP/2.0`` and ``RTSP/1.0``.
    """
    end = len(method) + len(url) + 12
    version = head[end - 10 : end - 2]
    if version in _VERSIONS and head.startswith(b"%s %s %s\r\n" % (method, url, version)):
        return version
    return None


def _head_end(parts: list[bytes], data: bytes) -> int:
    """Where in ``data`` the head ends (past its ``CRLFCRLF``), or -1; ``parts`` came before."""
    if parts:
        # The CRLFCRLF may straddle earlier packets and this one.
        tail = b"".join(parts[-3:])[-3:]
        i = (tail + data[:3]).find(_HEAD_END)
        if i >= 0:
            return i + 4 - len(tail)
    i = data.find(_HEAD_END)
    return i + 4 if i >= 0 else -1
