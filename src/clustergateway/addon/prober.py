"""The health prober of spec §6.3: probe every cluster through the gateway.

For every ManagedClusterAddOn named ``cluster-gateway`` (its namespace is the
cluster), as Go's ``ClusterGatewayHealthProber`` does: read the cluster's
``clustergateways/<c>/health``, ``GET /healthz`` through the gateway's ``proxy``
subresource (healthy ⇔ a 2xx whose body is ``ok``), ``PUT`` the health
subresource only when ``status.healthy`` changes (reason: the error text, or
``""`` when healthy), and set the addon's ``Available`` condition with Go's
reasons (``SuccessfullyProbedHealthz``/"Returned OK", ``FailedProbingHealthz``
with the error, else the body, else "Unknown"), writing the status only when
the condition's truth changes (and, unlike Go, also when the addon has no
``Available`` condition yet, so a cluster dark from the start shows False).
Go's log lines are kept: "Cluster unhealthy", "Updating cluster healthiness",
"Updating addon healthiness".

What differs from Go, as the issue asks: no 1-second resync of every addon.
Rounds run every ``interval`` seconds with each probe's start spread over a
jitter window, at most ``concurrency`` probes at a time and each bounded by
``timeout``, so a dark cluster costs one slot for ``timeout`` seconds and the
others proceed; an unhealthy cluster is probed again after ``unhealthy_retry``
seconds (Go's 5 s requeue).  That pacing is the gateway prober's too, written
once in :class:`~clustergateway.health.rounds.ProbeRounds`.

The gateway is reached through ``gateway`` — the hub itself in production (the
aggregator routes ``cluster.core.oam.dev`` to it), or the gateway directly
when ``--gateway-kubeconfig`` says so (tests, or a hub without aggregation).
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from clustergateway import errors
from clustergateway.addon.names import ADDON_API_VERSION, ADDON_NAME, GATEWAY_GROUP
from clustergateway.addon.resources import HubApi, collection_path, object_path
from clustergateway.health.rounds import PacedService, ProbeRounds
from clustergateway.hubclient import status_error_from_response

__all__ = ["AddonHealthProber", "GatewayApi", "available_condition", "probe_result"]

_SHOWN_BODY = 200
_GATEWAYS = f"/apis/{GATEWAY_GROUP}/v1alpha1/clustergateways"


class GatewayApi(HubApi, Protocol):
    """The hub's requests plus a raw GET for ``/healthz`` (``HubClient`` provides them)."""

    async def get_bytes(
        self, path: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> tuple[int, bytes]: ...


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def probe_result(code: int | None, body: bytes, error: str) -> tuple[bool, str, str]:
    """``(healthy, error text, body text)`` from one ``/healthz`` answer (or an error)."""
    text = body.decode("utf-8", "replace")[:_SHOWN_BODY]
    if error:
        return False, error, text
    assert code is not None
    if not 200 <= code < 300:
        return False, status_error_from_response(code, body).message, text
    return text == "ok", "", text


def available_condition(healthy: bool, error: str, body: str) -> dict[str, str]:
    """The ``Available`` condition Go writes for a probe outcome."""
    if healthy:
        return {
            "type": "Available",
            "status": "True",
            "reason": "SuccessfullyProbedHealthz",
            "message": "Returned OK",
        }
    return {
        "type": "Available",
        "status": "False",
        "reason": "FailedProbingHealthz",
        "message": error or body or "Unknown",
    }


def _set_condition(
    conditions: list[dict[str, Any]], new: dict[str, str], now: str
) -> list[dict[str, Any]]:
    """``meta.SetStatusCondition``: replace by type, keep the transition time if same status."""
    out = []
    found = False
    for c in conditions:
        if c.get("type") == new["type"]:
            found = True
            stamp = c.get("lastTransitionTime") if c.get("status") == new["status"] else now
            out.append({**c, **new, "lastTransitionTime": stamp or now})
        else:
            out.append(c)
    if not found:
        out.append({**new, "lastTransitionTime": now})
    return out


def _available(addon: Mapping[str, Any]) -> bool:
    for c in (addon.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            return bool(c.get("status") == "True")
    return False


@attrs.define(eq=False)
class AddonHealthProber(PacedService):
    """Probes each ``cluster-gateway`` addon's cluster on a jittered interval.

    The pacing (rounds, jitter, concurrency, the retry, the stop) is
    :class:`~clustergateway.health.rounds.ProbeRounds`, shared with the gateway's
    own prober; this class says what a round lists and what one probe does.
    """

    reactor: IReactorTime
    hub: HubApi
    gateway: GatewayApi
    interval: float = 30.0
    timeout: float = 10.0
    concurrency: int = 16
    unhealthy_retry: float = 5.0
    #: Fraction of ``interval`` over which a round's probes start.
    jitter: float = 0.5
    now: Callable[[], str] = attrs.field(default=_stamp)
    random: Callable[[], float] = random.random
    #: Told every verdict (metrics).
    on_verdict: Callable[[str, bool], None] = lambda _cluster, _healthy: None
    probes: int = attrs.field(default=0, init=False)
    rounds: ProbeRounds = attrs.field(init=False)
    _log: ClassVar[Logger] = Logger()

    def __attrs_post_init__(self) -> None:
        self.rounds = ProbeRounds(
            self.reactor,
            self._addon_clusters,
            self._probe_and_retry,
            self.interval,
            concurrency=self.concurrency,
            jitter=self.jitter,
            random=self.random,
            retry=self.unhealthy_retry,
            on_failure=self._probe_failed,
            describe="the addon health prober",
        )

    def round(self) -> Deferred[None]:
        """List the addons and schedule one probe per cluster, spread over the jitter window."""
        return self.rounds.round()

    def schedule(self, cluster: str, delay: float) -> None:
        """Probe ``cluster`` after ``delay`` seconds unless a probe is due or running."""
        self.rounds.schedule(cluster, delay)

    async def _addon_clusters(self) -> list[str]:
        try:
            listed = await self.hub.get_json(
                collection_path(ADDON_API_VERSION, "ManagedClusterAddOn")
            )
        except errors.StatusError as e:
            self._log.warn("Cannot list ManagedClusterAddOns: {error}", error=e.message)
            return []
        clusters = []
        for addon in listed.get("items") or []:
            meta = addon.get("metadata") or {}
            if meta.get("name") == ADDON_NAME and meta.get("namespace"):
                clusters.append(str(meta["namespace"]))
        return clusters

    def _probe_failed(self, cluster: str, failure: Failure) -> None:
        """A hub or gateway request of the probe failed: one line (it is tried again soon)."""
        if failure.check(errors.StatusError):
            self._log.warn(
                "Cannot probe cluster {cluster}: {error}",
                cluster=cluster,
                error=failure.value.message,  # type: ignore[union-attr]
            )
        else:
            self._log.failure("Probing cluster {cluster} failed", failure, cluster=cluster)

    async def _probe_and_retry(self, cluster: str) -> bool:
        """Go's requeue: an unhealthy cluster is probed again ``unhealthy_retry`` s later."""
        return not await self.probe(cluster)

    async def probe(self, cluster: str) -> bool:
        """One probe and its writes; returns the verdict."""
        self.probes += 1
        gateway = await self.hub_or_gateway_health(cluster)
        code: int | None = None
        body = b""
        error = ""
        try:
            code, body = await self.gateway.get_bytes(
                f"{_GATEWAYS}/{cluster}/proxy/healthz", timeout=self.timeout
            )
        except errors.StatusError as e:
            error = e.message
        healthy, error, text = probe_result(code, body, error)
        self.on_verdict(cluster, healthy)
        if not healthy:
            self._log.info(
                "Cluster unhealthy: {cluster} (body {body!r}, error {error})",
                cluster=cluster,
                body=text,
                error=error,
            )
        status = dict(gateway.get("status") or {})
        if gateway and bool(status.get("healthy")) != healthy:
            status["healthy"] = healthy
            status["healthyReason"] = "" if healthy else error
            self._log.info(
                "Updating cluster healthiness: {cluster} healthy={healthy}",
                cluster=cluster,
                healthy=healthy,
            )
            await self.gateway.put_json(
                f"{_GATEWAYS}/{cluster}/health", {**gateway, "status": status}
            )
        await self._sync_addon(cluster, healthy, error, text)
        return healthy

    async def hub_or_gateway_health(self, cluster: str) -> dict[str, Any]:
        try:
            return await self.gateway.get_json(f"{_GATEWAYS}/{cluster}/health")
        except errors.NotFound:
            return {}  # no ClusterGateway (yet): still report on the addon

    async def _sync_addon(self, cluster: str, healthy: bool, error: str, body: str) -> None:
        path = collection_path(ADDON_API_VERSION, "ManagedClusterAddOn", cluster) + f"/{ADDON_NAME}"
        try:
            addon = await self.hub.get_json(path)
        except errors.NotFound:
            return
        if _available(addon) == healthy and any(
            c.get("type") == "Available"
            for c in (addon.get("status") or {}).get("conditions") or []
        ):
            return
        self._log.info(
            "Updating addon healthiness: {cluster} healthy={healthy}",
            cluster=cluster,
            healthy=healthy,
        )
        status = dict(addon.get("status") or {})
        status["conditions"] = _set_condition(
            list(status.get("conditions") or []),
            available_condition(healthy, error, body),
            self.now(),
        )
        try:
            await self.hub.put_json(object_path(addon) + "/status", {**addon, "status": status})
        except errors.Conflict:
            pass  # changed meanwhile; the next probe writes it
