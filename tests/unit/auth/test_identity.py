"""Identity to the managed cluster: exchanger rules, precedence, headers (spec §4)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from twisted.web.test.requesthelper import DummyRequest

from clustergateway.auth.identity import (
    ANNOTATION,
    IdentityResolver,
    Impersonation,
    ProxyConfig,
    ProxyConfigError,
    decide_identity,
    impersonation_requested,
)
from clustergateway.auth.user import UserInfo
from clustergateway.errors import ServiceUnavailable
from clustergateway.registry.model import ClusterGateway, EndpointSpec

#: examples/client-identity-exchanger/config.yaml of the Go repository, verbatim.
GO_EXAMPLE = textwrap.dedent(
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
              cluster: cluster-34567
            target:
              user: user-34567
            type: StaticMappingIdentityExchanger
    """
)


def config(*rules: dict) -> ProxyConfig:
    return ProxyConfig.parse({"spec": {"clientIdentityExchanger": {"rules": list(rules)}}})


def static(name: str, source: dict, user: str = "mapped", **target: object) -> dict:
    return {
        "name": name,
        "type": "StaticMappingIdentityExchanger",
        "source": source,
        "target": {"user": user, **target},
    }


def privileged(name: str, source: dict) -> dict:
    return {"name": name, "type": "PrivilegedIdentityExchanger", "source": source}


ALICE = UserInfo("alice", ("dev", "system:authenticated"), uid="u-1", extra={"scopes": ["a", "b"]})


def decide(user: UserInfo, cluster: str, cluster_cfg=None, global_cfg=None, impersonate=True):
    return decide_identity(
        user, cluster, impersonate=impersonate, cluster_config=cluster_cfg, global_config=global_cfg
    )


# --- the Go example file -----------------------------------------------------------------


def test_go_example_super_user_gets_the_raw_credential() -> None:
    """A caller in group sudoer matches `super-user`: no impersonation at all."""
    cfg = ProxyConfig.parse(GO_EXAMPLE)
    d = decide(UserInfo("root", ("sudoer",)), "any", global_cfg=cfg)
    assert (d.impersonation, d.origin, d.rule) == (None, "global", "super-user")


def test_go_example_mapping_needs_user_and_cluster() -> None:
    """`mapping` applies only to user-12345 on cluster-34567 (AND of its source fields)."""
    cfg = ProxyConfig.parse(GO_EXAMPLE)
    hit = decide(UserInfo("user-12345"), "cluster-34567", global_cfg=cfg)
    assert hit.impersonation == Impersonation("user-34567") and hit.rule == "mapping"
    for user, cluster in [("user-12345", "other"), ("user-1", "cluster-34567")]:
        miss = decide(UserInfo(user), cluster, global_cfg=cfg)
        assert miss.origin == "caller" and miss.impersonation == Impersonation(user)


def test_go_example_first_rule_wins() -> None:
    """user-12345 in sudoer matches both rules; the lower index wins."""
    cfg = ProxyConfig.parse(GO_EXAMPLE)
    d = decide(UserInfo("user-12345", ("sudoer",)), "cluster-34567", global_cfg=cfg)
    assert d.rule == "super-user" and d.impersonation is None


# --- matching, one source field at a time (Go clustergateway_proxy_configuration_test) ---

MATCH_TABLE = [
    # (source, user, cluster, matches)
    ({"user": "alice"}, ALICE, "c1", True),
    ({"user": "alic"}, ALICE, "c1", False),
    ({"group": "dev"}, ALICE, "c1", True),
    ({"group": "de"}, ALICE, "c1", False),
    ({"uid": "u-1"}, ALICE, "c1", True),
    ({"uid": "u-2"}, ALICE, "c1", False),
    ({"cluster": "c1"}, ALICE, "c1", True),
    ({"cluster": "c1"}, ALICE, "c10", False),
    ({"userPattern": "lic"}, ALICE, "c1", True),  # unanchored, like Go regexp.Match
    ({"userPattern": "^lic"}, ALICE, "c1", False),
    ({"userPattern": "^a.*e$"}, ALICE, "c1", True),
    ({"groupPattern": "^system:"}, ALICE, "c1", True),  # any one group
    ({"groupPattern": "^ops$"}, ALICE, "c1", False),
    ({"groupPattern": "x"}, UserInfo("nogroups"), "c1", False),
    ({"clusterPattern": "prod-[0-9]+"}, ALICE, "eu-prod-12", True),
    ({"clusterPattern": "^prod"}, ALICE, "eu-prod-12", False),
    ({"user": "alice", "group": "dev", "clusterPattern": "c"}, ALICE, "c1", True),
    ({"user": "alice", "group": "ops"}, ALICE, "c1", False),
    ({}, ALICE, "c1", True),  # empty source matches everyone
    ({"user": None}, ALICE, "c1", True),  # a null field is absent
]


