"""The delegating guard: front proxy, client certificate, bearer token, in that order; 401s."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from clustergateway.auth.authconfig import AuthConfigSource, AuthFlags, build_auth_config
from clustergateway.auth.delegating import DelegatingGuard, with_authenticated_group
from clustergateway.auth.guard import RequestAttributes, RequestGuard
from clustergateway.auth.sar import SubjectAccessReviewAuthorizer
from clustergateway.auth.tlstrust import ServerTLS
from clustergateway.auth.tokenreview import TokenReviewAuthenticator
from clustergateway.auth.user import ANONYMOUS, UserInfo
from clustergateway.errors import Forbidden, Unauthorized
from tests.unit.auth.fakes import FakeHub
from tests.unit.auth.pki import FakeChannel, FakeTLSTransport, handshake, pki
from tests.unit.auth.test_authconfig import configmap
from tests.unit.auth.test_reviews import result


def hub_answer(path, body):
    if path.endswith("tokenreviews"):
        if body["spec"]["token"] == "good":
            return {
                "status": {
                    "authenticated": True,
                    "user": {"username": "tokenuser", "groups": ["tg"]},
                }
            }
        return {"status": {"authenticated": False}}
    allowed = body["spec"]["user"] != "denied"
    return {"status": {"allowed": allowed, "reason": "" if allowed else "nope"}}


@attrs.define
class Fixture:
    guard: DelegatingGuard
    hub: FakeHub


def make_guard(**cm) -> Fixture:
    hub = FakeHub(hub_answer)
    clock = Clock()
    source = AuthConfigSource(
        AuthFlags(), clock, None, current=build_auth_config(AuthFlags(), configmap(**cm))
    )
    guard = DelegatingGuard(
        trust=source,
        authorizer=SubjectAccessReviewAuthorizer(hub, clock),
        tokens=TokenReviewAuthenticator(hub, clock),
    )
    return Fixture(guard, hub)


def tls_server() -> ServerTLS:
    p = pki()
    return ServerTLS(
        p.serving.cert_pem,
        p.serving.key_pem,
        [p.client_ca.certificate(), p.front_ca.certificate()],
    )


def request(cert=None, headers=(), path=b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways"):
    req = DummyRequest([b""])
    req.path = path
    transport = FakeTLSTransport(handshake(tls_server(), cert))
    req.channel = FakeChannel(transport)
    for name, value in headers:
        req.requestHeaders.addRawHeader(name, value)
    return req


def authenticate(fx: Fixture, req) -> UserInfo:
    return result(ensureDeferred(fx.guard.authenticate(req)))


REMOTE = [
    (b"X-Remote-User", b"alice"),
    (b"X-Remote-Group", b"dev"),
    (b"X-Remote-Extra-Scopes", b"s"),
]


def test_is_a_request_guard() -> None:
    """DelegatingGuard satisfies the serving layer's RequestGuard protocol."""
    guard: RequestGuard = make_guard().guard
    assert callable(guard.authenticate) and callable(guard.authorize)


def test_front_proxy_with_allowed_cert() -> None:
    """Front-proxy cert + X-Remote-* → that user (plus system:authenticated)."""
    user = authenticate(make_guard(), request(pki().front, REMOTE))
    assert user == UserInfo("alice", ("dev", "system:authenticated"), extra={"scopes": ["s"]})


def test_front_proxy_headers_without_cert_are_401() -> None:
    """X-Remote-User from a caller without a certificate is not believed."""
    with pytest.raises(Unauthorized):
        authenticate(make_guard(), request(None, REMOTE))


def test_front_proxy_cert_not_in_allowed_names_is_401() -> None:
    """A requestheader-CA cert whose CN is not allowed → 401, even with headers."""
    with pytest.raises(Unauthorized):
        authenticate(make_guard(), request(pki().front_other_name, REMOTE))


def test_client_cert_headers_are_ignored() -> None:
    """A client-CA cert authenticates as its CN/O; its X-Remote-User is ignored."""
    user = authenticate(make_guard(), request(pki().alice, [(b"X-Remote-User", b"root")]))
    assert user == UserInfo("alice", ("dev", "ops", "system:authenticated"))


def test_bearer_token_reviewed() -> None:
    """A bearer token is reviewed at the hub; X-Remote-* on it are ignored."""
    fx = make_guard()
    user = authenticate(fx, request(None, [(b"Authorization", b"Bearer good"), *REMOTE]))
    assert user == UserInfo("tokenuser", ("tg", "system:authenticated"))
    assert [p for p, _ in fx.hub.calls] == ["/apis/authentication.k8s.io/v1/tokenreviews"]


