"""Secret → ClusterGateway conversion: every case of spec §2.3, table-driven."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from clustergateway.certs import KeyPair
from clustergateway.registry.convert import (
    ConversionError,
    convert_secret,
    convert_secret_with_warnings,
    secret_data,
)
from clustergateway.registry.features import FeatureGates
from clustergateway.registry.keys import PROXY_CONFIG_ANNOTATION
from clustergateway.registry.model import CredentialSpec, EndpointSpec
from clustergateway.registry.samples import cluster_secret

GROUP = "cluster.core.oam.dev"
DEFAULT = FeatureGates()
TOKEN = "s3cr3t-token-value"
EXEC = {"apiVersion": "client.authentication.k8s.io/v1", "command": "issue", "args": ["-c", "x"]}


def convert(secret: dict[str, Any], gates: FeatureGates = DEFAULT, group: str = GROUP):
    return convert_secret(secret, group=group, gates=gates)


def error_of(secret: dict[str, Any], gates: FeatureGates = DEFAULT, group: str = GROUP) -> str:
    with pytest.raises(ConversionError) as info:
        convert(secret, gates, group)
    return info.value.message


# -- endpoint ----------------------------------------------------------------------------


ENDPOINT_CASES = [
    # (id, secret kwargs, expected EndpointSpec without ca_bundle checks)
    ("trailing-newline-trimmed", {"endpoint": "https://10.0.0.1:6443\n"}, "https://10.0.0.1:6443"),
    ("path-kept", {"endpoint": "https://h.example/prefix/"}, "https://h.example/prefix/"),
    ("no-scheme-gets-https", {"endpoint": "10.0.0.1:6443"}, "https://10.0.0.1:6443"),
    ("http-accepted", {"endpoint": "http://127.0.0.1:8080"}, "http://127.0.0.1:8080"),
    ("ipv6", {"endpoint": "https://[::1]:6443"}, "https://[::1]:6443"),
]


@pytest.mark.parametrize(
    ("kwargs", "address"), [c[1:] for c in ENDPOINT_CASES], ids=[c[0] for c in ENDPOINT_CASES]
)
def test_endpoint_address(kwargs: dict[str, Any], address: str) -> None:
    """The endpoint data key becomes the Const address: one trailing newline trimmed,
    a bare host:port defaulted to https, http allowed."""
    gateway = convert(cluster_secret("c1", token=TOKEN, **kwargs))
    assert gateway.endpoint.type == "Const"
    assert gateway.endpoint.address == address


ENDPOINT_ERRORS = [
    ("missing", {"endpoint": None}, 'missing data key "endpoint"'),
    ("empty", {"endpoint": ""}, 'data key "endpoint" is empty'),
    ("only-newline", {"endpoint": "\n"}, 'data key "endpoint" is empty'),
    ("two-newlines", {"endpoint": "https://h\n\n"}, "whitespace or control"),
    ("inner-space", {"endpoint": "https://h x"}, "whitespace or control"),
    ("bad-scheme", {"endpoint": "ftp://h"}, 'scheme "ftp", want https'),
    ("user-info", {"endpoint": "https://u:pw@h"}, "must not carry user info"),
    ("no-host", {"endpoint": "https:///path"}, "has no host"),
    ("query", {"endpoint": "https://h?x=1"}, "query or fragment"),
    ("bad-port", {"endpoint": "https://h:99999"}, "not a valid URL"),
]


@pytest.mark.parametrize(
    ("kwargs", "cause"), [c[1:] for c in ENDPOINT_ERRORS], ids=[c[0] for c in ENDPOINT_ERRORS]
)
def test_endpoint_errors(kwargs: dict[str, Any], cause: str) -> None:
    """A Const endpoint that is missing or not a usable URL is an error naming the
    Secret and the data key (quirk 5 fixed: no "missing label key: api-endpoint")."""
    message = error_of(cluster_secret("c1", token=TOKEN, **kwargs))
    assert message.startswith("secret vela-system/c1: ")
    assert cause in message
    assert "pw" not in message


def test_ca_crt_key(pki: dict[str, KeyPair]) -> None:
    """``ca.crt`` becomes the CA bundle and TLS is verified."""
    gateway = convert(cluster_secret("c1", token=TOKEN, ca=pki["ca"].cert_pem))
    assert gateway.endpoint == EndpointSpec(
        type="Const", address="https://127.0.0.1:6443", ca_bundle=pki["ca"].cert_pem
    )


def test_ca_fallback_key(pki: dict[str, KeyPair]) -> None:
    """Without ``ca.crt`` the key ``ca`` is used."""
    secret = cluster_secret("c1", token=TOKEN, extra_data={"ca": pki["ca"].cert_pem})
    gateway = convert(secret)
    assert gateway.endpoint.ca_bundle == pki["ca"].cert_pem
    assert gateway.endpoint.insecure is False


def test_ca_crt_wins_over_ca(pki: dict[str, KeyPair]) -> None:
    """With both keys, ``ca.crt`` wins (``ca`` is not even parsed)."""
    secret = cluster_secret(
        "c1", token=TOKEN, ca=pki["ca"].cert_pem, extra_data={"ca": b"not a pem"}
    )
    assert convert(secret).endpoint.ca_bundle == pki["ca"].cert_pem


def test_no_ca_means_insecure() -> None:
    """Quirk 4 kept: no CA key at all ⇒ TLS not verified."""
    endpoint = convert(cluster_secret("c1", token=TOKEN)).endpoint
    assert endpoint.ca_bundle is None
    assert endpoint.insecure is True


def test_empty_ca_means_system_roots() -> None:
    """Only key presence counts: an empty ``ca.crt`` verifies against the system roots."""
    endpoint = convert(cluster_secret("c1", token=TOKEN, ca=b"")).endpoint
    assert endpoint.ca_bundle == b""
    assert endpoint.insecure is False


def test_ca_not_pem() -> None:
    """A CA that is not PEM fails conversion, naming the key."""
    message = error_of(cluster_secret("c1", token=TOKEN, ca=b"garbage"))
    assert 'data key "ca.crt" is not a PEM certificate bundle' in message


@pytest.mark.parametrize(
    ("value", "with_ca", "insecure"),
    [("true", True, True), ("true", False, True), ("false", False, False), ("1", True, True)],
)
def test_explicit_insecure(
    pki: dict[str, KeyPair], value: str, with_ca: bool, insecure: bool
) -> None:
    """``insecure-skip-tls-verify`` overrides the no-CA default both ways."""
    secret = cluster_secret(
        "c1",
        token=TOKEN,
        ca=pki["ca"].cert_pem if with_ca else None,
        extra_data={"insecure-skip-tls-verify": value},
    )
    assert convert(secret).endpoint.insecure is insecure


def test_explicit_insecure_bad_value() -> None:
    """A non-boolean ``insecure-skip-tls-verify`` is an error."""
    secret = cluster_secret("c1", token=TOKEN, extra_data={"insecure-skip-tls-verify": "yes"})
    assert 'data key "insecure-skip-tls-verify" has value "yes"' in error_of(secret)


def test_tls_server_name() -> None:
    """``tls-server-name`` is carried (trimmed) for SNI and verification."""
    secret = cluster_secret("c1", token=TOKEN, extra_data={"tls-server-name": "api.internal\n"})
    assert convert(secret).endpoint.tls_server_name == "api.internal"
    bad = cluster_secret("c1", token=TOKEN, extra_data={"tls-server-name": " "})
    assert 'data key "tls-server-name" must be a host name' in error_of(bad)


@pytest.mark.parametrize(
    "url", ["http://p:3128", "https://p:3128", "socks5://p:1080", "socks5h://u:pw@p:1080"]
)
def test_proxy_url_allowed(url: str) -> None:
    """``proxy-url`` with an http, https, socks5 or socks5h scheme is kept."""
    assert convert(cluster_secret("c1", token=TOKEN, proxy_url=url)).endpoint.proxy_url == url


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("ftp://p:21", 'has scheme "ftp"'),
        ("socks4://p", 'has scheme "socks4"'),
        ("socks5://", "has no host"),
        ("http://p:notaport", "not a valid URL"),
    ],
)
def test_proxy_url_errors(url: str, cause: str) -> None:
    """A bad ``proxy-url`` is an error naming the key."""
    message = error_of(cluster_secret("c1", token=TOKEN, proxy_url=url))
    assert 'data key "proxy-url"' in message and cause in message


def test_proxy_url_secret_not_in_repr() -> None:
    """Proxy credentials in ``proxy-url`` never show in a repr (logs)."""
    gateway = convert(cluster_secret("c1", token=TOKEN, proxy_url="http://u:hunter2@p:3128"))
    assert "hunter2" not in repr(gateway)


@pytest.mark.parametrize("label", [None, "", "Const"])
def test_endpoint_type_const(label: str | None) -> None:
    """No endpoint-type label, an empty one, or ``Const`` all mean Const."""
    assert convert(cluster_secret("c1", token=TOKEN, endpoint_type=label)).endpoint.type == "Const"


def test_endpoint_type_cluster_proxy() -> None:
    """ClusterProxy ignores endpoint and proxy-url data; without a CA the cluster is not
    verified (as Const without one): ``{"type": "ClusterProxy", insecure}``."""
    secret = cluster_secret(
        "c1",
        token=TOKEN,
        endpoint=None,
        proxy_url="ftp://ignored",
        endpoint_type="ClusterProxy",
    )
    assert convert(secret).endpoint == EndpointSpec(type="ClusterProxy", insecure=True)


def test_endpoint_type_cluster_proxy_keeps_trust_keys(pki: dict[str, KeyPair]) -> None:
    """Unlike Go (which never verifies a ClusterProxy cluster), the Secret's CA,
    tls-server-name and insecure-skip-tls-verify apply as for Const, and a bad CA is
    the Secret's error."""
    ca_pem = pki["ca"].cert_pem
    secret = cluster_secret(
        "c1",
        token=TOKEN,
        endpoint="ignored",
        ca=ca_pem,
        endpoint_type="ClusterProxy",
        extra_data={"tls-server-name": "kube-apiserver.internal"},
    )
    assert convert(secret).endpoint == EndpointSpec(
        type="ClusterProxy", ca_bundle=ca_pem, tls_server_name="kube-apiserver.internal"
    )
    skip = cluster_secret(
        "c1",
        token=TOKEN,
        ca=ca_pem,
        endpoint_type="ClusterProxy",
        extra_data={"insecure-skip-tls-verify": "true"},
    )
    assert convert(skip).endpoint.insecure is True
    bad = cluster_secret("c1", token=TOKEN, ca=b"not even pem", endpoint_type="ClusterProxy")
    assert "ca.crt" in error_of(bad)