@pytest.mark.parametrize(("source", "user", "cluster", "matches"), MATCH_TABLE)
def test_rule_matching(source: dict, user: UserInfo, cluster: str, matches: bool) -> None:
    """Every set source field must hold; patterns are searches."""
    d = decide(user, cluster, global_cfg=config(static("r", source)))
    assert (d.rule == "r") is matches


def test_no_rule_matches_falls_back_to_the_caller_with_uid() -> None:
    """Fallback impersonates name, groups, extras and the uid (quirk 14 fixed)."""
    d = decide(ALICE, "c1", global_cfg=config(static("r", {"user": "bob"})))
    assert d.origin == "caller"
    assert d.impersonation == Impersonation(
        "alice", ("dev", "system:authenticated"), "u-1", {"scopes": ["a", "b"]}
    )


def test_static_mapping_target_fields() -> None:
    """A static mapping impersonates exactly its target's user, groups and uid."""
    cfg = config(static("r", {}, user="robot", groups=["g1", "g2"], uid="42"))
    assert decide(ALICE, "c1", global_cfg=cfg).impersonation == Impersonation(
        "robot", ("g1", "g2"), "42"
    )


# --- precedence (Go TestGetImpersonationConfig) ---------------------------------------


def test_cluster_rule_beats_global_rule() -> None:
    """Per-cluster configuration is consulted first."""
    d = decide(
        ALICE,
        "c1",
        cluster_cfg=config(static("local", {}, user="from-cluster")),
        global_cfg=config(static("global", {}, user="from-global")),
    )
    assert (d.origin, d.rule, d.impersonation.user) == ("cluster", "local", "from-cluster")


def test_global_rule_applies_when_cluster_rules_do_not_match() -> None:
    """A per-cluster miss falls through to the global rules."""
    d = decide(
        ALICE,
        "c1",
        cluster_cfg=config(static("local", {"user": "bob"})),
        global_cfg=config(privileged("global", {"group": "dev"})),
    )
    assert (d.origin, d.rule, d.impersonation) == ("global", "global", None)


def test_without_impersonation_no_rule_is_consulted() -> None:
    """No `impersonate=true` and no gate: the Secret's credential, rules ignored."""
    d = decide(ALICE, "c1", global_cfg=config(static("r", {})), impersonate=False)
    assert (d.origin, d.impersonation) == ("credential", None)


def test_per_cluster_rules_get_the_cluster_pinned() -> None:
    """Parsing an annotation overwrites every rule's source.cluster with the cluster name."""
    cfg = ProxyConfig.parse(
        {"spec": {"clientIdentityExchanger": {"rules": [static("r", {"cluster": "other"})]}}},
        cluster="c1",
    )
    assert cfg.rules[0].source.cluster == "c1"
    assert decide(ALICE, "c1", cluster_cfg=cfg).rule == "r"


# --- load-time errors (quirk 13) ---------------------------------------------------------

BAD_CONFIGS = [
    (
        {"name": "ext", "type": "ExternalIdentityExchanger", "source": {}, "url": "http://x"},
        "rule #0 'ext': ExternalIdentityExchanger is not implemented",
    ),
    (
        {"name": "odd", "type": "Magic", "source": {}},
        "rule #0 'odd': unknown exchanger type: Magic",
    ),
    ({"name": "nosrc", "type": "PrivilegedIdentityExchanger"}, "rule #0 'nosrc': no source"),
    (
        {"name": "re", "type": "PrivilegedIdentityExchanger", "source": {"userPattern": "("}},
        "rule #0 're': source.userPattern: invalid regular expression '('",
    ),
    (
        {"name": "gre", "type": "PrivilegedIdentityExchanger", "source": {"groupPattern": "[a"}},
        "source.groupPattern: invalid regular expression",
    ),
    (
        {"name": "cre", "type": "PrivilegedIdentityExchanger", "source": {"clusterPattern": "*"}},
        "source.clusterPattern: invalid regular expression",
    ),
    (
        {"name": "typo", "type": "PrivilegedIdentityExchanger", "source": {"usr": "alice"}},
        "rule #0 'typo': unknown source field 'usr'",
    ),
    (
        {"name": "nt", "type": "StaticMappingIdentityExchanger", "source": {}},
        "rule #0 'nt': StaticMappingIdentityExchanger needs a target",
    ),
    (
        {
            "name": "nu",
            "type": "StaticMappingIdentityExchanger",
            "source": {},
            "target": {"groups": ["g"]},
        },
        "needs target.user",
    ),
    (
        {"name": "num", "type": "PrivilegedIdentityExchanger", "source": {"user": 12345}},
        "source.user must be a string",
    ),
    ({"type": "PrivilegedIdentityExchanger", "source": {}, "extra": 1}, "rule #0: unknown field"),
    (
        {
            "name": "crlf",
            "type": "StaticMappingIdentityExchanger",
            "source": {},
            "target": {"user": "a\r\nX: y"},
        },
        "control character",
    ),
]


