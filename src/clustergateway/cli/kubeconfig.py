"""``cluster-gateway kubeconfig``: a kubeconfig that reaches clusters through the gateway.

Each cluster's server is the hub's server plus
``/apis/<group>/v1alpha1/clustergateways/<name>/proxy``; the hub cluster's
trust settings (CA, ``tls-server-name``, ``proxy-url``…) and the hub user's
credentials are copied — token, client certificate or exec plugin, by file
reference where the hub kubeconfig references files (paths made absolute) —
so kubectl, client-go programs, helm or k9s reach one cluster each, exec and
port-forward included.  ``--cluster NAME`` checks the cluster exists at the
hub; ``--all`` writes one context per ClusterGateway.  The file (``-o``) is
written with mode 0600, since it may hold the hub user's token.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from clustergateway.cli.command import CommandError, hub_error, run, write_private_file
from clustergateway.cli.kubeconfig_file import (
    KubeconfigContext,
    default_kubeconfig_paths,
    in_cluster_context,
    read_context,
)
from clustergateway.client.hub import (
    DEFAULT_GROUP,
    VERSION,
    check_cluster_name,
    load_hub_configuration,
    proxy_path,
)

__all__ = ["gateway_kubeconfig", "main"]

# Cluster keys of a kubeconfig that describe how to reach the hub's server.
_CLUSTER_KEYS = (
    "certificate-authority",
    "certificate-authority-data",
    "insecure-skip-tls-verify",
    "tls-server-name",
    "proxy-url",
    "disable-compression",
)


def gateway_kubeconfig(
    hub: KubeconfigContext, clusters: Sequence[str], group: str = DEFAULT_GROUP
) -> dict[str, Any]:
    """A kubeconfig with one context per cluster (named after it), each reaching it
    through the hub's proxy subresource as the hub's user; the first is current."""
    if not hub.server:
        raise CommandError(f'the hub cluster "{hub.cluster_name}" has no server')
    trust = {k: v for k, v in hub.cluster.items() if k in _CLUSTER_KEYS}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": hub.server + proxy_path(name, group), **trust}}
            for name in clusters
        ],
        "users": [{"name": hub.user_name, "user": dict(hub.user)}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": hub.user_name}} for name in clusters
        ],
        "current-context": clusters[0] if clusters else "",
        "preferences": {},
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cluster-gateway kubeconfig",
        description="Write a kubeconfig whose contexts reach clusters through the gateway.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--cluster", metavar="NAME", help="the cluster (a ClusterGateway)")
    which.add_argument("--all", action="store_true", help="one context per ClusterGateway")
    parser.add_argument(
        "--kubeconfig",
        "--hub-kubeconfig",
        dest="kubeconfig",
        metavar="PATH",
        help="the hub's kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )
    parser.add_argument(
        "--context", "--hub-context", dest="context", help="the hub's context (default: current)"
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    parser.add_argument("--api-group", default=DEFAULT_GROUP, help="the gateway's API group")
    return parser


def _clusters(args: argparse.Namespace, paths: str | None) -> list[str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    try:
        configuration = load_hub_configuration(paths, args.context)
    except ConfigException as e:
        raise CommandError(f"cannot load the hub configuration: {e}") from None
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    group = args.api_group
    if args.cluster is not None:
        doing = f'cluster "{args.cluster}"'
        try:
            api.get_cluster_custom_object(group, VERSION, "clustergateways", args.cluster)
        except ApiException as e:
            if e.status == 404:
                raise CommandError(f"{doing} does not exist at the hub") from None
            raise hub_error(e, doing) from None
        except HTTPError as e:
            raise hub_error(e, doing) from None
        return [args.cluster]
    try:
        listed: Any = api.list_cluster_custom_object(group, VERSION, "clustergateways")
    except (ApiException, HTTPError) as e:
        raise hub_error(e, "listing clustergateways") from None
    names = sorted(item["metadata"]["name"] for item in listed.get("items") or [])
    if not names:
        raise CommandError("the hub has no ClusterGateways")
    return names


def main(argv: Sequence[str]) -> int:
    """``cluster-gateway kubeconfig (--cluster NAME | --all) [-o FILE] …``."""
    args = _parser().parse_args(list(argv))

    def body() -> None:
        if args.cluster is not None:
            try:
                check_cluster_name(args.cluster)
            except ValueError as e:
                raise CommandError(str(e)) from None
        paths = default_kubeconfig_paths(args.kubeconfig, os.environ)
        hub = read_context(paths, args.context) if paths else in_cluster_context(os.environ)
        names = _clusters(args, paths)
        text = yaml.safe_dump(gateway_kubeconfig(hub, names, args.api_group), sort_keys=False)
        if args.output:
            try:
                write_private_file(Path(args.output), text)
            except OSError as e:
                raise CommandError(f"cannot write {args.output}: {e.strerror}") from None
        else:
            print(text, end="")

    return run("kubeconfig", body)
