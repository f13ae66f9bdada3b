"""``twistd -n clustergateway`` and the ``cluster-gateway`` console script.

Startup in the sample-apiserver order: *complete and validate* the flags
(``clustergateway.config``: :class:`Options` → :class:`GatewayConfig`, every bad
value stopping the start with one line naming the flag), then *build* every object once
(:func:`build_service`: registry and its source, guard, proxy, Resource tree,
Site, TLS listener), then *run* them as one ``MultiService``.  Nothing is a
module-level singleton; this is the only module that imports the global
reactor, and only inside :func:`makeService` (:func:`global_reactor`).

Both entry points run the same process: the console script is ``twistd``
with :data:`TWISTD_FLAGS`, and whichever starts it, :func:`makeService`
installs the gateway's reactor (``fence.reactor``) and starts the processes
of ``--workers``.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python import usage

from clustergateway.auth.guard import RequestGuard, StandaloneGuard
from clustergateway.auth.tlstrust import ServerTLS
from clustergateway.cli import run_subcommand
from clustergateway.config import PROG, ConfigError, GatewayConfig, Options
from clustergateway.fence.reactor import LeanEPollReactor
from clustergateway.fence.reactor import install as install_reactor
from clustergateway.fence.twistd import run_app
from clustergateway.observe.logs import AccessLog
from clustergateway.observe.metrics import GatewayMetrics, MetricsResource
from clustergateway.proxy.resource import ClusterProxy
from clustergateway.registry.store import SecretRegistry
from clustergateway.server.callers import ProxyEntry
from clustergateway.server.certreload import ServingCertReloader
from clustergateway.server.h2engine import choose as choose_h2_engine
from clustergateway.server.listen import (
    CertificateError,
    ServingCert,
    TLSListener,
    cert_dir_pair,
    cert_dir_paths,
    load_serving_cert,
    serving_names,
)
from clustergateway.server.probes import Check
from clustergateway.server.resources import HealthWriter
from clustergateway.server.shutdown import GracefulShutdown
from clustergateway.server.site import GatewaySite
from clustergateway.server.tree import ClusterProxyRenderer, GatewayRoot, build_root
from clustergateway.server.watch import ChangeLog

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "GatewayService",
    "Options",
    "TWISTD_FLAGS",
    "build_service",
    "global_reactor",
    "main",
    "makeService",
]


@attrs.define(eq=False, slots=False)
class GatewayService(MultiService):
    """The running gateway: the objects tests and hooks may reach, and their services."""

    config: GatewayConfig
    registry: SecretRegistry
    changes: ChangeLog
    root: GatewayRoot
    site: GatewaySite
    listener: TLSListener
    serving_cert: ServingCert
    #: The serving TLS context; the auth layer swaps its client-CA trust.
    server_tls: ServerTLS
    access_log: AccessLog
    closers: list[Callable[[], Any]] = attrs.field(factory=list)
    metrics: GatewayMetrics | None = None
    #: The active health prober (``--cluster-health-probe-interval``), if on.
    prober: Any = None
    #: The ``proxy`` subresource (``ClusterProxy``), if built.
    proxy: Any = None
    #: Drains the serving side first (``server.shutdown``); None stops at once.
    shutdown: GracefulShutdown | None = None

    def __attrs_post_init__(self) -> None:
        MultiService.__init__(self)

    def stopService(self) -> Deferred[Any]:  # noqa: N802 - Twisted's name
        """Drain (``/readyz`` fails, serve on for the delay, stop listening, end streams
        cleanly, let sessions finish), stop the sources, then close what they used
        (pools, hub client)."""
        drained: Deferred[Any]
        if self.shutdown is not None:
            drained = Deferred.fromCoroutine(self.shutdown.drain(self.listener.stopService))
            drained.addErrback(lambda f: _log.failure("Draining failed", f))
        else:
            drained = succeed(None)
        stop_rest: Any = super().stopService
        stopped = drained.addCallback(lambda _: stop_rest())

        def close_all(_: object) -> Deferred[Any]:
            pending = []
            for close in self.closers:
                try:
                    pending.append(maybeDeferred(close))
                except Exception:
                    _log.failure("Shutting down {what} failed", what=close)
            return gatherResults(pending, consumeErrors=True)

        result: Deferred[Any] = stopped.addBoth(close_all)
        return result


_log = Logger(namespace="clustergateway.tap")


def build_delegated_auth(reactor: Any, config: GatewayConfig, feed_hub: Any) -> Any:
    """The delegating guard and its trust service, or None in ``--standalone-debug-mode``.

    TokenReview and the trust ConfigMap use ``--authentication-kubeconfig``,
    SubjectAccessReview ``--authorization-kubeconfig``; either falls back to the
    hub client of the registry (``feed_hub``) or ``--kubeconfig``/in-cluster.
    """
    if config.standalone:
        return None
    from clustergateway.auth.authconfig import AuthFlags
    from clustergateway.auth.service import AuthSettings, build_delegated_auth
    from clustergateway.hubclient import HubClient, HubConfigError

    def client_for(flag: str, path: Path | None) -> Any:
        nonlocal feed_hub
        try:
            if path is not None:
                return HubClient.from_kubeconfig(reactor, path, user_agent=PROG)
        except HubConfigError as e:
            raise ConfigError(flag, str(e)) from None
        if feed_hub is None:
            try:
                feed_hub = hub_client(reactor, config)
            except ConfigError as e:
                raise ConfigError(
                    flag,
                    "no hub to delegate caller authentication/authorization to "
                    f"({e.reason}); give --{flag} or --kubeconfig, or run with "
                    "--standalone-debug-mode --bind-address=127.0.0.1",
                ) from None
        return feed_hub

    authn = client_for("authentication-kubeconfig", config.authentication_kubeconfig)
    authz = client_for("authorization-kubeconfig", config.authorization_kubeconfig)
    flags = AuthFlags(
        client_ca_file=str(config.client_ca_file) if config.client_ca_file else None,
        requestheader_client_ca_file=(
            str(config.requestheader_client_ca_file)
            if config.requestheader_client_ca_file
            else None
        ),
        requestheader_allowed_names=config.requestheader_allowed_names,
        requestheader_username_headers=config.requestheader_username_headers,
        requestheader_uid_headers=config.requestheader_uid_headers,
        requestheader_group_headers=config.requestheader_group_headers,
        requestheader_extra_headers_prefix=config.requestheader_extra_headers_prefix,
    )
    settings = AuthSettings(
        flags=flags,
        token_cache_ttl=config.authentication_token_webhook_cache_ttl,
        authorized_ttl=config.authorization_webhook_cache_authorized_ttl,
        unauthorized_ttl=config.authorization_webhook_cache_unauthorized_ttl,
        always_allow_paths=config.authorization_always_allow_paths,
        skip_lookup=config.authentication_skip_lookup,
        tolerate_lookup_failure=config.authentication_tolerate_lookup_failure,
    )
    return build_delegated_auth(
        reactor, settings, authentication_hub=authn, authorization_hub=authz
    )


def build_proxy(
    reactor: Any,
    config: GatewayConfig,
    registry: SecretRegistry,
    auth: Any = None,
    metrics: GatewayMetrics | None = None,
) -> Any:
    """The ``proxy`` subresource (``clustergateway.proxy.resource.ClusterProxy``).

    Identity rules: ``--cluster-gateway-proxy-config`` and the
    ``ClientIdentityPenetration`` gate; with ``--authorize-proxy-subpath`` (and
    delegated auth) every target is also authorized at the hub.  Egress
    proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``) and exec
    plugins (``Dynamic`` credentials) see ``config.environ`` (the process
    environment, read once here).
    """
    import os

    from clustergateway.auth.identity import IdentityResolver, ProxyConfig, ProxyConfigError
    from clustergateway.proxy.egress import ProxyEnvironment, ProxyURLError
    from clustergateway.proxy.execcred import ExecCredentialProvider, ExecSettings
    from clustergateway.proxy.pools import PoolSettings
    from clustergateway.proxy.resource import ClusterProxy, ProxySettings

    global_rules = None
    if config.proxy_config_file is not None:
        try:
            global_rules = ProxyConfig.load(config.proxy_config_file)
        except ProxyConfigError as e:
            raise ConfigError("cluster-gateway-proxy-config", str(e)) from None
    identity = IdentityResolver(
        global_rules, penetration=config.feature_gates.client_identity_penetration
    )
    environ = dict(os.environ if config.environ is None else config.environ)
    try:
        egress = ProxyEnvironment.from_environ(environ)
    except ProxyURLError as e:
        raise SystemExit(f"{PROG}: {e}") from None
    credentials = ExecCredentialProvider(
        reactor,
        environ,
        ExecSettings(
            timeout=config.exec_plugin_timeout, no_expiry_ttl=config.exec_credential_cache_ttl
        ),
        metrics,
    )
    registry.subscribe(
        lambda event, entry, _rv: credentials.forget(entry.name) if event == "DELETED" else None
    )
    proxy = ClusterProxy.build(
        reactor,
        registry,
        settings=ProxySettings(
            response_header_timeout=config.cluster_response_header_timeout,
            pools=PoolSettings(
                connect_timeout=config.cluster_connect_timeout,
                proxy_environment=egress,
                http2_long_running=not config.upstream_http1_only,
            ),
        ),
        credentials=credentials,
        identity_for=identity.identity_for,
        admission=build_admission(reactor, config, registry, metrics),
        konnectivity=build_konnectivity(reactor, config),
    )
    proxy.metrics = metrics
    proxy.refuse_unhealthy = config.feature_gates.healthiness_check
    if config.authorize_proxy_subpath and auth is not None:
        proxy.authorize_target = auth.guard.authorize_proxy_target
        if metrics is not None:
            auth.guard.authorizer.on_target_review = metrics.access_review
    return proxy


def build_admission(
    reactor: Any, config: GatewayConfig, registry: SecretRegistry, metrics: GatewayMetrics | None
) -> Any:
    """Caps and circuits (``proxy.admission``); an open circuit shows in the
    registry's health and in metrics, and is logged."""
    from clustergateway.proxy.admission import AdmissionSettings, ClusterAdmission
    from clustergateway.proxy.circuit import CircuitBreakers, CircuitSettings

    def circuit_changed(cluster: str, cause: str | None) -> None:
        if cause is None:
            _log.info("Cluster {cluster}: circuit closed, it answers again", cluster=cluster)
        else:
            _log.warn(
                "Cluster {cluster}: circuit open, requests refused without dialing: {cause}",
                cluster=cluster,
                cause=cause,
            )
        registry.set_circuit(cluster, cause)
        if metrics is not None:
            metrics.cluster(cluster).circuit(cause is not None)

    breakers = CircuitBreakers(
        CircuitSettings(
            config.circuit_breaker_failure_threshold,
            config.circuit_breaker_cooldown,
            config.circuit_breaker_max_cooldown,
        ),
        circuit_changed,
    )
    settings = AdmissionSettings(
        max_requests_inflight=config.max_requests_inflight,
        max_mutating_requests_inflight=config.max_mutating_requests_inflight,
        cluster_max_requests_inflight=config.max_requests_inflight_per_cluster,
        cluster_max_long_running_requests=config.max_long_running_requests_per_cluster,
        connect_timeout=config.cluster_connect_timeout,
        response_header_timeout=config.cluster_response_header_timeout,
    )
    rejected = None
    if metrics is not None:
        recorded = metrics

        def rejected(cluster: str, reason: str) -> None:
            recorded.cluster(cluster).rejected(reason)

    return ClusterAdmission(settings, breakers, reactor.seconds, rejected)


