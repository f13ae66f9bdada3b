"""The gateway's Prometheus metrics and the small API the proxy records through.

One :class:`GatewayMetrics` per gateway, built in ``tap`` with its own
``CollectorRegistry`` (never the process-global one, so tests and several
gateways in one process do not share counters) and passed to whoever records.

Metric names keep the Go gateway's (namespace ``ocm``, subsystem ``proxy``) so
existing dashboards keep working, and add what the Go code cannot show: where
time goes on the way to a cluster (dial, TLS handshake, first byte), what is
open right now (in-flight requests, upgrade sessions, upstream connections),
traffic, connection reuse, exec-credential runs, the registry's state (computed
at scrape time from the registry itself), and the process.

Unlike Go (quirk §14.12), ``code`` is the status the caller really got: the
Status error code for gateway errors, 101 for an upgrade that was switched, the
relayed upstream code otherwise.  The access-review histogram, registered but
never observed in Go, is observed by the subpath authorizer.

Hot path: :meth:`GatewayMetrics.cluster` resolves a cluster name to a
:class:`ClusterMetrics` once and caches it; that object caches the labelled
children it has used, keyed by tuples of already-bounded label values, so a
recorded request costs a few dict lookups and the counter/histogram updates,
with no string formatting.  The updates made for every proxied request go
straight to the children's value cells (``fence.prometheus``; lock-free:
recording and rendering both happen on the reactor thread), skipping the
wrappers' per-call checks.
Label values are bounded (``labels``): a name the registry does not know
never creates a series.  A cluster's series stay after
its Secret is deleted (until restart): dropping them could not be done without
racing the requests still open on it, and their number is bounded by the
clusters ever registered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Request

from clustergateway.errors import MethodNotAllowed, render_status
from clustergateway.fence.prometheus import HistogramCells, histogram_cells, unlocked_value
from clustergateway.observe.labels import (
    OTHER,
    RESOURCE_LABELS,
    UNKNOWN_CLUSTER,
    VERBS,
    code_label,
)
from clustergateway.registry.model import ClusterRegistry, EndpointSpec

__all__ = [
    "ClusterMetrics",
    "GatewayMetrics",
    "MetricsResource",
    "RegistryCollector",
    "REQUEST_DURATION_BUCKETS",
    "UNVERIFIED_REASONS",
    "UPSTREAM_BUCKETS",
    "unverified_reason",
]

#: The Go gateway's buckets for request durations and access reviews.
REQUEST_DURATION_BUCKETS = (0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
#: Finer buckets for the steps of reaching a cluster (loopback dials take
#: well under a millisecond, a slow TLS handshake over a tunnel seconds).
UPSTREAM_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
)  # fmt: skip

_TRUE_FALSE = ("false", "true")


def _per_cluster(name: str) -> Callable[[_Families, str], Any]:
    return lambda families, label: getattr(families, name).labels(label)


#: How ClusterMetrics creates each of its labelled children, by name.
_CHILD_MAKERS: dict[str, Callable[[_Families, str], Any]] = {
    **{
        name: _per_cluster(name)
        for name in (
            "dial",
            "tls",
            "first_byte",
            "inflight",
            "upgrades",
            "sent_bytes",
            "received_bytes",
            "open_connections",
            "exec_runs",
            "exec_failures",
            "circuit_open",
        )
    },
    "connections_reused": lambda families, label: families.connections.labels(label, "true"),
    "connections_new": lambda families, label: families.connections.labels(label, "false"),
}


@attrs.define
class _Families:
    """The metric families, registered on one registry."""

    by_resource: Counter
    by_cluster: Counter
    duration: Histogram
    access_review: Histogram
    dial: Histogram
    tls: Histogram
    first_byte: Histogram
    inflight: Gauge
    upgrades: Gauge
    sent_bytes: Counter
    received_bytes: Counter
    connections: Counter
    open_connections: Gauge
    exec_runs: Counter
    exec_failures: Counter
    health_probe: Histogram
    rejected: Counter
    circuit_open: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> _Families:
        proxy: dict[str, Any] = {"namespace": "ocm", "subsystem": "proxy", "registry": registry}
        by_cluster = ("cluster",)
        return cls(
            by_resource=Counter(
                "proxied_resource_requests_by_resource_total",
                "Number of proxied requests by target resource, verb and status code",
                ("resource", "verb", "code"),
                **proxy,
            ),
            by_cluster=Counter(
                "proxied_requests_by_cluster_total",
                "Number of proxied requests by cluster and status code",
                ("cluster", "code"),
                **proxy,
            ),
            duration=Histogram(
                "proxied_request_duration_seconds",
                "Duration of proxied requests, including whole watches and streams",
                ("resource", "verb", "cluster", "code"),
                buckets=REQUEST_DURATION_BUCKETS,
                **proxy,
            ),
            access_review=Histogram(
                "cluster_escalation_access_review_duration_seconds",
                "Duration of the SubjectAccessReview checking the proxied subpath",
                ("success",),
                buckets=REQUEST_DURATION_BUCKETS,
                **proxy,
            ),
            dial=Histogram(
                "upstream_dial_duration_seconds",
                "Time to open a new connection to the cluster (TCP, proxy CONNECT or tunnel)",
                by_cluster,
                buckets=UPSTREAM_BUCKETS,
                **proxy,
            ),
            tls=Histogram(
                "upstream_tls_handshake_duration_seconds",
                "Time of the TLS handshake on a new connection to the cluster",
                by_cluster,
                buckets=UPSTREAM_BUCKETS,
                **proxy,
            ),
            first_byte=Histogram(
                "upstream_first_byte_duration_seconds",
                "Time from writing a request to the cluster to its response head (dial excluded)",
                by_cluster,
                buckets=UPSTREAM_BUCKETS,
                **proxy,
            ),
            inflight=Gauge(
                "inflight_requests",
                "Proxied requests being served now, watches and upgrades included",
                by_cluster,
                **proxy,
            ),
            upgrades=Gauge(
                "upgrade_sessions",
                "Open upgraded sessions (exec, attach, port-forward) by cluster",
                by_cluster,
                **proxy,
            ),
            sent_bytes=Counter(
                "upstream_sent_bytes_total",
                "Bytes sent to the cluster (request bodies and upgraded streams)",
                by_cluster,
                **proxy,
            ),
            received_bytes=Counter(
                "upstream_received_bytes_total",
                "Bytes received from the cluster (response bodies and upgraded streams)",
                by_cluster,
                **proxy,
            ),
            connections=Counter(
                "upstream_connections_total",
                "Upstream connections used by requests: reused from the pool or newly opened",
                ("cluster", "reused"),
                **proxy,
            ),
            open_connections=Gauge(
                "upstream_open_connections",
                "Upstream connections open now (in use or idle in the pool)",
                by_cluster,
                **proxy,
            ),
            exec_runs=Counter(
                "exec_credential_runs_total",
                "Runs of a cluster's exec credential plugin",
                by_cluster,
                **proxy,
            ),
            exec_failures=Counter(
                "exec_credential_failures_total",
                "Failed runs of a cluster's exec credential plugin",
                by_cluster,
                **proxy,
            ),
            health_probe=Histogram(
                "cluster_health_probe_duration_seconds",
                "Active health probes of a cluster (GET /healthz, then /livez) by result",
                ("cluster", "result"),
                buckets=UPSTREAM_BUCKETS,
                **proxy,
            ),
            rejected=Counter(
                "rejected_requests",
                "Proxied requests refused before dialing, by cluster and reason (a cap "
                "met, or the cluster's circuit open)",
                ("cluster", "reason"),
                **proxy,
            ),
            circuit_open=Gauge(
                "cluster_circuit_open",
                "1 while the gateway's circuit to a cluster is open (requests refused "
                "without dialing)",
                by_cluster,
                **proxy,
            ),
        )


#: Children recorded for every proxied request; the hot path updates their
#: value cells directly (``fence.prometheus``: a counter's or gauge's value, a
#: histogram's :class:`HistogramCells`) instead of going through the metric wrappers.
_HOT_HISTOGRAMS = frozenset({"first_byte"})


@attrs.define(eq=False)
class ClusterMetrics:
    """Recording for one cluster label; get it from :meth:`GatewayMetrics.cluster`.

    Hold it for the life of a request: deltas of the gauges (in-flight,
    upgrades, open connections) then always hit the same series.  Every
    labelled child is created on first use, so a cluster only has the series
    it has actually produced.
    """

    label: str
    _families: _Families = attrs.field(repr=False)
    #: (resource, verb, code) -> children, shared by all clusters for by_resource.
    _by_resource: dict[tuple[str, str, str], Any] = attrs.field(repr=False)
    _finished: dict[tuple[str, str, int], tuple[Any, Any, HistogramCells]] = attrs.field(
        factory=dict, repr=False
    )
    _children: dict[str, Any] = attrs.field(factory=dict, repr=False)
    _cells: dict[str, Any] = attrs.field(factory=dict, repr=False)

    def _cell(self, name: str) -> Any:
        """The value cell(s) of child ``name``, for the per-request updates."""
        cell = self._cells.get(name)
        if cell is None:
            child = self._child(name)
            if name in _HOT_HISTOGRAMS:
                cell = histogram_cells(child)
            else:
                cell = unlocked_value(child)
            self._cells[name] = cell
        return cell

    def _child(self, name: str) -> Any:
        child = self._children.get(name)
        if child is None:
            child = _CHILD_MAKERS[name](self._families, self.label)
            self._children[name] = child
        return child

    def request_finished(self, resource: str, verb: str, code: int, duration_s: float) -> None:
        """Count a finished proxied request and observe its duration.

        ``resource`` and ``verb`` come from :func:`labels.request_labels`
        (anything outside the bounded sets is folded into ``<other>`` here
        anyway); ``code`` is what the caller got (101 for an upgrade).
        """
        key = (resource, verb, code)
        children = self._finished.get(key)
        if children is None:
            children = self._finished_children(resource, verb, code)
        by_resource, by_cluster, duration = children
        by_resource.inc(1)
        by_cluster.inc(1)
        duration.observe(duration_s)

    def _finished_children(
        self, resource: str, verb: str, code: int
    ) -> tuple[Any, Any, HistogramCells]:
        resource_l = resource if resource in RESOURCE_LABELS else OTHER
        verb_l = verb if verb in VERBS else OTHER
        code_l = code_label(code)
        shared_key = (resource_l, verb_l, code_l)
        by_resource = self._by_resource.get(shared_key)
        if by_resource is None:
            by_resource = self._families.by_resource.labels(resource_l, verb_l, code_l)
            self._by_resource[shared_key] = by_resource
        by_cluster = self._families.by_cluster.labels(self.label, code_l)
        children = (
            unlocked_value(by_resource),
            unlocked_value(by_cluster),
            histogram_cells(
                self._families.duration.labels(resource_l, verb_l, self.label, code_l)
            ),
        )
        # Cache only under keys that are themselves bounded.
        if resource == resource_l and verb == verb_l and code_l != OTHER:
            self._finished[(resource, verb, code)] = children
        return children

    def upstream_connected(self, dial_s: float | None, tls_s: float | None, reused: bool) -> None:
        """A request got its upstream connection: reused from the pool, or new.

        For a new connection pass the dial time and the TLS handshake time
        (``None`` when there was no TLS); for a reused one both are ignored.
        A new connection also counts as open until :meth:`upstream_closed`.
        """
        if reused:
            self._cell("connections_reused").inc(1)
            return
        self._child("connections_new").inc()
        self._child("open_connections").inc()
        if dial_s is not None:
            self._child("dial").observe(dial_s)
        if tls_s is not None:
            self._child("tls").observe(tls_s)

    def upstream_closed(self) -> None:
        """An upstream connection counted by :meth:`upstream_connected` closed."""
        self._child("open_connections").dec()

    def first_byte(self, seconds: float) -> None:
        """The cluster's response head arrived ``seconds`` after the request was written
        to its connection (a new connection's dial and handshake are not included:
        they have histograms of their own)."""
        self._cell("first_byte").observe(seconds)

    def inflight(self, delta: int) -> None:
        """+1 when a proxied request starts, -1 when it ends (however it ends)."""
        self._cell("inflight").inc(delta)

    def upgrade_open(self, delta: int) -> None:
        """+1 when an upgrade is switched (101 relayed), -1 when the splice closes."""
        self._child("upgrades").inc(delta)

    def bytes(self, to_cluster: int, from_cluster: int) -> None:
        """Add traffic; call per chunk or once at the end, whichever is cheaper."""
        if to_cluster:
            self._cell("sent_bytes").inc(to_cluster)
        if from_cluster:
            self._cell("received_bytes").inc(from_cluster)

    def exec_credential(self, ok: bool) -> None:
        """The exec credential plugin ran (``ok`` false: it failed)."""
        self._child("exec_runs").inc()
        if not ok:
            self._child("exec_failures").inc()

    def health_probe(self, ok: bool, seconds: float) -> None:
        """An active health probe ended (``ok``: the cluster answered 200)."""
        result = "success" if ok else "failure"
        self._families.health_probe.labels(self.label, result).observe(seconds)

    def rejected(self, reason: str) -> None:
        """A request was refused before dialing (``reason``: ``admission.REJECT_REASONS``)."""
        self._families.rejected.labels(self.label, reason).inc()

    def circuit(self, is_open: bool) -> None:
        """The cluster's circuit opened or closed."""
        self._child("circuit_open").set(1 if is_open else 0)


