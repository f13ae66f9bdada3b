"""``/metrics`` and ``/healthz`` (+ ``/readyz``) on their own plain-HTTP ports, as in Go.

controller-runtime serves metrics on ``--metrics-bind-address`` (``:48080``) and
the probes on ``--health-probe-bind-address`` (``:48081``); both take Go's
``host:port`` form (``:48080`` = every interface, ``0`` as the port = a free
one).  The metrics live in their own ``CollectorRegistry`` (never the
process-global one), built in ``tap``.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = ["AddonMetrics", "HealthResource", "MetricsResource", "parse_bind_address"]


def parse_bind_address(value: str) -> tuple[str, int]:
    """Go's ``host:port`` (``:48080``, ``127.0.0.1:0``, ``[::1]:9``) → (interface, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port")
    host = host.strip("[]")
    return host, int(port)


@attrs.define(eq=False)
class AddonMetrics:
    """The addon-manager's own metrics (controller-runtime's reconcile counters, in spirit)."""

    registry: CollectorRegistry
    reconciles: Counter
    reconcile_errors: Counter
    probes: Counter
    leader: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> AddonMetrics:
        return cls(
            registry,
            Counter(
                "cluster_gateway_addon_reconcile",
                "Installer passes, by result.",
                ["result"],
                registry=registry,
            ),
            Counter(
                "cluster_gateway_addon_reconcile_errors",
                "Installer passes that failed.",
                registry=registry,
            ),
            Counter(
                "cluster_gateway_addon_health_probes",
                "Cluster health probes, by verdict.",
                ["healthy"],
                registry=registry,
            ),
            Gauge(
                "leader_election_master_status",
                "1 while this replica leads (client-go's name).",
                ["name"],
                registry=registry,
            ),
        )


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 - Twisted's name
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)


class HealthResource(Resource):
    """``/healthz`` and ``/readyz``: ``ok`` while ``healthy()`` says so, else 500."""

    isLeaf = True

    def __init__(self, healthy: Callable[[], bool]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._healthy = healthy

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 - Twisted's name
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if request.path not in (b"/healthz", b"/readyz", b"/livez"):
            request.setResponseCode(404)
            return b"404 page not found\n"
        if self._healthy():
            return b"ok"
        request.setResponseCode(500)
        return b"not ok"
