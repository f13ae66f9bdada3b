"""How the gateway authenticates to a cluster: a ``CredentialSpec`` made usable.

A credential resolves to at most a bearer token (sent as ``Authorization``)
and a client certificate (presented in the TLS handshake).  Resolution is
asynchronous behind :class:`CredentialProvider` because ``Dynamic``
credentials run an exec plugin: :class:`~clustergateway.proxy.execcred.ExecCredentialProvider`
(what ``tap`` wires) does, :class:`StaticCredentialProvider` alone answers them
with a 503.
Nothing here logs or formats a credential: :class:`ResolvedCredential` keeps
them out of its ``repr``.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, fail, succeed

from clustergateway.errors import ServiceUnavailable
from clustergateway.registry.model import ClusterGateway

__all__ = [
    "CredentialProvider",
    "ResolvedCredential",
    "StaticCredentialProvider",
    "StaticCredentials",
    "resolve_static",
]


@attrs.frozen
class ResolvedCredential:
    """What goes on the wire for one cluster.

    ``authorization`` is the full ``Authorization`` header value, or None.
    ``client_certificate``/``client_key`` are PEM, both set or both None.
    """

    authorization: bytes | None = attrs.field(default=None, repr=False)
    client_certificate: bytes | None = attrs.field(default=None, repr=False)
    client_key: bytes | None = attrs.field(default=None, repr=False)

    def tls_identity(self) -> tuple[bytes, bytes] | None:
        """The client certificate and key: part of a connection pool's key."""
        if self.client_certificate and self.client_key:
            return (self.client_certificate, self.client_key)
        return None


NO_CREDENTIAL = ResolvedCredential()


class CredentialProvider(Protocol):
    """Turns a cluster's credential into what is sent with each request."""

    def credential_for(self, cluster: ClusterGateway) -> Deferred[ResolvedCredential]:
        """The credential to use now; fails with a ``StatusError`` when there is none."""


def resolve_static(cluster: ClusterGateway) -> ResolvedCredential:
    """The credential of a cluster whose Secret holds it directly.

    Raises ``ServiceUnavailable`` for ``Dynamic`` (exec plugin) credentials and
    for an unknown credential type.  A cluster without a credential is
    proxied without one (the cluster then decides, typically 401).
    """
    spec = cluster.credential
    if spec is None:
        return NO_CREDENTIAL
    if spec.type == "ServiceAccountToken":
        # A token pasted with its trailing newline is the common mistake; no
        # bearer token can contain whitespace, so trimming loses nothing.
        token = spec.token.strip()
        if not token:
            return NO_CREDENTIAL
        if any(c in token for c in "\r\n\0"):
            raise ServiceUnavailable(
                f"cluster {cluster.name}: the token contains line breaks or NUL bytes",
                {"name": cluster.name, "kind": "clustergateways"},
            )
        return ResolvedCredential(authorization=b"Bearer " + token.encode("utf-8"))
    if spec.type == "X509Certificate":
        if spec.certificate and spec.private_key:
            return ResolvedCredential(
                client_certificate=spec.certificate, client_key=spec.private_key
            )
        return NO_CREDENTIAL
    if spec.type == "Dynamic":
        raise ServiceUnavailable(
            f"cluster {cluster.name}: exec credentials not yet supported",
            {"name": cluster.name, "kind": "clustergateways"},
        )
    raise ServiceUnavailable(
        f"cluster {cluster.name}: unsupported credential type {spec.type!r}",
        {"name": cluster.name, "kind": "clustergateways"},
    )


@attrs.define
class StaticCredentials:
    """:func:`resolve_static`, remembered per cluster while its credential is unchanged.

    The registry hands out the same ``CredentialSpec`` object until the
    Secret changes, so an identity check says whether the answer still holds;
    resolving (strip, checks, ``Bearer`` prefix) per request is skipped.
    """

    _known: dict[str, tuple[Any, ResolvedCredential]] = attrs.field(factory=dict)

    def resolve(self, cluster: ClusterGateway) -> ResolvedCredential:
        spec = cluster.credential
        known = self._known.get(cluster.name)
        if known is not None and known[0] is spec:
            return known[1]
        resolved = resolve_static(cluster)
        self._known[cluster.name] = (spec, resolved)
        return resolved


@attrs.define
class StaticCredentialProvider:
    """Credentials stored in the Secret: tokens and client certificates.

    ``Dynamic`` clusters get a 503 here; ``execcred.ExecCredentialProvider``
    resolves these the same way and runs exec plugins for ``Dynamic``.
    """

    _static: StaticCredentials = attrs.field(factory=StaticCredentials, init=False)

    def credential_for(self, cluster: ClusterGateway) -> Deferred[ResolvedCredential]:
        try:
            return succeed(self._static.resolve(cluster))
        except ServiceUnavailable as e:
            return fail(e)
