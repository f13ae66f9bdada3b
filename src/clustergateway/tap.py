"""``twistd -n clustergateway`` and the ``cluster-gateway`` console script.

Startup in the sample-apiserver order: *complete and validate* the flags
(:class:`Options` → :class:`GatewayConfig`, every bad value stopping the start
with one line naming the flag), then *build* every object once
(:func:`build_service`: registry and its source, guard, proxy, Resource tree,
Site, TLS listener), then *run* them as one ``MultiService``.  Nothing is a
module-level singleton; this is the only module that imports the global
reactor, and only inside :func:`makeService`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python import usage

from clustergateway.api.types import DEFAULT_GROUP, GroupVersion
from clustergateway.auth.guard import RequestGuard, StandaloneGuard
from clustergateway.auth.tlstrust import ServerTLS
from clustergateway.observe.logs import AccessLog
from clustergateway.observe.metrics import GatewayMetrics, MetricsResource
from clustergateway.registry.features import FeatureGateError, FeatureGates
from clustergateway.registry.store import SecretRegistry
from clustergateway.server.listen import (
    CertificateError,
    ServingCert,
    TLSListener,
    load_serving_cert,
    self_signed_cert,
    serving_names,
)
from clustergateway.server.probes import Check
from clustergateway.server.resources import HealthWriter
from clustergateway.server.site import GatewaySite
from clustergateway.server.tree import ClusterProxyRenderer, GatewayRoot, build_root
from clustergateway.server.watch import ChangeLog

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "GatewayService",
    "Options",
    "build_service",
    "main",
    "makeService",
    "parse_duration",
]

PROG = "cluster-gateway"


class ConfigError(SystemExit):
    """A flag value that stops the start: one line, ``cluster-gateway: --flag: reason``.

    A ``SystemExit`` so that ``twistd`` (which only catches usage errors) and
    the console script both exit 1 printing just that line.
    """

    def __init__(self, flag: str, reason: str) -> None:
        super().__init__(f"{PROG}: --{flag}: {reason}")
        self.flag = flag
        self.reason = reason


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go ``time.Duration`` string (``30s``, ``1m30s``, ``0``) in seconds; ``ValueError``."""
    text = text.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_RE.match(text, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r} (want e.g. 30s, 5m, 1h30m)")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text:
        raise ValueError("invalid duration ''")
    return total


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")


