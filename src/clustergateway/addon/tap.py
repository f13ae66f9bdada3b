"""Wiring of ``cluster-gateway-addon-manager``: flags in, one service tree out.

Everything is built here and passed in (no module-level state): the hub
client, the installer and its runner, the watches, the prober, the Lease
elector and the metrics/probe listeners.  ``twistd -n cluster-gateway-addon-manager``
and the console script ``cluster-gateway-addon-manager`` take the same flags,
Go's (``--metrics-bind-address``, ``--health-probe-bind-address``,
``--leader-elect``, ``--signer-secret-name``, klog's ``-v``) plus what a process
outside a pod needs (``--kubeconfig``, ``--namespace``) and the prober's knobs.

With ``--leader-elect`` the installer and the prober run only while this
replica holds the Lease; the metrics and probe ports serve on every replica,
as controller-runtime's do.  The signer CA is read or created by the leader
on its first pass (Go does it at startup on every replica, racing to create it).
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import attrs
from prometheus_client import CollectorRegistry
from twisted.application import service
from twisted.application.internet import TCPServer
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage
from twisted.web.resource import Resource
from twisted.web.server import Site

from clustergateway.addon.controller import InstallerController, ReconcileRunner
from clustergateway.addon.endpoints import (
    AddonMetrics,
    HealthResource,
    MetricsResource,
    parse_bind_address,
)
from clustergateway.addon.installer import Installer, InstallOutcome
from clustergateway.addon.leader import LeaseElector
from clustergateway.addon.names import LEASE_NAME, SIGNER_SECRET_NAME
from clustergateway.addon.prober import AddonHealthProber
from clustergateway.goflags import GoFlagError, rewrite
from clustergateway.hubclient import HubClient, HubConfigError
from clustergateway.stopping import on_next_turn

__all__ = ["AddonManagerConfig", "AddonManagerService", "Options", "build_service", "main"]

PROG = "cluster-gateway-addon-manager"
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class AddonManagerConfigError(ValueError):
    """A flag that cannot be used; the message names it."""


@attrs.frozen
class AddonManagerConfig:
    """The addon-manager's settings, checked."""

    namespace: str
    kubeconfig: str | None = None
    gateway_kubeconfig: str | None = None
    metrics_bind_address: str = ":48080"
    health_probe_bind_address: str = ":48081"
    leader_elect: bool = False
    identity: str = ""
    signer_secret_name: str = SIGNER_SECRET_NAME
    resync_period: float = 60.0
    probe_interval: float = 30.0
    probe_timeout: float = 10.0
    probe_concurrency: int = 16
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    @classmethod
    def from_options(
        cls, options: Options, environ: dict[str, str] | None = None
    ) -> AddonManagerConfig:
        env = dict(os.environ if environ is None else environ)
        namespace = options["namespace"] or env.get("NAMESPACE", "")
        if not namespace and _SA_NAMESPACE.exists():
            namespace = _SA_NAMESPACE.read_text().strip()
        if not namespace:
            raise AddonManagerConfigError(
                "the manager should be either running in a container or specify NAMESPACE "
                "environment (or --namespace)"
            )
        for flag in ("metrics-bind-address", "health-probe-bind-address"):
            if options[flag] != "0":
                try:
                    parse_bind_address(options[flag])
                except ValueError as e:
                    raise AddonManagerConfigError(f"--{flag}: {e}") from None

        def number(flag: str) -> float:
            try:
                value = float(options[flag])
            except ValueError:
                raise AddonManagerConfigError(
                    f"--{flag}: {options[flag]!r} is not a number"
                ) from None
            if value <= 0:
                raise AddonManagerConfigError(f"--{flag}: must be positive")
            return value

        return cls(
            namespace=namespace,
            kubeconfig=options["kubeconfig"] or None,
            gateway_kubeconfig=options["gateway-kubeconfig"] or None,
            metrics_bind_address=options["metrics-bind-address"],
            health_probe_bind_address=options["health-probe-bind-address"],
            leader_elect=bool(options["leader-elect"]),
            identity=options["leader-election-identity"]
            or f"{socket.gethostname()}_{uuid.uuid4()}",
            signer_secret_name=options["signer-secret-name"],
            resync_period=number("resync-period"),
            probe_interval=number("probe-interval"),
            probe_timeout=number("probe-timeout"),
            probe_concurrency=int(number("probe-concurrency")),
            lease_duration=number("leader-elect-lease-duration"),
            renew_deadline=number("leader-elect-renew-deadline"),
            retry_period=number("leader-elect-retry-period"),
        )


