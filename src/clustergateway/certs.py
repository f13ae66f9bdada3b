"""X.509 issuing, written once: a CA, and leaf certificates it signs.

Used by the gateway (``--cert-dir`` without ``--tls-cert-file``), by the
addon-manager's signer and serving certificate (``addon.pki`` keeps only the
rotation rules and the Secret shapes), and by the simulated cluster, which needs
a CA, a serving certificate and client certificates whose CN/O carry a user and
groups.  New keys are ECDSA P-256; a CA read from elsewhere may hold any key
type ``cryptography`` signs with (the Go addon-manager's signer is RSA).
"""

from __future__ import annotations

import datetime
import ipaddress
import typing
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["KeyPair", "issue_cert", "make_ca", "write_pem", "serving_hosts"]

_ONE_DAY = datetime.timedelta(days=1)
_CA_VALIDITY = datetime.timedelta(days=3650)
_LEAF_VALIDITY = datetime.timedelta(days=365)


@attrs.frozen
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def signing_key(self) -> CertificateIssuerPrivateKeyTypes:
        """The key as a CA signs with it, whatever its type (RSA from a Go signer)."""
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, typing.get_args(CertificateIssuerPrivateKeyTypes)):
            raise ValueError(f"a {type(key).__name__} cannot sign certificates")
        return typing.cast(CertificateIssuerPrivateKeyTypes, key)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: fast to generate (tests make many) and accepted by Go and OpenSSL.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) if now is None else now


def make_ca(
    common_name: str,
    *,
    validity: datetime.timedelta = _CA_VALIDITY,
    now: datetime.datetime | None = None,
    backdate: datetime.timedelta = _ONE_DAY,
) -> KeyPair:
    """A self-signed CA certificate, valid from ``now - backdate`` for ``validity``.

    ``backdate`` absorbs clock skew between issuer and verifier.
    """
    key = _new_key()
    now = _now(now)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def serving_hosts() -> tuple[str, ...]:
    """The default names of a loopback serving certificate."""
    return ("localhost", "127.0.0.1", "::1")


def issue_cert(
    ca: KeyPair,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    hosts: tuple[str, ...] = (),
    client: bool = False,
    server: bool = False,
    validity: datetime.timedelta = _LEAF_VALIDITY,
    now: datetime.datetime | None = None,
    backdate: datetime.timedelta = _ONE_DAY,
) -> KeyPair:
    """A leaf certificate signed by ``ca``, valid from ``now - backdate`` for ``validity``.

    ``hosts`` become DNS or IP subjectAltNames; ``organizations`` become O
    attributes (Kubernetes reads them as groups of a client certificate).
    """
    key = _new_key()
    now = _now(now)
    ca_cert = ca.certificate()
    ca_key = ca.signing_key()
    usages = []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def write_pem(directory: Path, name: str, data: bytes, *, private: bool = False) -> Path:
    """Write ``data`` to ``directory/name`` (mode 0600 for private keys)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path