@pytest.mark.parametrize(("rule", "message"), BAD_CONFIGS)
def test_bad_rules_are_rejected_at_load(rule: dict, message: str) -> None:
    """Unusable rules fail parsing with an error that names the rule and the cause."""
    with pytest.raises(ProxyConfigError) as info:
        config(rule)
    assert message in str(info.value)


def test_error_names_the_rule_index() -> None:
    """The index in the message is the rule's position in the list."""
    with pytest.raises(ProxyConfigError, match=r"rule #1 'bad'"):
        config(privileged("ok", {}), {"name": "bad", "type": "Nope", "source": {}})


def test_load_file_errors_name_the_file(tmp_path: Path) -> None:
    """A missing or bad --cluster-gateway-proxy-config names the file."""
    with pytest.raises(ProxyConfigError, match="missing.yaml"):
        ProxyConfig.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "spec: {clientIdentityExchanger: {rules: [ {name: x, type: Nope, source: {}} ]}}"
    )
    with pytest.raises(ProxyConfigError, match=r"bad.yaml: rule #0 'x': unknown exchanger type"):
        ProxyConfig.load(bad)
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("spec: [unclosed")
    with pytest.raises(ProxyConfigError, match="not valid YAML"):
        ProxyConfig.load(garbage)


def test_load_json_and_empty_files(tmp_path: Path) -> None:
    """JSON is accepted like YAML; an empty file means no rules."""
    js = tmp_path / "c.json"
    js.write_text(
        '{"spec":{"clientIdentityExchanger":{"rules":[{"name":"p","type":'
        '"PrivilegedIdentityExchanger","source":{"group":"g"}}]}}}'
    )
    assert [r.name for r in ProxyConfig.load(js).rules] == ["p"]
    empty = tmp_path / "e.yaml"
    empty.write_text("")
    assert ProxyConfig.load(empty).rules == ()


# --- headers -----------------------------------------------------------------------------


def test_impersonation_headers() -> None:
    """Order and names as client-go sends them; extra keys %-escaped, one header per value."""
    imp = Impersonation(
        "alice",
        ("dev", "system:authenticated"),
        "u-1",
        {"authentication.kubernetes.io/credential-id": ["X509SHA256=ab"], "scopes": ["a", "b"]},
    )
    assert imp.headers() == [
        (b"Impersonate-User", b"alice"),
        (b"Impersonate-Uid", b"u-1"),
        (b"Impersonate-Group", b"dev"),
        (b"Impersonate-Group", b"system:authenticated"),
        (b"Impersonate-Extra-authentication.kubernetes.io%2Fcredential-id", b"X509SHA256=ab"),
        (b"Impersonate-Extra-scopes", b"a"),
        (b"Impersonate-Extra-scopes", b"b"),
    ]


def test_impersonation_headers_minimal() -> None:
    """No uid, groups or extras: only Impersonate-User."""
    assert Impersonation("bob").headers() == [(b"Impersonate-User", b"bob")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"user": "a\nb"},
        {"user": "a", "groups": ["ok", "b\r"]},
        {"user": "a", "uid": "\x00"},
        {"user": "a", "extra": {"k\n": ["v"]}},
        {"user": "a", "extra": {"k": ["v\r\nInjected: 1"]}},
    ],
)
def test_impersonation_refuses_header_injection(kwargs: dict) -> None:
    """No identity value may carry CR, LF or NUL into a header."""
    with pytest.raises(ValueError, match="control character"):
        Impersonation(**kwargs)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (None, False),
        ([], False),
        ([b"true"], True),
        ([b"1"], True),
        ([b""], True),
        ([b"yes"], True),
        ([b"false"], False),
        ([b"FALSE"], False),
        ([b"0"], False),
        ([b"false", b"true"], False),
    ],
)
def test_impersonation_requested(values, expected: bool) -> None:
    """`?impersonate=` reads like Go's bool query decoding: only false/0 are false."""
    assert impersonation_requested(values) is expected


