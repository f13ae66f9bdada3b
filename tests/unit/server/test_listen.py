"""Serving certificates and the TLS listener."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import Resource

from clustergateway.auth.tlstrust import ServerTLS
from clustergateway.certs import issue_cert, make_ca
from clustergateway.server.listen import (
    CertificateError,
    TLSListener,
    cert_dir_pair,
    load_serving_cert,
    serving_names,
)
from clustergateway.server.site import GatewaySite

NAMES = ("localhost", "127.0.0.1", "::1")


def test_serving_names() -> None:
    """Loopback names always; a specific bind address and the host name too."""
    assert serving_names("0.0.0.0") == NAMES
    assert serving_names("10.1.2.3", "gw-host") == (*NAMES, "10.1.2.3", "gw-host")


def test_self_signed_generated_then_reused(tmp_path: Path) -> None:
    """Generated into --cert-dir (key 0600, CA beside it) when absent, then served as it is,
    even for names it does not cover (the generic apiserver never overwrites a pair there)."""
    first = cert_dir_pair(tmp_path / "certs", NAMES)
    assert (tmp_path / "certs" / "apiserver.key").stat().st_mode & 0o777 == 0o600
    assert first.ca_pem == (tmp_path / "certs" / "ca.crt").read_bytes()
    leaf = x509.load_pem_x509_certificate(first.chain_pem)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    again = cert_dir_pair(tmp_path / "certs", NAMES)
    assert again.chain_pem == first.chain_pem
    wider = cert_dir_pair(tmp_path / "certs", (*NAMES, "gw.example"))
    assert wider.chain_pem == first.chain_pem


def test_cert_dir_pair_of_the_user_served_byte_for_byte(tmp_path: Path) -> None:
    """A user's apiserver.crt/apiserver.key in --cert-dir are served unchanged and not
    rewritten, whatever names they cover; no ca.crt is invented beside them."""
    ca = make_ca("users-ca")
    pair = issue_cert(ca, "gateway.vela-system.svc", hosts=("gateway.vela-system.svc",))
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "apiserver.crt").write_bytes(pair.cert_pem)
    (certs / "apiserver.key").write_bytes(pair.key_pem)
    served = cert_dir_pair(certs, NAMES)
    assert (served.chain_pem, served.key_pem, served.ca_pem) == (pair.cert_pem, pair.key_pem, None)
    assert (certs / "apiserver.crt").read_bytes() == pair.cert_pem
    assert not (certs / "ca.crt").exists()


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (("apiserver.crt",), r"apiserver\.key does not exist: the certificate and key must"),
        (("apiserver.key",), r"apiserver\.crt does not exist"),
        (("apiserver.crt", "other.key"), r"apiserver\.key does not match the certificate in"),
    ],
)
def test_cert_dir_half_or_mismatched_pair_is_refused(
    tmp_path: Path, present: tuple[str, ...], expected: str
) -> None:
    """One file of the pair alone, or a key of another certificate, is a CertificateError
    naming the file and the reason, and nothing is generated over it."""
    ca = make_ca("ca")
    one, two = issue_cert(ca, "a", server=True), issue_cert(ca, "b", server=True)
    data = {"apiserver.crt": one.cert_pem, "apiserver.key": one.key_pem}
    for name in present:
        target = "apiserver.key" if name == "other.key" else name
        (tmp_path / target).write_bytes(two.key_pem if name == "other.key" else data[name])
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CertificateError, match=expected):
        cert_dir_pair(tmp_path, NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unwritable_cert_dir(tmp_path: Path) -> None:
    """A cert dir that cannot be created is a CertificateError naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CertificateError, match="cannot write"):
        cert_dir_pair(blocker / "certs", NAMES)


def test_load_serving_cert_checks_the_pair(tmp_path: Path) -> None:
    """Unreadable files, non-PEM data and a key of another certificate are refused."""
    ca = make_ca("ca")
    one, two = issue_cert(ca, "a", server=True), issue_cert(ca, "b", server=True)
    (tmp_path / "a.crt").write_bytes(one.cert_pem)
    (tmp_path / "a.key").write_bytes(one.key_pem)
    (tmp_path / "b.key").write_bytes(two.key_pem)
    (tmp_path / "junk").write_bytes(b"junk")
    assert load_serving_cert(tmp_path / "a.crt", tmp_path / "a.key").key_pem == one.key_pem
    with pytest.raises(CertificateError, match="does not match"):
        load_serving_cert(tmp_path / "a.crt", tmp_path / "b.key")
    with pytest.raises(CertificateError, match="no PEM certificate"):
        load_serving_cert(tmp_path / "junk", tmp_path / "a.key")
    with pytest.raises(CertificateError, match="cannot read"):
        load_serving_cert(tmp_path / "missing", tmp_path / "a.key")


class RefusingReactor(MemoryReactorClock):
    def listenTCP(self, port, factory, backlog=50, interface=""):  # noqa: N802
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


def _listener(reactor: MemoryReactorClock, tmp_path: Path, bind: str = "127.0.0.1") -> TLSListener:
    cert = cert_dir_pair(tmp_path, NAMES)
    site = GatewaySite(Resource(), reactor=reactor)
    return TLSListener(reactor, 0, bind, ServerTLS(cert.chain_pem, cert.key_pem), site)


def test_listener_listens_over_tls(tmp_path: Path) -> None:
    """startService listens on the bind address; IPv6 addresses work too."""
    reactor = MemoryReactorClock()
    listener = _listener(reactor, tmp_path)
    listener.startService()
    port, factory, _, interface = reactor.tcpServers[0]
    assert (port, interface) == (0, "127.0.0.1")
    assert listener.listening is not None
    listener.stopService()
    v6 = _listener(MemoryReactorClock(), tmp_path, "::1")
    v6.startService()
    assert v6.reactor.tcpServers[0][3] == "::1"


def test_listener_failure_is_one_line(tmp_path: Path) -> None:
    """A port that cannot be bound stops the start with one line naming --secure-port."""
    listener = _listener(RefusingReactor(), tmp_path)
    with pytest.raises(SystemExit) as info:
        listener.startService()
    message = str(info.value)
    assert message.startswith("cluster-gateway: --secure-port: cannot listen on 127.0.0.1:0")
    assert "\n" not in message
