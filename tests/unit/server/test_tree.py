"""The Resource tree: discovery, OpenAPI, probes, authentication/authorization, proxy routing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from clustergateway.auth.user import UserInfo
from tests.unit.server.conftest import (
    BASE,
    RecordingProxy,
    ScriptedGuard,
    Served,
    build_served,
    token_secret,
)
from tests.unit.server.memhttp import connect, parse, raw_request

AGGREGATED = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def test_legacy_discovery(served: Served) -> None:
    """/apis, /apis/<g>, /apis/<g>/<v> answer the legacy documents (trailing slash too)."""
    assert served.get("/apis").json()["kind"] == "APIGroupList"
    assert served.get("/apis/").json()["kind"] == "APIGroupList"
    assert served.get("/apis/cluster.core.oam.dev").json()["kind"] == "APIGroup"
    resources = served.get(BASE).json()
    assert resources["kind"] == "APIResourceList"
    assert served.get("/apis/other.io").code == 404
    assert served.get("/apis/cluster.core.oam.dev/v1").code == 404


def test_aggregated_discovery_etag(served: Served) -> None:
    """Aggregated discovery v2 with its exact content type, an ETag, and 304 on a match."""
    first = served.get("/apis", accept=AGGREGATED)
    assert first.code == 200
    assert first.header("content-type") == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    etag = first.header("etag")
    assert etag and etag.startswith('"')
    assert first.header("vary") == "Accept"
    again = served.get("/apis", accept=AGGREGATED, if_none_match=etag)
    assert again.code == 304
    assert again.body == b""
    stale = served.get("/apis", accept=AGGREGATED, if_none_match='"other"')
    assert stale.code == 200


def test_aggregated_discovery_v2beta1(served: Served) -> None:
    """kubectl 1.29 asks v2beta1 only and gets it."""
    accept = (
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
    )
    response = served.get("/apis", accept=accept)
    assert response.json()["apiVersion"] == "apidiscovery.k8s.io/v2beta1"


def test_openapi(served: Served) -> None:
    """v2, the v3 index and the per-GV v3 document, with ETag/304; protobuf-only is 406."""
    v2 = served.get("/openapi/v2", accept="application/json")
    assert v2.json()["swagger"] == "2.0"
    index = served.get("/openapi/v3").json()
    url = index["paths"]["apis/cluster.core.oam.dev/v1alpha1"]["serverRelativeURL"]
    doc = served.get(url)
    assert doc.json()["openapi"] == "3.0.0"
    assert doc.header("cache-control") == "public, immutable, max-age=31536000"
    assert served.get(url, if_none_match=doc.header("etag")).code == 304
    protobuf = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    assert served.get("/openapi/v2", accept=protobuf).code == 406
    assert served.get("/openapi/v4").code == 404


def test_version_and_root(served: Served) -> None:
    """/version has gitVersion; / lists the served paths; /api is a 404 Status."""
    assert served.get("/version").json()["gitVersion"].startswith("v")
    paths = served.get("/").json()["paths"]
    assert "/apis/cluster.core.oam.dev/v1alpha1" in paths
    assert "/readyz" in paths
    api = served.get("/api")
    assert api.code == 404
    assert api.json()["message"] == "the server could not find the requested resource"


def test_readyz_follows_registry_sync(served: Served) -> None:
    """/readyz fails until the registry's first full sync, then passes; /livez always passes."""
    before = served.get("/readyz?verbose")
    assert before.code == 500
    assert b"[-]registry-synced failed" in before.body
    assert served.get("/livez").body == b"ok"
    served.registry.replace_all([])
    assert served.get("/readyz").body == b"ok"
    verbose = served.get("/readyz?verbose").body.decode()
    assert verbose.splitlines() == ["[+]ping ok", "[+]registry-synced ok", "readyz check passed"]
    assert served.get("/readyz/registry-synced").body == b"ok"
    assert served.get("/readyz/nope").code == 404


def test_probes_skip_authentication(make_served) -> None:
    """Health probes answer without authentication; everything else needs it (401)."""
    served = make_served(guard=ScriptedGuard(user=None))
    assert served.get("/healthz").code == 200
    unauthenticated = served.get("/apis")
    assert unauthenticated.code == 401
    assert unauthenticated.json()["reason"] == "Unauthorized"