def test_endpoint_type_unknown() -> None:
    """Quirk 6 fixed: an unknown endpoint-type label is an error, not a leaked type."""
    message = error_of(cluster_secret("c1", token=TOKEN, endpoint_type="Tunnel"))
    assert message == (
        'secret vela-system/c1: unknown endpoint type "Tunnel" in label '
        '"cluster.core.oam.dev/cluster-endpoint-type", want Const or ClusterProxy'
    )


# -- credentials -------------------------------------------------------------------------


def test_service_account_token() -> None:
    """ServiceAccountToken: ``token`` verbatim."""
    gateway = convert(cluster_secret("c1", token=TOKEN))
    assert gateway.credential == CredentialSpec(type="ServiceAccountToken", token=TOKEN)


def test_token_trailing_newline_trimmed() -> None:
    """One trailing newline (``kubectl create secret --from-file``) is trimmed."""
    assert convert(cluster_secret("c1", token=TOKEN + "\n")).credential.token == TOKEN


@pytest.mark.parametrize(
    ("token", "cause"),
    [
        (None, 'missing data key "token"'),
        ("", 'data key "token" is empty'),
        (TOKEN + "\r\n", "not allowed in a header"),
        ("ab\ncd", "not allowed in a header"),
        ("tökén", "not allowed in a header"),
    ],
)
def test_token_errors(token: str | None, cause: str) -> None:
    """A missing, empty or header-unsafe token is an error that never quotes it."""
    message = error_of(cluster_secret("c1", token=token))
    assert cause in message
    if token:
        assert token.strip() not in message


