"""Admission: caps on requests in flight, per cluster and global, and the circuit.

One cluster must not cost the others (DESIGN: *shared fate is a bug*).
:meth:`ClusterAdmission.admit` is asked once per proxied request, from
:meth:`ClusterProxy.admit <clustergateway.proxy.resource.ClusterProxy.admit>`
(both request paths), before anything is dialed:

1. the cluster's circuit (:mod:`~clustergateway.proxy.circuit`): open → ``503``
   ``cluster X is unreachable: <cause>; retrying in Ns`` with ``Retry-After``;
2. the caps, as kube-apiserver counts them: long-running requests (watches,
   followed logs, upgrades) only against the cluster's long-running cap;
   ordinary ones against the global cap of their kind
   (``--max-requests-inflight`` for reads, ``--max-mutating-requests-inflight``
   for writes) and the cluster's own cap.  Over a cap → ``429``
   ``TooManyRequests`` naming the cluster and the cap, with ``Retry-After``.

An admitted request holds a :class:`Ticket` until it ends; the request paths
report on it whether the cluster answered (a response head) or could not be
reached (dial, TLS, no head in time), which drives the circuit.

Per-cluster values come from the flags, overridden by the cluster Secret's
annotations (:data:`LIMIT_ANNOTATIONS`); a bad value is logged once and the
flag's value used.  Parsed once per Secret version (the registry hands out
the same ``ClusterGateway`` object until the Secret changes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
from twisted.logger import Logger

from clustergateway.errors import ServiceUnavailable, TooManyRequests
from clustergateway.proxy.circuit import CircuitBreakers
from clustergateway.registry.model import ClusterGateway

__all__ = [
    "CONNECT_TIMEOUT_ANNOTATION",
    "LIMIT_ANNOTATIONS",
    "LONG_RUNNING_ANNOTATION",
    "MAX_INFLIGHT_ANNOTATION",
    "REJECT_REASONS",
    "RESPONSE_HEADER_TIMEOUT_ANNOTATION",
    "AdmissionSettings",
    "ClusterAdmission",
    "ClusterLimits",
    "Ticket",
    "cluster_limits",
]

MAX_INFLIGHT_ANNOTATION = "cluster.core.oam.dev/max-requests-inflight"
LONG_RUNNING_ANNOTATION = "cluster.core.oam.dev/max-long-running-requests-inflight"
CONNECT_TIMEOUT_ANNOTATION = "cluster.core.oam.dev/connect-timeout"
RESPONSE_HEADER_TIMEOUT_ANNOTATION = "cluster.core.oam.dev/response-header-timeout"
LIMIT_ANNOTATIONS = (
    MAX_INFLIGHT_ANNOTATION,
    LONG_RUNNING_ANNOTATION,
    CONNECT_TIMEOUT_ANNOTATION,
    RESPONSE_HEADER_TIMEOUT_ANNOTATION,
)

#: The ``reason`` label of refused requests (a bounded set).
REJECT_REASONS = (
    "max-requests-inflight",
    "max-mutating-requests-inflight",
    "cluster-max-requests-inflight",
    "cluster-max-long-running-requests-inflight",
    "circuit-open",
)


@attrs.frozen
class AdmissionSettings:
    """The flags' values.  A cap of 0 means no cap (kube-apiserver's convention)."""

    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    cluster_max_requests_inflight: int = 200
    cluster_max_long_running_requests: int = 5000
    connect_timeout: float = 10.0
    response_header_timeout: float = 75.0
    #: Seconds a caller refused by a cap is told to wait.
    retry_after: int = 1


@attrs.frozen
class ClusterLimits:
    """One cluster's effective caps and timeouts; ``from_annotation`` names those
    its Secret set (the others are the flags')."""

    max_requests_inflight: int
    max_long_running: int
    connect_timeout: float
    response_header_timeout: float
    from_annotation: frozenset[str] = frozenset()

    def source(self, annotation: str, flag: str) -> str:
        """Where a value came from, for a Status: the annotation or the flag."""
        if annotation in self.from_annotation:
            return f"annotation {annotation}"
        return f"flag --{flag}"


def _duration(text: str) -> float:
    from clustergateway.config import parse_duration

    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    return seconds


def _count(text: str) -> int:
    number = int(text.strip())
    if number < 0:
        raise ValueError("must not be negative (0: no cap)")
    return number


_PARSERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    MAX_INFLIGHT_ANNOTATION: ("max_requests_inflight", _count),
    LONG_RUNNING_ANNOTATION: ("max_long_running", _count),
    CONNECT_TIMEOUT_ANNOTATION: ("connect_timeout", _duration),
    RESPONSE_HEADER_TIMEOUT_ANNOTATION: ("response_header_timeout", _duration),
}


