"""``cluster-gateway join`` and ``detach``: register a cluster at the hub, and remove it.

``join KUBECONFIG --name NAME`` turns one context of a cluster's kubeconfig
into the cluster Secret the gateway reads (the Go gateway's format, spec §2.2)
and creates it in ``--secret-namespace`` at the hub, or prints it
(``--print``, for ``--secrets-dir``).  What each kubeconfig entry becomes:

- ``server`` → ``endpoint``; ``proxy-url`` → ``proxy-url``;
  ``tls-server-name`` → ``tls-server-name``.
- ``certificate-authority(-data)`` → ``ca.crt``.  Without one, ``ca.crt`` is
  written empty (verify against the system roots, as the kubeconfig does: no
  CA key at all would mean *no verification* to the gateway);
  ``insecure-skip-tls-verify: true`` writes no CA key and
  ``insecure-skip-tls-verify: "true"``.
- Credential, the first the user has of: ``token``/``tokenFile`` →
  ``ServiceAccountToken`` (``token``); ``client-certificate(-data)`` +
  ``client-key(-data)`` → ``X509Certificate`` (``tls.crt``/``tls.key``);
  ``exec`` → ``Dynamic`` (``exec``: the ExecConfig JSON — ``apiVersion``,
  ``command``, ``args``, ``env``, ``provideClusterInfo``; the plugin then runs
  where the gateway runs).  Basic auth and ``auth-provider`` are refused.

Files the kubeconfig references are read now: the Secret carries their
content.  An existing Secret is replaced only with ``--force`` and only if it
is a cluster Secret.  ``detach NAME`` deletes the cluster's Secret (only a
cluster Secret).  Every failure is one line on stderr, exit status 1, with
nothing written.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from clustergateway.cli.command import CommandError, hub_error, run
from clustergateway.cli.kubeconfig_file import (
    KubeconfigContext,
    default_kubeconfig_paths,
    read_context,
)
from clustergateway.client.hub import (
    DEFAULT_GROUP,
    LOCAL_CLUSTER,
    check_cluster_name,
    load_hub_configuration,
)
from clustergateway.registry.keys import alias_annotation, credential_type_label
from clustergateway.registry.samples import cluster_secret

__all__ = ["detach", "join", "secret_from_kubeconfig"]

DEFAULT_SECRET_NAMESPACE = "vela-system"
_EXEC_KEYS = ("apiVersion", "command", "args", "env", "provideClusterInfo")


def _file_or_data(entry: Mapping[str, Any], key: str, what: str) -> bytes | None:
    """The bytes of ``key-data`` (base64) or of the file ``key`` names; None if neither."""
    data_key = f"{key}-data"
    if entry.get(data_key):
        try:
            return base64.b64decode(str(entry[data_key]), validate=True)
        except (binascii.Error, ValueError):
            raise CommandError(f"{what}: {data_key} is not valid base64") from None
    if entry.get(key):
        try:
            return Path(str(entry[key])).read_bytes()
        except OSError as e:
            raise CommandError(f"{what}: cannot read {key} {entry[key]}: {e.strerror}") from None
    return None


def _credential(user: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``cluster_secret`` keyword arguments for the user's credential."""
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = Path(str(user["tokenFile"])).read_text().strip()
        except OSError as e:
            raise CommandError(
                f"{what}: cannot read tokenFile {user['tokenFile']}: {e.strerror}"
            ) from None
    if token:
        return {"credential_type": "ServiceAccountToken", "token": str(token)}
    certificate = _file_or_data(user, "client-certificate", what)
    key = _file_or_data(user, "client-key", what)
    if certificate is not None or key is not None:
        if certificate is None or key is None:
            raise CommandError(f"{what}: a client certificate needs both certificate and key")
        return {
            "credential_type": "X509Certificate",
            "certificate": certificate,
            "private_key": key,
        }
    exec_config = user.get("exec")
    if isinstance(exec_config, Mapping):
        if not exec_config.get("command"):
            raise CommandError(f"{what}: exec has no command")
        if not exec_config.get("apiVersion"):
            raise CommandError(f"{what}: exec has no apiVersion")
        kept = {k: exec_config[k] for k in _EXEC_KEYS if exec_config.get(k) is not None}
        return {"credential_type": "Dynamic", "exec_config": kept}
    others = sorted(k for k in ("username", "password", "auth-provider") if k in user)
    also = f" (only {', '.join(others)}, which the gateway cannot use)" if others else ""
    raise CommandError(
        f"{what} has no credential the gateway can use: want token, tokenFile, "
        f"client-certificate and client-key, or exec{also}"
    )