def test_x509_certificate(pki: dict[str, KeyPair]) -> None:
    """X509Certificate: ``tls.crt``/``tls.key`` as PEM bytes."""
    client = pki["client"]
    secret = cluster_secret(
        "c1",
        credential_type="X509Certificate",
        certificate=client.cert_pem,
        private_key=client.key_pem,
    )
    assert convert(secret).credential == CredentialSpec(
        type="X509Certificate", certificate=client.cert_pem, private_key=client.key_pem
    )


def test_x509_certificate_chain(pki: dict[str, KeyPair]) -> None:
    """A ``tls.crt`` holding the leaf then its CA is accepted (the leaf must match)."""
    client = pki["client"]
    chain = client.cert_pem + pki["ca"].cert_pem
    secret = cluster_secret(
        "c1", credential_type="X509Certificate", certificate=chain, private_key=client.key_pem
    )
    assert convert(secret).credential.certificate == chain


@pytest.mark.parametrize(
    ("cert", "key", "cause"),
    [
        (None, None, 'missing data key "tls.crt"'),
        ("client", None, 'data key "tls.crt" without "tls.key"'),
        ("junk", "client", 'data key "tls.crt" is not a PEM certificate'),
        ("client", "junk", 'data key "tls.key" is not an unencrypted PEM private key'),
        ("client", "other", 'data keys "tls.crt" and "tls.key" do not belong together'),
    ],
)
def test_x509_errors(
    pki: dict[str, KeyPair], cert: str | None, key: str | None, cause: str
) -> None:
    """Missing, unparsable or mismatched client cert/key pairs are errors."""

    def pick(which: str | None, attr: str) -> bytes | None:
        if which is None:
            return None
        if which == "junk":
            return b"-----BEGIN JUNK-----\n"
        return getattr(pki[which], attr)

    secret = cluster_secret(
        "c1",
        credential_type="X509Certificate",
        certificate=pick(cert, "cert_pem"),
        private_key=pick(key, "key_pem"),
    )
    message = error_of(secret)
    assert cause in message
    assert "PRIVATE KEY" not in message


