"""Egress proxies: reaching a cluster through HTTP ``CONNECT`` or SOCKS5.

A cluster Secret may name a proxy in its ``proxy-url`` data key (PR cg#141):
``http://`` and ``https://`` (``CONNECT``; ``https`` means TLS to the proxy
itself), ``socks5://`` (names resolved by the gateway) and ``socks5h://``
(names resolved by the proxy), each with optional ``user:pass@`` credentials
(``Proxy-Authorization: Basic`` / SOCKS5 username authentication).  Without
``proxy-url`` the gateway process's ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``
apply, with Go's ``httpproxy`` rules (read once at startup, passed in as a
mapping).

The tunnel is a Twisted endpoint that wraps the TCP endpoint *below* the TLS
to the cluster, so ordinary requests and upgrades (exec, attach,
port-forward) both go through it — the Go gateway ignores the proxy for
upgrades (quirk 10).  The handshakes are sans-io objects (bytes in, bytes
out), table-tested without sockets; :class:`TunnelEndpoint` runs one over a
connection and then steps aside to a plain byte relay.

Every failure is a :class:`~clustergateway.proxy.dial.TunnelError` whose text
starts ``via proxy <scheme>://<host>:<port>`` and names what the proxy said
(a status line, a SOCKS5 reply code); the URL's credentials never appear.

Decisions where Go is silent or surprising:

- an ``http://`` cluster is also reached with ``CONNECT`` (Go sends
  absolute-form requests to the proxy instead); one mechanism for both;
- an ``https://`` proxy is verified like the cluster (its CA bundle, the
  platform roots when it has none, not at all when the cluster is
  ``insecure``), as Go's transport does, but the cluster's client certificate
  is never shown to the proxy.
"""

from __future__ import annotations

import base64
import ipaddress
import struct
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IAddress,
    IHostResolution,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as _Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from clustergateway.proxy.dial import StreamDialer, TunnelError, describe_failure
from clustergateway.proxy.paths import UpstreamTarget, ip_version

__all__ = [
    "EgressRouter",
    "HTTPConnectHandshake",
    "NoProxy",
    "ProxyEnvironment",
    "ProxyURL",
    "ProxyURLError",
    "Socks5Handshake",
    "TunnelEndpoint",
    "parse_proxy_url",
    "reactor_resolver",
]

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
#: Go's ``canonicalAddr`` ports for proxy URLs without one.
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_MAX_CONNECT_HEAD = 16 * 1024


class ProxyURLError(ValueError):
    """A proxy URL that cannot be used; the message never repeats its credentials."""


@attrs.frozen
class ProxyURL:
    """A parsed proxy URL.  ``display`` is safe for messages; the rest is not."""

    scheme: str
    host: str
    port: int
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)

    @property
    def display(self) -> str:
        """``scheme://host:port`` without credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def is_socks(self) -> bool:
        return self.scheme in ("socks5", "socks5h")

    def basic_authorization(self) -> bytes | None:
        """The ``Proxy-Authorization`` value for an HTTP proxy, when the URL has a user."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return b"Basic " + base64.b64encode(pair)


def parse_proxy_url(value: str, *, default_scheme: str | None = None) -> ProxyURL:
    """Parse a proxy URL (``proxy-url`` data key or an environment variable).

    ``default_scheme`` (``http`` for environment variables, as Go's
    ``httpproxy``) is assumed when ``value`` has none.  User and password are
    percent-decoded.  Raises :class:`ProxyURLError`.
    """
    text = value.strip()
    if not text:
        raise ProxyURLError("the proxy URL is empty")
    if "://" not in text and default_scheme is not None:
        text = f"{default_scheme}://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ProxyURLError("the proxy URL is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        shown = scheme[:16] if scheme.isascii() and scheme.isalnum() else "?"
        raise ProxyURLError(
            f"the proxy URL has scheme {shown!r}, want one of {', '.join(PROXY_SCHEMES)}"
        )
    if not parts.hostname:
        raise ProxyURLError("the proxy URL has no host")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if scheme.startswith("socks") and username is not None:
        # RFC 1929: one length byte each.
        if len(username.encode()) > 255 or len((password or "").encode()) > 255:
            raise ProxyURLError("the SOCKS5 user name and password must be at most 255 bytes")
    return ProxyURL(
        scheme,
        parts.hostname,
        port if port is not None else _DEFAULT_PORTS[scheme],
        username,
        password,
    )


