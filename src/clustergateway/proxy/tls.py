"""Client TLS towards a managed cluster: one connection creator per cluster credential.

The creator decides trust (the Secret's CA bundle, the platform roots when the
bundle is present but empty, or nothing when the cluster is ``insecure``),
which name the server certificate must carry (``tls_server_name`` or the
endpoint host; sent as SNI when it is a DNS name), the client certificate, TLS
1.2 as the floor and ALPN ``http/1.1`` for the HTTP/1.1 pool (``h1client``);
the HTTP/2 connections of long-running requests (``h2client``) offer ``h2``
first (``alpn=H2_ALPN``) and fall back to HTTP/1.1 when it is not selected.

``CertificateOptions`` caches its ``SSL.Context``, so a creator is built once
per connection pool and rebuilt only when the Secret changes (twisted-notes
§4.2, §4.3).  Errors name what is wrong, never the material itself.
"""

from __future__ import annotations

from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from clustergateway.fence.openssl import verify_result
from clustergateway.proxy.credentials import ResolvedCredential
from clustergateway.proxy.paths import UpstreamTarget, ip_version
from clustergateway.registry.model import EndpointSpec

__all__ = [
    "H2_ALPN",
    "InsecureClientTLS",
    "TLSConfigError",
    "client_tls_creator",
    "konnectivity_tls_creator",
    "proxy_tls_creator",
    "verify_error_of",
]

_ALPN = [b"http/1.1"]
#: The offer of ``h2client``'s connections.
H2_ALPN = [b"h2", b"http/1.1"]


class TLSConfigError(ValueError):
    """The cluster's TLS material cannot be used; the message says which part and why."""


def _certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TLSConfigError(f"{what} is not a valid PEM certificate") from None
    if not certs:
        raise TLSConfigError(f"{what} holds no certificate")
    return certs


def _twisted_cert(cert: x509.Certificate) -> ssl.Certificate:
    return ssl.Certificate.loadPEM(cert.public_bytes(serialization.Encoding.PEM))


def _client_certificate(
    credential: ResolvedCredential,
) -> tuple[ssl.PrivateCertificate | None, list[ssl.Certificate]]:
    identity = credential.tls_identity()
    if identity is None:
        return None, []
    cert_pem, key_pem = identity
    return _private_certificate(
        cert_pem, key_pem, "the client certificate (tls.crt)", "the client key (tls.key)"
    )


def _private_certificate(
    cert_pem: bytes, key_pem: bytes, cert_what: str, key_what: str
) -> tuple[ssl.PrivateCertificate, list[ssl.Certificate]]:
    """The leaf with its key, and the rest of the chain; the key must match the leaf."""
    chain = _certificates(cert_pem, cert_what)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise TLSConfigError(f"{key_what} cannot be read: {e}") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if chain[0].public_key().public_bytes(der, public) != key.public_key().public_bytes(
        der, public
    ):
        raise TLSConfigError(f"{cert_what} does not match its key ({key_what})")
    leaf_pem = chain[0].public_bytes(serialization.Encoding.PEM)
    private = ssl.PrivateCertificate.loadPEM(leaf_pem + key_pem)
    return private, [_twisted_cert(c) for c in chain[1:]]


@implementer(IOpenSSLClientConnectionCreator)
@attrs.frozen
class InsecureClientTLS:
    """TLS without verifying the server (``insecure``; a Secret without a CA).

    Still sends SNI for DNS names and still presents the client certificate.
    """

    options: ssl.CertificateOptions
    server_name: bytes | None

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        connection: SSL.Connection = self.options.clientConnectionForTLS(tlsProtocol)
        if self.server_name is not None:
            connection.set_tlsext_host_name(self.server_name)
        return connection


#: OpenSSL's X509 verification results worth naming (``X509_V_ERR_*``).
_VERIFY_ERRORS = {
    2: "the issuer of the server certificate is not in the cluster's CA bundle (ca.crt)",
    9: "the server certificate is not yet valid",
    10: "the server certificate has expired",
    18: "the server certificate is self-signed and not in the cluster's CA bundle (ca.crt)",
    19: "the server's chain ends in a CA that is not in the cluster's CA bundle (ca.crt)",
    20: "the server certificate is not signed by a CA in the cluster's CA bundle (ca.crt)",
    21: "the server certificate is not signed by a CA in the cluster's CA bundle (ca.crt)",
    24: "an intermediate certificate of the server is not a CA",
    26: "the server certificate is not meant for a TLS server",
}


