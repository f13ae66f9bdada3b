"""The caller's TLS client certificate: which CA vouched for it, and the user it names.

The listener trusts the union of the client CA and the front-proxy
(requestheader) CA in one handshake (:mod:`clustergateway.auth.tlstrust`), so
after the handshake we still have to find out *which* of them verified the
certificate: a certificate from the client CA is a user (CN = name, each O =
a group); one from the requestheader CA is the hub's front proxy, whose
``X-Remote-*`` headers name the user.  OpenSSL's verified chain answers that
(twisted-notes §4.1, ``get_verified_chain()``); like Go, a bundle vouches for
the certificate when any certificate of the verified chain is in it.  When
OpenSSL has no chain for the connection (a resumed session), the fallback is
a direct-issuer signature check against the bundle.

The answer is computed once per TLS connection and cached (a keep-alive or
HTTP/2 connection from the aggregator carries thousands of requests).
"""

from __future__ import annotations

import weakref
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.web.iweb import IRequest

from clustergateway.auth.authconfig import CABundle
from clustergateway.auth.user import UserInfo
from clustergateway.fence.twisted_web import stream_connection

__all__ = ["PeerCertificate", "PeerCertificates", "user_from_certificate"]


@attrs.frozen
class PeerCertificate:
    """A verified client certificate and its verified chain (leaf first, DER)."""

    leaf: x509.Certificate = attrs.field(eq=False, repr=False)
    chain: tuple[bytes, ...] = attrs.field(repr=False)

    @property
    def common_name(self) -> str:
        names = self.leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""

    def vouched_by(self, bundle: CABundle | None) -> bool:
        """Did a CA of ``bundle`` take part in verifying this certificate?"""
        if bundle is None:
            return False
        if self.chain:
            return any(der in bundle.ders for der in self.chain[1:]) or (
                len(self.chain) == 1 and self.chain[0] in bundle.ders
            )
        return bundle.issuer_of(self.leaf) is not None


def user_from_certificate(peer: PeerCertificate) -> UserInfo | None:
    """CN → user, each O → a group (the apiserver's ``CommonNameUserConversion``).

    A certificate without a CN authenticates nobody.
    """
    name = peer.common_name
    if not name:
        return None
    groups = [
        str(a.value) for a in peer.leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    ]
    return UserInfo(name, groups)


def _tls_transport(request: IRequest) -> Any:
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if transport is None:
        # HTTP/2: the stream has no transport; its connection does (twisted-notes §4.1).
        transport = getattr(stream_connection(channel), "transport", None)
    return transport


def _der(cert: crypto.X509) -> bytes:
    return cert.to_cryptography().public_bytes(Encoding.DER)


def _read_peer(transport: Any) -> PeerCertificate | None:
    get_peer = getattr(transport, "getPeerCertificate", None)
    if get_peer is None:
        return None
    peer = get_peer()
    if peer is None:
        return None
    leaf = peer.to_cryptography()
    chain: tuple[bytes, ...] = ()
    handle = transport.getHandle() if hasattr(transport, "getHandle") else None
    verified = handle.get_verified_chain() if handle is not None else None
    if verified:
        chain = tuple(_der(c) for c in verified)
    return PeerCertificate(leaf, chain)


@attrs.define
class PeerCertificates:
    """Reads (once per connection) the verified client certificate of a request."""

    _cache: weakref.WeakKeyDictionary[Any, PeerCertificate | None] = attrs.field(
        factory=weakref.WeakKeyDictionary, init=False
    )

    def of(self, request: IRequest) -> PeerCertificate | None:
        transport = _tls_transport(request)
        if transport is None:
            return None
        try:
            return self._cache[transport]
        except KeyError:
            pass
        except TypeError:  # not weak-referenceable: do not cache
            return _read_peer(transport)
        peer = _read_peer(transport)
        self._cache[transport] = peer
        return peer