@pytest.mark.parametrize(
    "version", ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]
)
def test_dynamic(version: str) -> None:
    """Dynamic: the exec config is validated and kept as canonical JSON, never run."""
    config = {**EXEC, "apiVersion": version, "env": [{"name": "A", "value": "b"}]}
    gateway = convert(cluster_secret("c1", credential_type="Dynamic", exec_config=config))
    assert gateway.credential.type == "Dynamic"
    assert gateway.credential.exec_config == json.dumps(
        config, sort_keys=True, separators=(",", ":")
    )


DYNAMIC_ERRORS = [
    ("missing", None, 'missing data key "exec"'),
    ("not-json", "{nope", 'data key "exec" is not valid JSON: Expecting property name'),
    ("not-object", "[1]", "must be a JSON object"),
    ("no-version", {"command": "x"}, "invalid apiVersion missing"),
    ("bad-version", {**EXEC, "apiVersion": "v1"}, 'invalid apiVersion "v1"'),
    ("no-command", {"apiVersion": EXEC["apiVersion"]}, 'missing "command" property'),
    ("empty-command", {**EXEC, "command": ""}, 'missing "command" property'),
    ("bad-args", {**EXEC, "args": "x"}, '"args" must be a list of strings'),
    ("bad-env", {**EXEC, "env": [{"name": "A"}]}, '"env" must be a list'),
]


@pytest.mark.parametrize(
    ("config", "cause"), [c[1:] for c in DYNAMIC_ERRORS], ids=[c[0] for c in DYNAMIC_ERRORS]
)
def test_dynamic_errors(config: Any, cause: str) -> None:
    """A Dynamic Secret without a usable ``exec`` ExecConfig is an error naming the cause."""
    message = error_of(cluster_secret("c1", credential_type="Dynamic", exec_config=config))
    assert message.startswith("secret vela-system/c1: ")
    assert cause in message


def test_unknown_credential_type() -> None:
    """An unknown credential-type label value is an error listing the known ones."""
    message = error_of(cluster_secret("c1", credential_type="Password", token=TOKEN))
    assert message == (
        'secret vela-system/c1: unknown credential type "Password" in label '
        '"cluster.core.oam.dev/cluster-credential-type", '
        "want ServiceAccountToken, X509Certificate, Dynamic"
    )


