"""The serving TLS context: optional client certificates, trust swappable at run time.

One listener serves the hub's aggregator (front-proxy certificate), users
with client certificates and users with bearer tokens.  So the handshake
*requests* a client certificate, verified against the union of the client CA
and the requestheader CA, but does not require one (twisted-notes §4.1:
``verify=True, caCerts=[...], requireCertificate=False``).  Which CA vouched
for a certificate is decided per request (:mod:`clustergateway.auth.clientcert`).

``CertificateOptions`` caches its ``SSL.Context``, so a new trust (rotated CA
in the hub's ConfigMap) or a new serving certificate means new options; this
creator swaps them while existing connections keep the old ones
(twisted-notes §4.3).  ALPN (``h2``, ``http/1.1``) comes from the ``Site``
through Twisted's ``protosFromProtocol``.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from clustergateway.tlspolicy import TLSPolicy

__all__ = ["ServerTLS", "server_options"]


def server_options(
    cert_pem: bytes,
    key_pem: bytes,
    trust: Sequence[x509.Certificate] = (),
    policy: TLSPolicy | None = None,
) -> CertificateOptions:
    """Options for the serving certificate (``cert_pem`` may carry its chain) and ``trust``.

    ``policy``: the lowest TLS version and the cipher suites
    (``--tls-min-version``, ``--tls-cipher-suites``).  Raises ``ValueError``
    when the certificate or key cannot be loaded.
    """
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem)
    except (ValueError, crypto.Error) as exc:
        raise ValueError(f"cannot load the serving certificate or key: {exc}") from None
    if not chain:
        raise ValueError("cannot load the serving certificate: no certificate in it")
    leaf, *extra = (crypto.X509.from_cryptography(c) for c in chain)
    common = {
        "privateKey": key,
        "certificate": leaf,
        "extraCertChain": extra,
        **(policy or TLSPolicy()).certificate_options(),
    }
    if not trust:
        return CertificateOptions(**common)
    return CertificateOptions(
        **common,
        verify=True,
        caCerts=[crypto.X509.from_cryptography(c) for c in trust],
        requireCertificate=False,
    )


@implementer(IOpenSSLServerConnectionCreator)
@attrs.define
class ServerTLS:
    """A server connection creator whose options can be replaced at any time."""

    cert_pem: bytes = attrs.field(repr=False)
    key_pem: bytes = attrs.field(repr=False)
    trust: tuple[x509.Certificate, ...] = attrs.field(default=(), converter=tuple, repr=False)
    policy: TLSPolicy = TLSPolicy()
    _options: CertificateOptions = attrs.field(init=False, repr=False)

    @_options.default
    def _build(self) -> CertificateOptions:
        return server_options(self.cert_pem, self.key_pem, self.trust, self.policy)

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return self._options.serverConnectionForTLS(tlsProtocol)

    def set_trust(self, trust: Sequence[x509.Certificate]) -> None:
        """Trust these CAs for client certificates from the next connection on."""
        trust = tuple(trust)
        if trust != self.trust:
            self._options = server_options(self.cert_pem, self.key_pem, trust, self.policy)
            self.trust = trust

    def set_serving(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Serve this certificate from the next connection on (``ValueError`` if unusable)."""
        self._options = server_options(cert_pem, key_pem, self.trust, self.policy)
        self.cert_pem, self.key_pem = cert_pem, key_pem
