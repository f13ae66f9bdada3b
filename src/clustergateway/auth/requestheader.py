"""Front-proxy ("requestheader") authentication: the hub's aggregator says who is calling.

The aggregator presents its front-proxy client certificate and puts the
already-authenticated user in ``X-Remote-User``, ``X-Remote-Group`` (one per
group) and ``X-Remote-Extra-<%-escaped key>`` (twisted-notes §9.3).  Those
headers are believed only when the certificate was verified by the
requestheader CA *and* its CN is in the allowed names (an empty list allows
any name from that CA) — from anybody else they mean nothing.

Header reading follows the apiserver (``x509request``/``headerrequest``): the
user is the first non-empty value of the first username header that has one;
groups are all non-empty values of all group headers, in order; extras are
every header starting with an extra prefix (case-insensitive), the rest of the
name lower-cased then %-unescaped as the key.
"""

from __future__ import annotations

import attrs
from twisted.web.http_headers import Headers

from clustergateway.auth.authconfig import RequestHeaderConfig
from clustergateway.auth.clientcert import PeerCertificate
from clustergateway.auth.headerkeys import unescape_extra_key
from clustergateway.auth.user import UserInfo

__all__ = ["FrontProxyRejected", "front_proxy_user", "user_from_headers"]


@attrs.frozen
class FrontProxyRejected:
    """A certificate from the requestheader CA whose name is not allowed (a 401 cause)."""

    common_name: str

    def __str__(self) -> str:
        return f"x509: subject with cn={self.common_name} is not in the allowed list"


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _first_value(headers: Headers, names: tuple[str, ...]) -> str:
    """The first non-empty value of the first header in ``names`` that has one."""
    for header in names:
        values = headers.getRawHeaders(header.encode())
        if values and values[0]:
            return _text(values[0])
    return ""


def user_from_headers(headers: Headers, config: RequestHeaderConfig) -> UserInfo | None:
    """The user the front proxy named, or None when no username header has a value."""
    name = _first_value(headers, config.username_headers)
    if not name:
        return None
    uid = _first_value(headers, config.uid_headers)
    groups = [
        _text(value)
        for header in config.group_headers
        for value in headers.getRawHeaders(header.encode(), [])
        if value
    ]
    extra: dict[str, list[str]] = {}
    prefixes = [p.lower().encode() for p in config.extra_prefixes]
    if prefixes:
        raw = list(headers.getAllRawHeaders())
        for prefix in prefixes:  # prefix order first, as the apiserver orders values
            for header, values in raw:
                lowered = header.lower()
                if lowered.startswith(prefix) and len(lowered) > len(prefix):
                    key = unescape_extra_key(_text(lowered[len(prefix) :]))
                    extra.setdefault(key, []).extend(_text(v) for v in values)
    return UserInfo(name, groups, uid, extra)


def front_proxy_user(
    peer: PeerCertificate | None, headers: Headers, config: RequestHeaderConfig | None
) -> UserInfo | FrontProxyRejected | None:
    """The user of a front-proxy request.

    None: not a front-proxy request (no certificate from the requestheader CA,
    or no username header) — other authenticators decide.  A
    :class:`FrontProxyRejected`: a requestheader-CA certificate whose CN is not
    allowed.
    """
    if config is None or peer is None or not peer.vouched_by(config.ca):
        return None
    if config.allowed_names and peer.common_name not in config.allowed_names:
        return FrontProxyRejected(peer.common_name)
    return user_from_headers(headers, config)