class Options(usage.Options):
    """Go's addon-manager flags (``cmd/addon-manager/main.go``) and this one's extras."""

    longdesc = (
        "Installs cluster-gateway on an OCM hub from its ClusterGatewayConfiguration, "
        "keeps its serving certificate and ManagedServiceAccount tokens current, and "
        "probes every cluster's health."
    )
    optFlags: ClassVar[list[list[Any]]] = [
        ["leader-elect", None, "Elect one active replica with a Lease (Go's flag)."],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["metrics-bind-address", None, ":48080", "host:port of /metrics (0: off)."],
        ["health-probe-bind-address", None, ":48081", "host:port of /healthz, /readyz (0: off)."],
        ["signer-secret-name", None, SIGNER_SECRET_NAME, "Secret holding the signer CA."],
        ["kubeconfig", None, None, "Hub kubeconfig (default: the in-cluster service account)."],
        ["namespace", None, None, "The manager's namespace (default: $NAMESPACE, then the pod's)."],
        [
            "gateway-kubeconfig",
            None,
            None,
            "Where the prober reaches the gateway's API (default: the hub, via aggregation).",
        ],
        ["resync-period", None, "60", "Seconds between installer passes without any event."],
        ["probe-interval", None, "30", "Seconds between health rounds."],
        ["probe-timeout", None, "10", "Seconds one cluster's /healthz may take."],
        ["probe-concurrency", None, "16", "Probes at a time."],
        ["leader-election-identity", None, None, "This replica's holder identity."],
        ["leader-elect-lease-duration", None, "15", "Seconds a Lease is held unrenewed."],
        ["leader-elect-renew-deadline", None, "10", "Seconds a leader retries renewing."],
        ["leader-elect-retry-period", None, "2", "Seconds between election tries."],
        ["v", "v", "0", "Log verbosity (klog's -v)."],
    ]

    config: AddonManagerConfig

    def parseOptions(self, options: Sequence[str] | None = None) -> None:  # noqa: N802
        args = sys.argv[1:] if options is None else list(options)
        try:
            args = rewrite(args, {"leader-elect", "help", "version"})
        except GoFlagError as e:
            raise usage.UsageError(f"--{e.flag}: {e.reason}" if e.flag else e.reason) from None
        super().parseOptions(args)  # type: ignore[no-untyped-call]

    def postOptions(self) -> None:  # noqa: N802 - Twisted's name
        try:
            self.config = AddonManagerConfig.from_options(self)
        except AddonManagerConfigError as e:
            raise usage.UsageError(str(e)) from None


@attrs.define(eq=False)
class AddonManagerService(service.MultiService):
    """The running addon-manager: its parts are attributes for tests and the wiring."""

    hub: HubClient
    installer: Installer
    runner: ReconcileRunner
    controller: InstallerController
    prober: AddonHealthProber
    metrics: AddonMetrics
    elector: LeaseElector | None
    #: What runs only while leading (the controller and the prober).
    leading: service.MultiService
    #: Where the stop's outcome is handed over (:func:`~clustergateway.stopping.on_next_turn`).
    clock: IReactorTime
    listeners: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        service.MultiService.__init__(self)

    def start_leading(self) -> None:
        self.metrics.leader.labels(LEASE_NAME).set(1)
        self.leading.startService()

    def stop_leading(self) -> Any:
        self.metrics.leader.labels(LEASE_NAME).set(0)
        if self.leading.running:
            return self.leading.stopService()
        return None

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        if self.elector is None:
            self.start_leading()

    def stopService(self) -> Deferred[Any]:  # noqa: N802 - Twisted's name
        """Stop everything; fires on a reactor turn of its own, since the last stop
        (a pass, the Lease release) completes inside a hub connection's callback."""
        stops = [service.MultiService.stopService(self)]
        if self.elector is None:
            result = self.stop_leading()
            if result is not None:
                stops.append(result)
        return on_next_turn(self.clock, DeferredList(stops))