def test_missing_credential_type_label() -> None:
    """Without the credential-type label the Secret is not a cluster."""
    message = error_of(cluster_secret("c1", credential_type=None, token=TOKEN))
    assert 'missing label "cluster.core.oam.dev/cluster-credential-type"' in message


# -- data decoding -----------------------------------------------------------------------


def test_bad_base64() -> None:
    """A data value that is not base64 is an error naming the key."""
    secret = cluster_secret("c1", token=TOKEN)
    secret["data"]["token"] = "!!!not base64"
    assert error_of(secret) == 'secret vela-system/c1: data key "token" is not valid base64'


@pytest.mark.parametrize("value", ["dG9rZW4=", "dG9rZW4===", "dG9rZW4=\n=", "YWJj=", "YWJj===="])
def test_base64_is_as_strict_as_the_apiserver(value: str) -> None:
    """Padding where Go's StdEncoding allows it only: extra ``=`` is refused."""
    secret = cluster_secret("c1", token=TOKEN)
    secret["data"]["token"] = value
    if value == "dG9rZW4=":
        assert convert(secret).credential.token == "token"
    else:
        assert error_of(secret).endswith('data key "token" is not valid base64')


@pytest.mark.parametrize("where", ["data", "stringData"])
def test_secret_larger_than_the_apiserver_allows(where: str) -> None:
    """A Secret over 1 MiB (kube-apiserver's cap) is refused before its value is decoded."""
    secret = cluster_secret("c1", token=TOKEN)
    big = "x" * (5 * 1024 * 1024)
    if where == "data":
        secret["data"]["padding"] = base64.b64encode(big.encode()).decode()
    else:
        secret["stringData"] = {"padding": big}
    assert "larger than 1 MiB" in error_of(secret)
    assert TOKEN not in error_of(secret)


def test_data_value_not_string() -> None:
    """A data value that is not a string is an error naming the key."""
    secret = cluster_secret("c1", token=TOKEN)
    secret["data"]["endpoint"] = 42
    assert 'data key "endpoint" is not a base64 string' in error_of(secret)


def test_multiline_base64_accepted() -> None:
    """CR/LF inside base64 are skipped, as Go's decoder does (folded YAML values)."""
    secret = cluster_secret("c1", token=TOKEN)
    encoded = secret["data"]["token"]
    secret["data"]["token"] = encoded[:4] + "\n" + encoded[4:]
    assert convert(secret).credential.token == TOKEN


def test_string_data_honoured_and_wins() -> None:
    """``stringData`` values count, and win over ``data`` for the same key."""
    secret = cluster_secret("c1", token="old")
    secret["stringData"] = {"token": TOKEN, "endpoint": "https://from-string-data:6443"}
    gateway = convert(secret)
    assert gateway.credential.token == TOKEN
    assert gateway.endpoint.address == "https://from-string-data:6443"


def test_secret_data_helper() -> None:
    """``secret_data`` returns decoded bytes; a None value is empty."""
    secret = {"data": {"a": base64.b64encode(b"\x00\xff").decode(), "b": None}}
    assert secret_data(secret) == {"a": b"\x00\xff", "b": b""}


def test_endpoint_not_utf8() -> None:
    """Binary garbage in ``endpoint`` is an error, not a crash."""
    secret = cluster_secret("c1", token=TOKEN)
    secret["data"]["endpoint"] = base64.b64encode(b"\xff\xfe").decode()
    assert 'data key "endpoint" is not UTF-8 text' in error_of(secret)


# -- metadata, health, proxy config -------------------------------------------------------


def test_metadata_copied() -> None:
    """Name, creationTimestamp, labels and annotations come from the Secret."""
    secret = cluster_secret(
        "c1",
        token=TOKEN,
        labels={"env": "prod"},
        annotations={"note": "x"},
        creation_timestamp="2024-05-06T07:08:09Z",
    )
    gateway = convert(secret)
    assert gateway.name == "c1"
    assert gateway.creation_timestamp == "2024-05-06T07:08:09Z"
    assert gateway.labels == {
        "env": "prod",
        "cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken",
    }
    assert gateway.annotations == {"note": "x"}


