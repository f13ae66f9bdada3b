"""TokenReview and SubjectAccessReview against the hub: bodies, answers, TTL caches, sharing."""

from __future__ import annotations

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from clustergateway.auth.guard import RequestAttributes
from clustergateway.auth.reviewcache import ReviewCache
from clustergateway.auth.sar import (
    SubjectAccessReviewAuthorizer,
    forbidden,
    path_always_allowed,
    review_body,
    target_attributes,
)
from clustergateway.auth.tokenreview import TokenReviewAuthenticator, bearer_token, user_from_review
from clustergateway.auth.user import UserInfo
from clustergateway.errors import Forbidden, ServiceUnavailable, Unauthorized
from tests.unit.auth.fakes import FakeHub

BOB = UserInfo("bob", ("dev", "system:authenticated"), uid="u-9", extra={"scopes": ["x"]})
PROXY = RequestAttributes(
    verb="get",
    path="/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy/api/v1/pods",
    resource_request=True,
    api_group="cluster.core.oam.dev",
    api_version="v1alpha1",
    resource="clustergateways",
    subresource="proxy",
    name="c1",
)


def result(d):
    """The value of a fired Deferred, or raise its failure."""
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def tokenreview_answer(username: str | None):
    def answer(path, body):
        assert path == "/apis/authentication.k8s.io/v1/tokenreviews"
        if username is None:
            return {"status": {"authenticated": False, "error": "bad"}}
        return {
            "status": {
                "authenticated": True,
                "user": {
                    "username": username,
                    "uid": "u-1",
                    "groups": ["g"],
                    "extra": {"k": ["v"]},
                },
            }
        }

    return answer


# --- bearer tokens -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc", "abc"),
        (b"bearer abc", "abc"),
        (b"  Bearer abc  ", "abc"),
        (b"Bearer abc extra", "abc"),
        (b"Bearer ", None),
        (b"Bearer", None),
        (b"Basic dXNlcjpwYXNz", None),
        (b"", None),
        (None, None),
        (b"Bearer \xff", None),
    ],
)
def test_bearer_token(header, token) -> None:
    """The token is read from Authorization like the apiserver's bearertoken authenticator."""
    assert bearer_token(header) == token


def test_user_from_review() -> None:
    """Authenticated reviews give the user; anything else None."""
    assert user_from_review(
        {"authenticated": True, "user": {"username": "a", "groups": ["g"]}}
    ) == UserInfo("a", ("g",))
    assert user_from_review({"authenticated": False, "user": {"username": "a"}}) is None
    assert user_from_review({"authenticated": True, "user": {}}) is None
    assert user_from_review(None) is None


def test_token_review_body_and_user() -> None:
    """One TokenReview with the token; the user comes from status.user."""
    hub = FakeHub(tokenreview_answer("alice"))
    tokens = TokenReviewAuthenticator(hub, Clock())
    user = result(ensureDeferred(tokens.authenticate_token("t0ken")))
    assert user == UserInfo("alice", ("g",), "u-1", {"k": ["v"]})
    assert hub.calls == [
        (
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": "t0ken"},
            },
        )
    ]


def test_token_cache_within_ttl_then_expiry() -> None:
    """Many requests within the TTL cost one review; after the TTL the hub is asked again."""
    clock = Clock()
    hub = FakeHub(tokenreview_answer("alice"))
    tokens = TokenReviewAuthenticator(hub, clock, ttl=10)
    for _ in range(5):
        result(ensureDeferred(tokens.authenticate_token("t")))
        clock.advance(1)
    assert len(hub.calls) == 1
    clock.advance(6)
    result(ensureDeferred(tokens.authenticate_token("t")))
    assert len(hub.calls) == 2


def test_rejected_token_is_cached_too() -> None:
    """A bad token is 401 and its rejection is cached (no review storm)."""
    hub = FakeHub(tokenreview_answer(None))
    tokens = TokenReviewAuthenticator(hub, Clock())
    for _ in range(3):
        with pytest.raises(Unauthorized):
            result(ensureDeferred(tokens.authenticate_token("bad")))
    assert len(hub.calls) == 1


def test_concurrent_identical_tokens_share_one_review() -> None:
    """Requests arriving while a review is in flight wait for it."""
    hub = FakeHub()
    tokens = TokenReviewAuthenticator(hub, Clock())
    waits = [ensureDeferred(tokens.authenticate_token("t")) for _ in range(4)]
    other = ensureDeferred(tokens.authenticate_token("other"))
    assert len(hub.calls) == 2
    hub.release({"status": {"authenticated": True, "user": {"username": "alice"}}})
    assert [result(w).name for w in waits] == ["alice"] * 4
    assert result(other).name == "alice"


