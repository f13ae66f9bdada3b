"""The simulated cluster's HTTP layer answers broken requests with a Status, in memory."""

from __future__ import annotations

import json

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource

from clustergateway.testing.faults import Faults
from clustergateway.testing.http import SimSite


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        return b'{"hello":"world","padding":"' + b"x" * 100 + b'"}'


class _Broken(Resource):
    isLeaf = True

    def render_GET(self, request):
        raise RuntimeError("boom")


def _exchange(resource, data: bytes, faults: Faults | None = None) -> bytes:
    site = SimSite(resource, faults or Faults(), MemoryReactorClock())
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(data)
    return transport.value()


def _status_of(response: bytes) -> dict:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower()
    return json.loads(body)


def test_malformed_request_line():
    """A request line that is not HTTP gets a 400 Status, not a bare 400."""
    response = _exchange(_Hello(), b"this is not http\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400")
    assert _status_of(response)["code"] == 400


def test_handler_exception_is_a_500_status():
    """An exception in a resource never leaks a traceback or HTML."""
    response = _exchange(_Broken(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 500")
    status = _status_of(response)
    assert status["reason"] == "InternalError"
    assert b"boom" not in response and b"<html" not in response


def test_long_headers_allowed():
    """Header lines beyond Twisted's 16 KiB default are accepted (Go allows 1 MiB)."""
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 100_000 + b"\r\n\r\n"
    assert _exchange(_Hello(), big).startswith(b"HTTP/1.1 200")


def test_drop_after_bytes():
    """drop_after_bytes cuts the body and closes the connection."""
    site = SimSite(_Hello(), Faults(drop_after_bytes=10), MemoryReactorClock())
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    body = transport.value().partition(b"\r\n\r\n")[2]
    assert body == b'{"hello":"'
    assert transport.disconnecting


def test_stall_pauses_and_resumes_connections():
    """A stall pauses every tracked transport; clearing it resumes them."""
    faults = Faults()
    site = SimSite(_Hello(), faults, MemoryReactorClock())
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert len(site.connections) == 1
    faults.stall = True
    assert transport.producerState == "paused"
    faults.stall = False
    assert transport.producerState == "producing"
    site.drop_connections()
    assert site.connections == set()
