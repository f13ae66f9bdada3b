"""A tiny, fast, fully controllable upstream "cluster" for the proxy's own tests.

Not a Kubernetes simulation (that is ``clustergateway.testing``): it answers
by path so each proxy behaviour can be provoked exactly —

- ``/echo...``: 200 JSON of method, raw URI, headers and body;
- ``/big?size=N``: N bytes with a ``Content-Length``, written through a push
  producer (``sent`` counts what left, so tests see backpressure);
- ``/chunked?size=N``: N bytes chunked, then the terminal chunk;
- ``/watch``: a chunked stream kept open; ``push(line)`` writes to every one;
- ``/truncate``: promises 100 bytes, sends 10, closes;
- ``/cut``: starts a chunked body, closes without the terminal chunk;
- ``/hang``: never answers;
- ``/status/<code>``: that code with a small JSON body;
- ``/nolength``: a body without length on a connection it then closes;
- ``/upgrade``: a 101 (``upgrade_extra`` bytes right after the head) and an
  upper-casing echo; ``/refuse-upgrade``: 403 with a Status body.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet import ssl
from twisted.internet.interfaces import IListeningPort, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from clustergateway.certs import KeyPair
from clustergateway.fence.takeover import take_over

CHUNK = 64 * 1024


@implementer(IPushProducer)
class BigBody:
    """Writes ``size`` bytes into ``request`` as fast as the client takes them."""

    def __init__(self, upstream: Upstream, request: Request, size: int) -> None:
        self.upstream = upstream
        self.request = request
        self.remaining = size
        self.paused = False
        self.stopped = False
        self.block = b"x" * CHUNK

    def start(self) -> None:
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self._produce()

    def _produce(self) -> None:
        while not self.paused and not self.stopped and self.remaining > 0:
            n = min(CHUNK, self.remaining)
            self.remaining -= n
            self.upstream.sent += n
            self.request.write(self.block[:n])
        if self.remaining == 0 and not self.stopped:
            self.stopped = True
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self.upstream.reactor.callLater(0, self._produce)

    def stopProducing(self) -> None:
        self.stopped = True


class UpperEcho(Protocol):
    """The upgraded stream: echoes bytes upper-cased and records them."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def connectionMade(self) -> None:
        self.upstream.upgraded.append(self)
        self.received = b""
        # Stop reading while the echo cannot be written: a well-behaved peer, so
        # backpressure tests measure the gateway, not this server.
        self.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        if len(self.received) < 65536:
            self.received += data
        self.upstream.upgrade_bytes += len(data)
        if self.upstream.echo_upgrades:
            self.transport.write(data.upper())

    def close(self) -> None:
        """End the stream from the cluster's side."""
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.upstream.upgrades_closed += 1


def _peer_cn(request: Request) -> str | None:
    transport: Any = request.channel.transport if request.channel else None
    get_cert = getattr(transport, "getPeerCertificate", None)
    cert = get_cert() if get_cert is not None else None
    if cert is None:
        return None
    from cryptography.x509.oid import NameOID

    subject = cert.to_cryptography().subject
    return str(subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


class UpstreamResource(Resource):
    isLeaf = True

    def __init__(self, upstream: Upstream) -> None:
        super().__init__()
        self.upstream = upstream

    def render(self, request: Request) -> bytes | int:
        up = self.upstream
        body = request.content.read() if request.content is not None else b""
        record = {
            "method": request.method.decode(),
            "uri": request.uri.decode("latin-1"),
            "headers": [
                [n.decode("latin-1"), v.decode("latin-1")]
                for n, vs in request.requestHeaders.getAllRawHeaders()
                for v in vs
            ],
            "body": body.decode("latin-1"),
            "clientproto": request.clientproto.decode(),
            "peer_cn": _peer_cn(request),
        }
        up.requests.append(record)
        path = request.path
        if path.startswith(b"/big"):
            size = int(request.args.get(b"size", [b"1048576"])[0])
            request.setHeader(b"content-type", b"application/octet-stream")
            request.setHeader(b"content-length", b"%d" % size)
            BigBody(up, request, size).start()
            return NOT_DONE_YET
        if path.startswith(b"/chunked"):
            size = int(request.args.get(b"size", [b"1000"])[0])
            request.setHeader(b"content-type", b"text/plain")
            request.write(b"y" * size)
            request.finish()
            return NOT_DONE_YET
        if path.startswith(b"/watch"):
            request.setHeader(b"content-type", b"application/json")
            # ``quiet``: only the head for now, as an apiserver's watch with no event yet.
            quiet = b"quiet" in request.args
            request.write(b"" if quiet else b'{"type":"ADDED","object":{}}\n')
            up.watches.append(request)
            request.notifyFinish().addBoth(lambda _: up.watches.remove(request))
            return NOT_DONE_YET
        if path.startswith(b"/truncate"):
            request.setHeader(b"content-length", b"100")
            request.write(b"0123456789")
            request.loseConnection()
            return NOT_DONE_YET
        if path.startswith(b"/cut"):
            request.setHeader(b"content-type", b"application/json")
            request.write(b'{"type":"ADDED"}\n')
            request.channel.loseConnection()  # chunked, no terminal chunk
            return NOT_DONE_YET
        if path.startswith(b"/hang"):
            up.hanging.append(request)
            return NOT_DONE_YET
        if path.startswith(b"/status/"):
            code = int(path.rsplit(b"/", 1)[1])
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"www-authenticate", b'Bearer realm="sim"')
            return json.dumps({"kind": "Status", "code": code}).encode()
        if path.startswith(b"/nolength"):
            channel: Any = request.channel
            channel.transport.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close")
            channel.loseConnection()
            return NOT_DONE_YET
        if path.startswith(b"/refuse-upgrade"):
            body = b'{"kind":"Status","code":403,"message":"websocket refused"}'
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"content-length", b"%d" % len(body))
            return body
        if path.startswith(b"/upgrade"):
            upgrade = request.getHeader(b"upgrade") or b"SPDY/3.1"
            head = (
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
                + upgrade
                + b"\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
                + up.upgrade_extra
            )
            take_over(request, UpperEcho(up), head)
            return NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(record).encode()