def test_hub_failure_is_401_and_not_cached_nor_leaked() -> None:
    """A failed review is 401 without the token in the message, and the next request retries."""
    hub = FakeHub(lambda p, b: ConnectionRefusedError("hub down"))
    tokens = TokenReviewAuthenticator(hub, Clock())
    with pytest.raises(Unauthorized) as info:
        result(ensureDeferred(tokens.authenticate_token("sekrit")))
    assert "sekrit" not in info.value.message
    with pytest.raises(Unauthorized):
        result(ensureDeferred(tokens.authenticate_token("sekrit")))
    assert len(hub.calls) == 2


def test_cancelled_first_caller_does_not_cancel_the_others() -> None:
    """The review runs detached: the remaining waiters get the answer."""
    hub = FakeHub()
    tokens = TokenReviewAuthenticator(hub, Clock())
    first = ensureDeferred(tokens.authenticate_token("t"))
    second = ensureDeferred(tokens.authenticate_token("t"))
    first.cancel()
    first.addErrback(lambda f: None)
    hub.release({"status": {"authenticated": True, "user": {"username": "alice"}}})
    assert result(second).name == "alice"


def test_review_cache_is_bounded() -> None:
    """Beyond max_entries the oldest answers are dropped."""
    clock = Clock()
    cache: ReviewCache[int, int] = ReviewCache(clock, max_entries=3)

    async def value(n: int) -> int:
        return n

    for n in range(5):
        result(cache.get(n, lambda n=n: value(n), lambda _: 10))
    assert len(cache) == 3


# --- SubjectAccessReview -----------------------------------------------------------------


def test_review_body_resource_and_non_resource() -> None:
    """The SAR carries the whole user and the attributes, empty fields left out."""
    assert review_body(BOB, PROXY) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "bob",
            "uid": "u-9",
            "groups": ["dev", "system:authenticated"],
            "extra": {"scopes": ["x"]},
            "resourceAttributes": {
                "verb": "get",
                "group": "cluster.core.oam.dev",
                "version": "v1alpha1",
                "resource": "clustergateways",
                "subresource": "proxy",
                "name": "c1",
            },
        },
    }
    body = review_body(UserInfo("x"), RequestAttributes(verb="get", path="/apis"))
    assert body["spec"] == {"user": "x", "nonResourceAttributes": {"path": "/apis", "verb": "get"}}


def sar_answer(allowed: bool, reason: str = ""):
    return lambda path, body: {"status": {"allowed": allowed, "reason": reason}}


def test_sar_allowed_and_cached() -> None:
    """An allowed review is cached for the allowed TTL."""
    clock = Clock()
    hub = FakeHub(sar_answer(True))
    authz = SubjectAccessReviewAuthorizer(hub, clock, allowed_ttl=10, denied_ttl=2)
    for _ in range(3):
        result(ensureDeferred(authz.authorize(BOB, PROXY)))
    assert (
        len(hub.calls) == 1
        and hub.calls[0][0] == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    )
    clock.advance(10)
    result(ensureDeferred(authz.authorize(BOB, PROXY)))
    assert len(hub.calls) == 2


def test_sar_denial_is_403_worded_like_the_apiserver() -> None:
    """A denial is a Forbidden Status with the apiserver's message; cached for the denied TTL."""
    clock = Clock()
    hub = FakeHub(sar_answer(False, "no RBAC policy matched"))
    authz = SubjectAccessReviewAuthorizer(hub, clock, allowed_ttl=10, denied_ttl=2)
    with pytest.raises(Forbidden) as info:
        result(ensureDeferred(authz.authorize(BOB, PROXY)))
    assert info.value.message == (
        'clustergateways.cluster.core.oam.dev "c1" is forbidden: User "bob" cannot get resource'
        ' "clustergateways/proxy" in API group "cluster.core.oam.dev" at the cluster scope:'
        " no RBAC policy matched"
    )
    assert info.value.details == {
        "name": "c1",
        "group": "cluster.core.oam.dev",
        "kind": "clustergateways",
    }
    with pytest.raises(Forbidden):
        result(ensureDeferred(authz.authorize(BOB, PROXY)))
    assert len(hub.calls) == 1
    clock.advance(2)
    with pytest.raises(Forbidden):
        result(ensureDeferred(authz.authorize(BOB, PROXY)))
    assert len(hub.calls) == 2