def test_no_namespace_ref() -> None:
    """A Secret without a namespace (local file) is named by its name alone."""
    assert error_of(cluster_secret("c1", namespace=None, endpoint=None, token=TOKEN)).startswith(
        "secret c1: "
    )


def test_no_name() -> None:
    """A Secret without a name is an error."""
    secret = cluster_secret("c1", token=TOKEN)
    del secret["metadata"]["name"]
    assert "no metadata.name" in error_of(secret)


HEALTH = "status.cluster.core.oam.dev/healthy"
REASON = "status.cluster.core.oam.dev/healthy-reason"
GATED = FeatureGates(healthiness_check=True)


@pytest.mark.parametrize(
    ("annotations", "gates", "healthy", "reason"),
    [
        ({HEALTH: "true", REASON: "ok"}, DEFAULT, True, "ok"),
        ({HEALTH: "true", REASON: "ok"}, GATED, True, "ok"),
        ({HEALTH: "1"}, GATED, True, ""),
        ({HEALTH: "T"}, DEFAULT, True, ""),
        ({HEALTH: "False", REASON: "ConnectionTimeout"}, GATED, False, "ConnectionTimeout"),
        ({HEALTH: "false", REASON: "ConnectionTimeout"}, DEFAULT, False, "ConnectionTimeout"),
        ({HEALTH: ""}, GATED, True, ""),
        ({}, GATED, True, ""),
        ({}, DEFAULT, True, ""),
    ],
)
def test_health(
    annotations: dict[str, str], gates: FeatureGates, healthy: bool, reason: str
) -> None:
    """The status annotations fill status whatever the gate (Go ParseBool spellings);
    without them nobody reported a problem, so the cluster shows healthy."""
    gateway = convert(cluster_secret("c1", token=TOKEN, annotations=annotations), gates)
    assert (gateway.healthy, gateway.healthy_reason) == (healthy, reason)


@pytest.mark.parametrize("gates", [DEFAULT, GATED])
def test_health_unparsable(gates: FeatureGates) -> None:
    """An unparsable healthy annotation makes the cluster unhealthy, the reason naming it;
    the cluster still converts (a bad annotation must not make it unreachable)."""
    secret = cluster_secret("c1", token=TOKEN, annotations={HEALTH: "yes", REASON: "x"})
    gateway = convert(secret, gates)
    assert gateway.healthy is False
    assert gateway.healthy_reason == f'annotation "{HEALTH}" has value "yes", want true or false'


def test_endpoint_from_replaces_endpoint_and_ca() -> None:
    """An endpoint source (an OCM ManagedCluster) supplies address and CA; the Secret
    needs no ``endpoint``, its ``ca.crt`` is ignored, proxy-url and SNI still apply."""
    secret = cluster_secret(
        "c1",
        token=TOKEN,
        endpoint=None,
        ca=b"not used",
        proxy_url="socks5://proxy:1080",
        extra_data={"tls-server-name": "api.c1"},
    )
    gateway = convert_secret(
        secret, group=GROUP, gates=DEFAULT, endpoint_from=lambda: ("https://mc:6443", None)
    )
    assert gateway.endpoint == EndpointSpec(
        type="Const",
        address="https://mc:6443",
        ca_bundle=None,
        insecure=False,
        proxy_url="socks5://proxy:1080",
        tls_server_name="api.c1",
    )


def test_endpoint_from_error_and_cluster_proxy() -> None:
    """A failing endpoint source is the conversion's error; ClusterProxy never asks it."""

    def broken() -> tuple[str, bytes | None]:
        raise ValueError('ManagedCluster "c1" has no spec.managedClusterClientConfigs')

    secret = cluster_secret("c1", token=TOKEN, endpoint=None)
    with pytest.raises(ConversionError) as caught:
        convert_secret(secret, group=GROUP, gates=DEFAULT, endpoint_from=broken)
    assert caught.value.message == (
        'secret vela-system/c1: ManagedCluster "c1" has no spec.managedClusterClientConfigs'
    )
    proxied = cluster_secret("c1", token=TOKEN, endpoint=None, endpoint_type="ClusterProxy")
    gateway = convert_secret(proxied, group=GROUP, gates=DEFAULT, endpoint_from=broken)
    assert gateway.endpoint == EndpointSpec(type="ClusterProxy", insecure=True)  # no CA key