# -- the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) -------------------------


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@attrs.frozen
class NoProxy:
    """``NO_PROXY`` as Go's ``httpproxy`` reads it.

    Entries are comma-separated: ``*`` (everything), an IP or CIDR, a domain
    (``example.com`` matches it and its subdomains; ``.example.com`` and
    ``*.example.com`` only subdomains), each optionally with ``:port``.
    """

    match_all: bool = False
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: ``(ip, port or "")``
    ips: tuple[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, str], ...] = ()
    #: ``(".suffix", port or "", also_match_the_bare_domain)``
    domains: tuple[tuple[str, str, bool], ...] = ()

    @classmethod
    def parse(cls, value: str) -> NoProxy:
        networks: list[Any] = []
        ips: list[Any] = []
        domains: list[tuple[str, str, bool]] = []
        for raw in value.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return cls(match_all=True)
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    pass  # Go ignores a malformed entry
                continue
            host, port = _split_entry(entry)
            if not host:
                continue
            address = _ip(host)
            if address is not None:
                ips.append((address, port))
                continue
            if host.startswith("*."):
                host = host[1:]
            bare = not host.startswith(".")
            domains.append((host if not bare else "." + host, port, bare))
        return cls(False, tuple(networks), tuple(ips), tuple(domains))

    def excludes(self, host: str, port: int) -> bool:
        """True when ``host:port`` must be reached directly."""
        if self.match_all:
            return True
        host = host.lower().rstrip(".")
        port_text = str(port)
        address = _ip(host)
        if address is not None:
            if any(address in net for net in self.networks):
                return True
            if any(address == ip and p in ("", port_text) for ip, p in self.ips):
                return True
        for suffix, p, bare in self.domains:
            if (host.endswith(suffix) or (bare and host == suffix[1:])) and p in ("", port_text):
                return True
        return False


def _split_entry(entry: str) -> tuple[str, str]:
    """``host`` and ``port`` of a NO_PROXY entry (``[v6]:port``, ``v4:port``, ``name:port``)."""
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0:
            return entry, ""
        host, rest = entry[1:end], entry[end + 1 :]
        return host, rest[1:] if rest.startswith(":") else ""
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port if port.isdigit() else ""
    return entry, ""  # a bare IPv6 address or a name