#: Why a cluster's server certificate is not verified: ``skip_verify`` (the
#: Secret has no CA key, Go quirk 4, or sets ``insecure-skip-tls-verify``) or
#: ``plain_http`` (an ``http://`` endpoint: no TLS at all).
UNVERIFIED_REASONS = ("skip_verify", "plain_http")


def unverified_reason(endpoint: EndpointSpec) -> str | None:
    """Why the gateway does not verify ``endpoint``'s server certificate, or None.

    A CA-less endpoint that is not ``insecure`` is verified against the system
    roots (``proxy.tls``), so it is not counted; conversion marks a Secret
    without a CA key ``insecure`` unless it says otherwise.
    """
    if endpoint.type == "Const" and endpoint.address[:7].lower() == "http://":
        return "plain_http"
    if endpoint.insecure:
        return "skip_verify"
    return None


@attrs.define(eq=False)
class RegistryCollector(Collector):
    """Registry gauges, computed at scrape time from the registry itself.

    Nothing has to remember to update them: clusters (Secrets that convert),
    unconvertible Secrets, clusters whose server certificate is not verified
    (by why: see :func:`unverified_reason`), whether the first sync happened,
    and when the last successful sync with the Secret source finished
    (reported by the source through :meth:`GatewayMetrics.registry_synced`).
    """

    registry: ClusterRegistry | None
    last_sync: Callable[[], float | None]

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        registry = self.registry
        if registry is None:
            return
        valid = invalid = unhealthy = 0
        unverified = dict.fromkeys(UNVERIFIED_REASONS, 0)
        for entry in registry.entries():
            gateway = entry.gateway
            if gateway is not None:
                valid += 1
                unhealthy += not gateway.healthy
                reason = unverified_reason(gateway.endpoint)
                if reason is not None:
                    unverified[reason] += 1
            elif not entry.hidden:
                invalid += 1
        yield GaugeMetricFamily(
            "cluster_gateway_registry_clusters",
            "Clusters in the registry (Secrets that convert to a ClusterGateway)",
            value=valid,
        )
        yield GaugeMetricFamily(
            "cluster_gateway_registry_unconvertible_secrets",
            "Cluster Secrets that cannot be converted (requests to them get 503)",
            value=invalid,
        )
        yield GaugeMetricFamily(
            "cluster_gateway_registry_unhealthy_clusters",
            "Clusters whose health (annotations, prober, OCM condition) is unhealthy",
            value=unhealthy,
        )
        insecure = GaugeMetricFamily(
            "cluster_gateway_registry_insecure_clusters",
            "Clusters reached without verifying their server certificate, by why",
            labels=("reason",),
        )
        for reason, count in unverified.items():
            insecure.add_metric((reason,), count)
        yield insecure
        yield GaugeMetricFamily(
            "cluster_gateway_registry_synced",
            "1 once the registry has applied a first full list of its source",
            value=1 if registry.synced else 0,
        )
        last = self.last_sync()
        if last is not None:
            yield GaugeMetricFamily(
                "cluster_gateway_registry_last_sync_timestamp_seconds",
                "Unix time of the last successful sync (list or resync) with the source",
                value=last,
            )