# --- the resolver (the proxy's hook) ----------------------------------------------------


def cluster(name: str = "c1", annotation: str | None = None) -> ClusterGateway:
    annotations = {ANNOTATION: annotation} if annotation is not None else {}
    return ClusterGateway(name, EndpointSpec(address="https://x"), None, annotations=annotations)


def request(query: bytes = b"") -> DummyRequest:
    req = DummyRequest([b"proxy"])
    if query:
        key, _, value = query.partition(b"=")
        req.args = {key: [value]}
    return req


ANNOTATED = """
spec:
  clientIdentityExchanger:
    rules:
      - name: robots
        type: StaticMappingIdentityExchanger
        source: {userPattern: "^alice$", cluster: somewhere-else}
        target: {user: robot, groups: [bots]}
"""


def test_resolver_default_is_the_secret_credential() -> None:
    """Without ?impersonate and without the gate: None, noted on the request."""
    req = request()
    assert IdentityResolver().identity_for(cluster(annotation=ANNOTATED), ALICE, req) is None
    assert req.cg_identity.origin == "credential"


def test_resolver_query_impersonates_caller() -> None:
    """?impersonate=true impersonates the caller."""
    got = IdentityResolver().identity_for(cluster(), ALICE, request(b"impersonate=true"))
    assert got == Impersonation.of_user(ALICE)


def test_resolver_gate_impersonates_always() -> None:
    """ClientIdentityPenetration impersonates without the query parameter."""
    resolver = IdentityResolver(penetration=True)
    assert resolver.identity_for(cluster(), ALICE, request()) == Impersonation.of_user(ALICE)
    assert resolver.identity_for(cluster(), ALICE, request(b"impersonate=false")) is not None


def test_resolver_annotation_applies_even_without_the_gate() -> None:
    """The per-cluster annotation (cluster pinned to its own name) is honoured for ?impersonate."""
    req = request(b"impersonate=true")
    got = IdentityResolver().identity_for(cluster("c1", ANNOTATED), ALICE, req)
    assert got == Impersonation("robot", ("bots",))
    assert (req.cg_identity.origin, req.cg_identity.rule) == ("cluster", "robots")


def test_resolver_annotation_change_is_picked_up() -> None:
    """A new annotation text is parsed again; removing it falls back to the global rules."""
    resolver = IdentityResolver(global_config=config(privileged("g", {})))
    req = request(b"impersonate=true")
    assert resolver.identity_for(cluster("c1", ANNOTATED), ALICE, req).user == "robot"
    changed = ANNOTATED.replace("user: robot", "user: android")
    assert resolver.identity_for(cluster("c1", changed), ALICE, req).user == "android"
    assert resolver.identity_for(cluster("c1"), ALICE, req) is None
    assert req.cg_identity.rule == "g"


def test_resolver_invalid_annotation_is_a_503_naming_cluster_and_rule() -> None:
    """A bad annotation never crashes nor silently matches: 503 with the cause."""
    bad = ANNOTATED.replace('"^alice$"', '"(alice"')
    resolver = IdentityResolver()
    for _ in range(2):  # cached error, same answer
        with pytest.raises(ServiceUnavailable) as info:
            resolver.identity_for(cluster("c1", bad), ALICE, request(b"impersonate=1"))
        assert "'c1'" in info.value.message and "rule #0 'robots'" in info.value.message
    # Requests that use the Secret's credential are unaffected.
    assert resolver.identity_for(cluster("c1", bad), ALICE, request()) is None


def test_shipped_example_loads() -> None:
    """examples/client-identity-exchanger/config.yaml is the Go example and validates."""
    path = Path(__file__).parents[3] / "examples" / "client-identity-exchanger" / "config.yaml"
    config = ProxyConfig.load(path)
    assert config == ProxyConfig.parse(GO_EXAMPLE)
    assert [r.name for r in config.rules] == ["super-user", "mapping"]
