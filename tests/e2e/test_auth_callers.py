"""Who may call: front-proxy headers, client certificates, bearer tokens, SAR denials, audit.

The gateway runs in-process without ``--standalone-debug-mode``; the ``sim`` fixture is
its hub (TokenReview, SubjectAccessReview, ``extension-apiserver-authentication``), and
cluster ``c1`` is the ``managed`` simulated cluster.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted

from clustergateway.auth.user import UserInfo
from clustergateway.certs import issue_cert
from tests.fixtures.auth import GROUP_PATH, call, client_cert_kubeconfig
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e

REMOTE_ALICE = [
    ("X-Remote-User", "alice"),
    ("X-Remote-Uid", "uid-alice"),
    ("X-Remote-Group", "dev"),
    ("X-Remote-Group", "system:authenticated"),
    ("X-Remote-Extra-Authentication.kubernetes.io%2Fcredential-id", "JTI=abc"),
]


def hub_reviews_for(hub, user: str) -> list[dict]:
    return [r["spec"] for r in hub.access_reviews if r["spec"].get("user") == user]


@pytest_twisted.ensureDeferred
async def test_front_proxy_identity_is_served_and_forwarded(auth_gateway_factory) -> None:
    """A valid front-proxy cert + X-Remote-* is served as that user: the hub authorizes
    alice, and ?impersonate=true reaches the cluster as alice (groups, extra, uid)."""
    env = await auth_gateway_factory()
    front = env.hub.pki.front_proxy_client
    answer = await call(env, "GET", GROUP_PATH, cert=front, headers=REMOTE_ALICE)
    assert answer.status == 200, answer.body
    assert [i["metadata"]["name"] for i in answer.json()["items"]] == ["c1"]
    [review] = hub_reviews_for(env.hub, "alice")
    assert review["groups"] == ["dev", "system:authenticated"]
    assert review["uid"] == "uid-alice"
    assert review["extra"] == {"authentication.kubernetes.io/credential-id": ["JTI=abc"]}
    assert review["resourceAttributes"]["verb"] == "list"

    path = env.proxy_path("/api/v1/namespaces/default/configmaps?impersonate=true")
    answer = await call(env, "GET", path, cert=front, headers=REMOTE_ALICE)
    assert answer.status == 200, answer.body
    upstream = env.upstream()[-1]
    assert upstream.headers["impersonate-user"] == ["alice"]
    assert upstream.headers["impersonate-uid"] == ["uid-alice"]
    assert upstream.headers["impersonate-group"] == ["dev", "system:authenticated"]
    assert upstream.headers["impersonate-extra-authentication.kubernetes.io%2fcredential-id"] == [
        "JTI=abc"
    ]
    assert upstream.headers["authorization"] == ["Bearer managed-token"]
    assert upstream.user == UserInfo(
        "alice",
        ("dev", "system:authenticated"),
        "uid-alice",
        {"authentication.kubernetes.io/credential-id": ["JTI=abc"]},
    )
    assert not any(name.startswith("x-remote-") for name in upstream.headers)


@pytest_twisted.ensureDeferred
async def test_front_proxy_headers_without_a_trusted_certificate_are_401(
    auth_gateway_factory,
) -> None:
    """X-Remote-User without a cert, or with a front-proxy-CA cert whose CN is not an
    allowed name, is 401 Unauthorized — never served as the claimed user."""
    env = await auth_gateway_factory()
    intruder = issue_cert(env.hub.pki.front_proxy_ca, "intruder", client=True)
    for cert in (None, intruder):
        answer = await call(env, "GET", GROUP_PATH, cert=cert, headers=REMOTE_ALICE)
        assert answer.status == 401, answer.body
        assert answer.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    assert hub_reviews_for(env.hub, "alice") == []


@pytest_twisted.ensureDeferred
async def test_client_cert_with_remote_headers_is_its_own_user(auth_gateway_factory) -> None:
    """A client-CA certificate authenticates as CN/O; X-Remote-User on it is ignored."""
    env = await auth_gateway_factory()
    carol = env.hub.issue_client_cert("carol", ["ops"])
    answer = await call(env, "GET", GROUP_PATH, cert=carol, headers=[("X-Remote-User", "root")])
    assert answer.status == 200, answer.body
    assert hub_reviews_for(env.hub, "root") == []
    [review] = hub_reviews_for(env.hub, "carol")
    assert review["groups"] == ["ops", "system:authenticated"]


@pytest_twisted.ensureDeferred
async def test_bearer_tokens_are_reviewed_once_within_the_ttl(auth_gateway_factory) -> None:
    """Many requests with one token cost one TokenReview at the hub (10 s cache);
    a bad token is 401."""
    env = await auth_gateway_factory()
    env.hub.add_token("bob-token", UserInfo("bob", ("dev",)))
    before = len(env.hub.token_reviews)
    for _ in range(5):
        answer = await call(env, "GET", GROUP_PATH, headers=[("Authorization", "Bearer bob-token")])
        assert answer.status == 200, answer.body
    assert len(env.hub.token_reviews) - before == 1
    [review] = hub_reviews_for(env.hub, "bob")  # the SAR answer is cached as well
    assert review["groups"] == ["dev", "system:authenticated"]
    bad = await call(env, "GET", GROUP_PATH, headers=[("Authorization", "Bearer nope")])
    assert bad.status == 401 and bad.json()["reason"] == "Unauthorized"


@pytest_twisted.ensureDeferred
async def test_sar_denial_is_403_status(auth_gateway_factory) -> None:
    """The hub denies bob `get clustergateways/proxy`: 403 Forbidden Status, nothing forwarded."""
    env = await auth_gateway_factory()
    env.hub.add_token("bob-token", UserInfo("bob"))
    env.hub.faults.deny.add(("bob", "get", "clustergateways/proxy"))
    sent = len(env.upstream())
    answer = await call(
        env,
        "GET",
        env.proxy_path("/api/v1/namespaces"),
        headers=[("Authorization", "Bearer bob-token")],
    )
    assert answer.status == 403, answer.body
    status = answer.json()
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Forbidden", 403)
    assert status["message"].startswith(
        'clustergateways.cluster.core.oam.dev "c1" is forbidden: User "bob" cannot get'
        ' resource "clustergateways/proxy" in API group "cluster.core.oam.dev"'
    )
    assert status["details"] == {
        "name": "c1",
        "group": "cluster.core.oam.dev",
        "kind": "clustergateways",
    }
    assert len(env.upstream()) == sent


@pytest_twisted.ensureDeferred
async def test_callers_credentials_never_reach_the_cluster(auth_gateway_factory) -> None:
    """The caller's Authorization and Impersonate-* headers are dropped; the cluster sees
    the Secret's token and (without ?impersonate) no impersonation at all."""
    env = await auth_gateway_factory()
    env.hub.add_token("bob-token", UserInfo("bob"))
    answer = await call(
        env,
        "GET",
        env.proxy_path("/api/v1/namespaces/default/configmaps"),
        headers=[
            ("Authorization", "Bearer bob-token"),
            ("Impersonate-User", "system:admin"),
            ("Impersonate-Group", "system:masters"),
            ("X-Remote-User", "mallory"),
        ],
    )
    assert answer.status == 200, answer.body
    upstream = env.upstream()[-1]
    assert upstream.headers["authorization"] == ["Bearer managed-token"]
    assert not any(n.startswith(("impersonate-", "x-remote-")) for n in upstream.headers)
    assert upstream.user.name == "sim-admin"  # the managed cluster's own admin token