def build_konnectivity(reactor: Any, config: GatewayConfig) -> Any:
    """The konnectivity dialer for ``ClusterProxy`` clusters, or None without ``--proxy-host``.

    The mTLS material is read and checked here, so a bad file stops the start
    with one line naming its flag.
    """
    if config.proxy_host is None:
        return None
    from clustergateway.proxy.konnectivity import KonnectivityDialer
    from clustergateway.proxy.tls import TLSConfigError, konnectivity_tls_creator

    files = {}
    for flag, path in (
        ("proxy-ca-cert", config.proxy_ca_cert),
        ("proxy-cert", config.proxy_cert),
        ("proxy-key", config.proxy_key),
    ):
        if path is None:
            raise ConfigError(flag, "must be specified with --proxy-host")
        try:
            files[flag] = path.read_bytes()
        except OSError as e:
            raise ConfigError(flag, f"cannot read {path}: {e.strerror}") from None
    try:
        creator = konnectivity_tls_creator(
            config.proxy_host, files["proxy-ca-cert"], files["proxy-cert"], files["proxy-key"]
        )
    except TLSConfigError as e:
        raise SystemExit(f"{PROG}: {e}") from None
    return KonnectivityDialer(
        reactor,
        config.proxy_host,
        config.proxy_port,
        creator,
        connect_timeout=config.proxy_dial_timeout,
        dial_timeout=config.proxy_dial_timeout,
    )


