"""The signer and the serving certificate: Go's names and rotation rules, issued by ``certs``."""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clustergateway.addon.pki import (
    SERVING_VALIDITY,
    PkiError,
    Signer,
    rotation_reason,
    serving_secret,
)

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _leaf(secret: dict[str, object]) -> x509.Certificate:
    data = secret["data"]
    assert isinstance(data, dict)
    return x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))


def _go_rsa_signer() -> Signer:
    """A signer as the Go addon-manager writes it: RSA-2048, CN ``cluster-gateway``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-gateway")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Signer(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def test_generated_signer_is_a_ca_with_gos_subject() -> None:
    """CN ``cluster-gateway``, a CA, valid from just before ``now``; its Secret reads back."""
    signer = Signer.generate(NOW)
    cert = signer.certificate
    assert cert.subject.rfc4514_string() == "CN=cluster-gateway"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert NOW - datetime.timedelta(minutes=10) < cert.not_valid_before_utc < NOW
    assert Signer.from_secret(signer.secret("ns", "cluster-gateway-signer")) == signer


def test_serving_secret_names_the_service_and_is_signed_by_the_signer() -> None:
    """Go's SANs, CN ``cluster-gateway.<ns>.svc``, serverAuth, 180 days, the signer's signature."""
    signer = Signer.generate(NOW)
    secret = serving_secret("vela-system", signer, NOW)
    assert secret["type"] == "kubernetes.io/tls"
    cert = _leaf(secret)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "cluster-gateway",
        "cluster-gateway.vela-system",
        "cluster-gateway.vela-system.svc",
    ]
    assert cert.subject.rfc4514_string() == "CN=cluster-gateway.vela-system.svc"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc - NOW == SERVING_VALIDITY
    assert signer.signed(cert)
    assert rotation_reason(secret, signer, NOW) is None


def test_a_go_rsa_signer_keeps_signing() -> None:
    """A signer Secret the Go addon-manager created (RSA) is read and signs new pairs."""
    signer = Signer.from_secret(_go_rsa_signer().secret("ns", "cluster-gateway-signer"))
    secret = serving_secret("ns", signer, NOW)
    assert signer.signed(_leaf(secret))
    assert rotation_reason(secret, signer, NOW) is None


def test_rotation_reasons() -> None:
    """Missing, expiring (last fifth), expired, or from another CA with the same CN."""
    signer = Signer.generate(NOW)
    secret = serving_secret("ns", signer, NOW)
    assert rotation_reason(None, signer, NOW) == "missing"
    assert rotation_reason({"data": {}}, signer, NOW) == "missing tls.crt"
    late = NOW + SERVING_VALIDITY * 0.9
    assert (rotation_reason(secret, signer, late) or "").startswith("expires in")
    assert rotation_reason(secret, signer, NOW + SERVING_VALIDITY) == "already expired"
    other = Signer.generate(NOW)
    assert "is not the signer" in (rotation_reason(secret, other, NOW) or "")


def test_broken_signer_secret_is_refused() -> None:
    """A signer Secret whose key does not match its certificate is a PkiError."""
    one, two = Signer.generate(NOW), Signer.generate(NOW)
    mixed = Signer(one.cert_pem, two.key_pem).secret("ns", "cluster-gateway-signer")
    with pytest.raises(PkiError, match="does not match"):
        Signer.from_secret(mixed)