def verify_error_of(tls: Any) -> str | None:
    """Why OpenSSL rejected the server certificate on the TLS protocol ``tls``, if it did.

    pyOpenSSL has no ``get_verify_result``, so this reads OpenSSL's through
    pyOpenSSL's binding (``fence.openssl``); any problem doing so just means no
    detail (the message then says "certificate verify failed" alone).  Never
    replace the connection's verify callback to learn this: Twisted checks the
    host name in it.
    """
    try:
        code = verify_result(tls.getHandle())
    except Exception:
        return None
    if not code:
        return None
    return _VERIFY_ERRORS.get(code, f"X509 verify error {code}")


def client_tls_creator(
    target: UpstreamTarget,
    endpoint: EndpointSpec,
    credential: ResolvedCredential,
    alpn: list[bytes] = _ALPN,
) -> IOpenSSLClientConnectionCreator:
    """The TLS creator for one cluster and credential, offering ``alpn``.

    Raises :class:`TLSConfigError` when the CA bundle or the client
    certificate/key cannot be used.
    """
    client_cert, chain = _client_certificate(credential)
    extra: dict[str, object] = {"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}
    if chain:
        extra["extraCertChain"] = chain
    if endpoint.insecure:
        options = ssl.CertificateOptions(
            verify=False,
            acceptableProtocols=alpn,
            privateKey=client_cert.privateKey.original if client_cert else None,
            certificate=client_cert.original if client_cert else None,
            **extra,  # type: ignore[arg-type]
        )
        name = None if ip_version(target.server_name) else target.server_name.encode("idna")
        return InsecureClientTLS(options, name)
    return ssl.optionsForClientTLS(
        target.server_name,
        trustRoot=_trust(endpoint),
        clientCertificate=client_cert,
        acceptableProtocols=alpn,
        extraCertificateOptions=extra,
    )


def _trust(endpoint: EndpointSpec) -> Any:  # an IOpenSSLTrustRoot (not exported)
    if endpoint.ca_bundle is not None and endpoint.ca_bundle.strip():
        roots = _certificates(endpoint.ca_bundle, "the CA bundle (ca.crt)")
        return ssl.trustRootFromCertificates([_twisted_cert(c) for c in roots])
    # No CA (or an empty one) on a cluster that is not insecure: Go then
    # verifies against the system roots.
    return ssl.platformTrust()


def proxy_tls_creator(proxy_host: str, endpoint: EndpointSpec) -> IOpenSSLClientConnectionCreator:
    """TLS to an ``https://`` egress proxy: trusted like the cluster, without its client cert.

    Go's transport verifies the proxy with the cluster's TLS settings (CA
    bundle, or none when ``insecure``); the gateway does the same but never
    shows the cluster's client certificate to the proxy.  No ALPN: the
    proxy's protocol is ``CONNECT``, not the cluster's HTTP.
    """
    extra: dict[str, object] = {"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}
    if endpoint.insecure:
        options = ssl.CertificateOptions(verify=False, **extra)  # type: ignore[arg-type]
        return InsecureClientTLS(
            options, None if ip_version(proxy_host) else proxy_host.encode("idna")
        )
    return ssl.optionsForClientTLS(
        proxy_host, trustRoot=_trust(endpoint), extraCertificateOptions=extra
    )


def konnectivity_tls_creator(
    host: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes
) -> IOpenSSLClientConnectionCreator:
    """mTLS to a konnectivity proxy-server (``--proxy-ca-cert``/``--proxy-cert``/``--proxy-key``).

    As Go: the proxy-server's certificate must chain to its CA and carry
    ``host`` (``--proxy-host``); the gateway shows its client certificate.
    ALPN offers ``h2`` only (gRPC).  Raises :class:`TLSConfigError` naming
    the flag whose material cannot be used.
    """
    roots = _certificates(ca_pem, "--proxy-ca-cert")
    client, chain = _private_certificate(cert_pem, key_pem, "--proxy-cert", "--proxy-key")
    extra: dict[str, object] = {"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}
    if chain:
        extra["extraCertChain"] = chain
    return ssl.optionsForClientTLS(
        host,
        trustRoot=ssl.trustRootFromCertificates([_twisted_cert(c) for c in roots]),
        clientCertificate=client,
        acceptableProtocols=[b"h2"],
        extraCertificateOptions=extra,
    )
