"""Client certificates: which CA vouched (verified chain), CN/O users, the swappable TLS trust."""

from __future__ import annotations

import pytest
from OpenSSL import SSL
from twisted.web.test.requesthelper import DummyRequest

from clustergateway.auth.authconfig import CABundle
from clustergateway.auth.clientcert import PeerCertificates, user_from_certificate
from clustergateway.auth.tlstrust import ServerTLS
from clustergateway.auth.user import UserInfo
from tests.unit.auth.pki import FakeChannel, FakeH2Stream, FakeTLSTransport, handshake, pki


def bundle(pair) -> CABundle:
    return CABundle.from_pem(pair.cert_pem, "test")


def server_tls() -> ServerTLS:
    p = pki()
    trust = [p.client_ca.certificate(), p.front_ca.certificate()]
    return ServerTLS(p.serving.cert_pem, p.serving.key_pem, trust)


def request_over(transport, h2: bool = False) -> DummyRequest:
    request = DummyRequest([b""])
    request.channel = FakeH2Stream(transport) if h2 else FakeChannel(transport)
    return request


@pytest.mark.parametrize("h2", [False, True], ids=["http1", "h2"])
def test_client_ca_certificate_is_vouched_by_the_client_ca_only(h2: bool) -> None:
    """A client-CA certificate chains to the client CA, not to the front-proxy CA."""
    p = pki()
    peer = PeerCertificates().of(
        request_over(FakeTLSTransport(handshake(server_tls(), p.alice)), h2)
    )
    assert peer is not None and peer.common_name == "alice"
    assert peer.vouched_by(bundle(p.client_ca))
    assert not peer.vouched_by(bundle(p.front_ca))
    assert not peer.vouched_by(None)
    assert user_from_certificate(peer) == UserInfo("alice", ("dev", "ops"))


def test_front_proxy_certificate_is_vouched_by_the_front_proxy_ca() -> None:
    """The aggregator's certificate chains to the requestheader CA."""
    p = pki()
    peer = PeerCertificates().of(request_over(FakeTLSTransport(handshake(server_tls(), p.front))))
    assert peer.vouched_by(bundle(p.front_ca)) and not peer.vouched_by(bundle(p.client_ca))
    assert peer.common_name == "front-proxy-client"


def test_no_certificate_is_allowed_and_means_no_peer() -> None:
    """Client certificates are optional (bearer-token callers)."""
    assert (
        PeerCertificates().of(request_over(FakeTLSTransport(handshake(server_tls(), None)))) is None
    )


def test_unknown_ca_certificate_fails_the_handshake() -> None:
    """A certificate from a CA the gateway does not trust is refused by TLS itself."""
    with pytest.raises(SSL.Error):
        handshake(server_tls(), pki().stranger)


def test_trust_swap_applies_to_new_connections() -> None:
    """After set_trust, a CA that was trusted is refused and a new one accepted."""
    p = pki()
    tls = server_tls()
    tls.set_trust([p.other_ca.certificate()])
    with pytest.raises(SSL.Error):
        handshake(tls, p.alice)
    peer = PeerCertificates().of(request_over(FakeTLSTransport(handshake(tls, p.stranger))))
    assert peer.vouched_by(bundle(p.other_ca))


def test_serving_certificate_swap() -> None:
    """set_serving changes the certificate new connections see."""
    p = pki()
    tls = server_tls()
    other = p.front  # any certificate with a key will do
    tls.set_serving(other.cert_pem, other.key_pem)
    server = handshake(tls, None)
    subject = server.get_certificate().to_cryptography().subject
    assert subject.rfc4514_string() == "CN=front-proxy-client"


def test_without_a_verified_chain_the_direct_issuer_decides() -> None:
    """A resumed session has no verified chain: the issuer signature check stands in."""
    p = pki()
    from OpenSSL import crypto

    x509 = crypto.load_certificate(crypto.FILETYPE_PEM, p.alice.cert_pem)
    peer = PeerCertificates().of(request_over(FakeTLSTransport(None, peer=x509)))
    assert peer.chain == ()
    assert peer.vouched_by(bundle(p.client_ca))
    assert not peer.vouched_by(bundle(p.front_ca))


def test_peer_is_read_once_per_connection() -> None:
    """Requests on one connection reuse the first answer."""
    transport = FakeTLSTransport(handshake(server_tls(), pki().alice))
    peers = PeerCertificates()
    first = peers.of(request_over(transport))
    transport.peer = None  # would read as "no certificate" if read again
    assert peers.of(request_over(transport)) is first


def test_no_tls_transport_means_no_peer() -> None:
    """A plain request (no TLS transport) has no client certificate."""
    assert PeerCertificates().of(request_over(object())) is None
    assert PeerCertificates().of(DummyRequest([b""])) is None


def test_certificate_without_cn_names_nobody() -> None:
    """The apiserver ignores a client certificate with an empty CN."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from clustergateway.auth.clientcert import PeerCertificate

    ca = pki().client_ca
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "only-o")]))
        .issuer_name(ca.certificate().subject)
        .public_key(ca.private_key().public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca.private_key(), hashes.SHA256())
    )
    assert user_from_certificate(PeerCertificate(cert, ())) is None
