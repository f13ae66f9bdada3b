"""As whom requests reach the managed cluster: impersonation and every exchanger rule,
seen at the simulated cluster as Impersonate-* headers; --authorize-proxy-subpath; reload."""

from __future__ import annotations

import json
import textwrap

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from clustergateway.auth.identity import ANNOTATION
from clustergateway.certs import issue_cert
from clustergateway.config import Options
from clustergateway.registry.features import FeatureGates
from tests.fixtures.auth import GROUP_PATH, call, managed_secret

pytestmark = pytest.mark.e2e

GLOBAL_RULES = textwrap.dedent(
    """\
    apiVersion: cluster.core.oam.dev/v1alpha1
    kind: ClusterGatewayProxyConfiguration
    spec:
      clientIdentityExchanger:
        rules:
          - name: super-user
            source:
              group: sudoer
            type: PrivilegedIdentityExchanger
          - name: mapping
            source:
              user: user-12345
              cluster: c1
            target:
              user: user-34567
            type: StaticMappingIdentityExchanger
          - name: robots
            source:
              userPattern: "^robot-"
            target:
              user: robot-runner
              groups: [bots]
              uid: r-1
            type: StaticMappingIdentityExchanger
    """
)

CLUSTER_RULES = json.dumps(
    {
        "apiVersion": "cluster.core.oam.dev/v1alpha1",
        "kind": "ClusterGatewayProxyConfiguration",
        "spec": {
            "clientIdentityExchanger": {
                "rules": [
                    {
                        "name": "alice-here",
                        "type": "StaticMappingIdentityExchanger",
                        "source": {"user": "alice"},
                        "target": {"user": "alice-on-c1", "groups": ["c1-team"]},
                    }
                ]
            }
        },
    }
)


def caller(user: str, *groups: str, uid: str = "") -> list[tuple[str, str]]:
    headers = [("X-Remote-User", user)] + [("X-Remote-Group", g) for g in groups]
    if uid:
        headers.append(("X-Remote-Uid", uid))
    return headers


def impersonation(request) -> dict[str, list[str]]:
    return {k: v for k, v in request.headers.items() if k.startswith("impersonate-")}


async def proxied_as(env, headers, query: str = "") -> dict[str, list[str]]:
    """GET configmaps through the proxy as the given front-proxy caller; the
    Impersonate-* headers the managed cluster received."""
    path = env.proxy_path("/api/v1/namespaces/default/configmaps" + query)
    answer = await call(env, "GET", path, cert=env.hub.pki.front_proxy_client, headers=headers)
    assert answer.status == 200, answer.body
    upstream = env.upstream()[-1]
    assert upstream.headers["authorization"] == ["Bearer managed-token"]
    return impersonation(upstream)


@pytest.fixture
def rules_file(tmp_path):
    path = tmp_path / "proxy-config.yaml"
    path.write_text(GLOBAL_RULES)
    return path


@pytest_twisted.ensureDeferred
async def test_every_exchanger_rule_at_the_cluster(
    auth_gateway_factory, managed, rules_file
) -> None:
    """With ClientIdentityPenetration: cluster rule, then global rules in order, then the
    caller (uid included) — each visible as Impersonate-* headers at the cluster."""
    env = await auth_gateway_factory(
        secrets=[managed_secret(managed, annotations={ANNOTATION: CLUSTER_RULES})],
        proxy_config_file=rules_file,
        feature_gates=FeatureGates(client_identity_penetration=True),
    )
    # Per-cluster annotation beats the global rules.
    assert await proxied_as(env, caller("alice", "sudoer")) == {
        "impersonate-user": ["alice-on-c1"],
        "impersonate-group": ["c1-team"],
    }
    # PrivilegedIdentityExchanger: the Secret's own identity, no impersonation.
    assert await proxied_as(env, caller("root", "sudoer")) == {}
    # StaticMappingIdentityExchanger with user + cluster source.
    assert await proxied_as(env, caller("user-12345")) == {"impersonate-user": ["user-34567"]}
    # userPattern (a search), with target groups and uid.
    assert await proxied_as(env, caller("robot-7", "ci")) == {
        "impersonate-user": ["robot-runner"],
        "impersonate-uid": ["r-1"],
        "impersonate-group": ["bots"],
    }
    # No rule: the caller, uid and all.
    assert await proxied_as(env, caller("dave", "dev", uid="u-dave")) == {
        "impersonate-user": ["dave"],
        "impersonate-uid": ["u-dave"],
        "impersonate-group": ["dev", "system:authenticated"],
    }
    assert env.upstream()[-1].user.name == "dave"


@pytest_twisted.ensureDeferred
async def test_impersonate_query_without_the_gate(auth_gateway_factory, managed) -> None:
    """Without the gate only ?impersonate=true impersonates — and the cluster's annotation
    applies to it too (quirk 14 fixed)."""
    env = await auth_gateway_factory(
        secrets=[managed_secret(managed, annotations={ANNOTATION: CLUSTER_RULES})]
    )
    assert await proxied_as(env, caller("alice")) == {}
    assert await proxied_as(env, caller("alice"), "?impersonate=true") == {
        "impersonate-user": ["alice-on-c1"],
        "impersonate-group": ["c1-team"],
    }
    assert await proxied_as(env, caller("erin", "qa"), "?impersonate=true") == {
        "impersonate-user": ["erin"],
        "impersonate-group": ["qa", "system:authenticated"],
    }
    assert env.upstream()[-1].query.get("impersonate") == ["true"]


