"""``fence.twisted_web``: the accessors reach what Twisted keeps private, on real objects."""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel, Request
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from clustergateway.fence.twisted_web import (
    BadRequestHookChannel,
    GenericHTTPChannelProtocol,
    channel_of,
    encode_header_name,
    raw_headers,
    request_disconnected,
    set_switch_timeout,
    stream_connection,
    switch_site,
)


def test_raw_headers_is_the_dict_headers_reads() -> None:
    """A value put in the raw dict under an encoded name is what ``getRawHeaders`` returns."""
    headers = Headers()
    raw_headers(headers)[encode_header_name(b"x-trace")] = [b"1"]
    assert headers.getRawHeaders(b"X-Trace") == [b"1"]
    assert encode_header_name("content-type") == b"Content-Type"


def test_the_switch_a_site_builds_is_reached() -> None:
    """``Site.buildProtocol`` gives the ALPN switch: its channel, site and timeout."""
    site = Site(Resource())
    protocol = site.buildProtocol(None)
    assert isinstance(protocol, GenericHTTPChannelProtocol)
    assert isinstance(channel_of(protocol), HTTPChannel)
    assert switch_site(protocol) is site
    set_switch_timeout(protocol, None)
    assert protocol._timeOut is None
    assert channel_of(object()) is None


def test_a_lost_client_is_seen_on_its_request() -> None:
    """``request_disconnected`` turns true when the connection under a request is lost."""
    channel = HTTPChannel()
    channel.makeConnection(StringTransport())
    request = Request(channel)
    assert not request_disconnected(request)
    request.connectionLost(Exception("gone"))
    assert request_disconnected(request)
    assert stream_connection(channel) is None  # HTTP/1.1: no stream connection


def test_a_malformed_request_is_answered_by_the_hook() -> None:
    """Twisted's bad-request path calls ``answer_bad_request`` instead of writing its 400."""

    class Answering(BadRequestHookChannel):
        def answer_bad_request(self) -> None:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nx-ours: 1\r\n\r\n")
            self.transport.loseConnection()

    channel = Answering()
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\nx-ours: 1")
    assert transport.disconnecting
