"""Authentication and impersonation rules (clustergateway.testing.simauth)."""

from __future__ import annotations

import pytest

from clustergateway.auth.user import UserInfo
from clustergateway.certs import issue_cert, make_ca
from clustergateway.errors import BadRequest, Forbidden
from clustergateway.testing.simauth import (
    TokenAuthenticator,
    apply_impersonation,
    bearer_token,
    user_from_certificate,
)

ADMIN = UserInfo("admin", ("system:masters", "system:authenticated"))


def test_tokens_are_kept_hashed():
    """Registered tokens authenticate; the table never holds the token itself."""
    tokens = TokenAuthenticator()
    tokens.add("s3cret-token", UserInfo("alice", ("dev",)))
    assert tokens.lookup("s3cret-token") == UserInfo("alice", ("dev", "system:authenticated"))
    assert tokens.lookup("other") is None
    assert "s3cret-token" not in repr(tokens)
    assert "s3cret-token" not in tokens._users
    tokens.remove("s3cret-token")
    assert tokens.lookup("s3cret-token") is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Bearer ", None),
        ("Basic abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header, token):
    """Only the Bearer scheme carries a token."""
    assert bearer_token(header) == token


def test_certificate_user():
    """CN is the user, each O a group, plus system:authenticated."""
    pair = issue_cert(make_ca("ca"), "carol", organizations=("a", "b"), client=True)
    user = user_from_certificate(pair.certificate())
    assert user == UserInfo("carol", ("a", "b", "system:authenticated"))


def test_no_impersonation():
    """Without Impersonate-* headers the caller stays itself."""
    assert apply_impersonation(ADMIN, {}) == (ADMIN, None)


def test_full_impersonation():
    """User, groups, uid and %-escaped extra keys are applied; the caller is returned."""
    headers = {
        "impersonate-user": ["bob"],
        "impersonate-group": ["g1", "g2"],
        "impersonate-uid": ["u-1"],
        "impersonate-extra-acme.com%2Fproject": ["p1", "p2"],
    }
    effective, by = apply_impersonation(ADMIN, headers)
    assert by is ADMIN
    assert effective == UserInfo(
        "bob", ("g1", "g2", "system:authenticated"), "u-1", {"acme.com/project": ["p1", "p2"]}
    )


def test_service_account_impersonation_gets_sa_groups():
    """Impersonating a service account adds the service-account groups."""
    effective, _ = apply_impersonation(
        ADMIN, {"impersonate-user": ["system:serviceaccount:ns1:robot"]}
    )
    assert set(effective.groups) == {
        "system:serviceaccounts",
        "system:serviceaccounts:ns1",
        "system:authenticated",
    }


def test_impersonation_needs_user_and_permission():
    """Groups without a user are refused; the permission callback can forbid."""
    with pytest.raises(BadRequest):
        apply_impersonation(ADMIN, {"impersonate-group": ["g"]})
    with pytest.raises(Forbidden):
        apply_impersonation(
            ADMIN,
            {"impersonate-user": ["bob"], "impersonate-group": ["root"]},
            lambda user, kind, value: not (kind == "groups" and value == "root"),
        )
