"""TokenReview and SubjectAccessReview answers (clustergateway.testing.hubapis)."""

from __future__ import annotations

import pytest

from clustergateway.auth.user import UserInfo
from clustergateway.errors import BadRequest
from clustergateway.testing.hubapis import (
    access_review,
    self_access_review,
    self_subject_review,
    token_review,
)
from clustergateway.testing.simauth import TokenAuthenticator


@pytest.fixture
def tokens():
    t = TokenAuthenticator()
    t.add("good", UserInfo("alice", ("dev",), "uid-1", {"k": ["v"]}))
    return t


def test_token_review(tokens):
    """Known tokens authenticate with the full user; others do not."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": "good", "audiences": ["a"]},
    }
    answer = token_review(body, tokens)
    assert answer["status"] == {
        "authenticated": True,
        "user": {
            "username": "alice",
            "uid": "uid-1",
            "groups": ["dev", "system:authenticated"],
            "extra": {"k": ["v"]},
        },
        "audiences": ["a"],
    }
    denied = token_review({"spec": {"token": "bad"}}, tokens)
    assert denied["status"]["authenticated"] is False
    assert denied["kind"] == "TokenReview"


@pytest.mark.parametrize(
    "body",
    [[], {"spec": {}}, {"spec": "x"}, {"kind": "Other", "spec": {"token": "t"}}],
)
def test_bad_token_reviews(tokens, body):
    """Malformed reviews are 400s."""
    with pytest.raises(BadRequest):
        token_review(body, tokens)


def test_access_review_uses_policy():
    """The policy sees the spec and decides; its reason is echoed."""
    seen = []

    def policy(spec):
        seen.append(spec)
        return spec["resourceAttributes"]["verb"] == "get", "because"

    body = {"spec": {"user": "a", "resourceAttributes": {"verb": "get", "resource": "pods"}}}
    assert access_review(body, policy)["status"] == {"allowed": True, "reason": "because"}
    body["spec"]["resourceAttributes"]["verb"] = "delete"
    assert access_review(body, policy)["status"]["allowed"] is False
    assert len(seen) == 2


@pytest.mark.parametrize(
    "spec",
    [
        {"user": "a"},
        {"user": "a", "resourceAttributes": {}, "nonResourceAttributes": {}},
        {"resourceAttributes": {"verb": "get"}},
    ],
)
def test_bad_access_reviews(spec):
    """Exactly one attribute kind and a subject are required."""
    with pytest.raises(BadRequest):
        access_review({"spec": spec}, lambda s: (True, ""))


def test_self_reviews():
    """Self reviews answer for the caller."""
    user = UserInfo("bob", ("g",))
    answer = self_access_review(
        {"spec": {"resourceAttributes": {"verb": "get"}}}, user, lambda s: (s["user"] == "bob", "")
    )
    assert answer["status"] == {"allowed": True}
    who = self_subject_review({}, user)
    assert who["status"]["userInfo"] == {"username": "bob", "groups": ["g"]}