@attrs.frozen
class RegistryFeed:
    """What keeps the registry current, who records health (None: read-only), cleanup."""

    service: Service
    health_writer: HealthWriter | None = None
    hub: Any = None  # the HubClient in hub mode
    closers: tuple[Callable[[], Any], ...] = ()


def build_source(
    reactor: Any,
    config: GatewayConfig,
    registry: SecretRegistry,
    on_synced: Callable[[], object] | None = None,
) -> RegistryFeed:
    """``--secrets-dir``: a directory of manifests; otherwise the hub's Secrets.

    ``on_synced`` runs after each successful full sync of the Secrets (the
    last-sync gauge: ``GatewayMetrics.registry_synced``).
    """
    if config.secrets_dir is not None:
        from clustergateway.registry.secrets_dir import DirectorySecretSource

        return RegistryFeed(
            DirectorySecretSource(
                reactor,
                config.secrets_dir,
                registry,
                interval=config.secrets_dir_interval,
                on_synced=on_synced,
            )
        )
    return build_hub_source(reactor, config, registry, on_synced)


def hub_client(reactor: Any, config: GatewayConfig) -> Any:
    """The hub client from ``--kubeconfig``, else the in-cluster configuration."""
    from clustergateway.hubclient import HubClient, HubConfigError

    user_agent = config.user_agent or "cluster-gateway"
    try:
        if config.kubeconfig is not None:
            return HubClient.from_kubeconfig(reactor, config.kubeconfig, user_agent=user_agent)
        return HubClient.in_cluster(reactor, user_agent=user_agent)
    except HubConfigError as e:
        reason = str(e) if config.kubeconfig is not None else f"none given, and {e}"
        raise ConfigError("kubeconfig", reason) from None


