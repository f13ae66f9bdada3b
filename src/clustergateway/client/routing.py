"""``ApiClient``s of the ``kubernetes`` package that reach clusters through the gateway.

Python's counterpart of the Go gateway's round trippers (spec §12): every
request the client makes — CRUD, list, watch, and the WebSocket upgrades of
``kubernetes.stream.stream()`` (exec, attach) and ``portforward()`` — has its
path prefixed with ``/apis/<group>/v1alpha1/clustergateways/<cluster>/proxy``
and goes to the hub, which hands it to the gateway.

- :func:`for_cluster` — a client bound to one cluster (Go's
  ``NewProxyPathPrependingClusterGatewayRoundTripper``).
- :func:`routing_client` with :func:`cluster` — one client that picks the
  cluster per call from a context variable (Go's ``WithMultiClusterContext``
  and ``NewClusterGatewayRoundTripper``): strict by default (a call outside
  ``with cluster(...)`` raises :class:`NoClusterSelected`), or falling back to
  the hub with ``strict=False`` (what discovery-driven code needs).

The cluster named ``local`` is the hub itself (as in the VirtualCluster list):
its requests are sent to the hub unchanged, in either mode.  The prefix is
added to the request path, not to ``Configuration.host``, because the
``kubernetes`` loaders' token refresh hook rewrites ``host`` on every request.
The clients are synchronous, like the package; a context variable follows
threads started with ``contextvars.copy_context()`` and asyncio tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from kubernetes import client

from clustergateway.client.hub import (
    DEFAULT_GROUP,
    LOCAL_CLUSTER,
    check_cluster_name,
    load_hub_configuration,
    proxy_path,
)

__all__ = [
    "ClusterGatewayApiClient",
    "NoClusterSelected",
    "cluster",
    "current_cluster",
    "for_cluster",
    "routing_client",
]

# The one process-wide key, as Go's context key: a ContextVar must live at module level.
_CLUSTER: ContextVar[str | None] = ContextVar("clustergateway_cluster", default=None)


class NoClusterSelected(LookupError):
    """A strict routing client was called outside ``with cluster(...)``."""


@contextmanager
def cluster(name: str) -> Iterator[str]:
    """Route the calls of routing clients made inside the block to cluster ``name``.

    Blocks nest (the innermost wins) and the previous choice is restored on exit.
    """
    token = _CLUSTER.set(check_cluster_name(name))
    try:
        yield name
    finally:
        _CLUSTER.reset(token)


def current_cluster() -> str | None:
    """The cluster the enclosing ``with cluster(...)`` selected, or None."""
    return _CLUSTER.get()


class ClusterGatewayApiClient(client.ApiClient):
    """An ``ApiClient`` for the hub that sends each request to a cluster's proxy.

    ``cluster`` fixes the cluster; without it the cluster comes from
    :func:`cluster` at each call, and a call outside one raises
    :class:`NoClusterSelected` (``strict``) or goes to the hub (``strict=False``).
    """

    def __init__(
        self,
        configuration: client.Configuration | None = None,
        *,
        cluster: str | None = None,
        strict: bool = True,
        group: str = DEFAULT_GROUP,
    ) -> None:
        super().__init__(configuration)
        self.cluster = check_cluster_name(cluster) if cluster is not None else None
        self.strict = strict
        self.group = group

    def target_cluster(self) -> str | None:
        """The cluster the next call goes to (None: the hub itself)."""
        name = self.cluster if self.cluster is not None else _CLUSTER.get()
        if name is None:
            if self.strict:
                raise NoClusterSelected(
                    "missing cluster name: call inside `with cluster(NAME):` "
                    "or use a client from for_cluster(NAME)"
                )
            return None
        return None if name == LOCAL_CLUSTER else name

    def param_serialize(
        self, method: str, resource_path: str, *args: Any, **kwargs: Any
    ) -> tuple[str, str, dict[str, str], Any, list[str]]:
        """The generated API methods' request builder, with the proxy prefix added."""
        name = self.target_cluster()
        if name is not None:
            resource_path = proxy_path(name, self.group) + resource_path
        result: tuple[str, str, dict[str, str], Any, list[str]] = super().param_serialize(
            method, resource_path, *args, **kwargs
        )
        return result


def _hub_configuration(configuration: client.Configuration | None) -> client.Configuration:
    # Shared, not copied, as ``ApiClient(configuration)`` shares it: the loader's
    # token refresh keeps updating the one object.
    return configuration if configuration is not None else load_hub_configuration()


def for_cluster(
    name: str,
    configuration: client.Configuration | None = None,
    *,
    group: str = DEFAULT_GROUP,
) -> ClusterGatewayApiClient:
    """An ``ApiClient`` whose every request goes to cluster ``name`` through the gateway.

    ``configuration`` is the hub's (default: :func:`load_hub_configuration`);
    use the client with any API class, ``kubernetes.watch.Watch`` and
    ``kubernetes.stream.stream()``/``portforward()``.
    """
    return ClusterGatewayApiClient(_hub_configuration(configuration), cluster=name, group=group)


def routing_client(
    configuration: client.Configuration | None = None,
    *,
    strict: bool = True,
    group: str = DEFAULT_GROUP,
) -> ClusterGatewayApiClient:
    """One ``ApiClient`` that sends each call to the cluster of the enclosing
    ``with cluster(NAME):``; outside one it raises :class:`NoClusterSelected`
    (``strict``) or talks to the hub (``strict=False``)."""
    return ClusterGatewayApiClient(_hub_configuration(configuration), strict=strict, group=group)