@attrs.define(eq=False)
class GatewayMetrics:
    """All of the gateway's metrics, on a registry of their own.

    Build with :meth:`build`.  Record through :meth:`cluster` (hold the result
    for a request's life) or the one-shot methods below, which resolve the
    cluster each call.  ``registry`` is what ``/metrics`` renders.
    """

    registry: CollectorRegistry
    _families: _Families = attrs.field(repr=False)
    _is_known: Callable[[str], bool] = attrs.field(repr=False)
    _clock: Callable[[], float] = attrs.field(repr=False)
    _clusters: dict[str, ClusterMetrics] = attrs.field(factory=dict, repr=False)
    _by_resource: dict[tuple[str, str, str], Any] = attrs.field(factory=dict, repr=False)
    _unknown: ClusterMetrics | None = attrs.field(default=None, repr=False)
    _last_sync: float | None = attrs.field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        registry: ClusterRegistry | None = None,
        *,
        is_known_cluster: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.time,
        process_metrics: bool = True,
    ) -> GatewayMetrics:
        """A fresh ``CollectorRegistry`` with every gateway metric on it.

        ``registry`` (the cluster registry) feeds the registry gauges and, unless
        ``is_known_cluster`` is given, decides which names get their own
        ``cluster`` label (any Secret it has an entry for, convertible or not).
        ``clock`` gives Unix time for :meth:`registry_synced` (pass
        ``reactor.seconds``).  ``process_metrics`` adds the process, platform
        and GC collectors (``process_*``, ``python_*``) to this registry.
        """
        prom = CollectorRegistry(auto_describe=True)
        families = _Families.register(prom)
        if is_known_cluster is None:
            if registry is not None:
                cluster_registry = registry

                def is_known_cluster(name: str) -> bool:
                    return cluster_registry.entry(name) is not None
            else:

                def is_known_cluster(name: str) -> bool:
                    return False

        metrics = cls(prom, families, is_known_cluster, clock)
        prom.register(RegistryCollector(registry, lambda: metrics._last_sync))
        if process_metrics:
            ProcessCollector(registry=prom)
            PlatformCollector(registry=prom)
            GCCollector(registry=prom)
        return metrics

    def cluster(self, name: str) -> ClusterMetrics:
        """The recorder for cluster ``name`` (the shared ``<unknown>`` one if
        the registry does not know it).  Cheap after the first call per name."""
        found = self._clusters.get(name)
        if found is not None:
            return found
        if name and self._is_known(name):
            found = self._new_cluster(name)
            self._clusters[name] = found
            return found
        if self._unknown is None:
            self._unknown = self._new_cluster(UNKNOWN_CLUSTER)
        return self._unknown

    def _new_cluster(self, label: str) -> ClusterMetrics:
        return ClusterMetrics(label, self._families, self._by_resource)

    # One-shot API: resolve the cluster each call.

    def request_finished(
        self, cluster: str, resource: str, verb: str, code: int, duration_s: float
    ) -> None:
        """See :meth:`ClusterMetrics.request_finished`."""
        self.cluster(cluster).request_finished(resource, verb, code, duration_s)

    def upstream_connected(
        self, cluster: str, dial_s: float | None, tls_s: float | None, reused: bool
    ) -> None:
        """See :meth:`ClusterMetrics.upstream_connected`."""
        self.cluster(cluster).upstream_connected(dial_s, tls_s, reused)

    def upstream_closed(self, cluster: str) -> None:
        """See :meth:`ClusterMetrics.upstream_closed`."""
        self.cluster(cluster).upstream_closed()

    def first_byte(self, cluster: str, seconds: float) -> None:
        """See :meth:`ClusterMetrics.first_byte`."""
        self.cluster(cluster).first_byte(seconds)

    def inflight(self, cluster: str, delta: int) -> None:
        """See :meth:`ClusterMetrics.inflight`."""
        self.cluster(cluster).inflight(delta)

    def upgrade_open(self, cluster: str, delta: int) -> None:
        """See :meth:`ClusterMetrics.upgrade_open`."""
        self.cluster(cluster).upgrade_open(delta)

    def bytes(self, cluster: str, to_cluster: int, from_cluster: int) -> None:
        """See :meth:`ClusterMetrics.bytes`."""
        self.cluster(cluster).bytes(to_cluster, from_cluster)

    def exec_credential(self, cluster: str, ok: bool) -> None:
        """See :meth:`ClusterMetrics.exec_credential`."""
        self.cluster(cluster).exec_credential(ok)

    def health_probe(self, cluster: str, ok: bool, seconds: float) -> None:
        """See :meth:`ClusterMetrics.health_probe`."""
        self.cluster(cluster).health_probe(ok, seconds)

    def access_review(self, success: bool, seconds: float) -> None:
        """The ``--authorize-proxy-subpath`` review took ``seconds``; ``success``:
        the hub decided (allowed or denied; false: the review itself failed)."""
        self._families.access_review.labels(_TRUE_FALSE[success]).observe(seconds)

    def registry_synced(self, at: float | None = None) -> None:
        """The registry's source finished a successful list or resync (now, or at ``at``)."""
        self._last_sync = self._clock() if at is None else at