def build_hub_source(
    reactor: Any,
    config: GatewayConfig,
    registry: SecretRegistry,
    on_synced: Callable[[], object] | None = None,
) -> RegistryFeed:
    """Hub mode: list+watch the Secrets of ``--secret-namespace`` (and OCM ManagedClusters)."""
    from clustergateway.registry.hub_source import HubManagedClusterSource, HubSecretSource
    from clustergateway.server.healthwriter import HubHealthWriter

    client = hub_client(reactor, config)
    feeds = MultiService()
    HubSecretSource(  # type: ignore[no-untyped-call]
        reactor,
        client,
        config.secret_namespace,
        registry,
        resync_period=config.resync_period,
        on_synced=on_synced,
    ).setServiceParent(feeds)
    if config.feature_gates.ocm_cluster_cache or config.ocm_integration:
        HubManagedClusterSource(  # type: ignore[no-untyped-call]
            reactor, client, registry, resync_period=config.resync_period
        ).setServiceParent(feeds)
    writer = HubHealthWriter(client, config.secret_namespace, config.api_group)
    return RegistryFeed(feeds, writer, client, (client.close,))


def build_service(
    reactor: Any,
    config: GatewayConfig,
    *,
    registry: SecretRegistry | None = None,
    source: Service | None = None,
    health_writer: HealthWriter | None = None,
    guard: RequestGuard | None = None,
    proxy: ClusterProxyRenderer | None | bool = True,
) -> GatewayService:
    """Build every object of one gateway (nothing runs until ``startService``).

    The keyword arguments replace a part (tests, embedding): a registry fed by
    the caller (``source=None`` and ``registry`` given: nothing feeds it but
    the caller), a guard, a proxy (``None``: no proxy, ``True``: the default).
    """
    gv = config.group_version
    if isinstance(reactor, LeanEPollReactor):
        reactor.spin_seconds = config.busy_poll
    feeds: list[Service] = []
    closers: list[Callable[[], Any]] = []
    feed_hub: Any = None
    own_registry = registry is None
    if registry is None:
        registry = SecretRegistry(
            gv.group,
            config.feature_gates,
            ocm_integration=config.ocm_integration,
            managed_clusters_only=config.ocm_managed_clusters_only,
        )
    metrics = GatewayMetrics.build(registry, clock=reactor.seconds)
    if own_registry:
        feed = build_source(reactor, config, registry, metrics.registry_synced)
        feed_hub = feed.hub
        source, health_writer = feed.service, feed.health_writer
        closers.extend(feed.closers)
    if source is not None:
        feeds.append(source)
    changes = ChangeLog.follow(registry)
    closers.append(changes.close)
    auth = build_delegated_auth(reactor, config, feed_hub) if guard is None else None
    if guard is None:
        guard = auth.guard if auth is not None else StandaloneGuard()
    if config.audit_log_path:
        from clustergateway.auth.audit import AuditingGuard, AuditLog

        try:
            audit = AuditLog.open(config.audit_log_path, reactor, gv.group)
        except OSError as e:
            raise ConfigError("audit-log-path", f"cannot open it: {e.strerror}") from None
        guard = AuditingGuard(guard, audit)
        closers.append(audit.close)
    renderer: ClusterProxyRenderer | None
    if proxy is True:
        renderer = build_proxy(reactor, config, registry, auth, metrics)
        closers.append(renderer.close)  # type: ignore[union-attr]
    else:
        renderer = proxy or None
    prober = None
    if config.cluster_health_probe_interval > 0 and isinstance(renderer, ClusterProxy):
        prober = build_prober(reactor, config, registry, renderer, feed_hub, metrics)
        feeds.append(prober)
    root = build_root(
        gv=gv,
        registry=registry,
        changes=changes,
        guard=guard,
        clock=reactor,
        proxy=renderer,
        health_writer=health_writer,
        min_request_timeout=config.min_request_timeout,
        metrics=MetricsResource(metrics),
    )
    access_log = AccessLog(enabled=config.access_log, clock=reactor.seconds)
    site = GatewaySite(root, reactor=reactor, request_log=access_log.log_request)
    site.h2_engine = choose_h2_engine(config.h2_engine, site.header_list_size)
    if isinstance(renderer, ClusterProxy) and not config.access_log and not config.audit_log_path:
        # Both logs read twisted.web's Request: with either on, twisted.web serves all.
        site.proxy_entry = ProxyEntry(root.gate, renderer)
    if config.ignored_feature_gates:
        _log.warn(
            "--feature-gates: ignoring generic Kubernetes apiserver gates this gateway "
            "does not have: {gates}",
            gates=",".join(config.ignored_feature_gates),
        )
    serving = _serving_cert(config)
    try:
        server_tls = ServerTLS(serving.chain_pem, serving.key_pem, policy=config.tls_policy)
    except ValueError as e:
        flag = "tls-cipher-suites" if config.tls_policy.openssl_ciphers else "tls-min-version"
        raise ConfigError(flag, str(e)) from None
    if auth is not None:
        # Optional client certificates from the client CA + front-proxy CA, swapped on reload.
        auth.serve_trust_with(server_tls.set_trust)
        root.readyz.add_check(Check("authentication-trust", auth.trust.readiness))
        feeds.append(auth.trust)
    listener = TLSListener(
        reactor,
        config.secure_port,
        config.bind_address,
        server_tls,
        site,
        reuse_port=config.workers > 1,
    )
    service = GatewayService(
        config,
        registry,
        changes,
        root,
        site,
        listener,
        serving,
        server_tls,
        access_log,
        closers,
        metrics,
    )
    service.prober = prober
    service.proxy = renderer
    shutdown = GracefulShutdown(
        reactor,
        config.shutdown_delay_duration,
        config.shutdown_grace_period,
        site.open_connections,
        changes.end_watches,
        renderer.open_streams if isinstance(renderer, ClusterProxy) else None,
    )
    root.readyz.add_check(Check("shutdown", shutdown.readiness))
    service.shutdown = shutdown
    for feed_service in feeds:
        feed_service.setServiceParent(service)
    cert_path, key_path = _serving_paths(config)
    ServingCertReloader(
        reactor,
        cert_path,
        key_path,
        serving,
        lambda pair: _serve(service, pair),
        interval=config.cert_reload_interval,
    ).setServiceParent(service)  # type: ignore[no-untyped-call]
    listener.setServiceParent(service)  # type: ignore[no-untyped-call]
    return service


