"""Egress proxies: proxy URLs, the environment's HTTPS_PROXY/NO_PROXY, the CONNECT and
SOCKS5 handshakes (sans-io, fed byte by byte), and the tunnel endpoint on fake transports."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from clustergateway.proxy.dial import DirectDialer, TunnelError
from clustergateway.proxy.egress import (
    EgressRouter,
    HTTPConnectHandshake,
    NoProxy,
    ProxyEnvironment,
    ProxyURL,
    ProxyURLError,
    Socks5Handshake,
    TunnelEndpoint,
    _ResolvingEndpoint,
    parse_proxy_url,
)
from clustergateway.proxy.paths import UpstreamTarget
from clustergateway.proxy.tls import InsecureClientTLS, proxy_tls_creator, verify_error_of
from clustergateway.registry.model import ClusterGateway, CredentialSpec, EndpointSpec
from tests.unit.proxy.conftest import FakeRegistry, start_harness, stop_harness


def target(address: str) -> UpstreamTarget:
    return UpstreamTarget.from_endpoint(EndpointSpec(address=address))


# -- proxy URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://p.example:3128", ("http", "p.example", 3128, None, None)),
        ("http://p.example", ("http", "p.example", 80, None, None)),
        ("https://p.example", ("https", "p.example", 443, None, None)),
        ("socks5://10.0.0.1", ("socks5", "10.0.0.1", 1080, None, None)),
        ("SOCKS5H://[::1]:9050", ("socks5h", "::1", 9050, None, None)),
        ("http://al%40ce:p%3Ass@p:1", ("http", "p", 1, "al@ce", "p:ss")),
        ("socks5://user@p:1", ("socks5", "p", 1, "user", None)),
    ],
)
def test_parse_proxy_url(url: str, expected: tuple[Any, ...]) -> None:
    """Scheme, host, port (Go's defaults when absent) and percent-decoded credentials."""
    proxy = parse_proxy_url(url)
    assert (proxy.scheme, proxy.host, proxy.port, proxy.username, proxy.password) == expected


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("", "empty"),
        ("ftp://u:hunter2@p:21", "scheme 'ftp'"),
        ("http://u:hunter2@:3128", "no host"),
        ("http://u:hunter2@p:99999", "not a valid URL"),
        ("p:3128", "scheme"),
        ("socks5://" + "u" * 300 + ":hunter2@p:1", "at most 255 bytes"),
    ],
)
def test_parse_proxy_url_errors(url: str, cause: str) -> None:
    """Bad proxy URLs are refused with the cause, never repeating the password."""
    with pytest.raises(ProxyURLError, match=cause) as info:
        parse_proxy_url(url)
    assert "hunter2" not in str(info.value)


def test_proxy_url_display_and_repr_hide_credentials() -> None:
    """``display`` (used in every message) and ``repr`` (logs) never show credentials."""
    proxy = parse_proxy_url("http://alice:hunter2@[2001:db8::1]:3128")
    assert proxy.display == "http://[2001:db8::1]:3128"
    assert "hunter2" not in repr(proxy) and "alice" not in repr(proxy)
    assert proxy.basic_authorization() == b"Basic " + base64.b64encode(b"alice:hunter2")
    assert parse_proxy_url("http://p:1").basic_authorization() is None


# -- the environment -------------------------------------------------------------


def test_environment_variables_and_precedence() -> None:
    """HTTPS_PROXY for https clusters, HTTP_PROXY for http ones; upper case wins; a bare
    host:port means http://; under CGI (REQUEST_METHOD) HTTP_PROXY is ignored (httpoxy)."""
    env = ProxyEnvironment.from_environ(
        {"HTTPS_PROXY": "sp:3128", "https_proxy": "http://lower:1", "http_proxy": "socks5://hp:1"}
    )
    assert env.proxy_for("https", "c.example", 443) == parse_proxy_url("http://sp:3128")
    assert env.proxy_for("http", "c.example", 80) == parse_proxy_url("socks5://hp:1")
    cgi = ProxyEnvironment.from_environ({"HTTP_PROXY": "http://hp:1", "REQUEST_METHOD": "GET"})
    assert cgi.proxy_for("http", "c.example", 80) is None
    assert ProxyEnvironment.from_environ({}).proxy_for("https", "c.example", 443) is None