def test_bad_bearer_token_is_401() -> None:
    """A token the hub rejects → 401."""
    with pytest.raises(Unauthorized) as info:
        authenticate(make_guard(), request(None, [(b"Authorization", b"Bearer bad")]))
    assert info.value.to_dict()["code"] == 401 and info.value.message == "Unauthorized"


def test_front_proxy_beats_token() -> None:
    """The front proxy is tried first: the token is not even reviewed."""
    fx = make_guard()
    user = authenticate(fx, request(pki().front, [(b"Authorization", b"Bearer good"), *REMOTE]))
    assert user.name == "alice" and fx.hub.calls == []


def test_rejected_front_proxy_name_falls_through_to_a_token() -> None:
    """Like the apiserver's union: a later authenticator may still succeed."""
    user = authenticate(
        make_guard(), request(pki().front_other_name, [(b"Authorization", b"Bearer good")])
    )
    assert user.name == "tokenuser"


def test_anonymous_is_401_except_on_health_paths() -> None:
    """Nobody authenticated → 401; on /healthz etc. the caller is system:anonymous."""
    with pytest.raises(Unauthorized):
        authenticate(make_guard(), request())
    assert authenticate(make_guard(), request(path=b"/healthz")) == ANONYMOUS
    with pytest.raises(Unauthorized):
        authenticate(
            make_guard(), request(None, [(b"Authorization", b"Bearer bad")], path=b"/readyz")
        )


def test_trust_reload_applies_to_the_next_request() -> None:
    """After the allowed names change, the same certificate is judged anew."""
    fx = make_guard()
    req = request(pki().front_other_name, REMOTE)
    with pytest.raises(Unauthorized):
        authenticate(fx, req)
    fx.guard.trust.current = build_auth_config(
        AuthFlags(), configmap(**{"requestheader-allowed-names": "[]"})
    )
    assert authenticate(fx, request(pki().front_other_name, REMOTE)).name == "alice"


def test_authorize_allows_and_denies() -> None:
    """authorize passes SAR decisions through: allowed returns, denied is 403."""
    fx = make_guard()
    attributes = RequestAttributes(
        "list", "/x", True, "cluster.core.oam.dev", "v1alpha1", "clustergateways"
    )
    result(ensureDeferred(fx.guard.authorize(UserInfo("ok"), attributes)))
    with pytest.raises(Forbidden):
        result(ensureDeferred(fx.guard.authorize(UserInfo("denied"), attributes)))


def test_authenticated_group_adder() -> None:
    """system:authenticated is added once; anonymous users are left alone."""
    assert with_authenticated_group(UserInfo("a")).groups == ("system:authenticated",)
    assert with_authenticated_group(UserInfo("a", ("system:authenticated",))).groups == (
        "system:authenticated",
    )
    assert with_authenticated_group(ANONYMOUS) == ANONYMOUS
    assert with_authenticated_group(UserInfo("x", ("system:unauthenticated",))).groups == (
        "system:unauthenticated",
    )


def test_direct_caller_impersonation_is_authorized_at_the_hub() -> None:
    """Impersonate-User from a client-cert caller: reviewed as `impersonate`, then applied."""
    fx = make_guard()
    req = request(pki().alice, [(b"Impersonate-User", b"bob"), (b"Impersonate-Group", b"g")])
    user = authenticate(fx, req)
    assert user == UserInfo("bob", ("g", "system:authenticated"))
    assert req.cg_caller.name == "alice"
    reviews = [b["spec"] for _, b in fx.hub.calls]
    assert [(r["user"], r["resourceAttributes"]["resource"]) for r in reviews] == [
        ("alice", "users"),
        ("alice", "groups"),
    ]


def test_denied_impersonation_is_403() -> None:
    """Impersonating someone the hub does not allow is a 403 naming the impersonated user."""
    fx = make_guard()
    req = request(None, [(b"Authorization", b"Bearer good"), (b"Impersonate-User", b"root")])
    fx.hub.answer = lambda path, body: (
        hub_answer(path, body)
        if path.endswith("tokenreviews")
        else {"status": {"allowed": False, "reason": "no"}}
    )
    with pytest.raises(Forbidden) as info:
        authenticate(fx, req)
    assert info.value.message.startswith(
        'users "root" is forbidden: User "tokenuser" cannot impersonate resource "users"'
    )
