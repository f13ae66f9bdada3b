"""GatewaySite / GatewayRequest: Status errors, header limits, capped bodies, timeouts."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource

from clustergateway.server.site import CappedBody, GatewaySite
from tests.unit.server.conftest import BASE, Served, token_secret
from tests.unit.server.memhttp import connect, parse, raw_request, request


class Exploding(Resource):
    isLeaf = True

    def render(self, request: object) -> bytes:
        raise RuntimeError("secret detail that must not leak")


def test_unhandled_error_is_a_status_without_details() -> None:
    """An exception in a resource becomes a 500 Status; no traceback, no HTML."""
    site = GatewaySite(Exploding(), reactor=MemoryReactorClock())
    response = request(site, "GET", "/x")
    assert response.code == 500
    assert response.header("content-type") == "application/json"
    status = response.json()
    assert status["reason"] == "InternalError"
    assert b"secret detail" not in response.body
    assert b"<html" not in response.body


def test_no_server_header(served: Served) -> None:
    """Responses carry no Server: header."""
    assert served.get("/livez").header("server") is None
    assert served.get("/nope").header("server") is None


def test_long_label_selector_is_served(served: Served) -> None:
    """A request line far above Twisted's 16 KiB default (Go allows 1 MiB) is answered."""
    served.registry.replace_all([token_secret("a")])
    selector = ",".join(f"k{i}!=v" for i in range(3000))
    response = served.get(f"{BASE}/clustergateways?labelSelector={selector}")
    assert len(selector) > 20_000
    assert response.code == 200
    assert response.json()["items"][0]["metadata"]["name"] == "a"


def test_many_big_headers_are_accepted(served: Served) -> None:
    """Three 6 KiB headers (Twisted answers 400 by default) are fine."""
    headers = {f"X-Big-{i}": "v" * 6000 for i in range(3)}
    assert served.call("GET", "/livez", headers).code == 200


def test_body_over_the_cap_is_413(make_served) -> None:
    """A body above the cap is discarded as it arrives and answered 413, chunked or not."""
    served = make_served()
    served.site.max_request_body = 100
    fixed = served.call("PUT", f"{BASE}/clustergateways/a/health", body=b"x" * 101)
    assert fixed.code == 413
    assert fixed.json()["reason"] == "RequestEntityTooLarge"
    protocol, transport = connect(served.site)
    chunked = raw_request(
        "PUT", f"{BASE}/clustergateways/a/health", {"Transfer-Encoding": "chunked"}
    )
    body = b"".join(b"%x\r\n%s\r\n" % (60, b"y" * 60) for _ in range(3)) + b"0\r\n\r\n"
    protocol.dataReceived(chunked + body)
    assert parse(transport.value()).code == 413


def test_capped_body() -> None:
    """The in-memory body keeps data up to the limit and then stops storing it."""
    body = CappedBody(5)
    body.write(b"abc")
    assert not body.overflowed
    body.write(b"def")
    assert body.overflowed
    assert body.getvalue() == b""
    body.write(b"more")
    assert body.received == 10


def test_h2_and_http11_get_the_idle_timeout() -> None:
    """Both channels get the site's idle timeout: HTTP/1.1 between requests, HTTP/2 only
    while no stream is open (a quiet watch keeps its connection: test_h2guard)."""
    site = GatewaySite(Resource(), reactor=MemoryReactorClock(), idle_timeout=60)
    protocol, _ = connect(site)
    assert protocol._timeOut == 60
    assert protocol._channel.timeOut == 60


class TCPTransport(StringTransport):
    """A transport that records the TCP options set on it."""

    def __init__(self) -> None:
        super().__init__()
        self.options: dict[str, bool] = {}

    def setTcpKeepAlive(self, enabled: bool) -> None:  # noqa: N802 - Twisted's name
        self.options["keepalive"] = enabled

    def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802 - Twisted's name
        self.options["nodelay"] = enabled


def test_connections_get_keepalive_and_nodelay() -> None:
    """Every accepted connection gets TCP keepalive (dead peers are found) and
    ``TCP_NODELAY`` (no write waits for the client's delayed ACK), as Go's server sets
    them; a spliced exec stream waited 40 ms in a third of the rounds without it."""
    site = GatewaySite(Resource(), reactor=MemoryReactorClock())
    transport = TCPTransport()
    site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000)).makeConnection(transport)
    assert transport.options == {"keepalive": True, "nodelay": True}


def test_request_log_hook(make_served) -> None:
    """The access-log hook sees every finished request; without one nothing is logged."""
    served = make_served()
    seen = []
    served.site.request_log = lambda r: seen.append((r.method, r.path, r.code))
    served.get("/livez")
    assert seen == [(b"GET", b"/livez", 200)]