def cluster_limits(
    annotations: Mapping[str, str],
    settings: AdmissionSettings,
    bad: Callable[[str, str, str], None] = lambda key, value, why: None,
) -> ClusterLimits:
    """The limits of a cluster with these Secret ``annotations`` (pure).

    A value that does not parse is reported through ``bad(key, value, why)``
    and the flag's value is used instead.
    """
    values: dict[str, Any] = {
        "max_requests_inflight": settings.cluster_max_requests_inflight,
        "max_long_running": settings.cluster_max_long_running_requests,
        "connect_timeout": settings.connect_timeout,
        "response_header_timeout": settings.response_header_timeout,
    }
    chosen = set()
    for key, (field, parse) in _PARSERS.items():
        raw = annotations.get(key)
        if raw is None:
            continue
        try:
            values[field] = parse(raw)
        except ValueError as e:
            bad(key, raw, str(e))
            continue
        chosen.add(key)
    return ClusterLimits(**values, from_annotation=frozenset(chosen))


@attrs.define(eq=False, slots=True)
class Ticket:
    """An admitted request: its place under the caps until :meth:`release`.

    The request path calls :meth:`answered` when the cluster's response head
    arrives, :meth:`unreachable` when dialing, TLS or waiting for the head
    failed, and :meth:`release` when the request ends (every way it can).
    """

    admission: ClusterAdmission
    cluster: str
    #: ``"long"``, ``"mutating"`` or ``"read"``: which counters it holds.
    kind: str
    trial: bool
    limits: ClusterLimits
    _verdict: bool = False
    _released: bool = False

    def answered(self) -> None:
        if not self._verdict:
            self._verdict = True
            self.admission.breakers.succeeded(self.cluster)

    def unreachable(self, cause: str) -> None:
        if not self._verdict:
            self._verdict = True
            admission = self.admission
            admission.breakers.failed(self.cluster, cause, admission.clock(), self.trial)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if not self._verdict:
            self.admission.breakers.abandoned(self.cluster, self.trial)
        self.admission._release(self.cluster, self.kind)


