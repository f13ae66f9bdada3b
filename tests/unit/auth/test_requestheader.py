"""Front-proxy authentication: trust only a requestheader-CA certificate with an allowed CN."""

from __future__ import annotations

import pytest
from twisted.web.http_headers import Headers

from clustergateway.auth.authconfig import CABundle, RequestHeaderConfig
from clustergateway.auth.clientcert import PeerCertificate
from clustergateway.auth.requestheader import (
    FrontProxyRejected,
    front_proxy_user,
    user_from_headers,
)
from clustergateway.auth.user import UserInfo
from tests.unit.auth.pki import pki


def config(**kwargs) -> RequestHeaderConfig:
    return RequestHeaderConfig(CABundle.from_pem(pki().front_ca.cert_pem, "test"), **kwargs)


def headers(*pairs: tuple[str, str]) -> Headers:
    h = Headers()
    for name, value in pairs:
        h.addRawHeader(name.encode(), value.encode())
    return h


def peer(pair) -> PeerCertificate:
    """A peer as OpenSSL verified it against the CA that issued it."""
    from cryptography.hazmat.primitives.serialization import Encoding

    issuer = next(
        ca
        for ca in (pki().front_ca, pki().client_ca, pki().other_ca)
        if ca.certificate().subject == pair.certificate().issuer
    )
    return PeerCertificate(
        pair.certificate(),
        (
            pair.certificate().public_bytes(Encoding.DER),
            issuer.certificate().public_bytes(Encoding.DER),
        ),
    )


HEADER_TABLE = [
    (
        "user, groups and escaped extras",
        [
            ("X-Remote-User", "alice"),
            ("X-Remote-Group", "dev"),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-scopes", "b"),
            ("X-Remote-Extra-Authentication.kubernetes.io%2fcredential-id", "JTI=1"),
        ],
        {},
        UserInfo(
            "alice",
            ("dev", "system:authenticated"),
            extra={"scopes": ["a", "b"], "authentication.kubernetes.io/credential-id": ["JTI=1"]},
        ),
    ),
    ("no user header: not a front-proxy identity", [("X-Remote-Group", "dev")], {}, None),
    ("empty user header", [("X-Remote-User", "")], {}, None),
    (
        "first non-empty username header wins",
        [("X-Remote-User", ""), ("X-Other-User", "bob"), ("X-Third", "carol")],
        {"username_headers": ("X-Remote-User", "X-Other-User", "X-Third")},
        UserInfo("bob"),
    ),
    (
        "uid is ignored unless uid headers are configured",
        [("X-Remote-User", "alice"), ("X-Remote-Uid", "spoofed")],
        {},
        UserInfo("alice"),
    ),
    (
        "configured uid header",
        [("X-Remote-User", "alice"), ("X-Remote-Uid", "u-1")],
        {"uid_headers": ("X-Remote-Uid",)},
        UserInfo("alice", uid="u-1"),
    ),
    (
        "custom group header and extra prefix, empty group values skipped",
        [
            ("X-User", "a"),
            ("X-Groups", "g1"),
            ("X-Groups", ""),
            ("X-Ex-k", "v"),
            ("X-Remote-Extra-k", "ignored"),
        ],
        {
            "username_headers": ("X-User",),
            "group_headers": ("X-Groups",),
            "extra_prefixes": ("X-Ex-",),
        },
        UserInfo("a", ("g1",), extra={"k": ["v"]}),
    ),
    (
        "malformed escape keeps the key",
        [("X-Remote-User", "a"), ("X-Remote-Extra-bad%zz", "v")],
        {},
        UserInfo("a", extra={"bad%zz": ["v"]}),
    ),
]


@pytest.mark.parametrize(
    ("headers_in", "kwargs", "expected"),
    [c[1:] for c in HEADER_TABLE],
    ids=[c[0] for c in HEADER_TABLE],
)
def test_user_from_headers(headers_in, kwargs, expected) -> None:
    """Headers read like the apiserver's requestheader authenticator."""
    assert user_from_headers(headers(*headers_in), config(**kwargs)) == expected


FRONT = [("X-Remote-User", "alice"), ("X-Remote-Group", "dev")]


def test_front_proxy_certificate_with_allowed_name() -> None:
    """The aggregator's certificate + X-Remote-User → that user."""
    got = front_proxy_user(
        peer(pki().front), headers(*FRONT), config(allowed_names=("front-proxy-client",))
    )
    assert got == UserInfo("alice", ("dev",))


def test_empty_allowed_names_allow_any_name_from_the_ca() -> None:
    """An empty allowed-names list trusts every certificate of the requestheader CA."""
    assert front_proxy_user(peer(pki().front_other_name), headers(*FRONT), config()) == UserInfo(
        "alice", ("dev",)
    )


def test_name_not_allowed_is_rejected() -> None:
    """A requestheader-CA certificate with another CN is a 401 cause, headers ignored."""
    got = front_proxy_user(
        peer(pki().front_other_name), headers(*FRONT), config(allowed_names=("front-proxy-client",))
    )
    assert got == FrontProxyRejected("intruder")
    assert str(got) == "x509: subject with cn=intruder is not in the allowed list"


@pytest.mark.parametrize("who", ["alice", "stranger", None])
def test_headers_without_front_proxy_certificate_are_ignored(who) -> None:
    """X-Remote-* from a client-CA certificate, another CA or no certificate mean nothing."""
    p = peer(getattr(pki(), who)) if who else None
    assert front_proxy_user(p, headers(*FRONT), config()) is None


def test_no_requestheader_configuration() -> None:
    """Without a requestheader CA nobody is a front proxy."""
    assert front_proxy_user(peer(pki().front), headers(*FRONT), None) is None