@attrs.frozen
class _WithoutCreated(Collector):
    """The registry minus ``*_created`` samples, for the classic text format.

    There they are extra gauge series per counter/histogram child that the Go
    gateway never exposed; OpenMetrics keeps them (they belong to that format).
    """

    registry: CollectorRegistry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            if metric.type in ("counter", "histogram"):
                trimmed = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                trimmed.samples = [s for s in metric.samples if not s.name.endswith("_created")]
                yield trimmed
            else:
                yield metric


class MetricsResource(Resource):
    """``/metrics``: the registry in the Prometheus text format.

    OpenMetrics when the scraper asks for it in ``Accept`` (``prometheus_client``
    negotiates); the classic text format leaves out the ``*_created`` series.
    Leaf resource; GET and HEAD, any other method gets a 405 ``Status``.  Who
    may read it is the serving layer's decision (a non-resource ``get
    /metrics`` SAR in Kubernetes mode, open in standalone mode).
    """

    isLeaf = True

    def __init__(self, metrics: GatewayMetrics) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.metrics = metrics

    def render(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            method = request.method.decode("latin-1")
            return render_status(
                cast(IRequest, request), MethodNotAllowed(f"{method} is not allowed on /metrics")
            )
        return super().render(request)  # type: ignore[no-untyped-call,no-any-return]

    def render_GET(self, request: Request) -> bytes:
        accept = request.getHeader(b"accept") or b""
        encoder, content_type = choose_encoder(accept.decode("latin-1"))
        if content_type.startswith("application/openmetrics-text"):
            body = encoder(self.metrics.registry)
        else:
            body = encoder(_WithoutCreated(self.metrics.registry))
        headers = request.responseHeaders
        headers.setRawHeaders(b"content-type", [content_type.encode("ascii")])
        # Also when a gate writes the body later (Twisted only sets it for returned bytes).
        headers.setRawHeaders(b"content-length", [str(len(body)).encode("ascii")])
        return body
