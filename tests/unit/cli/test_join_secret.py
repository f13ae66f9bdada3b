"""``join``'s kubeconfig → cluster Secret, read back by the registry's own conversion.

Each credential kind and each trust setting of a kubeconfig becomes the Secret
the gateway reads; converting that Secret with ``registry.convert`` must give
back exactly what the kubeconfig said (the round trip the gateway depends on).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from clustergateway.certs import KeyPair, issue_cert, make_ca
from clustergateway.cli.command import CommandError
from clustergateway.cli.join import secret_from_kubeconfig
from clustergateway.cli.kubeconfig_file import read_context
from clustergateway.registry.convert import convert_secret
from clustergateway.registry.features import FeatureGates
from clustergateway.registry.model import ClusterGateway

SERVER = "https://10.0.0.7:6443"


@pytest.fixture(scope="module")
def pki() -> dict[str, KeyPair]:
    ca = make_ca("cluster-ca")
    return {"ca": ca, "client": issue_cert(ca, "admin", client=True)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(
    directory: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None
) -> Path:
    """A one-context kubeconfig (context ``ctx``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cl", "cluster": {"server": SERVER, **(cluster or {})}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "cl", "user": "u"}}],
        "current-context": "ctx",
    }
    path = directory / "config"
    path.write_text(yaml.safe_dump(config))
    return path


def round_trip(
    path: Path, name: str = "c1", **options: Any
) -> tuple[dict[str, Any], ClusterGateway]:
    secret = secret_from_kubeconfig(read_context(str(path)), name, **options)
    gateway = convert_secret(secret, group="cluster.core.oam.dev", gates=FeatureGates())
    return secret, gateway


def test_token_with_ca_data_and_proxy_url(tmp_path: Path, pki: dict[str, KeyPair]) -> None:
    """An inline token, CA data, ``proxy-url`` and ``tls-server-name`` read back as given."""
    path = write_kubeconfig(
        tmp_path,
        {"token": "abc.def"},
        {
            "certificate-authority-data": _b64(pki["ca"].cert_pem),
            "proxy-url": "socks5://127.0.0.1:1080",
            "tls-server-name": "api.internal",
        },
    )
    secret, gateway = round_trip(path, labels={"region": "eu"}, alias="Europe")
    assert secret["metadata"]["namespace"] == "vela-system"
    assert secret["metadata"]["labels"] == {
        "region": "eu",
        "cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken",
    }
    assert secret["metadata"]["annotations"] == {"cluster.core.oam.dev/cluster-alias": "Europe"}
    assert gateway.credential is not None
    assert (gateway.credential.type, gateway.credential.token) == ("ServiceAccountToken", "abc.def")
    assert gateway.endpoint.address == SERVER
    assert gateway.endpoint.ca_bundle == pki["ca"].cert_pem
    assert gateway.endpoint.insecure is False
    assert gateway.endpoint.proxy_url == "socks5://127.0.0.1:1080"
    assert gateway.endpoint.tls_server_name == "api.internal"


def test_token_file_and_ca_file_relative_to_the_kubeconfig(
    tmp_path: Path, pki: dict[str, KeyPair]
) -> None:
    """``tokenFile`` and ``certificate-authority`` relative paths are read from the
    kubeconfig's directory; their content goes into the Secret."""
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "token").write_text("from-a-file\n")
    (tmp_path / "creds" / "ca.pem").write_bytes(pki["ca"].cert_pem)
    path = write_kubeconfig(
        tmp_path, {"tokenFile": "creds/token"}, {"certificate-authority": "creds/ca.pem"}
    )
    _, gateway = round_trip(path)
    assert gateway.credential is not None and gateway.credential.token == "from-a-file"
    assert gateway.endpoint.ca_bundle == pki["ca"].cert_pem


def test_client_certificate_data_and_files(tmp_path: Path, pki: dict[str, KeyPair]) -> None:
    """Client certificate and key, as data or as relative files, become X509Certificate."""
    inline = write_kubeconfig(
        tmp_path / "inline",
        {
            "client-certificate-data": _b64(pki["client"].cert_pem),
            "client-key-data": _b64(pki["client"].key_pem),
        },
    )
    files = tmp_path / "files"
    files.mkdir()
    (files / "c.crt").write_bytes(pki["client"].cert_pem)
    (files / "c.key").write_bytes(pki["client"].key_pem)
    by_file = write_kubeconfig(files, {"client-certificate": "c.crt", "client-key": "c.key"})
    for path in (inline, by_file):
        secret, gateway = round_trip(path)
        assert gateway.credential is not None
        assert gateway.credential.type == "X509Certificate"
        assert gateway.credential.certificate == pki["client"].cert_pem
        assert gateway.credential.private_key == pki["client"].key_pem
        assert set(secret["data"]) == {"endpoint", "ca.crt", "tls.crt", "tls.key"}