def build_prober(
    reactor: Any,
    config: GatewayConfig,
    registry: SecretRegistry,
    proxy: ClusterProxy,
    hub: Any,
    metrics: GatewayMetrics | None,
) -> Service:
    """The active health prober; verdicts go to the hub Secrets, or memory without a hub."""
    from clustergateway.health.prober import ClusterHealthProber
    from clustergateway.health.recorder import (
        HealthRecorder,
        HubHealthRecorder,
        MemoryHealthRecorder,
    )

    recorder: HealthRecorder
    if hub is not None:
        recorder = HubHealthRecorder(hub, config.secret_namespace, registry)
    else:
        recorder = MemoryHealthRecorder(registry)
    return ClusterHealthProber(
        reactor,
        registry,
        proxy,
        recorder,
        config.cluster_health_probe_interval,
        failure_threshold=config.cluster_health_probe_failure_threshold,
        timeout=config.cluster_health_probe_timeout,
        metrics=metrics,
    )


def _serve(service: GatewayService, pair: ServingCert) -> None:
    """Serve ``pair`` from the next handshake on (open connections keep theirs)."""
    service.server_tls.set_serving(pair.chain_pem, pair.key_pem)
    service.serving_cert = pair


def _serving_paths(config: GatewayConfig) -> tuple[Path, Path]:
    """The files the serving pair comes from (and is reloaded from)."""
    if config.tls_cert_file is not None and config.tls_private_key_file is not None:
        return config.tls_cert_file, config.tls_private_key_file
    return cert_dir_paths(config.cert_dir)