def test_status_annotations_do_not_follow_group() -> None:
    """With another API group, labels move but the status annotation keys stay fixed."""
    secret = cluster_secret("c1", token=TOKEN, group="example.io", annotations={HEALTH: "true"})
    gateway = convert(secret, GATED, group="example.io")
    assert gateway.healthy is True
    unhealthy = {HEALTH: "false"}
    secret = cluster_secret("c1", token=TOKEN, group="example.io", annotations=unhealthy)
    assert convert(secret, GATED, group="example.io").healthy is False
    assert "missing label" in error_of(secret, GATED)  # default group: no credential label


PROXY_CONFIG = """
apiVersion: cluster.core.oam.dev/v1alpha1
kind: ClusterGatewayProxyConfiguration
spec:
  clientIdentityExchanger:
    rules:
      - name: mapping
        source: {user: alice, cluster: somewhere-else}
        target: {user: bob}
        type: StaticMappingIdentityExchanger
      - name: no-source
        type: PrivilegedIdentityExchanger
"""
PENETRATION = FeatureGates(client_identity_penetration=True)


def test_proxy_config_gate_off() -> None:
    """Without ClientIdentityPenetration the annotation is not read."""
    secret = cluster_secret("c1", token=TOKEN, annotations={PROXY_CONFIG_ANNOTATION: PROXY_CONFIG})
    assert convert(secret).proxy_config is None


def test_proxy_config_parsed() -> None:
    """With the gate, the annotation is parsed and every rule's source.cluster is the cluster."""
    secret = cluster_secret("c1", token=TOKEN, annotations={PROXY_CONFIG_ANNOTATION: PROXY_CONFIG})
    result = convert_secret_with_warnings(secret, group=GROUP, gates=PENETRATION)
    rules = result.gateway.proxy_config["spec"]["clientIdentityExchanger"]["rules"]
    assert rules[0]["source"] == {"user": "alice", "cluster": "c1"}
    assert "source" not in rules[1]
    assert result.warnings == ()


def test_proxy_config_json() -> None:
    """The annotation may be JSON."""
    config = {"spec": {"clientIdentityExchanger": {"rules": [{"source": {}, "type": "X"}]}}}
    secret = cluster_secret(
        "c1", token=TOKEN, annotations={PROXY_CONFIG_ANNOTATION: json.dumps(config)}
    )
    gateway = convert(secret, PENETRATION)
    assert gateway.proxy_config["spec"]["clientIdentityExchanger"]["rules"][0]["source"] == {
        "cluster": "c1"
    }


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("a: [unclosed", "not YAML/JSON"),
        ("- just a list", "not an object"),
        ("spec: 3", '"spec" is not an object'),
        ("spec: {clientIdentityExchanger: {rules: [1]}}", "not a list of objects"),
    ],
)
def test_proxy_config_unparsable(text: str, cause: str) -> None:
    """A bad proxy config is ignored with a warning; the cluster still converts."""
    secret = cluster_secret("c1", token=TOKEN, annotations={PROXY_CONFIG_ANNOTATION: text})
    result = convert_secret_with_warnings(secret, group=GROUP, gates=PENETRATION)
    assert result.gateway.proxy_config is None
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(
        f'secret vela-system/c1: annotation "{PROXY_CONFIG_ANNOTATION}" ignored: '
    )
    assert cause in result.warnings[0]


def test_secret_type_not_checked() -> None:
    """The Secret's ``type`` is not checked (docs say Opaque, anything works)."""
    secret = cluster_secret("c1", token=TOKEN)
    secret["type"] = "kubernetes.io/tls"
    assert convert(secret).name == "c1"


def test_unrelated_data_keys_ignored() -> None:
    """Unknown data keys (e.g. ``namespace`` in the Go samples) are ignored."""
    secret = cluster_secret("c1", token=TOKEN, extra_data={"namespace": "default"})
    assert convert(secret).credential.token == TOKEN