def test_environment_error_names_variable_not_value() -> None:
    """An unusable proxy variable is reported by name; its value may hold a password."""
    with pytest.raises(ProxyURLError, match="HTTPS_PROXY") as info:
        ProxyEnvironment.from_environ({"HTTPS_PROXY": "ftp://u:hunter2@p"})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("", "c.example", 443, False),
        ("", "localhost", 443, True),  # Go never proxies loopback
        ("", "127.0.0.1", 443, True),
        ("", "::1", 443, True),
        ("*", "c.example", 443, True),
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "notexample.com", 443, False),
        (".example.com", "example.com", 443, False),
        (".example.com", "api.example.com", 443, True),
        ("*.example.com", "api.example.com", 443, True),
        ("*.example.com", "example.com", 443, False),
        ("EXAMPLE.com:6443", "api.example.com", 6443, True),
        ("example.com:6443", "api.example.com", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("192.168.1.5", "192.168.1.5", 443, True),
        ("192.168.1.5:6443", "192.168.1.5", 443, False),
        ("[2001:db8::1]:443", "2001:db8::1", 443, True),
        ("2001:db8::/32", "2001:db8::7", 443, True),
        (" a.test , b.test ", "b.test", 443, True),
        ("bad/cidr, c.example", "c.example", 443, True),
    ],
)
def test_no_proxy(no_proxy: str, host: str, port: int, direct: bool) -> None:
    """NO_PROXY as Go's httpproxy reads it: *, domains (bare or with a leading dot or
    *.), IPs and CIDRs, each optionally with a port."""
    env = ProxyEnvironment.from_environ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": no_proxy})
    assert (env.proxy_for("https", host, port) is None) is direct


def test_no_proxy_lower_case_variable() -> None:
    """``no_proxy`` is read when ``NO_PROXY`` is unset."""
    env = ProxyEnvironment.from_environ({"https_proxy": "p:1", "no_proxy": ".internal"})
    assert env.proxy_for("https", "c.internal", 443) is None
    assert NoProxy.parse("").excludes("c.internal", 443) is False


# -- HTTP CONNECT ------------------------------------------------------------------


def feed(handshake: Any, data: bytes) -> tuple[bytes, bool, bytes]:
    """Feed ``data`` one byte at a time; what was sent, whether done, the rest."""
    sent = b""
    for i in range(len(data)):
        step = handshake.receive(data[i : i + 1])
        sent += step.send
        if step.done:
            return sent, True, step.rest + data[i + 1 :]
    return sent, False, b""


def test_connect_request_and_success() -> None:
    """CONNECT host:port with Host and (from the URL) Proxy-Authorization; a 2xx head in
    pieces opens the tunnel and bytes after it belong to the stream."""
    handshake = HTTPConnectHandshake(parse_proxy_url("http://u:pw@p:3128"), "10.0.0.1", 6443)
    assert handshake.start() == (
        b"CONNECT 10.0.0.1:6443 HTTP/1.1\r\nHost: 10.0.0.1:6443\r\n"
        b"Proxy-Authorization: Basic " + base64.b64encode(b"u:pw") + b"\r\n\r\n"
    )
    sent, done, rest = feed(
        handshake, b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n\x16\x03"
    )
    assert (sent, done, rest) == (b"", True, b"\x16\x03")
    v6 = HTTPConnectHandshake(parse_proxy_url("http://p:1"), "::1", 443)
    assert v6.start() == b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"


