"""Callers impersonating at the gateway: header parsing, the impersonate checks, the new user."""

from __future__ import annotations

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.web.http_headers import Headers

from clustergateway.auth.guard import RequestAttributes
from clustergateway.auth.impersonation import (
    ImpersonationRequest,
    impersonated_user,
    requested_impersonation,
)
from clustergateway.auth.user import UserInfo
from clustergateway.errors import BadRequest, Forbidden
from tests.unit.auth.test_reviews import result


def headers(*pairs: tuple[str, str]) -> Headers:
    h = Headers()
    for name, value in pairs:
        h.addRawHeader(name.encode(), value.encode())
    return h


def test_no_headers_no_impersonation() -> None:
    """A request without Impersonate-* headers is served as the caller."""
    assert requested_impersonation(headers(("Authorization", "Bearer x"))) is None


def test_headers_parsed() -> None:
    """User, groups in order, uid and %-escaped extras (key lower-cased)."""
    got = requested_impersonation(
        headers(
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "dev"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Example.org%2FScopes", "a"),
            ("Impersonate-Extra-example.org%2fscopes", "b"),
        )
    )
    assert got == ImpersonationRequest(
        "bob", ("dev", "ops"), "u-1", (("example.org/scopes", ("a", "b")),)
    )


@pytest.mark.parametrize(
    "pairs",
    [
        [("Impersonate-Group", "dev")],
        [("Impersonate-Uid", "u")],
        [("Impersonate-Extra-k", "v")],
        [("Impersonate-User", ""), ("Impersonate-Group", "g")],
    ],
)
def test_parts_without_a_user_are_400(pairs) -> None:
    """Groups, uid or extras without Impersonate-User are a bad request."""
    with pytest.raises(BadRequest, match="without impersonating a user"):
        requested_impersonation(headers(*pairs))


def check(resource, name, group="", namespace="", subresource=""):
    return RequestAttributes(
        verb="impersonate",
        path="",
        resource_request=True,
        api_group=group,
        resource=resource,
        subresource=subresource,
        name=name,
        namespace=namespace,
    )


def test_checks_in_apiserver_order() -> None:
    """users, groups, uids, userextras/<key> — each an `impersonate` review."""
    wanted = ImpersonationRequest("bob", ("dev",), "u-1", (("scopes", ("a", "b")),))
    assert wanted.checks() == [
        check("users", "bob"),
        check("groups", "dev"),
        check("uids", "u-1", group="authentication.k8s.io"),
        check("userextras", "a", group="authentication.k8s.io", subresource="scopes"),
        check("userextras", "b", group="authentication.k8s.io", subresource="scopes"),
    ]


def test_service_account_is_checked_in_its_namespace() -> None:
    """system:serviceaccount:<ns>:<name> is a serviceaccounts check and gets SA groups."""
    wanted = ImpersonationRequest("system:serviceaccount:team:builder")
    assert wanted.checks() == [check("serviceaccounts", "builder", namespace="team")]
    assert wanted.as_user().groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    )


@pytest.mark.parametrize(
    ("wanted", "groups"),
    [
        (ImpersonationRequest("bob"), ("system:authenticated",)),
        (ImpersonationRequest("bob", ("dev",)), ("dev", "system:authenticated")),
        (ImpersonationRequest("bob", ("system:authenticated",)), ("system:authenticated",)),
        (ImpersonationRequest("bob", ("system:unauthenticated",)), ("system:unauthenticated",)),
        (ImpersonationRequest("system:anonymous"), ()),
    ],
)
def test_impersonated_groups(wanted, groups) -> None:
    """system:authenticated is added unless a group settles it (or the user is anonymous)."""
    assert wanted.as_user().groups == groups


def test_every_check_must_pass() -> None:
    """The first denied part stops the request with its 403."""
    asked: list[RequestAttributes] = []

    async def authorize(user: UserInfo, attributes: RequestAttributes) -> None:
        asked.append(attributes)
        if attributes.resource == "groups":
            raise Forbidden("no")

    wanted = ImpersonationRequest("bob", ("dev", "ops"))
    with pytest.raises(Forbidden):
        result(ensureDeferred(impersonated_user(UserInfo("alice"), wanted, authorize)))
    assert [a.resource for a in asked] == ["users", "groups"]


def test_allowed_impersonation_gives_the_new_user() -> None:
    """All parts allowed: the request runs as the impersonated user."""

    async def allow(user: UserInfo, attributes: RequestAttributes) -> None:
        assert user.name == "alice"

    wanted = ImpersonationRequest("bob", ("dev",), "u-1", (("k", ("v",)),))
    got = result(ensureDeferred(impersonated_user(UserInfo("alice"), wanted, allow)))
    assert got == UserInfo("bob", ("dev", "system:authenticated"), "u-1", {"k": ["v"]})
