"""Reading kubeconfigs as kubectl does, and the kubeconfig that reaches clusters through the hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from clustergateway.cli.command import CommandError
from clustergateway.cli.kubeconfig import gateway_kubeconfig
from clustergateway.cli.kubeconfig_file import in_cluster_context, read_context

PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{}/proxy"


def _write(path: Path, document: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def test_merged_files_first_wins_and_relative_paths_resolve(tmp_path: Path) -> None:
    """With two files the first wins for a name and for current-context; relative
    file references resolve against the directory of the file that holds them."""
    first = _write(
        tmp_path / "a" / "config",
        {
            "current-context": "hub",
            "contexts": [{"name": "hub", "context": {"cluster": "hub", "user": "admin"}}],
            "clusters": [
                {
                    "name": "hub",
                    "cluster": {"server": "https://hub:6443/", "certificate-authority": "ca.crt"},
                }
            ],
        },
    )
    second = _write(
        tmp_path / "b" / "config",
        {
            "current-context": "other",
            "clusters": [{"name": "hub", "cluster": {"server": "https://ignored"}}],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": "certs/admin.crt",
                        "client-key": "/abs/admin.key",
                        "exec": {
                            "command": "bin/plugin",
                            "apiVersion": "client.authentication.k8s.io/v1",
                        },
                    },
                }
            ],
        },
    )
    context = read_context(os.pathsep.join([str(first), str(second)]))
    assert context.name == "hub"
    assert context.server == "https://hub:6443"
    assert context.cluster["certificate-authority"] == str(tmp_path / "a" / "ca.crt")
    assert context.user["client-certificate"] == str(tmp_path / "b" / "certs" / "admin.crt")
    assert context.user["client-key"] == "/abs/admin.key"
    assert context.user["exec"]["command"] == str(tmp_path / "b" / "bin" / "plugin")


def test_gateway_kubeconfig_copies_trust_and_user(tmp_path: Path) -> None:
    """One context per cluster, server = hub server + proxy path, the hub's trust
    settings and the hub user (files by absolute reference) copied; first is current."""
    path = _write(
        tmp_path / "config",
        {
            "current-context": "hub",
            "contexts": [{"name": "hub", "context": {"cluster": "hub", "user": "admin"}}],
            "clusters": [
                {
                    "name": "hub",
                    "cluster": {
                        "server": "https://hub.example:6443",
                        "certificate-authority": "pki/ca.crt",
                        "tls-server-name": "kubernetes",
                        "extensions": [{"name": "x", "extension": {}}],
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"tokenFile": "pki/token"}}],
        },
    )
    generated = gateway_kubeconfig(read_context(str(path)), ["c1", "c2"])
    assert generated["current-context"] == "c1"
    assert generated["clusters"] == [
        {
            "name": name,
            "cluster": {
                "server": "https://hub.example:6443" + PROXY.format(name),
                "certificate-authority": str(tmp_path / "pki" / "ca.crt"),
                "tls-server-name": "kubernetes",
            },
        }
        for name in ("c1", "c2")
    ]
    assert generated["users"] == [
        {"name": "admin", "user": {"tokenFile": str(tmp_path / "pki" / "token")}}
    ]
    assert [c["context"] for c in generated["contexts"]] == [
        {"cluster": "c1", "user": "admin"},
        {"cluster": "c2", "user": "admin"},
    ]


def test_in_cluster_context_references_the_service_account(tmp_path: Path) -> None:
    """In a pod: the service's address, the mounted token and CA by reference."""
    token = tmp_path / "token"
    token.write_text("t")
    context = in_cluster_context(
        {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
        token_path=str(token),
        ca_path="/ca.crt",
    )
    assert context.server == "https://10.96.0.1:443"
    assert context.user == {"tokenFile": str(token)}
    assert context.cluster["certificate-authority"] == "/ca.crt"
    with pytest.raises(CommandError, match="not in a pod"):
        in_cluster_context({})


def test_context_without_current_context_or_cluster(tmp_path: Path) -> None:
    """No current-context, or a context naming a missing cluster: one-line errors."""
    path = _write(
        tmp_path / "config",
        {"contexts": [{"name": "x", "context": {"cluster": "gone", "user": "u"}}]},
    )
    with pytest.raises(CommandError, match="has no current-context"):
        read_context(str(path))
    with pytest.raises(CommandError, match='names cluster "gone"'):
        read_context(str(path), "x")