@pytest.mark.parametrize(
    ("url", "answer", "message"),
    [
        (
            "http://p:1",
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            "requires authentication and the proxy URL has none "
            "(407 Proxy Authentication Required)",
        ),
        (
            "http://u:hunter2@p:1",
            b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n",
            "rejected the credentials in the proxy URL (407 Proxy Authentication Required)",
        ),
        ("http://p:1", b"HTTP/1.0 403 Access violation\r\n\r\n", 'answered "403 Access violation"'),
        (
            "http://u:hunter2@p:1",
            b"HTTP/1.0 401 Unauthorized\r\n\r\n",
            "rejected the credentials in the proxy URL (401 Unauthorized)",
        ),
        ("http://p:1", b"SSH-2.0-OpenSSH\r\n\r\n", "not HTTP"),
        ("http://p:1", b"HTTP/1.1 502\r\n\r\n", 'answered "502" to CONNECT c:6443'),
    ],
)
def test_connect_refusals(url: str, answer: bytes, message: str) -> None:
    """A non-2xx answer is a TunnelError naming the proxy (without credentials) and its answer."""
    handshake = HTTPConnectHandshake(parse_proxy_url(url), "c", 6443)
    handshake.start()
    with pytest.raises(TunnelError) as info:
        feed(handshake, answer)
    assert message in str(info.value)
    assert str(info.value).startswith("via proxy http://p:1: the proxy ")
    assert "hunter2" not in str(info.value)


def test_connect_head_too_large() -> None:
    """A proxy that never ends its head is cut off."""
    handshake = HTTPConnectHandshake(parse_proxy_url("http://p:1"), "c", 1)
    with pytest.raises(TunnelError, match="larger than 16 KiB"):
        handshake.receive(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 4000)


# -- SOCKS5 ------------------------------------------------------------------------


def socks_reply(code: int = 0, bound: bytes = b"\x01\x7f\x00\x00\x01") -> bytes:
    return bytes([5, code, 0]) + bound + struct.pack("!H", 1080)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("10.0.0.1", b"\x01\x0a\x00\x00\x01"),
        ("::1", b"\x04" + b"\x00" * 15 + b"\x01"),
        ("api.example", b"\x03\x0bapi.example"),
    ],
)
def test_socks5_without_auth(host: str, address: bytes) -> None:
    """Greeting offers no-auth only; the CONNECT carries an IPv4, IPv6 or domain address."""
    handshake = Socks5Handshake(parse_proxy_url("socks5h://p:1080"), host, 6443)
    assert handshake.start() == b"\x05\x01\x00"
    sent, done, _ = feed(handshake, b"\x05\x00")
    assert sent == b"\x05\x01\x00" + address + b"\x19\x2b" and not done
    sent, done, rest = feed(handshake, socks_reply() + b"tls")
    assert (sent, done, rest) == (b"", True, b"tls")


def test_socks5_with_auth_and_domain_bound_address() -> None:
    """With user:pass the greeting offers both methods; RFC 1929 auth follows when chosen;
    a reply with a domain-name bound address is parsed to its end."""
    handshake = Socks5Handshake(parse_proxy_url("socks5://bob:s3cret@p:1"), "10.0.0.1", 443)
    assert handshake.start() == b"\x05\x02\x00\x02"
    sent, _, _ = feed(handshake, b"\x05\x02")
    assert sent == b"\x01\x03bob\x06s3cret"
    sent, _, _ = feed(handshake, b"\x01\x00")
    assert sent.startswith(b"\x05\x01\x00\x01")
    _, done, rest = feed(handshake, socks_reply(bound=b"\x03\x04host") + b"x")
    assert done and rest == b"x"


def test_socks5_all_at_once() -> None:
    """Replies arriving together (method, auth, connect) are handled in one call."""
    handshake = Socks5Handshake(parse_proxy_url("socks5://u:p@p:1"), "10.0.0.1", 443)
    handshake.start()
    step = handshake.receive(b"\x05\x02" + b"\x01\x00" + socks_reply() + b"tail")
    assert step.done and step.rest == b"tail"
    assert step.send.startswith(b"\x01\x01u\x01p\x05\x01")