def test_sar_masters_and_health_paths_are_local() -> None:
    """system:masters and the always-allowed paths never reach the hub."""
    hub = FakeHub(sar_answer(False))
    authz = SubjectAccessReviewAuthorizer(hub, Clock())
    result(ensureDeferred(authz.authorize(UserInfo("root", ("system:masters",)), PROXY)))
    for path in ("/healthz", "/livez", "/readyz"):
        result(
            ensureDeferred(
                authz.authorize(UserInfo("system:anonymous"), RequestAttributes("get", path))
            )
        )
    assert hub.calls == []
    with pytest.raises(
        Forbidden, match='forbidden: User "system:anonymous" cannot get path "/healthz/x"'
    ):
        result(
            ensureDeferred(
                authz.authorize(
                    UserInfo("system:anonymous"), RequestAttributes("get", "/healthz/x")
                )
            )
        )


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/healthz", True), ("/healthz/ping", True), ("/healthzz", False), ("/metrics", False)],
)
def test_always_allow_path_patterns(path: str, allowed: bool) -> None:
    """Exact entries, and prefixes with a trailing '*'."""
    assert path_always_allowed(path, ("/healthz", "/healthz/*")) is allowed


def test_sar_hub_failure_is_503_not_cached() -> None:
    """A failed review is a 503 the caller can retry; it is not cached."""
    hub = FakeHub(lambda p, b: ConnectionRefusedError("connection refused"))
    authz = SubjectAccessReviewAuthorizer(hub, Clock())
    for _ in range(2):
        with pytest.raises(ServiceUnavailable, match="connection refused"):
            result(ensureDeferred(authz.authorize(BOB, PROXY)))
    assert len(hub.calls) == 2


def test_sar_different_attributes_are_different_reviews() -> None:
    """The cache key is the user and the full attributes."""
    hub = FakeHub(sar_answer(True))
    authz = SubjectAccessReviewAuthorizer(hub, Clock())
    result(ensureDeferred(authz.authorize(BOB, PROXY)))
    result(ensureDeferred(authz.authorize(BOB, RequestAttributes("get", "/apis"))))
    result(ensureDeferred(authz.authorize(UserInfo("carol"), PROXY)))
    assert len(hub.calls) == 3


# --- --authorize-proxy-subpath ------------------------------------------------------------


def test_proxy_target_is_checked_with_the_target_verb() -> None:
    """A collection GET of the target is reviewed as list, watch=true as watch (§14.11)."""
    hub = FakeHub(sar_answer(True))
    authz = SubjectAccessReviewAuthorizer(hub, Clock())
    result(
        ensureDeferred(
            authz.authorize_proxy_target(BOB, "c1", "GET", "/api/v1/namespaces/d/pods", "")
        )
    )
    result(
        ensureDeferred(
            authz.authorize_proxy_target(
                BOB, "c1", "GET", "/api/v1/namespaces/d/pods", "watch=true"
            )
        )
    )
    verbs = [b["spec"]["resourceAttributes"]["verb"] for _, b in hub.calls]
    assert verbs == ["list", "watch"]
    assert hub.calls[0][1]["spec"]["resourceAttributes"] == {
        "namespace": "d",
        "verb": "list",
        "version": "v1",
        "resource": "pods",
    }


def test_proxy_target_denial_names_the_cluster() -> None:
    """The 403 says proxying to which cluster was refused and why."""
    authz = SubjectAccessReviewAuthorizer(FakeHub(sar_answer(False)), Clock())
    with pytest.raises(Forbidden) as info:
        result(
            ensureDeferred(
                authz.authorize_proxy_target(
                    BOB, "c1", "DELETE", "/api/v1/namespaces/d/configmaps", ""
                )
            )
        )
    assert info.value.message == (
        'proxying to cluster "c1" is forbidden: User "bob" cannot deletecollection resource'
        ' "configmaps" in API group "" in the namespace "d"'
    )


def test_target_attributes_non_resource() -> None:
    """A non-resource target keeps its path and the lower-case method."""
    assert target_attributes("GET", "/version") == RequestAttributes("get", "/version")


def test_forbidden_for_collection() -> None:
    """Without a name the message is '<resource>.<group> is forbidden'."""
    attrs_ = RequestAttributes(
        "list", "/x", True, "cluster.core.oam.dev", "v1alpha1", "clustergateways"
    )
    assert forbidden(BOB, attrs_).message.startswith(
        "clustergateways.cluster.core.oam.dev is forbidden: "
    )


def test_proxy_target_reviews_are_observed() -> None:
    """Each target review reports (success, seconds): decided → True, hub failure → False."""
    clock = Clock()
    seen: list[tuple[bool, float]] = []
    hub = FakeHub()
    authz = SubjectAccessReviewAuthorizer(
        hub, clock, on_target_review=lambda ok, s: seen.append((ok, s))
    )
    d = ensureDeferred(authz.authorize_proxy_target(BOB, "c1", "GET", "/api/v1/pods", ""))
    clock.advance(0.25)
    hub.release({"status": {"allowed": False}})
    with pytest.raises(Forbidden):
        result(d)
    d = ensureDeferred(authz.authorize_proxy_target(BOB, "c1", "GET", "/api/v1/nodes", ""))
    hub.release(ConnectionRefusedError("down"))
    with pytest.raises(ServiceUnavailable):
        result(d)
    assert seen == [(True, 0.25), (False, 0.0)]
