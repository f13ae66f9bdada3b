"""TLS on the socket (``clustergateway.fence.tlssocket``): real TCP, real OpenSSL, both ends.

Each test listens with :class:`ServerTLSFactory` on a loopback port and
connects with :class:`ClientTLSFactory`, so both sides run the socket-TLS
transport the gateway uses toward its callers and toward clusters.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import pytest
import pytest_twisted
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error, ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocolNegotiationFactory,
    ISSLTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from clustergateway.certs import KeyPair, issue_cert, make_ca
from clustergateway.fence.reactor import LeanEPollReactor
from clustergateway.fence.tlssocket import ClientTLSFactory, ServerTLSFactory, _SocketTLS


def reactor() -> Any:
    from twisted.internet import reactor as r

    return r


@attrs.frozen
class Pki:
    ca: KeyPair
    server: KeyPair
    client: KeyPair


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = make_ca("tlssocket-test-ca")
    return Pki(
        ca,
        issue_cert(ca, "server", hosts=("127.0.0.1", "localhost"), server=True),
        issue_cert(ca, "alice", organizations=("devs",), client=True),
    )


def _cn(cert: Any) -> str:
    """The common name of a pyOpenSSL certificate."""
    name = cert.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(name[0].value)


def _ca(pki: Pki) -> ssl.Certificate:
    return ssl.Certificate.loadPEM(pki.ca.cert_pem)


def server_options(pki: Pki, *, want_client_cert: bool = False) -> ssl.CertificateOptions:
    private = ssl.PrivateCertificate.loadPEM(pki.server.cert_pem + pki.server.key_pem)
    if not want_client_cert:
        return private.options()  # type: ignore[no-any-return]
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        verify=True,
        caCerts=[_ca(pki).original],
        requireCertificate=False,
    )


class Recorder(Protocol):
    """Keeps what arrives; ``lost`` fires with the reason the connection ended."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.made: Deferred[Recorder] = Deferred()
        #: Fires (with None) when the connection ended; ``reason`` says why.
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.want: tuple[int, Deferred[bytes]] | None = None

    def connectionMade(self) -> None:  # noqa: N802
        self.made.callback(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data
        if self.want is not None and len(self.received) >= self.want[0]:
            _, d = self.want
            self.want = None
            d.callback(bytes(self.received))

    def wait_for(self, size: int) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.want = (size, d)
        self.dataReceived(b"")
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.reason = reason
        self.lost.callback(None)


@implementer(IHandshakeListener)
class Shaker(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.shaken: Deferred[None] = Deferred()

    def handshakeCompleted(self) -> None:  # noqa: N802
        self.shaken.callback(None)


@implementer(IProtocolNegotiationFactory)
class AlpnFactory(Factory):
    def __init__(self, protocols: list[bytes], protocol: Any) -> None:
        self.protocols = protocols
        self.protocol = protocol

    def acceptableProtocols(self) -> list[bytes]:  # noqa: N802
        return self.protocols


async def _pair(
    pki: Pki,
    *,
    server_protocols: tuple[bytes, ...] = (),
    client_protocols: tuple[bytes, ...] = (),
    client_creator: Any = None,
    server_creator: Any = None,
) -> tuple[Any, Shaker, Shaker]:
    accepted: Deferred[Shaker] = Deferred()

    def make_server() -> Shaker:
        server = Shaker()
        if not accepted.called:  # the first connection is the test's client
            accepted.callback(server)
        return server

    r = reactor()
    port = await TCP4ServerEndpoint(r, 0, interface="127.0.0.1").listen(
        ServerTLSFactory(
            server_creator or server_options(pki), AlpnFactory(list(server_protocols), make_server)
        )
    )
    creator = client_creator or ssl.optionsForClientTLS("127.0.0.1", _ca(pki))
    starter = await TCP4ClientEndpoint(r, "127.0.0.1", port.getHost().port).connect(
        ClientTLSFactory(creator, AlpnFactory(list(client_protocols), Shaker))
    )
    # The endpoint hands back what the factory built: the protocol that put
    # TLS on the socket and stepped aside for the application's.
    client: Shaker = starter.app  # type: ignore[attr-defined]
    return port, await accepted, client


async def _close(port: Any, *protocols: Recorder) -> None:
    for p in protocols:
        if p is not None and p.transport is not None and not p.lost.called:
            p.transport.loseConnection()
    for p in protocols:
        if p is not None:
            await p.lost
    await port.stopListening()


def test_the_test_suite_runs_on_the_gateways_reactor() -> None:
    """``write_soon`` is exercised by every in-process test only on this reactor."""
    assert isinstance(reactor(), LeanEPollReactor)


@pytest_twisted.ensureDeferred
async def test_both_ends_speak_tls_on_the_socket(pki: Pki) -> None:
    """Both transports are socket-TLS transports; bytes cross both ways intact;
    the handshake listener hears of the end of the handshake; the client sees
    the server's certificate."""
    port, server, client = await _pair(pki)
    await client.shaken
    await server.shaken
    for transport in (client.transport, server.transport):
        assert isinstance(transport, _SocketTLS)
        assert ISSLTransport.providedBy(transport)
        assert isinstance(transport.getHandle(), SSL.Connection)
    assert _cn(client.transport.getPeerCertificate()) == "server"
    client.transport.write(b"hello ")
    client.transport.write(b"world")
    assert await server.wait_for(11) == b"hello world"
    server.transport.write(b"back")
    assert await client.wait_for(4) == b"back"
    await _close(port, client, server)


@pytest_twisted.ensureDeferred
async def test_alpn_is_negotiated(pki: Pki) -> None:
    """The server's factory offers h2 and http/1.1, the client h2: both report h2."""
    port, server, client = await _pair(
        pki, server_protocols=(b"h2", b"http/1.1"), client_protocols=(b"h2",)
    )
    await client.shaken
    await server.shaken
    assert client.transport.negotiatedProtocol == b"h2"
    assert server.transport.negotiatedProtocol == b"h2"
    await _close(port, client, server)


@pytest_twisted.ensureDeferred
async def test_many_megabytes_both_ways_with_a_full_socket(pki: Pki) -> None:
    """16 MiB each way, written at once: more than a socket holds, so the
    writer falls back to waiting for writability; every byte arrives in order."""
    port, server, client = await _pair(pki)
    await client.shaken
    payload = hashlib.sha256(b"seed").digest() * (16 * 1024 * 1024 // 32)
    client.transport.write(payload)
    server.transport.write(payload[::-1])
    got_server = await server.wait_for(len(payload))
    got_client = await client.wait_for(len(payload))
    assert hashlib.sha256(got_server).digest() == hashlib.sha256(payload).digest()
    assert hashlib.sha256(got_client).digest() == hashlib.sha256(payload[::-1]).digest()
    await _close(port, client, server)


@pytest_twisted.ensureDeferred
async def test_small_writes_go_out_without_waiting_for_writability(pki: Pki) -> None:
    """A write in a reactor pass is sent at the end of that pass: the transport
    never registers for writability (no ``epoll_ctl`` per response)."""
    port, server, client = await _pair(pki)
    await client.shaken
    await server.shaken
    r = reactor()
    seen_writers: list[bool] = []
    original = r.addWriter

    def add_writer(selectable: Any) -> None:
        seen_writers.append(selectable is client.transport)
        original(selectable)

    r.addWriter = add_writer
    try:
        for i in range(20):
            client.transport.write(b"ping %02d;" % i)
            assert (await server.wait_for(8 * (i + 1)))[-8:] == b"ping %02d;" % i
    finally:
        del r.addWriter
    assert True not in seen_writers
    await _close(port, client, server)


@pytest_twisted.ensureDeferred
async def test_orderly_close_sends_close_notify(pki: Pki) -> None:
    """``loseConnection`` after a write: the data, then a clean end (close_notify)."""
    port, server, client = await _pair(pki)
    await client.shaken
    server_transport = server.transport
    server_transport.write(b"last words")
    server_transport.loseConnection()
    await client.lost
    reason = client.reason
    assert reason is not None
    assert bytes(client.received) == b"last words"
    assert reason.check(error.ConnectionDone)
    await server.lost
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_wrong_host_name_fails_the_handshake_with_the_verification_error(
    pki: Pki,
) -> None:
    """Twisted's host-name check still runs: a name the certificate lacks ends
    the connection with ``VerificationError`` and never connects the protocol's data."""
    port, server, client = await _pair(
        pki, client_creator=ssl.optionsForClientTLS("not-this-host.example", _ca(pki))
    )
    await client.lost
    reason = client.reason
    assert reason is not None
    assert reason.check(VerificationError), reason
    assert not client.shaken.called
    await server.lost
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_untrusted_server_fails_with_an_ssl_error(pki: Pki) -> None:
    other = make_ca("someone-else")
    port, server, client = await _pair(
        pki,
        client_creator=ssl.optionsForClientTLS(
            "127.0.0.1", ssl.Certificate.loadPEM(other.cert_pem)
        ),
    )
    await client.lost
    reason = client.reason
    assert reason is not None
    assert reason.check(SSL.Error)
    assert "certificate verify failed" in str(reason.value)
    await server.lost
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_client_certificate_is_seen_with_its_verified_chain(pki: Pki) -> None:
    """A server trusting the CA for client certificates sees the client's
    certificate and the verified chain (what front-proxy authentication reads)."""
    client_cert = ssl.PrivateCertificate.loadPEM(pki.client.cert_pem + pki.client.key_pem)
    port, server, client = await _pair(
        pki,
        server_creator=server_options(pki, want_client_cert=True),
        client_creator=ssl.optionsForClientTLS("127.0.0.1", _ca(pki), client_cert),
    )
    await client.shaken
    await server.shaken
    assert _cn(server.transport.getPeerCertificate()) == "alice"
    chain = server.transport.getHandle().get_verified_chain()
    assert [_cn(c) for c in chain] == ["alice", "tlssocket-test-ca"]
    await _close(port, client, server)


@pytest_twisted.ensureDeferred
async def test_a_client_that_is_not_tls_is_dropped(pki: Pki) -> None:
    """Plain-text bytes at the TLS port end that connection with an SSL error;
    the port goes on serving TLS."""
    port, server, client = await _pair(pki)
    await client.shaken
    r = reactor()
    plain = Recorder()
    await TCP4ClientEndpoint(r, "127.0.0.1", port.getHost().port).connect(
        Factory.forProtocol(lambda: plain)
    )
    plain.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await plain.lost
    client.transport.write(b"still here")
    assert await server.wait_for(10) == b"still here"
    await _close(port, client, server)


@attrs.define
class _QuickServer:
    """A TLS server in a thread that answers ``ping`` with ``pong``, and a client
    whose first handshake step waits for the server's whole answer, so the
    handshake completes inside that first call (as on a loaded loopback)."""

    port: int
    served: list[bytes]
    thread: Any
    listener: Any

    def finish(self) -> None:
        self.thread.join(5)
        self.listener.close()


def _quick_server(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> _QuickServer:
    import select
    import socket
    import ssl as stdlib_ssl
    import tempfile
    import threading
    from pathlib import Path

    from clustergateway.fence import tlssocket

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(pki.server.cert_pem)
        key.write_bytes(pki.server.key_pem)
        context = stdlib_ssl.SSLContext(stdlib_ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    served: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            served.append(tls.recv(100))
            tls.sendall(b"pong")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    real = tlssocket._SocketTLS._tls_handshake
    calls: list[int] = []

    def first_call_waits(self: Any) -> Any:
        if not calls:
            calls.append(1)
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except SSL.WantReadError:
                    select.select([self.socket], [], [], 5)
        return real(self)

    monkeypatch.setattr(tlssocket._SocketTLS, "_tls_handshake", first_call_waits)
    return _QuickServer(listener.getsockname()[1], served, thread, listener)


@pytest_twisted.ensureDeferred
async def test_a_handshake_done_within_the_first_call_still_reaches_the_protocol(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On loopback a quick server can answer while the client's first
    ``do_handshake`` is still running, so the handshake completes inside it:
    the application protocol must already be connected to hear
    ``handshakeCompleted`` (it was not, and a connection to such a cluster
    waited for its 10 s handshake timeout).  Forced here by letting the
    first call wait for the server's answer, which comes from a thread."""
    server = _quick_server(pki, monkeypatch)
    creator = ssl.optionsForClientTLS("127.0.0.1", _ca(pki))
    endpoint = TCP4ClientEndpoint(reactor(), "127.0.0.1", server.port)
    starter = await endpoint.connect(ClientTLSFactory(creator, Factory.forProtocol(Shaker)))
    client: Shaker = starter.app  # type: ignore[attr-defined]
    await client.shaken
    client.transport.write(b"ping")
    assert await client.wait_for(4) == b"pong"
    await client.lost
    server.finish()
    assert server.served == [b"ping"]


@pytest_twisted.ensureDeferred
async def test_a_cluster_dial_whose_handshake_ends_within_the_first_call_keeps_its_connection(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same early handshake through the proxy's ``UpstreamEndpoint``: the
    connection it hands out is used, not aborted.  It was aborted, because the
    endpoint took its already-fired result for a timeout when the TCP connect
    reported in after the handshake; under CPU load a proxied request then
    failed with ``ConnectionAborted`` (a 502; the demo test failed about one
    run in twenty on a loaded machine)."""
    from clustergateway.proxy.dial import UpstreamEndpoint

    server = _quick_server(pki, monkeypatch)
    creator = ssl.optionsForClientTLS("127.0.0.1", _ca(pki))
    stream = TCP4ClientEndpoint(reactor(), "127.0.0.1", server.port)
    endpoint = UpstreamEndpoint(reactor(), stream, f"127.0.0.1:{server.port}", creator)
    client: Recorder = await endpoint.connect(Factory.forProtocol(Recorder))
    client.transport.write(b"ping")
    await client.lost
    assert client.reason is not None and not client.reason.check(error.ConnectionAborted)
    assert bytes(client.received) == b"pong"
    server.finish()
    assert server.served == [b"ping"]


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLClientConnectionCreator)
class _Broken:
    """A connection creator that fails: what a broken TLS configuration does
    when the transport asks it for the new connection's ``SSL.Connection``."""

    def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:  # noqa: N802
        raise SSL.Error([("SSL routines", "", "no certificate assigned")])

    def clientConnectionForTLS(self, protocol: Any) -> SSL.Connection:  # noqa: N802
        raise SSL.Error([("SSL routines", "", "no ciphers available")])


@pytest_twisted.ensureDeferred
async def test_a_server_creator_that_fails_closes_that_connection_only(pki: Pki) -> None:
    """The caller is cut off, the failure is logged once with its cause, and
    the port goes on accepting (the exception used to escape into the
    accept loop and leave a half-built connection that failed again on its
    first bytes)."""
    from twisted.logger import capturedLogs

    r = reactor()
    creators: list[Any] = [_Broken(), server_options(pki)]

    @implementer(IOpenSSLServerConnectionCreator)
    class Switching:
        def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:  # noqa: N802
            return creators.pop(0).serverConnectionForTLS(protocol)  # type: ignore[no-any-return]

    port = await TCP4ServerEndpoint(r, 0, interface="127.0.0.1").listen(
        ServerTLSFactory(Switching(), Factory.forProtocol(Recorder))
    )
    creator = ssl.optionsForClientTLS("127.0.0.1", _ca(pki))
    with capturedLogs() as events:
        starter = await TCP4ClientEndpoint(r, "127.0.0.1", port.getHost().port).connect(
            ClientTLSFactory(creator, Factory.forProtocol(Shaker))
        )
        refused: Shaker = starter.app  # type: ignore[attr-defined]
        await refused.lost
    assert not refused.shaken.called
    failures = [e for e in events if e.get("log_failure") is not None]
    assert len(failures) == 1, events
    assert "no certificate assigned" in str(failures[0]["log_failure"].value)
    assert failures[0]["side"] == "server"

    port2, server, client = await _pair(pki)  # the suite's usual pair still works
    await client.shaken
    await _close(port2, client, server)
    starter = await TCP4ClientEndpoint(r, "127.0.0.1", port.getHost().port).connect(
        ClientTLSFactory(creator, Factory.forProtocol(Shaker))
    )
    served: Shaker = starter.app  # type: ignore[attr-defined]
    await served.shaken  # the second connection to the same port gets TLS
    served.transport.loseConnection()
    await served.lost
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_client_creator_that_fails_ends_the_dial_at_once_with_the_cause(
    pki: Pki,
) -> None:
    """The protocol waiting for the handshake hears of the failure right
    away, with the creator's error, instead of waiting for a timeout."""
    from twisted.logger import capturedLogs

    r = reactor()
    port = await TCP4ServerEndpoint(r, 0, interface="127.0.0.1").listen(
        ServerTLSFactory(server_options(pki), Factory.forProtocol(Recorder))
    )
    with capturedLogs() as events:
        starter = await TCP4ClientEndpoint(r, "127.0.0.1", port.getHost().port).connect(
            ClientTLSFactory(_Broken(), Factory.forProtocol(Shaker))
        )
        client: Shaker = starter.app  # type: ignore[attr-defined]
        await client.lost
    assert client.reason is not None
    assert "no ciphers available" in str(client.reason.value)
    assert not client.shaken.called
    assert [e["side"] for e in events if e.get("log_failure") is not None] == ["client"]
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_peer_that_never_finishes_its_handshake_is_cut(pki: Pki) -> None:
    """A TCP connection that never sends a hello (or stops half-way) is aborted at the
    handshake deadline; one that finished its handshake is not touched by it."""
    r = reactor()
    accepted: list[Shaker] = []

    def make_server() -> Shaker:
        accepted.append(Shaker())
        return accepted[-1]

    port = await TCP4ServerEndpoint(r, 0, interface="127.0.0.1").listen(
        ServerTLSFactory(
            server_options(pki), AlpnFactory([], make_server), clock=r, handshake_timeout=0.3
        )
    )
    silent = Recorder()
    await TCP4ClientEndpoint(r, "127.0.0.1", port.getHost().port).connect(
        Factory.forProtocol(lambda: silent)
    )
    half = Recorder()
    await TCP4ClientEndpoint(r, "127.0.0.1", port.getHost().port).connect(
        Factory.forProtocol(lambda: half)
    )
    half.transport.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a hello, cut short
    creator = ssl.optionsForClientTLS("127.0.0.1", _ca(pki))
    starter = await TCP4ClientEndpoint(r, "127.0.0.1", port.getHost().port).connect(
        ClientTLSFactory(creator, AlpnFactory([], Shaker))
    )
    client: Shaker = starter.app  # type: ignore[attr-defined]
    await client.shaken
    await silent.lost
    await half.lost
    await deferLater(r, 0.5, lambda: None)  # past the deadline of the finished one
    client.transport.write(b"still served")
    (server,) = [s for s in accepted if s.shaken.called]
    assert await server.wait_for(12) == b"still served"
    await _close(port, client, server)
