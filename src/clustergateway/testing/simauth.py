"""Who is calling the simulated cluster: bearer tokens, client certificates, impersonation.

Tokens are kept only as SHA-256 digests, so neither a repr nor a log of the
authenticator can leak one.  A client certificate reaches :func:`user_from_certificate`
only after the TLS layer verified it against the client CA (CN = user, O = groups).
Impersonation follows kube-apiserver: ``Impersonate-User`` (required when any other
``Impersonate-*`` header is present), ``Impersonate-Group`` (repeatable),
``Impersonate-Uid``, ``Impersonate-Extra-<key>`` (key %-decoded, lower-cased).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import attrs

from clustergateway.auth.user import UserInfo
from clustergateway.errors import BadRequest, Forbidden, Unauthorized

__all__ = [
    "TokenAuthenticator",
    "apply_impersonation",
    "bearer_token",
    "user_from_certificate",
]

AUTHENTICATED = "system:authenticated"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _with_authenticated(groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(groups) if AUTHENTICATED in groups else (*groups, AUTHENTICATED)


@attrs.define
class TokenAuthenticator:
    """Bearer tokens the cluster accepts, each mapped to a user."""

    _users: dict[str, UserInfo] = attrs.field(factory=dict, repr=False)

    def add(self, token: str, user: UserInfo) -> None:
        """Accept ``token`` as ``user`` (``system:authenticated`` is added to its groups)."""
        self._users[_digest(token)] = attrs.evolve(user, groups=_with_authenticated(user.groups))

    def remove(self, token: str) -> None:
        self._users.pop(_digest(token), None)

    def lookup(self, token: str) -> UserInfo | None:
        """The user ``token`` belongs to, or None."""
        return self._users.get(_digest(token))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def user_from_certificate(cert: Any) -> UserInfo:
    """The user of a verified client certificate (pyOpenSSL or cryptography X.509)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    certificate = cert if isinstance(cert, x509.Certificate) else cert.to_cryptography()
    subject = certificate.subject
    names = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if not names or not names[0]:
        raise Unauthorized("Unauthorized: client certificate without a common name")
    groups = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return UserInfo(names[0], _with_authenticated(groups))


def apply_impersonation(
    user: UserInfo,
    headers: Mapping[str, Sequence[str]],
    may_impersonate: Any = None,
) -> tuple[UserInfo, UserInfo | None]:
    """``(effective user, impersonator or None)`` for lower-cased ``headers``.

    ``may_impersonate(user, kind, value) -> bool`` decides whether ``user`` may
    impersonate a ``users``/``groups``/``uids``/``userextras`` value; refusal is 403.
    """
    names = headers.get("impersonate-user") or []
    groups = list(headers.get("impersonate-group") or [])
    uids = headers.get("impersonate-uid") or []
    extra: dict[str, list[str]] = {}
    for header, values in headers.items():
        if header.startswith("impersonate-extra-"):
            key = unquote(header[len("impersonate-extra-") :]).lower()
            extra.setdefault(key, []).extend(values)
    if not names:
        if groups or uids or extra:
            raise BadRequest(
                "requested impersonation of groups, uid or extra without impersonating a user"
            )
        return user, None
    name = names[0]
    checks = [("users", name), *[("groups", g) for g in groups], *[("uids", u) for u in uids]]
    checks += [(f"userextras/{k}", v) for k, vs in extra.items() for v in vs]
    for kind, value in checks:
        if may_impersonate is not None and not may_impersonate(user, kind, value):
            resource = kind.split("/")[0]
            raise Forbidden(
                f'{resource} "{value}" is forbidden: User "{user.name}" cannot impersonate'
                f' resource "{resource}" in API group "" at the cluster scope',
                {"name": value, "kind": resource},
            )
    if name != "system:anonymous" and not name.startswith("system:serviceaccount:"):
        effective_groups = _with_authenticated(groups)
    elif name.startswith("system:serviceaccount:"):
        ns = name.split(":")[2] if name.count(":") >= 3 else ""
        effective_groups = _with_authenticated(
            [*groups, "system:serviceaccounts", f"system:serviceaccounts:{ns}"]
            if not groups
            else groups
        )
    else:
        effective_groups = tuple(groups)
    return UserInfo(name, effective_groups, uids[0] if uids else "", extra), user