@pytest.mark.parametrize(
    ("url", "answers", "message"),
    [
        (
            "socks5://p:1",
            b"\x05\xff",
            "requires authentication and the proxy URL has none",
        ),
        ("socks5://u:hunter2@p:1", b"\x05\xff", "accepts none of the offered"),
        ("socks5://u:hunter2@p:1", b"\x05\x02\x01\x01", "rejected the credentials"),
        ("socks5://p:1", b"\x04\x00", "does not speak SOCKS5"),
        (
            "socks5://p:1",
            b"\x05\x00" + socks_reply(5),
            "could not connect to 10.0.0.1:443: connection refused (reply 5)",
        ),
        ("socks5://p:1", b"\x05\x00" + socks_reply(2), "not allowed by ruleset"),
        ("socks5://p:1", b"\x05\x00" + socks_reply(99), "unknown error (reply 99)"),
        ("socks5://p:1", b"\x05\x00\x05\x00\x00\x09\x00", "invalid SOCKS5 reply"),
    ],
)
def test_socks5_failures(url: str, answers: bytes, message: str) -> None:
    """SOCKS5 refusals name the reply code's meaning, never the credentials."""
    handshake = Socks5Handshake(parse_proxy_url(url), "10.0.0.1", 443)
    handshake.start()
    with pytest.raises(TunnelError) as info:
        feed(handshake, answers)
    assert message in str(info.value)
    assert str(info.value).startswith("via proxy socks5://p:1: ")
    assert "hunter2" not in str(info.value)


# -- the tunnel endpoint -------------------------------------------------------------


class App(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason


@implementer(IStreamClientEndpoint)
class FakeProxyEndpoint:
    """Connects the factory's protocol to a ``StringTransport`` (or fails)."""

    def __init__(self, failure: Exception | None = None, pending: bool = False) -> None:
        self.failure = failure
        self.pending = pending
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 3128))
        self.protocol: Any = None
        self.cancelled = False

    def connect(self, factory: Any) -> Deferred[Any]:
        if self.failure is not None:
            return fail(self.failure)
        if self.pending:
            return Deferred(lambda _d: setattr(self, "cancelled", True))
        self.protocol = factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        return succeed(self.protocol)


def connect_proxy() -> tuple[FakeProxyEndpoint, Deferred[Any], App]:
    proxy = parse_proxy_url("http://p:3128")
    fake = FakeProxyEndpoint()
    endpoint = TunnelEndpoint(fake, proxy, lambda: HTTPConnectHandshake(proxy, "c", 6443))
    app = App()
    return fake, endpoint.connect(Factory.forProtocol(lambda: app)), app


def test_tunnel_endpoint_opens_then_relays() -> None:
    """The handshake goes first; after the 2xx the application is connected on the same
    transport, gets the early bytes, then everything else; its close is relayed."""
    fake, d, app = connect_proxy()
    assert fake.transport.value().startswith(b"CONNECT c:6443 HTTP/1.1\r\n")
    assert not d.called
    fake.protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\nearly")
    assert d.result is app and app.transport is fake.transport
    assert app.received == b"early"
    fake.protocol.dataReceived(b" more")
    assert app.received == b"early more"
    fake.protocol.connectionLost(Failure(error.ConnectionDone()))
    assert app.lost is not None and app.lost.check(error.ConnectionDone)


def test_tunnel_endpoint_refused_by_proxy() -> None:
    """A refusal fails the connect with the TunnelError and closes the proxy connection."""
    fake, d, app = connect_proxy()
    fake.protocol.dataReceived(b"HTTP/1.1 403 Forbidden\r\n\r\n")
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert failures[0].check(TunnelError)
    assert 'answered "403 Forbidden"' in failures[0].getErrorMessage()
    assert fake.transport.disconnecting or fake.transport.disconnected


def test_tunnel_endpoint_proxy_closes_during_handshake() -> None:
    """The proxy hanging up before answering is a TunnelError saying so."""
    fake, d, _ = connect_proxy()
    fake.protocol.connectionLost(Failure(error.ConnectionDone()))
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert "ended during the handshake" in failures[0].getErrorMessage()