def secret_from_kubeconfig(
    context: KubeconfigContext,
    name: str,
    *,
    namespace: str = DEFAULT_SECRET_NAMESPACE,
    group: str = DEFAULT_GROUP,
    labels: Mapping[str, str] | None = None,
    alias: str | None = None,
) -> dict[str, Any]:
    """The cluster Secret (a dict, data base64) for ``context``'s cluster and user."""
    where = f'context "{context.name}" of {context.source}'
    if not context.server:
        raise CommandError(f'{where}: cluster "{context.cluster_name}" has no server')
    cluster = context.cluster
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    ca = _file_or_data(cluster, "certificate-authority", f'cluster "{context.cluster_name}"')
    extra: dict[str, str | bytes] = {}
    if insecure:
        ca = None
        extra["insecure-skip-tls-verify"] = "true"
    elif ca is None:
        ca = b""
    if cluster.get("tls-server-name"):
        extra["tls-server-name"] = str(cluster["tls-server-name"])
    credential = _credential(context.user, f'user "{context.user_name}" of {where}')
    return cluster_secret(
        name,
        endpoint=context.server,
        namespace=namespace,
        group=group,
        ca=ca,
        proxy_url=str(cluster["proxy-url"]) if cluster.get("proxy-url") else None,
        extra_data=extra,
        labels=labels,
        annotations={alias_annotation(group): alias} if alias else None,
        **credential,
    )


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--label {pair!r}: want KEY=VALUE")
        labels[key] = value
    return labels


def _checked_name(name: str) -> str:
    try:
        check_cluster_name(name)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if name == LOCAL_CLUSTER:
        raise CommandError(f'"{LOCAL_CLUSTER}" names the hub itself; choose another --name')
    return name