def test_exec_plugin_becomes_dynamic(tmp_path: Path) -> None:
    """An exec user becomes ``Dynamic``: the ExecConfig's apiVersion, command (made
    absolute when it is a relative path), args and env, and nothing else."""
    exec_config = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "./bin/get-token",
        "args": ["--cluster", "prod"],
        "env": [{"name": "REGION", "value": "eu"}],
        "interactiveMode": "Never",
        "installHint": "install get-token",
    }
    path = write_kubeconfig(tmp_path, {"exec": exec_config})
    secret, gateway = round_trip(path)
    assert gateway.credential is not None and gateway.credential.type == "Dynamic"
    assert gateway.credential.exec_config is not None
    assert json.loads(gateway.credential.exec_config) == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": str(tmp_path / "bin" / "get-token"),
        "args": ["--cluster", "prod"],
        "env": [{"name": "REGION", "value": "eu"}],
    }
    path_based = write_kubeconfig(tmp_path / "path", {"exec": {**exec_config, "command": "aws"}})
    _, gateway = round_trip(path_based)
    assert gateway.credential is not None and gateway.credential.exec_config is not None
    assert json.loads(gateway.credential.exec_config)["command"] == "aws"


def test_trust_settings(tmp_path: Path) -> None:
    """No CA in the kubeconfig: system roots, written as an empty ``ca.crt`` (a missing
    key would mean "do not verify"); ``insecure-skip-tls-verify``: no CA key, explicit flag."""
    system_roots = write_kubeconfig(tmp_path / "roots", {"token": "t"})
    secret, gateway = round_trip(system_roots)
    assert secret["data"]["ca.crt"] == ""
    assert (gateway.endpoint.insecure, gateway.endpoint.ca_bundle) == (False, b"")
    insecure = write_kubeconfig(
        tmp_path / "insecure", {"token": "t"}, {"insecure-skip-tls-verify": True}
    )
    secret, gateway = round_trip(insecure)
    assert "ca.crt" not in secret["data"]
    assert secret["data"]["insecure-skip-tls-verify"] == _b64(b"true")
    assert (gateway.endpoint.insecure, gateway.endpoint.ca_bundle) == (True, None)


def test_token_wins_over_a_client_certificate(tmp_path: Path, pki: dict[str, KeyPair]) -> None:
    """A user with both (kubectl sends both) becomes ServiceAccountToken."""
    path = write_kubeconfig(
        tmp_path,
        {
            "token": "t",
            "client-certificate-data": _b64(pki["client"].cert_pem),
            "client-key-data": _b64(pki["client"].key_pem),
        },
    )
    secret, gateway = round_trip(path)
    assert gateway.credential is not None and gateway.credential.type == "ServiceAccountToken"
    assert "tls.key" not in secret["data"]


@pytest.mark.parametrize(
    ("user", "cluster", "message"),
    [
        ({"username": "a", "password": "hunter2"}, {}, "no credential the gateway can use"),
        ({"auth-provider": {"name": "oidc"}}, {}, "only auth-provider"),
        ({}, {}, "want token, tokenFile, client-certificate and client-key, or exec"),
        ({"client-certificate-data": "bm90"}, {}, "needs both certificate and key"),
        ({"tokenFile": "/nonexistent/token"}, {}, "cannot read tokenFile /nonexistent/token"),
        ({"client-key-data": "%%%"}, {}, "client-key-data is not valid base64"),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1"}}, {}, "exec has no command"),
        ({"token": "t"}, {"certificate-authority": "/nonexistent/ca"}, "cannot read"),
    ],
)
def test_unusable_kubeconfigs_are_one_line_errors(
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any], message: str
) -> None:
    """A kubeconfig the gateway cannot use is refused with the cause, no credential shown."""
    path = write_kubeconfig(tmp_path, user, cluster)
    with pytest.raises(CommandError) as raised:
        round_trip(path)
    text = str(raised.value)
    assert message in text and "\n" not in text
    assert "hunter2" not in text


def test_unknown_context_names_the_known_ones(tmp_path: Path) -> None:
    """An unknown ``--context`` is an error listing the contexts the file has."""
    path = write_kubeconfig(tmp_path, {"token": "t"})
    with pytest.raises(
        CommandError, match=r'context "nope" not found in kubeconfig .*\(contexts: ctx\)'
    ):
        read_context(str(path), "nope")
    with pytest.raises(CommandError, match="cannot read kubeconfig"):
        read_context(str(tmp_path / "missing"))


def test_a_named_context_other_than_the_current_one(tmp_path: Path) -> None:
    """``--context`` picks its own cluster and user, not the current context's."""
    path = write_kubeconfig(tmp_path, {"token": "current"})
    config = yaml.safe_load(path.read_text())
    config["clusters"].append({"name": "cl2", "cluster": {"server": "https://other:443"}})
    config["users"].append({"name": "u2", "user": {"token": "other-token"}})
    config["contexts"].append({"name": "ctx2", "context": {"cluster": "cl2", "user": "u2"}})
    path.write_text(yaml.safe_dump(config))
    secret = secret_from_kubeconfig(read_context(str(path), "ctx2"), "c2")
    gateway = convert_secret(secret, group="cluster.core.oam.dev", gates=FeatureGates())
    assert gateway.endpoint.address == "https://other:443"
    assert gateway.credential is not None and gateway.credential.token == "other-token"
