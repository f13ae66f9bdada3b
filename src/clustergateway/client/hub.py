"""The hub's configuration and the proxy path of a cluster (no I/O beyond loading).

The hub is the cluster whose apiserver aggregates the gateway's API group; every
helper of this package talks to it.  Its configuration is loaded with the
``kubernetes`` package's own loaders, so every kubeconfig form that package
understands works (token, client certificate, exec plugin, CA file or data,
``KUBECONFIG`` with several files), and inside a pod the service account.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from kubernetes import client, config

__all__ = [
    "DEFAULT_GROUP",
    "LOCAL_CLUSTER",
    "VERSION",
    "check_cluster_name",
    "load_hub_configuration",
    "proxy_path",
]

#: The gateway's API group (``--api-group`` of the gateway).
DEFAULT_GROUP = "cluster.core.oam.dev"
#: The gateway's API version.
VERSION = "v1alpha1"
#: The name the VirtualCluster list gives the hub itself: routed to the hub, not proxied.
LOCAL_CLUSTER = "local"

# A Secret name: a DNS-1123 subdomain.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_cluster_name(name: str) -> str:
    """Return ``name`` if it can name a cluster (a DNS-1123 subdomain); raise ``ValueError``."""
    if not isinstance(name, str) or len(name) > 253 or not _NAME.match(name):
        raise ValueError(
            f"invalid cluster name {name!r}: want a DNS-1123 subdomain "
            "(lower-case letters, digits, '-' and '.')"
        )
    return name


def proxy_path(cluster: str, group: str = DEFAULT_GROUP) -> str:
    """``/apis/<group>/v1alpha1/clustergateways/<cluster>/proxy``, the prefix of every
    request the gateway forwards to ``cluster``."""
    check_cluster_name(cluster)
    return f"/apis/{group}/{VERSION}/clustergateways/{quote(cluster)}/proxy"


def load_hub_configuration(
    kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None
) -> client.Configuration:
    """The hub's ``kubernetes.client.Configuration``.

    ``kubeconfig`` (a path, or several joined by ``os.pathsep`` as in
    ``KUBECONFIG``) and ``context`` select it; without ``kubeconfig``, the
    ``KUBECONFIG`` environment variable or ``~/.kube/config`` when one exists,
    otherwise the pod's service account (in-cluster).  Raises
    ``kubernetes.config.ConfigException`` when none of them works.
    """
    configuration = client.Configuration()
    if kubeconfig is None:
        default = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        if any(os.path.exists(p) for p in default.split(os.pathsep) if p):
            kubeconfig = default
    if kubeconfig is None:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.fspath(kubeconfig),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    return configuration
