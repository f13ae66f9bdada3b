"""The gateway's command line: flags, their validation, and the config value built from them.

*Complete and validate* (the sample-apiserver order): :class:`Options` parses
the flags of DESIGN.md and :meth:`GatewayConfig.from_options` checks every
value, so a bad one stops the start with one line naming the flag and the
reason (:class:`ConfigError`).  Nothing here builds a running object; that is
``tap.build_service``.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
from twisted.python import usage

from clustergateway.api.types import DEFAULT_GROUP, GroupVersion
from clustergateway.goflags import GoFlagError, rewrite
from clustergateway.registry.features import FeatureGateError, FeatureGates
from clustergateway.server.listen import (
    CertificateError,
    load_serving_cert,
)
from clustergateway.tlspolicy import TLSPolicy, parse_cipher_suites, parse_min_version

__all__ = ["ConfigError", "GatewayConfig", "Options", "PROG", "parse_duration"]

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
    #: Generic Kubernetes gates given in ``--feature-gates`` (``APIPriorityAndFairness=false``):
    #: accepted for the Go command lines, nothing to switch here; logged once at start.
    ignored_feature_gates: tuple[str, ...] = ()
    #: ``--tls-min-version`` and ``--tls-cipher-suites``.
    tls_policy: TLSPolicy = TLSPolicy()
    #: Seconds between looks at the serving certificate files (not a flag;
    #: rotated files are served from the next connection on).
    cert_reload_interval: float = 1.0
    #: klog's ``-v``: 4 and above turn on debug log lines.
    log_verbosity: int = 0
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
    proxy_dial_timeout: float = 10.0
    resync_period: float = 300.0
    api_group: str = DEFAULT_GROUP
    audit_log_path: str | None = None
    access_log: bool = False
    #: Long-running requests (watches, ``logs -f``) share HTTP/2 connections to a
    #: cluster that offers ``h2``; True: one HTTP/1.1 connection each, as before.
    upstream_http1_only: bool = False
    min_request_timeout: float = 1800.0
    user_agent: str = ""
    #: Processes serving the port (``server.workers``): this one and N-1 children.
    workers: int = 1
    #: Seconds an exec (``Dynamic``) credential plugin may run before it is killed.
    exec_plugin_timeout: float = 30.0
    #: After a reactor pass with work, poll without sleeping this long before
    #: blocking (``fence.reactor``): lower latency for some idle-time CPU; 0 = off.
    busy_poll: float = 100e-6
    #: The HTTP/2 listener's engine: ``auto`` (libnghttp2 when the installed build takes
    #: long header fields, else the pure-Python one, with a warning), ``native`` (refuse to
    #: start without a fit libnghttp2) or ``python`` (h2, hpack, hyperframe).
    h2_engine: str = "auto"
    #: Seconds an exec credential without ``expirationTimestamp`` is reused.
    exec_credential_cache_ttl: float = 10.0
    #: With ``ocm_integration``: clusters without an OCM ManagedCluster are not served.
    ocm_managed_clusters_only: bool = False
    #: Seconds between active health probes of every cluster; 0: no prober.
    cluster_health_probe_interval: float = 0.0
    #: Consecutive failed probes that make a cluster unhealthy.
    cluster_health_probe_failure_threshold: int = 3
    #: Seconds one probe may take (dial, TLS, answer).
    cluster_health_probe_timeout: float = 5.0
    #: Caps on proxied requests in flight (0: no cap), as kube-apiserver's flags:
    #: ordinary reads and writes through the whole gateway, then per cluster.
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    max_requests_inflight_per_cluster: int = 200
    max_long_running_requests_per_cluster: int = 5000
    #: Per-cluster timeouts (Secret annotations override them).
    cluster_connect_timeout: float = 10.0
    cluster_response_header_timeout: float = 75.0
    #: Consecutive dial/TLS/response-head failures that open a cluster's circuit (0: off).
    circuit_breaker_failure_threshold: int = 5
    circuit_breaker_cooldown: float = 1.0
    circuit_breaker_max_cooldown: float = 30.0
    #: On SIGTERM: keep serving (``/readyz`` failing) this long before closing the listener.
    shutdown_delay_duration: float = 0.0
    #: Then let exec/attach/port-forward sessions run at most this long.
    shutdown_grace_period: float = 25.0
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
            gates, ignored_gates = FeatureGates.parse_command_line(opts["feature-gates"] or "")
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
            ignored_feature_gates=ignored_gates,
            tls_policy=_tls_policy(opts),
            log_verbosity=_verbosity(opts.get("v", "0")),
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
            proxy_dial_timeout=_positive_duration("proxy-dial-timeout", opts["proxy-dial-timeout"]),
            resync_period=resync,
            api_group=group,
            audit_log_path=_writable_target("audit-log-path", opts["audit-log-path"]),
            access_log=bool(opts["access-log"]),
            upstream_http1_only=bool(opts.get("upstream-http1-only")),
            min_request_timeout=float(min_timeout),
            workers=_workers(opts.get("workers", "1"), port),
            user_agent=opts["user-agent"] or "",
            exec_plugin_timeout=_duration("exec-plugin-timeout", opts["exec-plugin-timeout"]),
            busy_poll=_busy_poll(opts.get("busy-poll", "100us")),
            h2_engine=_h2_engine(opts.get("h2-engine", "auto")),
            exec_credential_cache_ttl=_duration(
                "exec-credential-cache-ttl", opts["exec-credential-cache-ttl"]
            ),
            ocm_managed_clusters_only=_ocm_managed_only(opts),
            cluster_health_probe_interval=_duration(
                "cluster-health-probe-interval", opts.get("cluster-health-probe-interval", "0")
            ),
            cluster_health_probe_failure_threshold=_positive_int(
                "cluster-health-probe-failure-threshold",
                opts.get("cluster-health-probe-failure-threshold", "3"),
            ),
            cluster_health_probe_timeout=_positive_duration(
                "cluster-health-probe-timeout", opts.get("cluster-health-probe-timeout", "5s")
            ),
            **_isolation(opts),
        )


def _tls_policy(opts: Mapping[str, Any]) -> TLSPolicy:
    try:
        min_version = parse_min_version(opts.get("tls-min-version") or "VersionTLS12")
    except ValueError as e:
        raise ConfigError("tls-min-version", str(e)) from None
    try:
        ciphers = parse_cipher_suites(_csv(opts.get("tls-cipher-suites")) or ())
    except ValueError as e:
        raise ConfigError("tls-cipher-suites", str(e)) from None
    return TLSPolicy(min_version, ciphers)


def _verbosity(value: Any) -> int:
    try:
        level = int(value)
    except (TypeError, ValueError):
        level = -1
    if level < 0:
        raise ConfigError("v", f"must be a log verbosity 0 or more, got {value!r}")
    return level


def _isolation(opts: Mapping[str, Any]) -> dict[str, Any]:
    """Caps, per-cluster timeouts, the circuit breaker and the shutdown flags."""
    caps = {
        "max-requests-inflight": "400",
        "max-mutating-requests-inflight": "200",
        "max-requests-inflight-per-cluster": "200",
        "max-long-running-requests-per-cluster": "5000",
        "circuit-breaker-failure-threshold": "5",
    }
    values: dict[str, Any] = {
        flag.replace("-", "_"): _count(flag, opts.get(flag, default))
        for flag, default in caps.items()
    }
    durations = {
        "cluster-connect-timeout": "10s",
        "cluster-response-header-timeout": "75s",
        "circuit-breaker-cooldown": "1s",
        "circuit-breaker-max-cooldown": "30s",
    }
    for flag, default in durations.items():
        seconds = _duration(flag, opts.get(flag, default))
        if seconds <= 0:
            raise ConfigError(flag, "must be greater than 0")
        values[flag.replace("-", "_")] = seconds
    if values["circuit_breaker_max_cooldown"] < values["circuit_breaker_cooldown"]:
        raise ConfigError(
            "circuit-breaker-max-cooldown", "must not be below --circuit-breaker-cooldown"
        )
    for flag, default in (("shutdown-delay-duration", "0s"), ("shutdown-grace-period", "25s")):
        values[flag.replace("-", "_")] = _duration(flag, opts.get(flag, default))
    return values


def _count(flag: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise ConfigError(flag, f"must be a non-negative integer (0: no limit), got {value!r}")
    return number


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


def _ocm_managed_only(opts: Mapping[str, Any]) -> bool:
    only = bool(opts.get("ocm-managed-clusters-only"))
    if only and not opts.get("ocm-integration"):
        raise ConfigError("ocm-managed-clusters-only", "needs --ocm-integration")
    return only


def _positive_duration(flag: str, value: Any) -> float:
    seconds = _duration(flag, value)
    if seconds <= 0:
        raise ConfigError(flag, "must be greater than 0")
    return seconds


def _busy_poll(value: Any) -> float:
    seconds = _duration("busy-poll", value)
    if seconds > 0.01:
        raise ConfigError("busy-poll", "must be at most 10ms (it spins a CPU)")
    return seconds


H2_ENGINES = ("auto", "native", "python")


def _h2_engine(value: Any) -> str:
    if value not in H2_ENGINES:
        raise ConfigError("h2-engine", f"must be one of {', '.join(H2_ENGINES)}, got {value!r}")
    return str(value)


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
        [
            "tls-min-version",
            None,
            "VersionTLS12",
            "Lowest TLS version served (VersionTLS10..VersionTLS13, Go's names).",
        ],
        [
            "tls-cipher-suites",
            None,
            "",
            "TLS 1.2 cipher suites, Go's names, comma-separated (default: OpenSSL's).",
        ],
        ["v", "v", "0", "Log verbosity (klog's -v): 4 or more logs debug lines."],
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
        [
            "proxy-dial-timeout",
            None,
            "10s",
            "Give up a dial through the konnectivity proxy (channel included) after this long.",
        ],
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
            "busy-poll",
            None,
            "100us",
            "After work, poll this long without sleeping before blocking (0 = off).",
        ],
        [
            "h2-engine",
            None,
            "auto",
            "HTTP/2 listener engine: auto (libnghttp2 if fit, else python), native, python.",
        ],
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
        [
            "cluster-health-probe-interval",
            None,
            "0",
            "Probe every cluster's /healthz this often and record its health (0 = off).",
        ],
        [
            "cluster-health-probe-failure-threshold",
            None,
            "3",
            "Consecutive failed probes that make a cluster unhealthy.",
        ],
        ["cluster-health-probe-timeout", None, "5s", "How long one health probe may take."],
        [
            "max-requests-inflight",
            None,
            "400",
            "Non-mutating proxied requests in flight through the gateway, watches and "
            "upgrades aside (0 = no limit).",
        ],
        [
            "max-mutating-requests-inflight",
            None,
            "200",
            "Mutating proxied requests in flight through the gateway (0 = no limit).",
        ],
        [
            "max-requests-inflight-per-cluster",
            None,
            "200",
            "Ordinary proxied requests in flight to one cluster (0 = no limit; "
            "annotation cluster.core.oam.dev/max-requests-inflight).",
        ],
        [
            "max-long-running-requests-per-cluster",
            None,
            "5000",
            "Watches, followed logs and upgrades open to one cluster (0 = no limit; "
            "annotation cluster.core.oam.dev/max-long-running-requests-inflight).",
        ],
        [
            "cluster-connect-timeout",
            None,
            "10s",
            "Connecting to a cluster (and its egress proxy) may take this long "
            "(annotation cluster.core.oam.dev/connect-timeout).",
        ],
        [
            "cluster-response-header-timeout",
            None,
            "75s",
            "Wait this long for a cluster's response head, watches and upgrades aside "
            "(annotation cluster.core.oam.dev/response-header-timeout).",
        ],
        [
            "circuit-breaker-failure-threshold",
            None,
            "5",
            "Consecutive dial/TLS/response-head failures that open a cluster's circuit "
            "(0 = never).",
        ],
        ["circuit-breaker-cooldown", None, "1s", "How long a circuit first stays open."],
        [
            "circuit-breaker-max-cooldown",
            None,
            "30s",
            "Cap of the open time, doubled after each failed trial.",
        ],
        [
            "shutdown-delay-duration",
            None,
            "0s",
            "On SIGTERM, keep serving this long with /readyz failing before closing the port.",
        ],
        [
            "shutdown-grace-period",
            None,
            "25s",
            "Then let exec/attach/port-forward sessions run this long before closing them.",
        ],
    ]
    optFlags: ClassVar[list[list[Any]]] = [
        [
            "standalone-debug-mode",
            None,
            "No caller authentication or authorization; needs a loopback --bind-address.",
        ],
        ["ocm-integration", None, "Take endpoint and CA from OCM ManagedClusters."],
        [
            "ocm-managed-clusters-only",
            None,
            "With --ocm-integration, serve only clusters that have an OCM ManagedCluster.",
        ],
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
        [
            "virtual-clutser-with-control-plane",
            None,
            "Accepted for the Go gateway's command lines (no effect there either).",
        ],
        [
            "upstream-http1-only",
            None,
            "Give every watch and followed log its own HTTP/1.1 connection to the cluster "
            "(default: they share HTTP/2 connections when the cluster offers h2).",
        ],
    ]

    config: GatewayConfig
    #: The flags as given: ``--workers`` starts its other processes with them.
    args: list[str]

    def parseOptions(self, options: Sequence[str] | None = None) -> None:  # noqa: N802
        """Parse a command line written for the Go gateway (:mod:`clustergateway.goflags`)."""
        args = sys.argv[1:] if options is None else list(options)
        self.args = list(args)
        booleans = {flag[0] for flag in self.optFlags} | {"help", "version"}
        try:
            args = rewrite(args, booleans)
        except GoFlagError as e:
            if e.flag is None:
                raise usage.UsageError(e.reason) from None
            raise ConfigError(e.flag, e.reason) from None
        super().parseOptions(args)  # type: ignore[no-untyped-call]

    def postOptions(self) -> None:  # noqa: N802 - Twisted's name
        self.config = GatewayConfig.from_options(self)