def _listener(reactor: Any, address: str, resource: Resource) -> TCPServer | None:
    if address == "0":
        return None
    interface, port = parse_bind_address(address)
    server = TCPServer(port, Site(resource), interface=interface or "", reactor=reactor)
    return server


def build_service(
    reactor: Any,
    config: AddonManagerConfig,
    *,
    hub: HubClient | None = None,
    gateway: HubClient | None = None,
) -> AddonManagerService:
    """Build the whole addon-manager on ``reactor``."""
    if hub is None:
        try:
            hub = (
                HubClient.from_kubeconfig(reactor, config.kubeconfig, user_agent=PROG)
                if config.kubeconfig
                else HubClient.in_cluster(reactor, user_agent=PROG)
            )
        except HubConfigError as e:
            raise AddonManagerConfigError(f"--kubeconfig: {e}") from None
    if gateway is None:
        gateway = (
            HubClient.from_kubeconfig(reactor, config.gateway_kubeconfig, user_agent=PROG)
            if config.gateway_kubeconfig
            else hub
        )
    metrics = AddonMetrics.register(CollectorRegistry())
    metrics.leader.labels(LEASE_NAME).set(0)
    installer = Installer(hub, config.namespace, config.signer_secret_name)

    async def install_pass() -> InstallOutcome:
        try:
            outcome = await installer.reconcile()
        except Exception:
            metrics.reconcile_errors.inc()
            raise
        metrics.reconciles.labels(outcome.state).inc()
        return outcome

    runner = ReconcileRunner(reactor, install_pass)
    controller = InstallerController(
        reactor,
        hub,
        runner,
        resync=config.resync_period,
        extra_names=lambda: installer.secret_names,
    )
    prober = AddonHealthProber(
        reactor,
        hub,
        gateway,
        interval=config.probe_interval,
        timeout=config.probe_timeout,
        concurrency=config.probe_concurrency,
        on_verdict=lambda _c, healthy: metrics.probes.labels(str(healthy).lower()).inc(),
    )
    leading = service.MultiService()
    controller.setServiceParent(leading)  # type: ignore[no-untyped-call]
    prober.setServiceParent(leading)  # type: ignore[no-untyped-call]
    manager = AddonManagerService(
        hub, installer, runner, controller, prober, metrics, None, leading, reactor
    )
    if config.leader_elect:
        manager.elector = LeaseElector(
            reactor,
            hub,
            config.namespace,
            LEASE_NAME,
            config.identity,
            manager.start_leading,
            manager.stop_leading,
            lease_duration=config.lease_duration,
            renew_deadline=config.renew_deadline,
            retry_period=config.retry_period,
        )
        manager.elector.setServiceParent(manager)  # type: ignore[no-untyped-call]
    health = HealthResource(lambda: True)
    for name, address, resource in (
        ("metrics", config.metrics_bind_address, MetricsResource(metrics.registry)),
        ("health", config.health_probe_bind_address, health),
    ):
        listener = _listener(reactor, address, resource)
        if listener is not None:
            listener.setServiceParent(manager)
            manager.listeners[name] = listener
    return manager


def makeService(options: Options) -> AddonManagerService:  # noqa: N802 - twistd's name
    """twistd entry point: build the addon-manager on the global reactor."""
    from twisted.internet import reactor

    try:
        return build_service(reactor, options.config)
    except AddonManagerConfigError as e:
        raise SystemExit(f"{PROG}: {e}") from None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``cluster-gateway-addon-manager [flags]``: the same as the twistd plugin."""
    args = list(sys.argv[1:] if argv is None else argv)
    options = Options()  # type: ignore[no-untyped-call]
    try:
        options.parseOptions(args)
    except usage.UsageError as e:
        raise SystemExit(f"{PROG}: {e}") from None
    from twisted.scripts import twistd

    observer = "twistd_debug_observer" if int(options["v"] or 0) >= 4 else "twistd_observer"
    logger = f"--logger=clustergateway.observe.logs.{observer}"
    sys.argv = [PROG, "--nodaemon", "--pidfile=", logger, PROG, *args]
    twistd.run()
    raise SystemExit(0)