def _serving_cert(config: GatewayConfig) -> ServingCert:
    if config.tls_cert_file is not None and config.tls_private_key_file is not None:
        try:
            return load_serving_cert(config.tls_cert_file, config.tls_private_key_file)
        except CertificateError as e:
            raise ConfigError("tls-cert-file", str(e)) from None
    try:
        hostname = socket.gethostname()
    except OSError:
        hostname = None
    names = serving_names(config.bind_address, hostname)
    try:
        return cert_dir_pair(config.cert_dir, names)
    except CertificateError as e:
        raise ConfigError("cert-dir", str(e)) from None


def makeService(options: Options) -> GatewayService:  # noqa: N802 - twistd's name
    """twistd entry point, for both ``twistd clustergateway`` and the console script:
    the gateway on the global reactor (:func:`global_reactor`), and the other
    processes of ``--workers``."""
    reactor = global_reactor()
    _start_workers(reactor, options.config, options.args)
    return build_service(reactor, options.config)


def global_reactor() -> Any:
    """The global reactor: the gateway's :class:`LeanEPollReactor` unless one is installed.

    twistd installs a reactor while it parses its own flags only when
    ``--reactor`` names one; otherwise the first import of
    ``twisted.internet.reactor`` installs Twisted's default, and twistd makes
    that import only after the plugin built its service (to log "reactor
    class: …" and run it).  So ``twistd clustergateway`` and ``cluster-gateway``
    both run this reactor, installed here.  ``--reactor=clustergateway`` names
    it (the plugin in ``twisted/plugins``): ``twist``, which installs its
    reactor before any plugin runs, needs it.  Another ``--reactor`` is
    respected, with a warning.
    """
    if "twisted.internet.reactor" not in sys.modules:
        install_reactor()
    from twisted.internet import reactor

    if not isinstance(reactor, LeanEPollReactor):
        _log.warn(
            "Running on {reactor}, not on the gateway's LeanEPollReactor "
            "(--reactor=clustergateway): --busy-poll and pass-end writes are off",
            reactor=f"{type(reactor).__module__}.{type(reactor).__qualname__}",
        )
    return reactor