@pytest_twisted.ensureDeferred
async def test_invalid_cluster_annotation_is_a_503_naming_the_rule(
    auth_gateway_factory, managed
) -> None:
    """A bad regex in a cluster's annotation fails impersonated requests with a Status
    naming cluster and rule; requests with the Secret's credential still work."""
    bad = CLUSTER_RULES.replace('"source": {"user": "alice"}', '"source": {"userPattern": "("}')
    env = await auth_gateway_factory(
        secrets=[managed_secret(managed, annotations={ANNOTATION: bad})]
    )
    path = env.proxy_path("/api/v1/namespaces/default/configmaps")
    front = env.hub.pki.front_proxy_client
    answer = await call(env, "GET", path + "?impersonate=true", cert=front, headers=caller("a"))
    assert answer.status == 503, answer.body
    message = answer.json()["message"]
    assert "'c1'" in message and "rule #0 'alice-here'" in message and "userPattern" in message
    plain = await call(env, "GET", path, cert=front, headers=caller("a"))
    assert plain.status == 200


def test_bad_global_config_stops_the_start(tmp_path) -> None:
    """ExternalIdentityExchanger in --cluster-gateway-proxy-config: one line naming the rule."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        GLOBAL_RULES.replace("type: PrivilegedIdentityExchanger", "type: ExternalIdentityExchanger")
    )
    with pytest.raises(SystemExit) as info:
        Options().parseOptions(
            ["--secrets-dir", str(tmp_path), "--cluster-gateway-proxy-config", str(path)]
        )
    assert str(info.value) == (
        f"cluster-gateway: --cluster-gateway-proxy-config: {path}: rule #0 'super-user':"
        " ExternalIdentityExchanger is not implemented"
    )


@pytest_twisted.ensureDeferred
async def test_authorize_proxy_subpath_uses_the_target_verb(auth_gateway_factory) -> None:
    """--authorize-proxy-subpath: the target is reviewed at the hub as list / watch (not
    get, §14.11); a denial is 403 naming the cluster, and nothing reaches it."""
    env = await auth_gateway_factory(authorize_proxy_subpath=True)
    front = env.hub.pki.front_proxy_client
    base = env.proxy_path("/api/v1/namespaces/default/configmaps")
    answer = await call(env, "GET", base, cert=front, headers=caller("frank"))
    assert answer.status == 200, answer.body
    targets = [
        r["spec"]["resourceAttributes"]
        for r in env.hub.access_reviews
        if r["spec"].get("user") == "frank"
        and r["spec"]["resourceAttributes"].get("resource") == "configmaps"
    ]
    assert targets == [
        {"namespace": "default", "verb": "list", "version": "v1", "resource": "configmaps"}
    ]

    env.hub.faults.deny.add(("frank", "watch", "configmaps"))
    sent = len(env.upstream())
    watch = await call(env, "GET", base + "?watch=true", cert=front, headers=caller("frank"))
    assert watch.status == 403, watch.body
    assert watch.json()["message"] == (
        'proxying to cluster "c1" is forbidden: User "frank" cannot watch resource "configmaps"'
        ' in API group "" in the namespace "default": denied by the simulated cluster\'s deny list'
    )
    assert len(env.upstream()) == sent


@pytest_twisted.ensureDeferred
async def test_trust_reload_follows_the_hub_configmap(auth_gateway_factory) -> None:
    """Changing allowed names in the hub's ConfigMap takes effect at the next reload."""
    env = await auth_gateway_factory()
    intruder = issue_cert(env.hub.pki.front_proxy_ca, "intruder", client=True)
    assert (await call(env, "GET", GROUP_PATH, cert=intruder, headers=caller("x"))).status == 401
    configmap = env.hub.store.get("configmaps", "kube-system", "extension-apiserver-authentication")
    configmap["data"]["requestheader-allowed-names"] = json.dumps(
        ["front-proxy-client", "intruder"]
    )
    env.hub.store.put(configmap)
    await ensureDeferred(env.trust.source.refresh())
    assert (await call(env, "GET", GROUP_PATH, cert=intruder, headers=caller("x"))).status == 200


@pytest_twisted.ensureDeferred
async def test_rotated_front_proxy_ca_is_trusted_after_reload(auth_gateway_factory) -> None:
    """A new requestheader CA in the ConfigMap reaches the TLS handshake: refused before the
    reload, served after it (twisted-notes §4.3)."""
    import ssl

    from clustergateway.certs import make_ca

    env = await auth_gateway_factory()
    new_ca = make_ca("rotated-front-proxy-ca")
    front = issue_cert(new_ca, "front-proxy-client", client=True)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await call(env, "GET", GROUP_PATH, cert=front, headers=caller("x"))
    configmap = env.hub.store.get("configmaps", "kube-system", "extension-apiserver-authentication")
    configmap["data"]["requestheader-client-ca-file"] = new_ca.cert_pem.decode()
    env.hub.store.put(configmap)
    await ensureDeferred(env.trust.source.refresh())
    answer = await call(env, "GET", GROUP_PATH, cert=front, headers=caller("x"))
    assert answer.status == 200, answer.body
    with pytest.raises((ssl.SSLError, ConnectionError)):  # the old CA is no longer trusted
        await call(env, "GET", GROUP_PATH, cert=env.hub.pki.front_proxy_client, headers=caller("x"))