def test_tunnel_endpoint_proxy_unreachable() -> None:
    """Not reaching the proxy names the proxy and the cause."""
    proxy = parse_proxy_url("socks5://u:hunter2@p:1080")
    endpoint = TunnelEndpoint(
        FakeProxyEndpoint(error.ConnectionRefusedError()),
        proxy,
        lambda: Socks5Handshake(proxy, "c", 1),
    )
    failures: list[Failure] = []
    endpoint.connect(Factory.forProtocol(App)).addErrback(failures.append)
    assert failures[0].check(TunnelError)
    assert failures[0].getErrorMessage() == (
        "via proxy socks5://p:1080: connecting to the proxy: connection refused"
    )


def test_tunnel_endpoint_cancel() -> None:
    """Cancelling while connecting to the proxy cancels that; during the handshake it
    aborts the proxy connection."""
    proxy = parse_proxy_url("http://p:1")
    pending = FakeProxyEndpoint(pending=True)
    d = TunnelEndpoint(pending, proxy, lambda: HTTPConnectHandshake(proxy, "c", 1)).connect(
        Factory.forProtocol(App)
    )
    d.cancel()
    assert pending.cancelled
    d.addErrback(lambda f: f.trap(CancelledError))

    fake, d, _ = connect_proxy()
    d.cancel()
    d.addErrback(lambda f: f.trap(CancelledError))
    assert fake.transport.disconnecting or fake.transport.disconnected


# -- choosing the route ---------------------------------------------------------------


class TCPTransport(StringTransport):
    """A transport that records ``setTcpNoDelay``."""

    nodelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802 - Twisted's name
        self.nodelay = enabled


def test_direct_connections_have_nodelay() -> None:
    """Every TCP connection the gateway dials (to a cluster, or to its proxy) gets
    ``TCP_NODELAY`` once it is made, as Go dials them: with Nagle on, all but the first
    TLS record of a write waited for the cluster's delayed ACK (40 ms or more)."""
    reactor = MemoryReactorClock()
    for host in ("10.0.0.1", "fd00::1"):
        connected: list[Any] = []
        endpoint = DirectDialer(reactor).stream_endpoint(host, 6443)
        endpoint.connect(Factory.forProtocol(App)).addCallback(connected.append)
        transport = TCPTransport()
        reactor.tcpClients[-1][2].buildProtocol(None).makeConnection(transport)
        assert [type(p) for p in connected] == [App]
        assert transport.nodelay, host


def test_router_direct_proxy_url_and_environment() -> None:
    """No proxy: the direct endpoint; proxy-url wins over the environment; the
    environment applies otherwise (but not to loopback)."""
    reactor = MemoryReactorClock()
    env = ProxyEnvironment.from_environ({"HTTPS_PROXY": "http://envproxy:3128"})
    router = EgressRouter(DirectDialer(reactor), env)
    direct = EgressRouter(DirectDialer(reactor)).stream_endpoint(target("https://c:6443"), None)
    assert not isinstance(direct, TunnelEndpoint)
    via_url = router.stream_endpoint(target("https://c:6443"), "socks5h://sp:1080")
    assert isinstance(via_url, TunnelEndpoint) and via_url.proxy.display == "socks5h://sp:1080"
    assert isinstance(via_url.handshake(), Socks5Handshake)
    via_env = router.stream_endpoint(target("https://c:6443"), None)
    assert isinstance(via_env, TunnelEndpoint) and via_env.proxy.display == "http://envproxy:3128"
    assert isinstance(via_env.handshake(), HTTPConnectHandshake)
    loopback = router.stream_endpoint(target("https://127.0.0.1:6443"), None)
    assert not isinstance(loopback, TunnelEndpoint)
    with pytest.raises(ProxyURLError):
        router.stream_endpoint(target("https://c:6443"), "gopher://x")


