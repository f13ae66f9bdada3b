"""Connection pools: one persistent ``H1Pool`` per way of reaching a cluster.

Twisted keys a pool's connections by ``(scheme, host, port)`` only, so two
clusters (or two credentials) behind one address would share authenticated
connections if they shared a pool (twisted-notes §1.4).  Hence one
:class:`ClusterUpstream` — dial endpoint, TLS creator and pool — per
``ClusterGateway.access_key()`` plus the client certificate in use.  When a
cluster's Secret changes how it is reached, its old upstream is *retired*: its
idle connections close at once, connections still carrying a request (a watch,
say) finish undisturbed and are closed instead of being pooled again.

Long-running ``GET`` requests (watches, ``logs -f``) share a few HTTP/2
connections per upstream instead (``h2client.H2Streams``) when the cluster
offers ``h2``; ``ClusterUpstream.send`` picks the way per request.

The byte stream under each upstream comes from an
:class:`~clustergateway.proxy.egress.EgressRouter`: direct, or through the
cluster's ``proxy-url`` (part of the access key, so a new proxy means a new
pool) or the proxy of the gateway's environment (fixed at startup).  For a
``ClusterProxy`` cluster it is a connection dialed through the konnectivity
proxy-server (:mod:`~clustergateway.proxy.konnectivity`); TLS to the cluster,
the pool and the HTTP/2 streams on top are the same as for ``Const``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger

from clustergateway.observe.metrics import GatewayMetrics
from clustergateway.proxy.credentials import ResolvedCredential
from clustergateway.proxy.dial import DirectDialer, StreamDialer, UpstreamEndpoint
from clustergateway.proxy.egress import EgressRouter, ProxyEnvironment, reactor_resolver
from clustergateway.proxy.h1client import H1Pool, ResponseSink
from clustergateway.proxy.h2client import H2Streams
from clustergateway.proxy.konnectivity import KonnectivityDialer
from clustergateway.proxy.paths import UnsupportedEndpoint, UpstreamTarget
from clustergateway.proxy.tls import H2_ALPN, client_tls_creator, proxy_tls_creator
from clustergateway.registry.model import ClusterGateway, RegistryEntry, RegistryEvent

__all__ = ["ClusterPools", "ClusterUpstream", "PoolSettings"]


@attrs.frozen
class PoolSettings:
    """Limits for upstream connections (per cluster unless said otherwise).

    ``idle_timeout`` stays below the apiserver's own idle close (Go's 90 s) so
    the gateway never reuses a connection the server is closing.
    ``proxy_environment``: the gateway process's ``HTTPS_PROXY``/``NO_PROXY``
    (read once in ``tap``), for clusters without a ``proxy-url``.  The
    connect timeout covers the proxy handshake too.  ``http2_long_running``:
    long-running requests share HTTP/2 connections when the cluster offers
    ``h2`` (off: every request has an HTTP/1.1 connection of its own).
    """

    connect_timeout: float = 10.0
    tls_handshake_timeout: float = 10.0
    max_idle_per_cluster: int = 128
    idle_timeout: float = 55.0
    proxy_environment: ProxyEnvironment = attrs.field(factory=ProxyEnvironment)
    http2_long_running: bool = True


@attrs.define
class ClusterUpstream:
    """Everything needed to send requests to one cluster with one credential.

    ``cluster`` is the ``ClusterGateway`` this was built from (the registry
    hands out the same object until the Secret changes, so an identity check
    is the fast path).
    """

    cluster: ClusterGateway
    key: tuple[Any, ...]
    target: UpstreamTarget
    endpoint: IStreamClientEndpoint
    #: Plain requests' connections (``h1client``); upgrades dial ``endpoint`` themselves.
    pool: H1Pool
    #: Long-running requests' HTTP/2 streams; None for ``http://`` clusters or when off.
    streams: H2Streams | None = None
    #: The connect timeout its connections were built with (seconds).
    connect_timeout: float | None = None

    @property
    def tunnelled(self) -> bool:
        """Reached through the konnectivity tunnel (``ClusterProxy``): a watch whose
        connection is lost at an event boundary ends cleanly (``forward``)."""
        return self.cluster.endpoint.type == "ClusterProxy"

    def send(self, sink: ResponseSink, out: Any) -> Any:
        """Send ``out`` (a ``resource.Outbound``) and relay its answer to ``sink``.

        Returns the exchange, whose ``cancel`` abandons it.  Long-running
        ``GET`` requests (no response-head timeout) go on an HTTP/2 stream,
        all others on the HTTP/1.1 pool.
        """
        streams = self.streams
        pool = self.pool
        long_running = out.timeout is None and out.body is None and out.method == b"GET"
        if streams is not None and long_running:
            # Serialized for HTTP/1.1 only if the cluster turns out not to speak h2.
            return streams.request(
                sink,
                out.method,
                out.path,
                out.headers,
                lambda s: pool.request(s, out.request_bytes(), method=b"GET", has_body=False),
            )
        return pool.request(
            sink, out.request_bytes(), method=out.method, has_body=out.body is not None
        )

    def retire(self) -> Deferred[None]:
        """Close idle connections now and busy ones when their request ends."""
        self.pool.close()
        if self.streams is not None:
            self.streams.close()
        return succeed(None)


def _key(cluster: ClusterGateway, credential: ResolvedCredential) -> tuple[Any, ...]:
    return (cluster.access_key(), credential.tls_identity())


@attrs.define
class ClusterPools:
    """The upstreams of all clusters, built on first use, rebuilt on change.

    ``upstream_for`` raises ``UnsupportedEndpoint`` or ``TLSConfigError``
    (both ``ValueError``) when the cluster's endpoint or TLS material cannot
    be used; callers turn those into a 503 naming the cluster.

    ``metrics``: each new pool records through its cluster's recorder
    (resolved once per pool, since a pool serves one cluster); pools built
    before it was set record nothing.
    """

    reactor: Any  # provides IReactorTCP (dialing) and IReactorTime (timers)
    settings: PoolSettings = attrs.field(factory=PoolSettings)
    dialer: StreamDialer | None = None
    metrics: GatewayMetrics | None = None
    #: The connect timeout of a cluster (its annotation or the flag); None: the settings'.
    connect_timeout_for: Callable[[ClusterGateway], float] | None = None
    #: ``on_retire(cluster)``: the cluster is now reached another way, or gone.
    on_retire: Callable[[str], None] | None = None
    #: Dials ``ClusterProxy`` clusters (``--proxy-host``); None: they answer 503.
    konnectivity: KonnectivityDialer | None = None
    _by_name: dict[str, ClusterUpstream] = attrs.field(factory=dict, init=False)
    _egress: EgressRouter = attrs.field(init=False)
    #: Clusters whose unverified TLS was logged, with the reason logged.
    _insecure_logged: dict[str, str] = attrs.field(factory=dict, init=False)
    _log = Logger()

    def __attrs_post_init__(self) -> None:
        if self.dialer is None:
            self.dialer = DirectDialer(self.reactor)
        resolve = reactor_resolver(self.reactor) if hasattr(self.reactor, "nameResolver") else None
        self._egress = EgressRouter(self.dialer, self.settings.proxy_environment, resolve)

    def upstream_for(
        self, cluster: ClusterGateway, credential: ResolvedCredential
    ) -> ClusterUpstream:
        """The upstream to use for ``cluster`` with ``credential`` now."""
        current = self._by_name.get(cluster.name)
        if current is not None:
            if current.cluster is cluster and current.key[1] == credential.tls_identity():
                return current
            key = _key(cluster, credential)
            if current.key == key and current.connect_timeout == self._connect_timeout(cluster):
                current.cluster = cluster
                return current
            self._retire(cluster.name, "changed")
        else:
            key = _key(cluster, credential)
        upstream = self._build(cluster, key, credential)
        self._by_name[cluster.name] = upstream
        return upstream

    def _build(
        self, cluster: ClusterGateway, key: tuple[Any, ...], credential: ResolvedCredential
    ) -> ClusterUpstream:
        spec = cluster.endpoint
        connect_timeout: float | None = self._connect_timeout(cluster)
        if spec.type == "ClusterProxy":
            if self.konnectivity is None:
                raise UnsupportedEndpoint(
                    "ClusterProxy endpoints are reached through a konnectivity proxy-server; "
                    "start the gateway with --proxy-host (and --proxy-ca-cert, --proxy-cert, "
                    "--proxy-key)"
                )
            target = UpstreamTarget.for_cluster_proxy(cluster.name, spec)
            stream = self.konnectivity.stream_endpoint(target.host, target.port)
            connect_timeout = None  # the konnectivity dialer bounds its dials itself
        else:
            target = UpstreamTarget.from_endpoint(spec)
            stream = self._egress.stream_endpoint(
                target, spec.proxy_url, lambda host: proxy_tls_creator(host, spec)
            )
        creator = client_tls_creator(target, spec, credential) if target.tls else None
        if target.tls:
            self._log_insecure(cluster)
        reactor: IReactorTime = self.reactor
        endpoint = UpstreamEndpoint(
            reactor,
            stream,
            target.address,
            creator,
            connect_timeout,
            self._handshake_timeout(cluster),
        )
        metrics = None if self.metrics is None else self.metrics.cluster(cluster.name)
        pool = H1Pool(
            self.reactor,
            endpoint,
            max_idle=self.settings.max_idle_per_cluster,
            idle_timeout=self.settings.idle_timeout,
            metrics=metrics,
        )
        streams = None
        if target.tls and self.settings.http2_long_running:
            h2_endpoint = attrs.evolve(
                endpoint, creator=client_tls_creator(target, spec, credential, H2_ALPN)
            )
            streams = H2Streams(
                self.reactor, h2_endpoint, idle_timeout=self.settings.idle_timeout, metrics=metrics
            )
        # The cluster's own timeout, even when the konnectivity dialer applies its
        # own instead: ``upstream_for`` compares it to find the upstream current.
        return ClusterUpstream(
            cluster, key, target, endpoint, pool, streams, self._connect_timeout(cluster)
        )

    def _handshake_timeout(self, cluster: ClusterGateway) -> float:
        """A cluster's own connect timeout bounds its TLS handshake too (a black
        hole that accepts TCP never answers the handshake)."""
        if self.connect_timeout_for is None:
            return self.settings.tls_handshake_timeout
        return self.connect_timeout_for(cluster)

    def _connect_timeout(self, cluster: ClusterGateway) -> float:
        choose = self.connect_timeout_for
        return self.settings.connect_timeout if choose is None else choose(cluster)

    def _log_insecure(self, cluster: ClusterGateway) -> None:
        """Warn once per cluster (and reason) that its server certificate is not verified."""
        spec = cluster.endpoint
        if not spec.insecure:
            self._insecure_logged.pop(cluster.name, None)
            return
        why = (
            "its Secret has no ca.crt (or ca) key"
            if spec.ca_bundle is None
            else 'its Secret sets insecure-skip-tls-verify: "true"'
        )
        if self._insecure_logged.get(cluster.name) == why:
            return
        self._insecure_logged[cluster.name] = why
        self._log.warn(
            "Cluster {cluster}: the server certificate is NOT verified ({why})",
            cluster=cluster.name,
            why=why,
        )

    def _retire(self, name: str, why: str) -> None:
        upstream = self._by_name.pop(name, None)
        if upstream is not None:
            self._log.debug(
                "Retiring connections to cluster {cluster} ({why})", cluster=name, why=why
            )
            upstream.retire()
            if self.on_retire is not None:
                self.on_retire(name)

    def on_registry_event(self, event: RegistryEvent, entry: RegistryEntry, _rv: int) -> None:
        """Registry listener: drop a cluster's connections when its Secret changes or goes.

        A modified Secret that reaches the cluster the same way keeps its
        pool (the next request finds an equal key).
        """
        current = self._by_name.get(entry.name)
        if current is None:
            return
        if event == "DELETED" or entry.gateway is None:
            self._retire(entry.name, "deleted" if event == "DELETED" else "invalid")
        elif entry.gateway.access_key() != current.cluster.access_key():
            self._retire(entry.name, "changed")

    def connection_count(self) -> int:
        """Idle pooled connections across all clusters, HTTP/1.1 and HTTP/2 (for tests
        and metrics)."""
        return sum(
            u.pool.idle_count() + (0 if u.streams is None else u.streams.idle_count())
            for u in self._by_name.values()
        )

    def close(self) -> Deferred[Any]:
        """Close every idle connection and forget all upstreams (service stop)."""
        upstreams = list(self._by_name.values())
        self._by_name.clear()
        if self.konnectivity is not None:
            self.konnectivity.close()
        return DeferredList([u.retire() for u in upstreams])