def test_forbidden_and_attributes(make_served) -> None:
    """A denied request is 403; the guard sees the Kubernetes verbs kube would compute."""
    guard = ScriptedGuard()
    served = make_served(guard=guard)
    served.registry.replace_all([token_secret("a")])
    served.get(f"{BASE}/clustergateways")
    served.get(f"{BASE}/clustergateways?watch=1&timeoutSeconds=1")
    served.get(f"{BASE}/clustergateways/a")
    served.get("/openapi/v2")
    assert [(a.verb, a.resource, a.name, a.resource_request) for a in guard.seen] == [
        ("list", "clustergateways", "", True),
        ("watch", "clustergateways", "", True),
        ("get", "clustergateways", "a", True),
        ("get", "", "", False),
    ]
    guard.allow = False
    denied = served.get(f"{BASE}/clustergateways/a")
    assert denied.code == 403
    assert denied.json()["reason"] == "Forbidden"


def test_proxy_gets_raw_subpath_and_user(make_served) -> None:
    """The proxy is called with the raw sub-path (%2F intact), the full URI and the user."""
    proxy = RecordingProxy()
    guard = ScriptedGuard(user=UserInfo("bob"))
    served = make_served(proxy=proxy, guard=guard)
    response = served.call(
        "POST", f"{BASE}/clustergateways/c1/proxy/api/v1/x%2Fy?dryRun=All", body=b"{}"
    )
    assert response.code == 200
    assert response.body == b"proxied"
    name, subpath, user, uri = proxy.calls[0]
    assert (name, subpath, user.name) == ("c1", b"/api/v1/x%2Fy", "bob")
    assert uri.endswith(b"?dryRun=All")
    assert guard.seen[-1].verb == "create"
    assert guard.seen[-1].subresource == "proxy"
    served.get(f"{BASE}/clustergateways/c1/proxy")
    assert proxy.calls[-1][1] == b""


def test_no_proxy_configured(make_served) -> None:
    """Without a proxy the subresource answers 503 saying so."""
    served = make_served()
    response = served.get(f"{BASE}/clustergateways/c1/proxy/healthz")
    assert response.code == 503
    assert "proxy not configured" in response.json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        f"{BASE}/nodes",
        f"{BASE}/clustergateways/a/status",
        f"{BASE}/virtualclusters/a/proxy",
        "/nothing/here",
    ],
)
def test_unknown_paths_are_404_status(served: Served, path: str) -> None:
    """Unknown resources, subresources and paths: a 404 Status, never HTML."""
    response = served.get(path)
    assert response.code == 404
    assert json.loads(response.body)["kind"] == "Status"


def test_head_has_no_body(served: Served) -> None:
    """HEAD gets the GET headers without the body."""
    served.registry.replace_all([token_secret("a")])
    response = served.call("HEAD", f"{BASE}/clustergateways/a")
    assert response.code == 200
    assert response.body == b""


class WaitingGuard:
    """A guard whose authentication waits (as a TokenReview would) until the test answers."""

    def __init__(self) -> None:
        self.waiting: list[Deferred[UserInfo]] = []
        self.cancelled = 0

    async def authenticate(self, request: Any) -> UserInfo:
        def cancel(_: Deferred[UserInfo]) -> None:
            self.cancelled += 1

        waiting: Deferred[UserInfo] = Deferred(cancel)
        self.waiting.append(waiting)
        return await waiting

    async def authorize(self, user: UserInfo, attributes: Any) -> None:
        return None


def test_a_caller_leaving_cancels_the_authentication_it_waits_for() -> None:
    guard = WaitingGuard()
    served = build_served(guard=guard)
    protocol, transport = connect(served.site)
    protocol.dataReceived(raw_request("GET", "/version"))
    assert len(guard.waiting) == 1 and transport.value() == b""
    protocol.connectionLost(Failure(ConnectionDone()))
    assert guard.cancelled == 1


def test_a_waiting_authentication_answers_when_it_completes() -> None:
    guard = WaitingGuard()
    served = build_served(guard=guard)
    protocol, transport = connect(served.site)
    protocol.dataReceived(raw_request("GET", "/version"))
    guard.waiting[0].callback(UserInfo("bob"))
    assert parse(transport.value()).json()["gitVersion"].startswith("v")
    assert guard.cancelled == 0