class _Channel(HTTPChannel):
    MAX_LENGTH = 1024 * 1024
    totalHeadersSize = 1024 * 1024

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.upstream.connections.add(self)

    def connectionLost(self, reason: Any) -> None:
        self.site.upstream.connections.discard(self)
        super().connectionLost(reason)


def _channel_factory(site: Site) -> _GenericHTTPChannelProtocol:
    return _GenericHTTPChannelProtocol(_Channel())


class UpstreamSite(Site):
    protocol = _channel_factory  # type: ignore[assignment]

    def __init__(self, upstream: Upstream) -> None:
        super().__init__(UpstreamResource(upstream), reactor=upstream.reactor)
        self.upstream = upstream

    def log(self, request: Any) -> None:
        pass

    def acceptableProtocols(self) -> list[bytes]:
        return [b"http/1.1"]


@attrs.define(eq=False)
class Upstream:
    """The server, its recordings and its knobs."""

    reactor: Any
    serving: KeyPair | None = None
    client_ca: KeyPair | None = None
    requests: list[dict[str, Any]] = attrs.field(factory=list)
    connections: set[Any] = attrs.field(factory=set)
    watches: list[Request] = attrs.field(factory=list)
    hanging: list[Request] = attrs.field(factory=list)
    upgraded: list[UpperEcho] = attrs.field(factory=list)
    upgrades_closed: int = 0
    upgrade_bytes: int = 0
    upgrade_extra: bytes = b""
    echo_upgrades: bool = True
    sent: int = 0
    port: int = 0
    listening: IListeningPort | None = None

    def start(self) -> Upstream:
        site = UpstreamSite(self)
        if self.serving is None:
            self.listening = self.reactor.listenTCP(0, site, interface="127.0.0.1")
        else:
            from OpenSSL import crypto

            options: dict[str, Any] = {}
            if self.client_ca is not None:
                options = {
                    "verify": True,
                    "caCerts": [
                        crypto.load_certificate(crypto.FILETYPE_PEM, self.client_ca.cert_pem)
                    ],
                    "requireCertificate": False,
                }
            opts = ssl.CertificateOptions(
                privateKey=crypto.load_privatekey(crypto.FILETYPE_PEM, self.serving.key_pem),
                certificate=crypto.load_certificate(crypto.FILETYPE_PEM, self.serving.cert_pem),
                **options,
            )
            self.listening = self.reactor.listenSSL(0, site, opts, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        return self

    @property
    def url(self) -> str:
        scheme = "https" if self.serving is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def push(self, line: bytes) -> None:
        for request in list(self.watches):
            request.write(line)

    async def stop(self) -> None:
        for channel in list(self.connections):
            if channel.transport is not None:
                channel.transport.abortConnection()
        listening, self.listening = self.listening, None
        if listening is not None:
            await listening.stopListening()
