"""Twisted-web internals, behind names of ours.

``twisted.web`` keeps several things the gateway needs private: the raw
header dict (the fast path reads it instead of copying through
``getAllRawHeaders``), the header-name encoder, the ALPN switch between
HTTP/1.1 and HTTP/2 and the channel it holds, an HTTP/2 stream's
connection, a request's "client went away" flag, the chunked-body decoder
and the HTTP/2 module itself.  Each is reached through this module only, so
a Twisted release that renames one breaks here (and in ``tests/unit/test_fence.py``)
rather than across the code base.  ``clustergateway.fence`` lists them all.
"""

from __future__ import annotations

from typing import Any

from twisted.web import _http2
from twisted.web.http import HTTPChannel, _ChunkedTransferDecoder, _GenericHTTPChannelProtocol
from twisted.web.http_headers import Headers, InvalidHeaderName, _nameEncoder

__all__ = [
    "END_STREAM",
    "HEADER_NAME_ENCODER",
    "BadRequestHookChannel",
    "ChunkedTransferDecoder",
    "GenericHTTPChannelProtocol",
    "H2Connection",
    "H2Stream",
    "channel_of",
    "header_names_valid",
    "encode_header_name",
    "handle_star",
    "hold_request",
    "raw_headers",
    "request_disconnected",
    "set_stream_request",
    "set_switch_timeout",
    "stream_connection",
    "switch_site",
]

#: The chunked transfer-coding decoder of ``twisted.web.http`` (the upgrade splice
#: frames a chunked 101 body with it); there is no public one.
ChunkedTransferDecoder = _ChunkedTransferDecoder

#: The protocol ``Site`` builds for each connection: it holds the HTTP/1.1 channel and
#: swaps in an HTTP/2 one when ALPN chose ``h2``.
GenericHTTPChannelProtocol = _GenericHTTPChannelProtocol

#: Twisted's HTTP/2 server connection and stream (``twisted.web._http2``).
H2Connection = _http2.H2Connection
H2Stream = _http2.H2Stream

#: What an ``H2Stream`` queues to say its response body has ended.
END_STREAM: object = _http2._END_STREAM_SENTINEL


class BadRequestHookChannel(HTTPChannel):
    """``HTTPChannel`` that answers a request it cannot parse with :meth:`answer_bad_request`.

    Twisted writes a bare ``400 Bad Request`` from a private method,
    ``_respondToBadRequestAndDisconnect``; a Kubernetes client expects a ``Status``.
    """

    def answer_bad_request(self) -> None:
        """Answer the malformed request and close the connection (Twisted's default)."""
        HTTPChannel._respondToBadRequestAndDisconnect(self)

    def _respondToBadRequestAndDisconnect(self) -> None:  # noqa: N802 - Twisted's name
        self.answer_bad_request()


#: ``Headers``' name encoder (``encode`` gives the canonical capitalisation): the
#: hot loops that write response heads bind its method once.
HEADER_NAME_ENCODER: Any = _nameEncoder


def hold_request(channel: Any, request: Any, persistent: bool) -> None:
    """Make ``request`` the HTTP/1.1 ``channel``'s request in hand, as
    ``HTTPChannel.allContentReceived`` does before handing one over.

    The channel then tells it of a lost connection, parks bytes that arrive
    meanwhile, and resumes parsing at ``requestDone``.  Twisted stops the idle
    timer here and starts a new one at ``requestDone``; the timer is left
    running instead (``fence.h1channel.H1Channel`` re-arms it if it fires while
    a request is handled), which saves a cancel and a new timer per request.
    """
    channel.requests.append(request)
    channel.persistent = persistent
    channel.length = 0
    channel._savedTimeOut = None
    channel._handlingRequest = True


def set_stream_request(stream: Any, request: Any) -> None:
    """Make ``request`` the one an HTTP/2 stream tells of resets and lost connections."""
    stream._request = request


def handle_star(request: Any) -> None:
    """Answer ``OPTIONS *`` (or refuse any other method on ``*``) as twisted.web does."""
    request._handleStar()


def encode_header_name(name: bytes | str) -> bytes:
    """A header name as ``Headers`` stores it (the canonical capitalisation, as bytes)."""
    encoded: bytes = _nameEncoder.encode(name)
    return encoded


def header_names_valid(headers: Any) -> bool:
    """Whether ``Headers`` accepts every (non-pseudo) name of an HTTP/2 header list.

    Twisted's ``H2Stream`` raises ``InvalidHeaderName`` while being built from a
    name the HTTP/2 libraries let through (``/``, ``#``): both listener engines
    check first and reset that stream (RFC 9113 §8.2.1, a malformed request).
    """
    try:
        for name, _ in headers:
            if name[:1] != b":":
                _nameEncoder.encode(name)
    except InvalidHeaderName:
        return False
    return True


def raw_headers(headers: Headers) -> dict[bytes, list[bytes]]:
    """The dict behind ``headers``, keyed by encoded name: read and written in place,
    which is what makes it worth using over ``getAllRawHeaders``."""
    raw: dict[bytes, list[bytes]] = headers._rawHeaders
    return raw


def channel_of(protocol: Any) -> Any:
    """The channel (HTTP/1.1 or HTTP/2) a ``GenericHTTPChannelProtocol`` currently
    serves its connection with, or None for anything else."""
    return getattr(protocol, "_channel", None)


def switch_site(protocol: Any) -> Any:
    """The ``Site`` a ``GenericHTTPChannelProtocol`` hands to the channels it builds."""
    return getattr(protocol, "_site", None)


def set_switch_timeout(protocol: Any, seconds: float | None) -> None:
    """The idle timeout the switch gives an HTTP/2 channel it swaps in (``None``: none)."""
    protocol._timeOut = seconds


def stream_connection(channel: Any) -> Any:
    """The ``H2Connection`` under an HTTP/2 stream (a request's ``channel``), or None
    for an HTTP/1.1 channel: the stream has no transport of its own."""
    return getattr(channel, "_conn", None)


def request_disconnected(request: Any) -> bool:
    """True once the client of ``request`` went away (its connection was lost)."""
    return bool(getattr(request, "_disconnected", False))