def _hub_arguments(parser: argparse.ArgumentParser, *aliases: str) -> None:
    parser.add_argument(
        "--hub-kubeconfig",
        *aliases[:1],
        dest="hub_kubeconfig",
        metavar="PATH",
        help="the hub's kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )
    parser.add_argument("--hub-context", *aliases[1:], dest="hub_context", help="the hub's context")
    parser.add_argument(
        "--secret-namespace",
        default=DEFAULT_SECRET_NAMESPACE,
        help=f"where the gateway reads cluster Secrets (default {DEFAULT_SECRET_NAMESPACE})",
    )
    parser.add_argument("--api-group", default=DEFAULT_GROUP, help="the gateway's API group")


def _core_api(args: argparse.Namespace) -> Any:
    from kubernetes import client
    from kubernetes.config import ConfigException

    paths = default_kubeconfig_paths(args.hub_kubeconfig, os.environ)
    try:
        configuration = load_hub_configuration(paths, args.hub_context)
    except ConfigException as e:
        raise CommandError(f"cannot load the hub configuration: {e}") from None
    return client.CoreV1Api(client.ApiClient(configuration))


def _is_cluster_secret(secret: Any, group: str) -> bool:
    labels = (secret.metadata.labels if secret.metadata else None) or {}
    return credential_type_label(group) in labels


def _write(args: argparse.Namespace, secret: dict[str, Any]) -> str:
    """Create (or with ``--force`` replace) ``secret`` at the hub; what was done."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    namespace, name = args.secret_namespace, args.name
    ref = f"secret {namespace}/{name}"
    api = _core_api(args)
    try:
        api.create_namespaced_secret(namespace, secret)
        return "created"
    except ApiException as e:
        if e.status != 409:
            raise hub_error(e, f"creating {ref}") from None
    except HTTPError as e:
        raise hub_error(e, f"creating {ref}") from None
    if not args.force:
        raise CommandError(f"{ref} already exists at the hub; pass --force to replace it")
    try:
        existing = api.read_namespaced_secret(name, namespace)
        if not _is_cluster_secret(existing, args.api_group):
            raise CommandError(
                f"{ref} exists and is not a cluster Secret (no label "
                f'"{credential_type_label(args.api_group)}"); not replaced'
            )
        secret["metadata"]["resourceVersion"] = existing.metadata.resource_version
        api.replace_namespaced_secret(name, namespace, secret)
    except (ApiException, HTTPError) as e:
        raise hub_error(e, f"replacing {ref}") from None
    return "replaced"


def join(argv: Sequence[str]) -> int:
    """``cluster-gateway join KUBECONFIG --name NAME [--context C] …``."""
    parser = argparse.ArgumentParser(
        prog="cluster-gateway join",
        description="Register a cluster with the gateway: write its Secret at the hub.",
    )
    parser.add_argument("kubeconfig", metavar="KUBECONFIG", help="the cluster's kubeconfig")
    parser.add_argument("--name", required=True, help="the cluster's name at the gateway")
    parser.add_argument("--context", help="the context of KUBECONFIG (default: current)")
    parser.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="a Secret label"
    )
    parser.add_argument("--alias", help="the VirtualCluster alias (cluster-alias annotation)")
    parser.add_argument(
        "--print", action="store_true", help="print the Secret (YAML) instead of creating it"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing cluster Secret")
    _hub_arguments(parser)
    args = parser.parse_args(list(argv))

    def body() -> None:
        name = _checked_name(args.name)
        context = read_context(args.kubeconfig, args.context)
        secret = secret_from_kubeconfig(
            context,
            name,
            namespace=args.secret_namespace,
            group=args.api_group,
            labels=_labels(args.label),
            alias=args.alias,
        )
        if args.print:
            print(yaml.safe_dump(secret, sort_keys=False), end="")
            return
        done = _write(args, secret)
        kind = secret["metadata"]["labels"][credential_type_label(args.api_group)]
        print(f"cluster {name} ({kind}): secret {args.secret_namespace}/{name} {done}")

    return run("join", body)


def detach(argv: Sequence[str]) -> int:
    """``cluster-gateway detach NAME [--secret-namespace NS] …``."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    parser = argparse.ArgumentParser(
        prog="cluster-gateway detach",
        description="Remove a cluster from the gateway: delete its Secret at the hub.",
    )
    parser.add_argument("name", metavar="NAME", help="the cluster's name")
    _hub_arguments(parser, "--kubeconfig", "--context")
    args = parser.parse_args(list(argv))

    def body() -> None:
        name = _checked_name(args.name)
        ref = f"secret {args.secret_namespace}/{name}"
        api = _core_api(args)
        try:
            existing = api.read_namespaced_secret(name, args.secret_namespace)
        except ApiException as e:
            if e.status == 404:
                raise CommandError(f"no cluster {name}: {ref} does not exist at the hub") from None
            raise hub_error(e, f"reading {ref}") from None
        except HTTPError as e:
            raise hub_error(e, f"reading {ref}") from None
        if not _is_cluster_secret(existing, args.api_group):
            raise CommandError(
                f"{ref} is not a cluster Secret (no label "
                f'"{credential_type_label(args.api_group)}"); not deleted'
            )
        try:
            api.delete_namespaced_secret(name, args.secret_namespace)
        except (ApiException, HTTPError) as e:
            raise hub_error(e, f"deleting {ref}") from None
        print(f"cluster {name}: {ref} deleted")

    return run("detach", body)