def _start_workers(reactor: Any, config: GatewayConfig, args: Sequence[str]) -> None:
    """``--workers N``: the parent starts N-1 children; a child watches its parent."""
    from clustergateway.server import workers

    parent = workers.parent_of_worker()
    if parent is not None:
        reactor.callWhenRunning(workers.watch_parent, reactor, parent)
        return
    if config.workers <= 1:
        return
    _serving_cert(config)  # generated once here, not raced by N processes (ConfigError exits)
    supervisor = workers.WorkerSupervisor(
        reactor,
        workers.child_argv(args),
        config.workers - 1,
        # Children drain as this process does (SIGTERM reaches them all at once).
        kill_after=config.shutdown_delay_duration + config.shutdown_grace_period + 15.0,
    )
    reactor.callWhenRunning(supervisor.start)
    reactor.addSystemEventTrigger("before", "shutdown", supervisor.stop)


#: How the console script runs twistd, as deploy/ and bench/ spell it too: in
#: the foreground, no pid file, lines from ``observe.logs`` (JSON off a
#: terminal, text on one, credentials masked).
TWISTD_FLAGS = (
    "--nodaemon",
    "--pidfile=",
    "--logger=clustergateway.observe.logs.twistd_observer",
)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``cluster-gateway [options]``: ``twistd <TWISTD_FLAGS> clustergateway [options]``.

    Flags are checked first so that a bad one stops the start with one line.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    run_subcommand(args)  # ``cluster-gateway patch …`` and the like (clustergateway.cli)
    options = Options()  # type: ignore[no-untyped-call]
    try:
        options.parseOptions(args)
    except usage.UsageError as e:
        raise SystemExit(f"{PROG}: {e}") from None
    from twisted.application import app
    from twisted.scripts import twistd

    flags = list(TWISTD_FLAGS)
    if options.config.log_verbosity >= 4:
        # klog's -v 4 and above (``--v``) are debug verbosity; below, info.
        flags[-1] = "--logger=clustergateway.observe.logs.twistd_debug_observer"
    sys.argv = [PROG, *flags, "clustergateway", *args]
    # twistd.runApp without its exit by the stopping signal (fence.twistd).
    app.run(run_app, twistd.ServerOptions)  # type: ignore[attr-defined]
    raise SystemExit(0)

