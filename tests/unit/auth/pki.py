"""Test PKI for the auth unit tests: CAs and leaves made once per session, plus
an in-memory TLS handshake that yields the server side's pyOpenSSL connection."""

from __future__ import annotations

import functools
from typing import Any

import attrs
from OpenSSL import SSL, crypto

from clustergateway.certs import KeyPair, issue_cert, make_ca


@attrs.frozen
class Pki:
    serving_ca: KeyPair
    serving: KeyPair
    client_ca: KeyPair
    front_ca: KeyPair
    other_ca: KeyPair
    alice: KeyPair  # client CA, CN alice, O dev + ops
    front: KeyPair  # front-proxy CA, CN front-proxy-client
    front_other_name: KeyPair  # front-proxy CA, CN intruder
    stranger: KeyPair  # other CA


@functools.cache
def pki() -> Pki:
    serving_ca, client_ca, front_ca, other_ca = (
        make_ca(n) for n in ("serving-ca", "client-ca", "front-proxy-ca", "other-ca")
    )
    return Pki(
        serving_ca=serving_ca,
        serving=issue_cert(serving_ca, "gateway", hosts=("localhost", "127.0.0.1"), server=True),
        client_ca=client_ca,
        front_ca=front_ca,
        other_ca=other_ca,
        alice=issue_cert(client_ca, "alice", organizations=("dev", "ops"), client=True),
        front=issue_cert(front_ca, "front-proxy-client", client=True),
        front_other_name=issue_cert(front_ca, "intruder", client=True),
        stranger=issue_cert(other_ca, "mallory", client=True),
    )


def handshake(server_creator: Any, client: KeyPair | None) -> SSL.Connection:
    """Run a TLS handshake in memory; return the server's ``SSL.Connection``.

    Raises ``SSL.Error`` if the server refuses the client certificate.
    """

    class _Proto:  # what protosFromProtocol needs from a TLSMemoryBIOProtocol
        factory = attrs.make_class("F", {"wrappedFactory": attrs.field(default=None)})()

    server = server_creator.serverConnectionForTLS(_Proto())
    server.set_accept_state()
    ctx = SSL.Context(SSL.TLS_METHOD)
    if client is not None:
        ctx.use_certificate(crypto.load_certificate(crypto.FILETYPE_PEM, client.cert_pem))
        ctx.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_PEM, client.key_pem))
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    for _ in range(20):
        for side in (conn, server):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
        moved = False
        for src, dst in ((conn, server), (server, conn)):
            try:
                data = src.bio_read(65536)
            except SSL.WantReadError:
                continue
            dst.bio_write(data)
            moved = True
        if not moved:
            break
    # TLS 1.3: the server learns the client's certificate from the client's
    # last flight; reading application data surfaces a verification failure.
    conn.send(b"x")
    server.bio_write(conn.bio_read(65536))
    assert server.recv(1) == b"x"
    return server


class FakeTLSTransport:
    """The two methods of TLSMemoryBIOProtocol the guard reads."""

    def __init__(self, connection: SSL.Connection | None, peer: Any = None) -> None:
        self.connection = connection
        self.peer = peer if connection is None else connection.get_peer_certificate()

    def getPeerCertificate(self) -> Any:
        return self.peer

    def getHandle(self) -> Any:
        return self.connection


class FakeChannel:
    def __init__(self, transport: Any) -> None:
        self.transport = transport


class FakeH2Stream:
    transport = None

    def __init__(self, transport: Any) -> None:
        self._conn = FakeChannel(transport)
