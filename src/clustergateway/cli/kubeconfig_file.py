"""Reading kubeconfig files as kubectl does, to copy or convert their entries.

The subcommands need a context's raw ``cluster`` and ``user`` entries (to copy
them into a generated kubeconfig, or to turn them into a cluster Secret), not
a loaded client configuration, so the files are read here: ``KUBECONFIG``-style
lists merged with the first file winning for every name and for
``current-context``; relative file references (``certificate-authority``,
``client-certificate``, ``client-key``, ``tokenFile``, an ``exec`` command
with a ``/``) resolved against the directory of the file that holds them, as
client-go's ``ResolveLocalPaths`` does.  Talking to a cluster is left to the
``kubernetes`` package's own loaders (``clustergateway.client.hub``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from clustergateway.cli.command import CommandError

__all__ = [
    "IN_CLUSTER_CA",
    "IN_CLUSTER_TOKEN",
    "KubeconfigContext",
    "default_kubeconfig_paths",
    "in_cluster_context",
    "read_context",
]

IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
IN_CLUSTER_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


@attrs.frozen
class KubeconfigContext:
    """One context of a kubeconfig: its cluster and user entries, file paths absolute."""

    name: str
    cluster_name: str
    cluster: Mapping[str, Any] = attrs.field(repr=False)
    user_name: str
    user: Mapping[str, Any] = attrs.field(repr=False)
    source: str

    @property
    def server(self) -> str:
        return str(self.cluster.get("server") or "").rstrip("/")


def default_kubeconfig_paths(explicit: str | None, environ: Mapping[str, str]) -> str | None:
    """The kubeconfig path list to use: ``explicit``, else ``$KUBECONFIG``, else
    ``~/.kube/config`` if it exists; None means in-cluster."""
    if explicit:
        return explicit
    if environ.get("KUBECONFIG"):
        return environ["KUBECONFIG"]
    home = Path(os.path.expanduser("~/.kube/config"))
    return str(home) if home.exists() else None


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and not os.path.isabs(value):
        return str(base / value)
    return value


def _absolute_cluster(cluster: Mapping[str, Any], base: Path) -> dict[str, Any]:
    result = copy.deepcopy(dict(cluster))
    if "certificate-authority" in result:
        result["certificate-authority"] = _resolve(result["certificate-authority"], base)
    return result


def _absolute_user(user: Mapping[str, Any], base: Path) -> dict[str, Any]:
    result = copy.deepcopy(dict(user))
    for key in ("client-certificate", "client-key", "tokenFile"):
        if key in result:
            result[key] = _resolve(result[key], base)
    exec_config = result.get("exec")
    if isinstance(exec_config, dict) and "/" in str(exec_config.get("command") or ""):
        exec_config["command"] = _resolve(exec_config["command"], base)
    return result


def _load(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise CommandError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        raise CommandError(f"kubeconfig {path} is not valid YAML") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise CommandError(f"kubeconfig {path} is not a kubeconfig (not a YAML mapping)")
    return document


def read_context(paths: str, context: str | None = None) -> KubeconfigContext:
    """The context ``context`` (default: ``current-context``) of the kubeconfig
    file(s) ``paths`` (joined by ``os.pathsep``); :class:`CommandError` when a
    file, the context, or its cluster or user is missing."""
    files = [p for p in paths.split(os.pathsep) if p]
    found = [p for p in files if Path(p).exists()] if len(files) > 1 else files
    if not found:
        raise CommandError(f"no kubeconfig file at {paths}")
    named: dict[str, dict[str, tuple[dict[str, Any], Path]]] = {
        "clusters": {},
        "users": {},
        "contexts": {},
    }
    current = None
    for path in found:
        document = _load(path)
        base = Path(path).resolve().parent
        current = current or document.get("current-context") or None
        for kind, entries in named.items():
            for item in document.get(kind) or []:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    entries.setdefault(item["name"], (item, base))
    where = found[0] if len(found) == 1 else paths
    name = context or current
    if not name:
        raise CommandError(f"kubeconfig {where} has no current-context; pass a context")
    if name not in named["contexts"]:
        known = ", ".join(sorted(named["contexts"])) or "none"
        raise CommandError(f'context "{name}" not found in kubeconfig {where} (contexts: {known})')
    entry = named["contexts"][name][0].get("context") or {}
    cluster_name, user_name = str(entry.get("cluster") or ""), str(entry.get("user") or "")
    if cluster_name not in named["clusters"]:
        raise CommandError(f'context "{name}" names cluster "{cluster_name}", not in {where}')
    cluster, cluster_base = named["clusters"][cluster_name]
    if user_name and user_name not in named["users"]:
        raise CommandError(f'context "{name}" names user "{user_name}", not in {where}')
    user, user_base = named["users"].get(user_name, ({}, cluster_base))
    return KubeconfigContext(
        name=name,
        cluster_name=cluster_name,
        cluster=_absolute_cluster(cluster.get("cluster") or {}, cluster_base),
        user_name=user_name or "user",
        user=_absolute_user(user.get("user") or {}, user_base),
        source=str(where),
    )


def in_cluster_context(
    environ: Mapping[str, str],
    token_path: str = IN_CLUSTER_TOKEN,
    ca_path: str = IN_CLUSTER_CA,
) -> KubeconfigContext:
    """The pod's service account as a kubeconfig context (token and CA by reference)."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise CommandError(
            "no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not in a pod "
            "(KUBERNETES_SERVICE_HOST/PORT unset)"
        )
    if not Path(token_path).exists():
        raise CommandError(f"in-cluster: service account token {token_path} is missing")
    server_host = f"[{host}]" if ":" in host else host
    return KubeconfigContext(
        name="in-cluster",
        cluster_name="in-cluster",
        cluster={"server": f"https://{server_host}:{port}", "certificate-authority": ca_path},
        user_name="in-cluster",
        user={"tokenFile": token_path},
        source="in-cluster",
    )
