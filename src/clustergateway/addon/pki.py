"""The signer CA and the gateway's serving certificate: pure functions of (secret, now).

Go (``pkg/util/cert/cert.go`` ``EnsureCAPair``) keeps the signer in Secret
``<ns>/cluster-gateway-signer`` (``ca.crt`` PEM CERTIFICATE, ``ca.key`` PEM
PKCS#8 PRIVATE KEY, CN ``cluster-gateway``), and rotates the serving pair
``<installNamespace>/cluster-gateway-tls-cert`` (``kubernetes.io/tls``) with the
addon-framework's ``certrotation.TargetRotation``: a new pair when the Secret
has none, an unparsable one, an expired one, one in the last fifth of its
validity, or one whose issuer is not the signer.  Those rules are
:func:`rotation_reason`; the validity is Go's 180 days.

The certificates themselves are issued by :mod:`clustergateway.certs` (the one
place that builds X.509 in this project); this module keeps Go's names, the
rotation rules and the Secret shapes.

Decision: new keys are ECDSA P-256 (Go makes RSA-2048); any key type an
existing signer Secret holds, RSA included, is read and used, so a signer the
Go addon-manager created keeps signing.  The new CA's key usages are
``certs.make_ca``'s (digitalSignature, keyCertSign, cRLSign), not client-go's
keyEncipherment, which means nothing for an EC key.  The issuer check also verifies the
signature, not just the issuer's common name, so a certificate from another CA
that happens to share the CN is replaced.  The serving certificate's CN is
``cluster-gateway.<ns>.svc``, not Go's first SAN ``cluster-gateway``: that equals
the signer's CN, and OpenSSL clients (Python's among them) then take the leaf
for a self-signed certificate and refuse it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Mapping
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from clustergateway.addon.names import ADDON_NAME, SERVICE_NAME, TLS_SECRET_NAME
from clustergateway.certs import KeyPair, issue_cert, make_ca

__all__ = [
    "PkiError",
    "SERVING_VALIDITY",
    "Signer",
    "rotation_reason",
    "serving_hosts",
    "serving_secret",
]

SERVING_VALIDITY = datetime.timedelta(days=180)
SIGNER_VALIDITY = datetime.timedelta(days=3650)
_SKEW = datetime.timedelta(minutes=5)


class PkiError(ValueError):
    """A signer or certificate Secret that cannot be used; the message says why."""


def _decoded(secret: Mapping[str, Any], key: str) -> bytes:
    value = (secret.get("data") or {}).get(key)
    if not value:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


@attrs.frozen
class Signer:
    """The CA that signs the serving certificate (and is the APIService's caBundle)."""

    cert_pem: bytes
    key_pem: bytes = attrs.field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def pair(self) -> KeyPair:
        """The signer as :mod:`clustergateway.certs` issues with it."""
        return KeyPair(self.cert_pem, self.key_pem)

    def private_key(self) -> CertificateIssuerPrivateKeyTypes:
        return self.pair.signing_key()

    @classmethod
    def generate(cls, now: datetime.datetime) -> Signer:
        """A new self-signed CA with Go's subject (CN ``cluster-gateway``)."""
        pair = make_ca(ADDON_NAME, validity=SIGNER_VALIDITY, now=now, backdate=_SKEW)
        return cls(pair.cert_pem, pair.key_pem)

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> Signer:
        """Read ``ca.crt``/``ca.key``; :class:`PkiError` if either is missing or broken."""
        cert_pem, key_pem = _decoded(secret, "ca.crt"), _decoded(secret, "ca.key")
        name = (secret.get("metadata") or {}).get("name", "")
        if not cert_pem or not key_pem:
            raise PkiError(f"signer Secret {name} lacks ca.crt or ca.key")
        signer = cls(cert_pem, key_pem)
        try:
            cert, key = signer.certificate, signer.private_key()
        except ValueError as e:
            raise PkiError(f"signer Secret {name} does not hold a PEM CA pair: {e}") from None
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
            raise PkiError(f"signer Secret {name}: ca.key does not match ca.crt")
        return signer

    def secret(self, namespace: str, name: str) -> dict[str, Any]:
        """The signer Secret as Go writes it (type Opaque, no owner)."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "data": {
                "ca.crt": base64.b64encode(self.cert_pem).decode(),
                "ca.key": base64.b64encode(self.key_pem).decode(),
            },
        }

    def signed(self, cert: x509.Certificate) -> bool:
        """True if ``cert`` carries this CA's signature."""
        public = self.certificate.public_key()
        try:
            if isinstance(public, rsa.RSAPublicKey):
                assert cert.signature_hash_algorithm is not None
                public.verify(
                    cert.signature,
                    cert.tbs_certificate_bytes,
                    padding.PKCS1v15(),
                    cert.signature_hash_algorithm,
                )
            elif isinstance(public, ec.EllipticCurvePublicKey):
                assert cert.signature_hash_algorithm is not None
                public.verify(
                    cert.signature,
                    cert.tbs_certificate_bytes,
                    ec.ECDSA(cert.signature_hash_algorithm),
                )
            else:
                return False
        except InvalidSignature:
            return False
        return True


def serving_hosts(install_namespace: str) -> tuple[str, ...]:
    """Go's SANs: ``cluster-gateway``, ``cluster-gateway.<ns>``, ``cluster-gateway.<ns>.svc``."""
    return (
        SERVICE_NAME,
        f"{SERVICE_NAME}.{install_namespace}",
        f"{SERVICE_NAME}.{install_namespace}.svc",
    )


def rotation_reason(
    secret: Mapping[str, Any] | None, signer: Signer, now: datetime.datetime
) -> str | None:
    """Why the serving Secret needs a new pair (addon-framework's rules), or None."""
    if secret is None:
        return "missing"
    cert_pem = _decoded(secret, "tls.crt")
    if not cert_pem:
        return "missing tls.crt"
    if not _decoded(secret, "tls.key"):
        return "missing tls.key"
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except (ValueError, IndexError):
        return "bad certificate"
    not_after, not_before = cert.not_valid_after_utc, cert.not_valid_before_utc
    if now >= not_after:
        return "already expired"
    if now >= not_after - (not_after - not_before) / 5:
        return f"expires in {(not_after - now).total_seconds():.0f} seconds"
    if not signer.signed(cert):
        return f"issuer {cert.issuer.rfc4514_string()!r} is not the signer"
    return None


def serving_secret(
    namespace: str,
    signer: Signer,
    now: datetime.datetime,
    validity: datetime.timedelta = SERVING_VALIDITY,
) -> dict[str, Any]:
    """A fresh serving pair for the gateway's Service, as a ``kubernetes.io/tls`` Secret."""
    hosts = serving_hosts(namespace)
    issued = issue_cert(
        signer.pair, hosts[-1], hosts=hosts, server=True, validity=validity, now=now, backdate=_SKEW
    )
    cert = issued.certificate()
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": TLS_SECRET_NAME,
            "namespace": namespace,
            "annotations": {
                "auth.openshift.io/certificate-not-after": cert.not_valid_after_utc.strftime(stamp),
                "auth.openshift.io/certificate-not-before": cert.not_valid_before_utc.strftime(
                    stamp
                ),
                "auth.openshift.io/certificate-hostnames": ",".join(hosts),
            },
        },
        "data": {
            "tls.crt": base64.b64encode(issued.cert_pem).decode(),
            "tls.key": base64.b64encode(issued.key_pem).decode(),
        },
    }