def test_router_socks5_resolves_names_locally() -> None:
    """socks5:// resolves the cluster's host name in the gateway and sends the address;
    socks5h:// sends the name; a failed lookup says how to let the proxy resolve it."""
    reactor = MemoryReactorClock()
    lookups: dict[str, Deferred[str]] = {}

    def resolve(host: str) -> Deferred[str]:
        lookups[host] = Deferred()
        return lookups[host]

    router = EgressRouter(DirectDialer(reactor), resolve=resolve)
    endpoint = router.stream_endpoint(target("https://c.example:6443"), "socks5://p:1080")
    assert isinstance(endpoint, _ResolvingEndpoint)
    fake = FakeProxyEndpoint()
    endpoint = _ResolvingEndpoint(fake, endpoint.proxy, "c.example", 6443, resolve)
    endpoint.connect(Factory.forProtocol(App))
    lookups["c.example"].callback("10.9.8.7")
    fake.protocol.dataReceived(b"\x05\x00")
    assert fake.transport.value().endswith(b"\x05\x01\x00\x01\x0a\x09\x08\x07\x19\x2b")

    failures: list[Failure] = []
    endpoint.connect(Factory.forProtocol(App)).addErrback(failures.append)
    lookups["c.example"].errback(error.DNSLookupError("c.example"))
    assert "use socks5h:// to let the proxy resolve it" in failures[0].getErrorMessage()

    remote = router.stream_endpoint(target("https://c.example:6443"), "socks5h://p:1080")
    assert isinstance(remote, TunnelEndpoint)
    assert remote.handshake()._request().startswith(b"\x05\x01\x00\x03\x09c.example")


@pytest_twisted.ensureDeferred
async def test_unreachable_proxy_is_502_naming_cluster_and_proxy() -> None:
    """Through the proxy subresource: a proxy that refuses connections gives a 502 Status
    naming the cluster, the cluster address and the proxy (without its password)."""
    from twisted.internet import reactor

    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    closed = port.getHost().port
    await port.stopListening()
    registry = FakeRegistry()
    registry.put(
        ClusterGateway(
            "c1",
            EndpointSpec(
                address="https://10.255.255.1:6443",
                insecure=True,
                proxy_url=f"http://admin:hunter2@127.0.0.1:{closed}",
            ),
            CredentialSpec("ServiceAccountToken", token="t"),
        )
    )
    h = start_harness(reactor, registry)
    try:
        response, body = await h.request(b"GET", "c1", "/api")
    finally:
        await stop_harness(h)
    status = json.loads(body)
    assert response.code == 502 and status["reason"] == "BadGateway"
    assert status["message"] == (
        f"cluster c1: dial tcp 10.255.255.1:6443 via proxy http://127.0.0.1:{closed}: "
        "connecting to the proxy: connection refused"
    )


def test_proxy_url_value_is_hashable_for_pool_keys() -> None:
    """ProxyURL is a frozen value (it may be part of keys)."""
    assert hash(parse_proxy_url("http://p:1")) == hash(ProxyURL("http", "p", 1))


def test_https_proxy_trust_follows_the_cluster() -> None:
    """An https:// proxy is not verified when the cluster is insecure (SNI still sent for
    names), and is verified (with the cluster's CA or the platform roots) otherwise."""
    insecure = proxy_tls_creator("proxy.example", EndpointSpec(address="https://c", insecure=True))
    assert isinstance(insecure, InsecureClientTLS) and insecure.server_name == b"proxy.example"
    by_ip = proxy_tls_creator("10.0.0.1", EndpointSpec(address="https://c", insecure=True))
    assert isinstance(by_ip, InsecureClientTLS) and by_ip.server_name is None
    verified = proxy_tls_creator("proxy.example", EndpointSpec(address="https://c"))
    assert not isinstance(verified, InsecureClientTLS)


def test_verify_error_of_without_a_handle() -> None:
    """No TLS connection to ask (or no verification error): no detail, never an exception."""
    assert verify_error_of(object()) is None