@attrs.define(eq=False)
class ClusterAdmission:
    """The in-flight counters and circuits of all clusters (see the module)."""

    settings: AdmissionSettings
    breakers: CircuitBreakers
    clock: Callable[[], float]
    #: ``rejected(cluster, reason)``: a refusal, for metrics (reason in REJECT_REASONS).
    rejected: Callable[[str, str], None] | None = None
    _reads: int = 0
    _mutating: int = 0
    _ordinary: dict[str, int] = attrs.field(factory=dict)
    _long: dict[str, int] = attrs.field(factory=dict)
    _limits: dict[str, tuple[ClusterGateway, ClusterLimits]] = attrs.field(factory=dict)
    #: (cluster, annotation) → the bad value last logged.
    _logged: dict[tuple[str, str], str] = attrs.field(factory=dict)

    _log: ClassVar[Logger] = Logger()

    def limits(self, cluster: ClusterGateway) -> ClusterLimits:
        """``cluster``'s limits, parsed once per Secret version."""
        known = self._limits.get(cluster.name)
        if known is not None and known[0] is cluster:
            return known[1]
        name = cluster.name

        def bad(key: str, value: str, why: str) -> None:
            if self._logged.get((name, key)) == value:
                return
            self._logged[(name, key)] = value
            self._log.warn(
                "Cluster {cluster}: annotation {key}={value!r} is invalid ({why}); "
                "using the flag's value",
                cluster=name,
                key=key,
                value=value[:64],
                why=why,
            )

        limits = cluster_limits(cluster.annotations, self.settings, bad)
        self._limits[name] = (cluster, limits)
        return limits

    def in_flight(self, cluster: str) -> tuple[int, int]:
        """``(ordinary, long_running)`` requests in flight to ``cluster``."""
        return self._ordinary.get(cluster, 0), self._long.get(cluster, 0)

    def admit(self, cluster: ClusterGateway, long_running: bool, mutating: bool) -> Ticket:
        """A ticket for one request to ``cluster``, or raise the ``Status`` refusing it."""
        name = cluster.name
        limits = self.limits(cluster)
        trial = self.breakers.admit(name, self.clock())
        if trial is None:
            self._refuse_open(name)
        settings = self.settings
        if long_running:
            count = self._long.get(name, 0)
            cap = limits.max_long_running
            if cap and count >= cap:
                self._over(
                    name,
                    trial,
                    "cluster-max-long-running-requests-inflight",
                    f"{cap} long-running requests (watches, followed logs, upgrades) in flight "
                    f"to this cluster, the limit set by "
                    + limits.source(
                        LONG_RUNNING_ANNOTATION, "max-long-running-requests-per-cluster"
                    ),
                )
            self._long[name] = count + 1
            return Ticket(self, name, "long", bool(trial), limits)
        if mutating:
            if settings.max_mutating_requests_inflight and (
                self._mutating >= settings.max_mutating_requests_inflight
            ):
                self._over(
                    name,
                    trial,
                    "max-mutating-requests-inflight",
                    f"{settings.max_mutating_requests_inflight} mutating requests in flight "
                    "through this gateway, the limit set by flag --max-mutating-requests-inflight",
                )
        elif settings.max_requests_inflight and self._reads >= settings.max_requests_inflight:
            self._over(
                name,
                trial,
                "max-requests-inflight",
                f"{settings.max_requests_inflight} non-mutating requests in flight through "
                "this gateway, the limit set by flag --max-requests-inflight",
            )
        count = self._ordinary.get(name, 0)
        cap = limits.max_requests_inflight
        if cap and count >= cap:
            self._over(
                name,
                trial,
                "cluster-max-requests-inflight",
                f"{cap} requests in flight to this cluster, the limit set by "
                + limits.source(MAX_INFLIGHT_ANNOTATION, "max-requests-inflight-per-cluster"),
            )
        self._ordinary[name] = count + 1
        if mutating:
            self._mutating += 1
            return Ticket(self, name, "mutating", bool(trial), limits)
        self._reads += 1
        return Ticket(self, name, "read", bool(trial), limits)

    def _refuse_open(self, name: str) -> None:
        breaker = self.breakers.get(name)
        assert breaker is not None
        seconds = breaker.retry_in(self.clock())
        if self.rejected is not None:
            self.rejected(name, "circuit-open")
        raise ServiceUnavailable(
            f"cluster {name} is unreachable: {breaker.last_cause}; retrying in {seconds}s",
            {"name": name, "kind": "clustergateways", "retryAfterSeconds": seconds},
        )

    def _over(self, name: str, trial: bool | None, reason: str, what: str) -> None:
        self.breakers.abandoned(name, bool(trial))
        if self.rejected is not None:
            self.rejected(name, reason)
        raise TooManyRequests(
            f"cluster {name}: too many requests, please try again later: {what} ({reason})",
            {
                "name": name,
                "kind": "clustergateways",
                "retryAfterSeconds": self.settings.retry_after,
                "causes": [{"reason": reason, "message": what}],
            },
        )

    def _release(self, name: str, kind: str) -> None:
        counts = self._long if kind == "long" else self._ordinary
        left = counts.get(name, 1) - 1
        if left > 0:
            counts[name] = left
        else:
            counts.pop(name, None)
        if kind == "read":
            self._reads -= 1
        elif kind == "mutating":
            self._mutating -= 1

    def forget(self, name: str) -> None:
        """The cluster's Secret changed or went: re-read its limits, reset its circuit."""
        self._limits.pop(name, None)
        self.breakers.forget(name)