def _csv(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _readable_file(flag: str, value: str | None) -> Path | None:
    if value is None or value == "":
        return None
    path = Path(value)
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except IsADirectoryError:
        raise ConfigError(flag, f"{value} is a directory, want a file") from None
    except OSError as e:
        raise ConfigError(flag, f"cannot read {value}: {e.strerror}") from None
    return path


def _writable_target(flag: str, value: str | None) -> str | None:
    """``-`` (stdout) or a file path whose directory exists."""
    if value is None or value in ("", "-"):
        return value or None
    parent = Path(value).parent
    if not parent.is_dir():
        raise ConfigError(flag, f"directory {parent} does not exist")
    return value


def _pem_bundle(flag: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(flag, f"{path} holds no PEM certificate")
    return data


@attrs.frozen
class GatewayConfig:
    """Every setting of one gateway, validated; built by :meth:`from_options`."""

    secure_port: int = 9443
    bind_address: str = "0.0.0.0"
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    cert_dir: Path = Path("apiserver.local.config/certificates")
    secret_namespace: str = "vela-system"
    kubeconfig: Path | None = None
    secrets_dir: Path | None = None
    #: Seconds between looks at ``--secrets-dir`` (not a flag; tests shorten it).
    secrets_dir_interval: float = 1.0
    standalone: bool = False
    feature_gates: FeatureGates = attrs.field(factory=FeatureGates)
    ocm_integration: bool = False
    authorize_proxy_subpath: bool = False
    proxy_config_file: Path | None = None
    client_ca_file: Path | None = None
    requestheader_client_ca_file: Path | None = None
    requestheader_allowed_names: tuple[str, ...] | None = None
    requestheader_username_headers: tuple[str, ...] | None = None
    requestheader_group_headers: tuple[str, ...] | None = None
    requestheader_extra_headers_prefix: tuple[str, ...] | None = None
    authentication_kubeconfig: Path | None = None
    authorization_kubeconfig: Path | None = None
    requestheader_uid_headers: tuple[str, ...] | None = None
    authentication_token_webhook_cache_ttl: float = 10.0
    authorization_webhook_cache_authorized_ttl: float = 10.0
    authorization_webhook_cache_unauthorized_ttl: float = 10.0
    authorization_always_allow_paths: tuple[str, ...] = ("/healthz", "/readyz", "/livez")
    authentication_skip_lookup: bool = False
    authentication_tolerate_lookup_failure: bool = False
    proxy_host: str | None = None
    proxy_port: int = 8090
    proxy_ca_cert: Path | None = None
    proxy_cert: Path | None = None
    proxy_key: Path | None = None
    resync_period: float = 300.0
    api_group: str = DEFAULT_GROUP
    audit_log_path: str | None = None
    access_log: bool = False
    min_request_timeout: float = 1800.0
    user_agent: str = ""
    #: Processes serving the port (``server.workers``): this one and N-1 children.
    workers: int = 1
    #: Seconds an exec (``Dynamic``) credential plugin may run before it is killed.
    exec_plugin_timeout: float = 30.0
    #: Seconds an exec credential without ``expirationTimestamp`` is reused.
    exec_credential_cache_ttl: float = 10.0
    #: The environment for egress proxies (``HTTPS_PROXY``, ``NO_PROXY``) and
    #: exec plugins (``PATH``, base environment); None: the process's, read
    #: once when the service is built (not a flag; tests pass their own).
    environ: Mapping[str, str] | None = attrs.field(default=None, hash=False, repr=False)

    @property
    def group_version(self) -> GroupVersion:
        return GroupVersion(self.api_group)

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> GatewayConfig:
        """Validate parsed flags; raise :class:`ConfigError` for the first bad one."""
        port = _port("secure-port", opts["secure-port"], allow_zero=True)
        bind = opts["bind-address"]
        try:
            address = ipaddress.ip_address(bind)
        except ValueError:
            raise ConfigError("bind-address", f"must be an IP address, got {bind!r}") from None
        standalone = bool(opts["standalone-debug-mode"])
        if standalone and not address.is_loopback:
            raise ConfigError(
                "standalone-debug-mode",
                "serves without authentication, so it needs a loopback --bind-address "
                f"(e.g. 127.0.0.1), got {bind}",
            )
        cert_file = _readable_file("tls-cert-file", opts["tls-cert-file"])
        key_file = _readable_file("tls-private-key-file", opts["tls-private-key-file"])
        if (cert_file is None) != (key_file is None):
            missing = "tls-private-key-file" if key_file is None else "tls-cert-file"
            raise ConfigError(missing, "--tls-cert-file and --tls-private-key-file go together")
        if cert_file is not None and key_file is not None:
            try:
                load_serving_cert(cert_file, key_file)
            except CertificateError as e:
                raise ConfigError("tls-cert-file", str(e)) from None
        namespace = opts["secret-namespace"]
        if not namespace or not _DNS_LABEL.match(namespace) or len(namespace) > 63:
            raise ConfigError(
                "secret-namespace", f"must be a namespace name (RFC 1123 label), got {namespace!r}"
            )
        secrets_dir = None
        if opts["secrets-dir"]:
            secrets_dir = Path(opts["secrets-dir"])
            if not secrets_dir.is_dir():
                raise ConfigError("secrets-dir", f"{secrets_dir} is not a directory")
        try:
            gates = FeatureGates.parse(opts["feature-gates"] or "")
        except FeatureGateError as e:
            raise ConfigError("feature-gates", str(e)) from None
        proxy_config_file = _readable_file(
            "cluster-gateway-proxy-config", opts["cluster-gateway-proxy-config"]
        )
        if proxy_config_file is not None:
            _check_proxy_config(proxy_config_file)
        client_ca = _readable_file("client-ca-file", opts["client-ca-file"])
        _pem_bundle("client-ca-file", client_ca)
        rh_ca = _readable_file("requestheader-client-ca-file", opts["requestheader-client-ca-file"])
        _pem_bundle("requestheader-client-ca-file", rh_ca)
        proxy_host = opts["proxy-host"] or None
        proxy_port = _port("proxy-port", opts["proxy-port"], allow_zero=proxy_host is None)
        proxy_files = {}
        for flag in ("proxy-ca-cert", "proxy-cert", "proxy-key"):
            proxy_files[flag] = _readable_file(flag, opts[flag])
            if proxy_host is not None and proxy_files[flag] is None:
                raise ConfigError(flag, "must be specified with --proxy-host")
        try:
            resync = parse_duration(opts["resync-period"])
        except ValueError as e:
            raise ConfigError("resync-period", str(e)) from None
        if resync <= 0:
            raise ConfigError("resync-period", "must be greater than 0")
        group = opts["api-group"]
        if not _DNS_SUBDOMAIN.match(group or "") or len(group) > 253:
            raise ConfigError("api-group", f"must be a DNS subdomain with a dot, got {group!r}")
        min_timeout = _positive_int("min-request-timeout", opts["min-request-timeout"])
        auth_ttls = {
            flag: _duration(flag, opts[flag])
            for flag in (
                "authentication-token-webhook-cache-ttl",
                "authorization-webhook-cache-authorized-ttl",
                "authorization-webhook-cache-unauthorized-ttl",
            )
        }
        return cls(
            secure_port=port,
            bind_address=str(address),
            tls_cert_file=cert_file,
            tls_private_key_file=key_file,
            cert_dir=Path(opts["cert-dir"]),
            secret_namespace=namespace,
            kubeconfig=_readable_file("kubeconfig", opts["kubeconfig"]),
            secrets_dir=secrets_dir,
            standalone=standalone,
            feature_gates=gates,
            ocm_integration=bool(opts["ocm-integration"]),
            authorize_proxy_subpath=bool(opts["authorize-proxy-subpath"]),
            proxy_config_file=proxy_config_file,
            client_ca_file=client_ca,
            requestheader_client_ca_file=rh_ca,
            requestheader_allowed_names=_csv(opts["requestheader-allowed-names"]),
            requestheader_username_headers=_csv(opts["requestheader-username-headers"]),
            requestheader_group_headers=_csv(opts["requestheader-group-headers"]),
            requestheader_extra_headers_prefix=_csv(opts["requestheader-extra-headers-prefix"]),
            authentication_kubeconfig=_readable_file(
                "authentication-kubeconfig", opts["authentication-kubeconfig"]
            ),
            authorization_kubeconfig=_readable_file(
                "authorization-kubeconfig", opts["authorization-kubeconfig"]
            ),
            requestheader_uid_headers=_csv(opts["requestheader-uid-headers"]),
            authentication_token_webhook_cache_ttl=auth_ttls[
                "authentication-token-webhook-cache-ttl"
            ],
            authorization_webhook_cache_authorized_ttl=auth_ttls[
                "authorization-webhook-cache-authorized-ttl"
            ],
            authorization_webhook_cache_unauthorized_ttl=auth_ttls[
                "authorization-webhook-cache-unauthorized-ttl"
            ],
            authorization_always_allow_paths=_csv(opts["authorization-always-allow-paths"]) or (),
            authentication_skip_lookup=bool(opts["authentication-skip-lookup"]),
            authentication_tolerate_lookup_failure=bool(
                opts["authentication-tolerate-lookup-failure"]
            ),
            proxy_host=proxy_host,
            proxy_port=proxy_port,
            proxy_ca_cert=proxy_files["proxy-ca-cert"],
            proxy_cert=proxy_files["proxy-cert"],
            proxy_key=proxy_files["proxy-key"],
            resync_period=resync,
            api_group=group,
            audit_log_path=_writable_target("audit-log-path", opts["audit-log-path"]),
            access_log=bool(opts["access-log"]),
            min_request_timeout=float(min_timeout),
            workers=_workers(opts.get("workers", "1"), port),
            user_agent=opts["user-agent"] or "",
            exec_plugin_timeout=_duration("exec-plugin-timeout", opts["exec-plugin-timeout"]),
            exec_credential_cache_ttl=_duration(
                "exec-credential-cache-ttl", opts["exec-credential-cache-ttl"]
            ),
        )


def _port(flag: str, value: Any, *, allow_zero: bool) -> int:
    low = 0 if allow_zero else 1
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if not low <= port <= 65535:
        hint = " (0 picks a free port)" if allow_zero else ""
        raise ConfigError(flag, f"must be a port number {low}..65535{hint}, got {value!r}")
    return port


def _duration(flag: str, value: Any) -> float:
    try:
        seconds = parse_duration(str(value))
    except ValueError as e:
        raise ConfigError(flag, str(e)) from None
    if seconds < 0:
        raise ConfigError(flag, "must not be negative")
    return seconds


def _workers(value: Any, port: int) -> int:
    workers = _positive_int("workers", value)
    if workers > 1 and port == 0:
        raise ConfigError("workers", "needs a fixed --secure-port (0 would differ per process)")
    return workers


def _positive_int(flag: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ConfigError(flag, f"must be a positive integer, got {value!r}")
    return number


def _check_proxy_config(path: Path) -> None:
    from clustergateway.auth.identity import ProxyConfig, ProxyConfigError

    try:
        ProxyConfig.load(path)
    except ProxyConfigError as e:
        raise ConfigError("cluster-gateway-proxy-config", str(e)) from None


class Options(usage.Options):
    """The command line (names follow the Go gateway and the generic apiserver)."""

    longdesc = (
        "Serves the cluster.core.oam.dev/v1alpha1 aggregated API (ClusterGateway, "
        "VirtualCluster) and proxies Kubernetes requests to the clusters it names."
    )

    optParameters: ClassVar[list[list[Any]]] = [
        ["secure-port", None, "9443", "HTTPS port (0 picks a free one)."],
        ["bind-address", None, "0.0.0.0", "IP address to listen on."],
        ["tls-cert-file", None, None, "Serving certificate (PEM chain)."],
        ["tls-private-key-file", None, None, "Key of --tls-cert-file (PEM)."],
        [
            "cert-dir",
            None,
            "apiserver.local.config/certificates",
            "Where a self-signed serving certificate is kept when no --tls-cert-file is given.",
        ],
        ["secret-namespace", None, "vela-system", "Namespace of the cluster Secrets on the hub."],
        ["kubeconfig", None, None, "Hub kubeconfig (in-cluster config when absent)."],
        [
            "secrets-dir",
            None,
            None,
            "Read cluster Secrets from this directory of manifests instead of a hub.",
        ],
        [
            "feature-gates",
            None,
            "",
            "HealthinessCheck, SecretCache, ClientIdentityPenetration, OCMClusterCache "
            "(A=true,B=false).",
        ],
        ["cluster-gateway-proxy-config", None, None, "Global identity-exchange rules (YAML)."],
        ["client-ca-file", None, None, "CA bundle that verifies client certificates."],
        ["requestheader-client-ca-file", None, None, "CA bundle of the front proxy (the hub)."],
        ["requestheader-allowed-names", None, None, "Allowed front-proxy CNs (comma-separated)."],
        ["requestheader-username-headers", None, None, "Header(s) carrying the user name."],
        ["requestheader-group-headers", None, None, "Header(s) carrying the groups."],
        ["requestheader-extra-headers-prefix", None, None, "Prefix(es) of user extra headers."],
        ["authentication-kubeconfig", None, None, "Kubeconfig for TokenReview."],
        ["authorization-kubeconfig", None, None, "Kubeconfig for SubjectAccessReview."],
        ["requestheader-uid-headers", None, None, "Header(s) carrying the user's UID."],
        [
            "authentication-token-webhook-cache-ttl",
            None,
            "10s",
            "How long TokenReview answers are cached.",
        ],
        [
            "authorization-webhook-cache-authorized-ttl",
            None,
            "10s",
            "How long allowed SubjectAccessReview answers are cached.",
        ],
        [
            "authorization-webhook-cache-unauthorized-ttl",
            None,
            "10s",
            "How long denied SubjectAccessReview answers are cached.",
        ],
        [
            "authorization-always-allow-paths",
            None,
            "/healthz,/readyz,/livez",
            "Paths allowed without asking the hub (a trailing * is a prefix).",
        ],
        ["proxy-host", None, None, "Konnectivity proxy host (ClusterProxy endpoints)."],
        ["proxy-port", None, "8090", "Konnectivity proxy port."],
        ["proxy-ca-cert", None, None, "CA of the konnectivity proxy."],
        ["proxy-cert", None, None, "Client certificate for the konnectivity proxy."],
        ["proxy-key", None, None, "Client key for the konnectivity proxy."],
        ["resync-period", None, "5m", "Full re-list of the hub Secrets (heals missed events)."],
        ["api-group", None, DEFAULT_GROUP, "The served API group."],
        ["workers", None, "1", "Processes serving --secure-port together (SO_REUSEPORT)."],
        ["audit-log-path", None, None, "Write one JSON audit line per request here (- = stdout)."],
        [
            "min-request-timeout",
            None,
            "1800",
            "Watches without timeoutSeconds last a random [this, 2*this) seconds.",
        ],
        ["user-agent", None, None, "User-Agent of the gateway's own hub requests."],
        [
            "exec-plugin-timeout",
            None,
            "30s",
            "Kill a Dynamic cluster's exec credential plugin after this long.",
        ],
        [
            "exec-credential-cache-ttl",
            None,
            "10s",
            "Reuse an exec credential without expirationTimestamp for this long.",
        ],
    ]
    optFlags: ClassVar[list[list[Any]]] = [
        [
            "standalone-debug-mode",
            None,
            "No caller authentication or authorization; needs a loopback --bind-address.",
        ],
        ["ocm-integration", None, "Take endpoint and CA from OCM ManagedClusters."],
        ["authorize-proxy-subpath", None, "Also authorize the proxied request at the hub."],
        [
            "authentication-skip-lookup",
            None,
            "Do not read kube-system/extension-apiserver-authentication (flags only).",
        ],
        [
            "authentication-tolerate-lookup-failure",
            None,
            "Start with the flags alone if that ConfigMap cannot be read.",
        ],
        ["access-log", None, "Log one line per request (no query values); off by default."],
    ]

    config: GatewayConfig

    def opt_virtual_clutser_with_control_plane(self, value: str) -> None:  # noqa: N802
        """Accepted for compatibility with the Go gateway (it has no effect there either)."""

    def postOptions(self) -> None:  # noqa: N802 - Twisted's name
        self.config = GatewayConfig.from_options(self)


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

    def __attrs_post_init__(self) -> None:
        MultiService.__init__(self)

    def stopService(self) -> Deferred[Any]:  # noqa: N802 - Twisted's name
        """Stop listening and the sources, then close what they used (pools, hub client)."""
        stopped = maybeDeferred(super().stopService)

        def close_all(_: object) -> Deferred[Any]:
            pending = []
            for close in self.closers:
                try:
                    pending.append(maybeDeferred(close))
                except Exception:
                    _log.failure("Shutting down {what} failed", what=close)
            return gatherResults(pending, consumeErrors=True)

        return stopped.addBoth(close_all)


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
        settings=ProxySettings(pools=PoolSettings(proxy_environment=egress)),
        credentials=credentials,
        identity_for=identity.identity_for,
    )
    proxy.metrics = metrics
    if config.authorize_proxy_subpath and auth is not None:
        proxy.authorize_target = auth.guard.authorize_proxy_target
        if metrics is not None:
            auth.guard.authorizer.on_target_review = metrics.access_review
    return proxy


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
    HubSecretSource(
        reactor,
        client,
        config.secret_namespace,
        registry,
        resync_period=config.resync_period,
        on_synced=on_synced,
    ).setServiceParent(feeds)
    if config.feature_gates.ocm_cluster_cache or config.ocm_integration:
        HubManagedClusterSource(
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
    feeds: list[Service] = []
    closers: list[Callable[[], Any]] = []
    feed_hub: Any = None
    own_registry = registry is None
    if registry is None:
        registry = SecretRegistry(gv.group, config.feature_gates)
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
    serving = _serving_cert(config)
    server_tls = ServerTLS(serving.chain_pem, serving.key_pem)
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
    for feed in feeds:
        feed.setServiceParent(service)
    listener.setServiceParent(service)
    return service


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
        return self_signed_cert(config.cert_dir, names)
    except CertificateError as e:
        raise ConfigError("cert-dir", str(e)) from None


def makeService(options: Options) -> GatewayService:  # noqa: N802 - twistd's name
    """twistd entry point: build the gateway on the global reactor."""
    from twisted.internet import reactor

    return build_service(reactor, options.config)


def _start_workers(config: GatewayConfig, args: Sequence[str]) -> None:
    """``--workers N``: the parent starts N-1 children; a child watches its parent."""
    from twisted.internet import reactor

    from clustergateway.server import workers

    parent = workers.parent_of_worker()
    if parent is not None:
        reactor.callWhenRunning(workers.watch_parent, reactor, parent)  # type: ignore[attr-defined]
        return
    if config.workers <= 1:
        return
    _serving_cert(config)  # generated once here, not raced by N processes (ConfigError exits)
    supervisor = workers.WorkerSupervisor(reactor, workers.child_argv(args), config.workers - 1)
    reactor.callWhenRunning(supervisor.start)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger("before", "shutdown", supervisor.stop)  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``cluster-gateway [options]``: the same as ``twistd -n clustergateway [options]``.

    Flags are checked first so that a bad one stops the start with one line.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    options = Options()
    try:
        options.parseOptions(args)
    except usage.UsageError as e:
        raise SystemExit(f"{PROG}: {e}") from None
    from twisted.scripts import twistd

    if "twisted.internet.reactor" not in sys.modules:
        from clustergateway.server.reactor import install

        install()  # epoll without a logging context per I/O event (server.reactor)
    _start_workers(options.config, args)
    # JSON lines off a terminal, text on one; credentials masked (observe.logs).
    logger = "--logger=clustergateway.observe.logs.twistd_observer"
    sys.argv = [PROG, "--nodaemon", "--pidfile=", logger, "clustergateway", *args]
    twistd.run()
    raise SystemExit(0)