@pytest_twisted.ensureDeferred
async def test_kubectl_with_a_client_certificate(auth_gateway_factory, tmp_path) -> None:
    """The real kubectl authenticates with a client certificate: lists clustergateways and,
    through the proxy URL, the managed cluster's namespaces."""
    env = await auth_gateway_factory()
    carol = env.hub.issue_client_cert("carol", ["ops"])
    kubeconfig = client_cert_kubeconfig(env, carol, tmp_path / "carol.kubeconfig", env.gateway.url)
    kubectl = kubectl_binary("1.33")
    listed = await run_kubectl(kubectl, kubeconfig, "get", "clustergateways", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.decode().split() == ["clustergateway.cluster.core.oam.dev/c1"]
    server = env.gateway.url + env.proxy_path("")
    namespaces = await run_kubectl(
        kubectl, kubeconfig, "--server", server, "get", "namespaces", "-o", "name"
    )
    assert namespaces.returncode == 0, namespaces.stderr
    assert "namespace/default" in namespaces.stdout.decode().split()
    assert {r["spec"]["user"] for r in env.hub.access_reviews} >= {"carol"}


@pytest_twisted.ensureDeferred
async def test_audit_lines_for_each_case(auth_gateway_factory) -> None:
    """Served, unauthenticated and forbidden requests each leave one JSON audit line with
    caller, cluster, verb, identity, code — and no credential."""
    env = await auth_gateway_factory()
    env.hub.add_token("bob-token", UserInfo("bob"))
    env.hub.faults.deny.add(("bob", "delete", "clustergateways/proxy"))
    front = env.hub.pki.front_proxy_client
    proxy = env.proxy_path("/api/v1/namespaces/default/configmaps")
    ok = await call(env, "GET", proxy + "?impersonate=true", cert=front, headers=REMOTE_ALICE)
    unauthenticated = await call(env, "GET", GROUP_PATH, headers=REMOTE_ALICE)
    forbidden = await call(
        env, "DELETE", proxy + "/x", headers=[("Authorization", "Bearer bob-token")]
    )
    assert (ok.status, unauthenticated.status, forbidden.status) == (200, 401, 403)
    lines = env.audit_lines()
    assert [(line["user"], line["code"]) for line in lines] == [
        ("alice", 200),
        ("", 401),
        ("bob", 403),
    ]
    served = lines[0]
    assert served["cluster"] == "c1" and served["verb"] == "get"
    assert served["resource"] == "clustergateways/proxy"
    assert served["groups"] == ["dev", "system:authenticated"]
    assert served["identity"] == {
        "origin": "caller",
        "impersonate": {
            "user": "alice",
            "groups": ["dev", "system:authenticated"],
            "uid": "uid-alice",
            "extra": {"authentication.kubernetes.io/credential-id": ["JTI=abc"]},
        },
    }
    assert served["bytes"] == len(ok.body) and served["latencySeconds"] >= 0
    assert lines[2]["verb"] == "delete" and lines[2]["cluster"] == "c1"
    assert "identity" not in lines[2]
    text = env.audit_path.read_text()
    assert "bob-token" not in text and "managed-token" not in text


async def curl(env, *args: str) -> tuple[str, str]:
    """Run curl (HTTP/2) against the gateway; returns (http_version http_code, body)."""
    import subprocess

    from twisted.internet.threads import deferToThread

    command = [
        "curl",
        "--silent",
        "--show-error",
        "--http2",
        "--cacert",
        str(env.gateway.ca_path),
        "--write-out",
        "\n%{http_version} %{http_code}",
        *args,
    ]
    done = await deferToThread(subprocess.run, command, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.decode().rpartition("\n")
    return status, body


@pytest_twisted.ensureDeferred
async def test_front_proxy_over_http2(auth_gateway_factory) -> None:
    """The hub's aggregator speaks h2: the front-proxy certificate is found on the h2
    connection too, and headers without it are still 401."""
    env = await auth_gateway_factory()
    cert, key = env.key_files(env.hub.pki.front_proxy_client, "front")
    url = env.gateway.url + GROUP_PATH
    status, body = await curl(
        env,
        "--cert",
        str(cert),
        "--key",
        str(key),
        "-H",
        "X-Remote-User: alice",
        "-H",
        "X-Remote-Group: dev",
        url,
    )
    assert status == "2 200", body
    assert hub_reviews_for(env.hub, "alice")[0]["groups"] == ["dev", "system:authenticated"]
    status, body = await curl(env, "-H", "X-Remote-User: alice", url)
    assert status == "2 401" and json.loads(body)["reason"] == "Unauthorized"


@pytest_twisted.ensureDeferred
async def test_exec_is_audited_with_the_upgrade_code(auth_gateway_factory, tmp_path) -> None:
    """kubectl exec through the proxy (client certificate) leaves an audit line with the
    cluster, the caller and the 101 of the spliced connection."""
    env = await auth_gateway_factory()
    carol = env.hub.issue_client_cert("carol", ["ops"])
    kubeconfig = client_cert_kubeconfig(
        env, carol, tmp_path / "carol-proxy.kubeconfig", env.gateway.url + env.proxy_path("")
    )
    done = await run_kubectl(
        kubectl_binary("1.33"), kubeconfig, "exec", "-n", "default", "demo", "--", "echo", "hi"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hi\n"
    from tests.fixtures.gateway import wait_until

    def exec_lines():
        return [line for line in env.audit_lines() if line["path"].endswith("/exec")]

    await wait_until(lambda: bool(exec_lines()))
    [line] = exec_lines()
    assert (line["user"], line["cluster"], line["code"]) == ("carol", "c1", 101)
    assert line["resource"] == "clustergateways/proxy" and "aborted" not in line


@pytest_twisted.ensureDeferred
async def test_kubectl_as_is_authorized_as_impersonation(auth_gateway_factory, tmp_path) -> None:
    """`kubectl --as` sent straight to the gateway: the hub reviews carol's `impersonate`,
    the request runs as bob; a denied impersonation is 403 and the audit names both."""
    env = await auth_gateway_factory()
    carol = env.hub.issue_client_cert("carol", ["ops"])
    kubeconfig = client_cert_kubeconfig(env, carol, tmp_path / "carol.kubeconfig", env.gateway.url)
    kubectl = kubectl_binary("1.33")
    done = await run_kubectl(
        kubectl,
        kubeconfig,
        "--as",
        "bob",
        "--as-group",
        "dev",
        "get",
        "clustergateways",
        "-o",
        "name",
    )
    assert done.returncode == 0, done.stderr
    impersonate = [
        r["spec"]["resourceAttributes"]
        for r in env.hub.access_reviews
        if r["spec"].get("resourceAttributes", {}).get("verb") == "impersonate"
    ]
    assert {(a["resource"], a["name"]) for a in impersonate} == {
        ("users", "bob"),
        ("groups", "dev"),
    }
    assert any(
        r["spec"]["user"] == "bob" and r["spec"]["groups"] == ["dev", "system:authenticated"]
        for r in env.hub.access_reviews
    )
    env.hub.faults.deny.add(("carol", "impersonate", "users"))
    denied = await run_kubectl(kubectl, kubeconfig, "--as", "root", "get", "clustergateways")
    assert denied.returncode != 0
    assert 'users "root" is forbidden: User "carol" cannot impersonate' in denied.stderr.decode()
    lines = [line for line in env.audit_lines() if line.get("impersonatedBy") == "carol"]
    assert {line["user"] for line in lines} >= {"bob"}