def _first(environ: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = environ.get(name)
        if value:
            return value
    return ""


@attrs.frozen
class ProxyEnvironment:
    """The gateway process's proxy variables, parsed once at startup.

    Go's ``httpproxy.FromEnvironment`` rules: ``HTTPS_PROXY`` for ``https``
    clusters, ``HTTP_PROXY`` for ``http`` ones (upper case first, then lower),
    ``NO_PROXY``, and never a proxy for ``localhost`` or a loopback IP.
    """

    https_proxy: ProxyURL | None = None
    http_proxy: ProxyURL | None = None
    no_proxy: NoProxy = attrs.field(factory=NoProxy)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ProxyEnvironment:
        """Read ``environ``; raise :class:`ProxyURLError` naming a variable that is unusable."""
        proxies: dict[str, ProxyURL | None] = {}
        for scheme, names in (
            ("https", ("HTTPS_PROXY", "https_proxy")),
            ("http", ("HTTP_PROXY", "http_proxy")),
        ):
            value = _first(environ, *names)
            if not value or ("REQUEST_METHOD" in environ and scheme == "http"):
                # Go ignores HTTP_PROXY under CGI (httpoxy); keep that.
                proxies[scheme] = None
                continue
            try:
                proxies[scheme] = parse_proxy_url(value, default_scheme="http")
            except ProxyURLError as e:
                variable = next(n for n in names if environ.get(n))
                raise ProxyURLError(f"environment variable {variable}: {e}") from None
        return cls(
            proxies["https"],
            proxies["http"],
            NoProxy.parse(_first(environ, "NO_PROXY", "no_proxy")),
        )

    def proxy_for(self, scheme: str, host: str, port: int) -> ProxyURL | None:
        """The proxy for a cluster at ``scheme://host:port``, or None (connect directly)."""
        proxy = self.https_proxy if scheme == "https" else self.http_proxy
        if proxy is None:
            return None
        bare = host.lower().rstrip(".")
        if bare == "localhost":
            return None
        address = _ip(bare)
        if address is not None and address.is_loopback:
            return None
        if self.no_proxy.excludes(bare, port):
            return None
        return proxy


# -- handshakes (sans-io) ------------------------------------------------------------


@attrs.frozen
class HandshakeStep:
    """What a handshake wants after some input: bytes to send, and whether it is done.

    ``rest`` (when done) are bytes that already belong to the tunnelled stream.
    """

    send: bytes = b""
    done: bool = False
    rest: bytes = b""


class Handshake(Protocol):
    """A proxy handshake: ``start()`` gives the first bytes, ``receive()`` the next step.

    ``receive`` raises :class:`TunnelError` when the proxy refuses.
    """

    def start(self) -> bytes: ...

    def receive(self, data: bytes) -> HandshakeStep: ...


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@attrs.define
class HTTPConnectHandshake:
    """``CONNECT host:port HTTP/1.1``; any 2xx opens the tunnel."""

    proxy: ProxyURL
    host: str
    port: int
    _buffer: bytes = b""

    def start(self) -> bytes:
        authority = _authority(self.host, self.port).encode("idna")
        lines = [b"CONNECT " + authority + b" HTTP/1.1", b"Host: " + authority]
        authorization = self.proxy.basic_authorization()
        if authorization is not None:
            lines.append(b"Proxy-Authorization: " + authorization)
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def receive(self, data: bytes) -> HandshakeStep:
        buffer = self._buffer + data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_CONNECT_HEAD:
                raise self._error("sent a response head larger than 16 KiB to CONNECT")
            self._buffer = buffer
            return HandshakeStep()
        self._buffer = b""
        status = buffer[: buffer.find(b"\r\n")]
        parts = status.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise self._error("answered CONNECT with something that is not HTTP")
        code = int(parts[1])
        phrase = parts[2].decode("ascii", "replace").strip()[:80] if len(parts) > 2 else ""
        if 200 <= code < 300:
            return HandshakeStep(done=True, rest=buffer[end + 4 :])
        answer = f"{code} {phrase}".strip()
        target = _authority(self.host, self.port)
        if code in (401, 407):  # tinyproxy answers a wrong password with 401
            why = (
                "rejected the credentials in the proxy URL"
                if self.proxy.username is not None
                else "requires authentication and the proxy URL has none"
            )
            raise self._error(f"{why} ({answer})")
        raise self._error(f'answered "{answer}" to CONNECT {target}')

    def _error(self, why: str) -> TunnelError:
        return TunnelError(f"via proxy {self.proxy.display}: the proxy {why}")


#: RFC 1928 reply codes.
SOCKS5_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
_NO_AUTH, _USER_PASS, _NO_METHOD = 0x00, 0x02, 0xFF


@attrs.define
class Socks5Handshake:
    """SOCKS5 (RFC 1928) ``CONNECT``, with username/password auth (RFC 1929) when given.

    ``host`` is sent as an IP address when it is one (``socks5://`` resolves
    names before building the handshake), else as a domain name for the
    proxy to resolve (``socks5h://``).
    """

    proxy: ProxyURL
    host: str
    port: int
    _state: str = "method"
    _buffer: bytes = b""

    def start(self) -> bytes:
        methods = [_NO_AUTH] if self.proxy.username is None else [_NO_AUTH, _USER_PASS]
        return bytes([5, len(methods), *methods])

    def _request(self) -> bytes:
        address = _ip(self.host)
        if address is None:
            name = self.host.encode("idna")
            if len(name) > 255:
                raise self._error("the cluster host name is longer than 255 bytes")
            target = bytes([3, len(name)]) + name
        elif address.version == 4:
            target = b"\x01" + address.packed
        else:
            target = b"\x04" + address.packed
        return b"\x05\x01\x00" + target + struct.pack("!H", self.port)

    def receive(self, data: bytes) -> HandshakeStep:
        self._buffer += data
        send = b""
        while True:
            step = self._advance()
            if step is None:
                return HandshakeStep(send=send)
            send += step.send
            if step.done:
                return HandshakeStep(send=send, done=True, rest=step.rest)

    def _take(self, n: int) -> bytes | None:
        if len(self._buffer) < n:
            return None
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _advance(self) -> HandshakeStep | None:
        """One state transition if enough bytes are buffered, else None."""
        if self._state == "method":
            reply = self._take(2)
            if reply is None:
                return None
            if reply[0] != 5:
                raise self._error("the proxy does not speak SOCKS5")
            if reply[1] == _NO_AUTH:
                self._state = "reply"
                return HandshakeStep(send=self._request())
            if reply[1] == _USER_PASS and self.proxy.username is not None:
                self._state = "auth"
                user = self.proxy.username.encode()
                password = (self.proxy.password or "").encode()
                return HandshakeStep(
                    send=bytes([1, len(user)]) + user + bytes([len(password)]) + password
                )
            if reply[1] == _NO_METHOD and self.proxy.username is None:
                raise self._error("the proxy requires authentication and the proxy URL has none")
            raise self._error("the proxy accepts none of the offered authentication methods")
        if self._state == "auth":
            reply = self._take(2)
            if reply is None:
                return None
            if reply[1] != 0:
                raise self._error("the proxy rejected the credentials in the proxy URL")
            self._state = "reply"
            return HandshakeStep(send=self._request())
        # "reply": VER REP RSV ATYP BND.ADDR BND.PORT
        if len(self._buffer) < 5:
            return None
        version, code, _, atyp, first = self._buffer[:5]
        if version != 5:
            raise self._error("the proxy sent an invalid SOCKS5 reply")
        if code != 0:
            what = SOCKS5_REPLIES.get(code, "unknown error")
            target = _authority(self.host, self.port)
            raise self._error(f"the proxy could not connect to {target}: {what} (reply {code})")
        sizes = {1: 4, 4: 16, 3: 1 + first}
        if atyp not in sizes:
            raise self._error("the proxy sent an invalid SOCKS5 reply")
        total = 4 + sizes[atyp] + 2
        if self._take(total) is None:
            return None
        self._state = "done"
        rest, self._buffer = self._buffer, b""
        return HandshakeStep(done=True, rest=rest)

    def _error(self, why: str) -> TunnelError:
        return TunnelError(f"via proxy {self.proxy.display}: {why}")


# -- the tunnel endpoint -------------------------------------------------------------


def _why(failure: Failure) -> str:
    value = failure.value
    return describe_failure(value) if value is not None else "unknown error"


class _TunnelProtocol(_Protocol):
    """Runs a handshake on the proxy connection, then relays bytes to the application.

    Once the tunnel is open the application protocol gets this connection's
    transport itself (its writes go straight to the socket); only reads pass
    through here.
    """

    def __init__(self, endpoint: TunnelEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.factory: Any = factory
        self.handshake = endpoint.handshake()
        self.app: Any = None
        self.result: Deferred[IProtocol] = Deferred(self._cancel)

    def _cancel(self, _d: Deferred[IProtocol]) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def connectionMade(self) -> None:  # noqa: N802
        transport: Any = self.transport
        transport.write(self.handshake.start())

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        app = self.app
        if app is not None:
            app.dataReceived(data)
            return
        if self.result.called:
            return  # failed or cancelled; the connection is being closed
        try:
            step = self.handshake.receive(data)
        except TunnelError as e:
            self.fail(e)
            return
        transport: Any = self.transport
        if step.send:
            transport.write(step.send)
        if step.done:
            self._open(transport, step.rest)

    def _open(self, transport: Any, rest: bytes) -> None:
        app = self.factory.buildProtocol(transport.getPeer())
        if app is None:
            self.fail(TunnelError(f"via proxy {self.endpoint.proxy.display}: refused"))
            return
        self.app = app
        app.makeConnection(transport)
        self.result.callback(app)
        if rest:
            app.dataReceived(rest)

    def fail(self, error: BaseException) -> None:
        """Fail the connect (unless settled) and drop the proxy connection."""
        if not self.result.called:
            self.result.errback(error)
        self._cancel(self.result)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self.app is not None:
            self.app.connectionLost(reason)
            return
        if not self.result.called:
            self.result.errback(
                TunnelError(
                    f"via proxy {self.endpoint.proxy.display}: "
                    f"the connection to the proxy ended during the handshake ({_why(reason)})"
                )
            )


@implementer(IProtocolFactory)
class _TunnelFactory(Factory):
    noisy = False

    def __init__(self, endpoint: TunnelEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.app_factory = factory
        self.protocol_instance: _TunnelProtocol | None = None

    def buildProtocol(self, addr: IAddress | None) -> _TunnelProtocol:  # noqa: N802
        self.protocol_instance = _TunnelProtocol(self.endpoint, self.app_factory)
        return self.protocol_instance


@implementer(IStreamClientEndpoint)
@attrs.frozen
class TunnelEndpoint:
    """A byte stream to a cluster through a proxy.

    ``to_proxy`` connects to the proxy (TLS-wrapped for an ``https`` proxy);
    ``handshake`` builds a fresh handshake per connection.  ``connect`` fires
    with the application protocol once the tunnel is open, or fails with a
    :class:`TunnelError`; cancelling it aborts the attempt.
    """

    to_proxy: IStreamClientEndpoint
    proxy: ProxyURL
    handshake: Callable[[], Handshake]

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:  # noqa: N803
        factory = _TunnelFactory(self, protocolFactory)
        to_proxy: Any = self.to_proxy
        pending: Deferred[Any] = to_proxy.connect(factory)
        result: Deferred[IProtocol] = Deferred(lambda _d: self._cancel(pending, factory))

        def connected(_proto: Any) -> None:
            tunnel = factory.protocol_instance
            assert tunnel is not None
            if result.called:  # cancelled meanwhile
                tunnel.fail(CancelledError())
                return
            tunnel.result.addCallbacks(result.callback, result.errback)

        def not_connected(failure: Failure) -> None:
            if result.called or isinstance(failure.value, CancelledError):
                return
            result.errback(
                TunnelError(
                    f"via proxy {self.proxy.display}: connecting to the proxy: {_why(failure)}"
                )
            )

        pending.addCallbacks(connected, not_connected)
        return result

    @staticmethod
    def _cancel(pending: Deferred[Any], factory: _TunnelFactory) -> None:
        if not pending.called:
            pending.cancel()
        tunnel = factory.protocol_instance
        if tunnel is not None and not tunnel.result.called:
            tunnel.fail(CancelledError())


# -- choosing the way out ------------------------------------------------------------


#: ``proxy_tls(proxy_host)``: the TLS creator for an ``https://`` proxy.
ProxyTLS = Callable[[str], IOpenSSLClientConnectionCreator]


@attrs.frozen
class EgressRouter:
    """Picks how a cluster is reached: directly, or through its or the environment's proxy.

    ``direct`` dials TCP (to the cluster, or to the proxy); ``resolve`` turns a
    host name into an IP address for ``socks5://`` (local DNS): it returns a
    Deferred firing with the address text.
    """

    direct: StreamDialer
    environment: ProxyEnvironment = attrs.field(factory=ProxyEnvironment)
    resolve: Callable[[str], Deferred[str]] | None = None

    def proxy_for(self, target: UpstreamTarget, proxy_url: str | None) -> ProxyURL | None:
        """The proxy for ``target``; raises :class:`ProxyURLError` for a bad ``proxy_url``."""
        if proxy_url:
            return parse_proxy_url(proxy_url)
        return self.environment.proxy_for(target.scheme, target.host, target.port)

    def stream_endpoint(
        self,
        target: UpstreamTarget,
        proxy_url: str | None,
        proxy_tls: ProxyTLS | None = None,
    ) -> IStreamClientEndpoint:
        """The endpoint for byte streams to ``target`` (TLS to the cluster goes on top)."""
        proxy = self.proxy_for(target, proxy_url)
        if proxy is None:
            return self.direct.stream_endpoint(target.host, target.port)
        to_proxy = self.direct.stream_endpoint(proxy.host, proxy.port)
        if proxy.scheme == "https":
            if proxy_tls is None:
                raise ProxyURLError("an https:// proxy needs TLS settings")
            to_proxy = wrapClientTLS(proxy_tls(proxy.host), to_proxy)
        host, port = target.host, target.port
        endpoint: object
        if proxy.is_socks:
            if proxy.scheme == "socks5" and ip_version(host) is None and self.resolve is not None:
                endpoint = _ResolvingEndpoint(to_proxy, proxy, host, port, self.resolve)
            else:
                endpoint = TunnelEndpoint(
                    to_proxy, proxy, lambda: Socks5Handshake(proxy, host, port)
                )
        else:
            endpoint = TunnelEndpoint(
                to_proxy, proxy, lambda: HTTPConnectHandshake(proxy, host, port)
            )
        return cast(IStreamClientEndpoint, endpoint)


@implementer(IStreamClientEndpoint)
@attrs.frozen
class _ResolvingEndpoint:
    """``socks5://`` with a host name: resolve it here, then hand the proxy the address."""

    to_proxy: IStreamClientEndpoint
    proxy: ProxyURL
    host: str
    port: int
    resolve: Callable[[str], Deferred[str]]

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:  # noqa: N803
        proxy, port = self.proxy, self.port

        def resolved(address: str) -> Deferred[IProtocol]:
            endpoint = TunnelEndpoint(
                self.to_proxy, proxy, lambda: Socks5Handshake(proxy, address, port)
            )
            return endpoint.connect(protocolFactory)

        def not_resolved(failure: Failure) -> Failure:
            if isinstance(failure.value, CancelledError):
                return failure
            raise TunnelError(
                f"via proxy {proxy.display}: resolving {self.host} locally (socks5://; "
                f"use socks5h:// to let the proxy resolve it): {_why(failure)}"
            )

        return self.resolve(self.host).addCallbacks(resolved, not_resolved)


@implementer(IResolutionReceiver)
@attrs.define
class _FirstAddress:
    host: str
    result: Deferred[str] = attrs.field(factory=Deferred)
    addresses: list[str] = attrs.field(factory=list)

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:  # noqa: N802,N803
        pass

    def addressResolved(self, address: IAddress) -> None:  # noqa: N802
        host = getattr(address, "host", None)
        if isinstance(host, str):
            self.addresses.append(host)

    def resolutionComplete(self) -> None:  # noqa: N802
        if self.result.called:
            return
        if self.addresses:
            self.result.callback(self.addresses[0])
        else:
            self.result.errback(DNSLookupError(self.host))


def reactor_resolver(reactor: Any) -> Callable[[str], Deferred[str]]:
    """Resolve host names with the reactor's (non-blocking) name resolver: the first address."""

    def resolve(host: str) -> Deferred[str]:
        receiver = _FirstAddress(host)
        reactor.nameResolver.resolveHostName(receiver, host)
        return receiver.result

    return resolve
