"""The command line: every flag parsed and validated with one line; the service wiring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from clustergateway.certs import issue_cert, make_ca
from clustergateway.config import ConfigError, GatewayConfig, Options, parse_duration
from clustergateway.registry.store import SecretRegistry
from clustergateway.tap import build_service

BIN = Path(sys.executable).parent


def parse(*args: str) -> GatewayConfig:
    options = Options()
    options.parseOptions(list(args))
    return options.config


def error(*args: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(*args)
    return str(info.value)


def test_defaults() -> None:
    """Defaults follow the Go gateway (9443, vela-system, cert dir, Beta gates on)."""
    config = parse("--standalone-debug-mode", "--bind-address", "127.0.0.1")
    assert config.secure_port == 9443
    assert config.secret_namespace == "vela-system"
    assert config.cert_dir == Path("apiserver.local.config/certificates")
    assert config.api_group == "cluster.core.oam.dev"
    assert config.feature_gates.secret_cache and not config.feature_gates.healthiness_check
    assert config.resync_period == 300.0
    assert config.busy_poll == pytest.approx(100e-6)
    assert config.proxy_port == 8090
    assert not config.access_log


def test_every_flag_parses(tmp_path: Path) -> None:
    """All flags of DESIGN.md "Command line" are accepted and land in the config."""
    ca = make_ca("ca")
    pair = issue_cert(ca, "gw", server=True)
    files = {}
    for name, data in {
        "crt": pair.cert_pem,
        "key": pair.key_pem,
        "ca": ca.cert_pem,
        "kubeconfig": b"apiVersion: v1\n",
        "proxy.yaml": b"apiVersion: cluster.core.oam.dev/v1alpha1\nkind: X\n",
    }.items():
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    config = parse(
        "--secure-port=8443",
        "--bind-address=::1",
        f"--tls-cert-file={files['crt']}",
        f"--tls-private-key-file={files['key']}",
        f"--cert-dir={tmp_path}",
        "--secret-namespace=creds",
        f"--kubeconfig={files['kubeconfig']}",
        f"--secrets-dir={tmp_path}",
        "--standalone-debug-mode",
        "--feature-gates=HealthinessCheck=true,SecretCache=false,",
        "--ocm-integration",
        "--authorize-proxy-subpath",
        f"--cluster-gateway-proxy-config={files['proxy.yaml']}",
        f"--client-ca-file={files['ca']}",
        f"--requestheader-client-ca-file={files['ca']}",
        "--requestheader-allowed-names=front-proxy-client,aggregator",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--authentication-kubeconfig={files['kubeconfig']}",
        f"--authorization-kubeconfig={files['kubeconfig']}",
        "--proxy-host=konnectivity",
        "--proxy-port=8091",
        f"--proxy-ca-cert={files['ca']}",
        f"--proxy-cert={files['crt']}",
        f"--proxy-key={files['key']}",
        "--resync-period=1m30s",
        "--api-group=cluster.example.io",
        "--audit-log-path=-",
        "--access-log",
        "--min-request-timeout=60",
        "--user-agent=gw/1",
        "--virtual-clutser-with-control-plane=true",
        "--busy-poll=0",
        "--h2-engine=python",
        "--upstream-http1-only",
        "--ocm-managed-clusters-only",
        "--cluster-health-probe-interval=15s",
        "--cluster-health-probe-failure-threshold=5",
        "--cluster-health-probe-timeout=2s",
    )
    assert config.secure_port == 8443
    assert config.bind_address == "::1"
    assert config.feature_gates.healthiness_check and not config.feature_gates.secret_cache
    assert config.requestheader_allowed_names == ("front-proxy-client", "aggregator")
    assert config.proxy_host == "konnectivity" and config.proxy_port == 8091
    assert config.resync_period == 90.0
    assert config.group_version.api_version == "cluster.example.io/v1alpha1"
    assert config.access_log and config.audit_log_path == "-"
    assert config.min_request_timeout == 60.0
    assert config.busy_poll == 0.0
    assert config.h2_engine == "python"
    assert config.upstream_http1_only
    assert config.ocm_integration and config.ocm_managed_clusters_only
    assert config.cluster_health_probe_interval == 15.0
    assert config.cluster_health_probe_failure_threshold == 5
    assert config.cluster_health_probe_timeout == 2.0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--secure-port", "x"), "--secure-port: must be a port number 0..65535"),
        (("--secure-port", "70000"), "--secure-port: must be a port number"),
        (("--bind-address", "localhost"), "--bind-address: must be an IP address"),
        (("--standalone-debug-mode",), "--standalone-debug-mode: serves without authentication"),
        (
            ("--standalone-debug-mode", "--bind-address", "10.0.0.1"),
            "--standalone-debug-mode:",
        ),
        (("--tls-cert-file", "/nonexistent"), "--tls-cert-file: cannot read /nonexistent"),
        (("--secret-namespace", "Bad_NS"), "--secret-namespace: must be a namespace name"),
        (("--secrets-dir", "/nonexistent"), "--secrets-dir: /nonexistent is not a directory"),
        (("--feature-gates", "Nope=true"), "--feature-gates: unrecognized feature gate: Nope"),
        (("--feature-gates", "HealthinessCheck=maybe"), "--feature-gates: invalid value"),
        (("--kubeconfig", "/nonexistent"), "--kubeconfig: cannot read /nonexistent"),
        (("--proxy-host", "k"), "--proxy-ca-cert: must be specified with --proxy-host"),
        (("--proxy-port", "0", "--proxy-host", "k"), "--proxy-port: must be a port number 1.."),
        (("--proxy-dial-timeout", "0"), "--proxy-dial-timeout: must be greater than 0"),
        (("--resync-period", "soon"), "--resync-period: invalid duration"),
        (("--resync-period", "0"), "--resync-period: must be greater than 0"),
        (("--api-group", "nodots"), "--api-group: must be a DNS subdomain"),
        (("--audit-log-path", "/nonexistent/a.log"), "--audit-log-path: directory"),
        (("--min-request-timeout", "0"), "--min-request-timeout: must be a positive integer"),
        (("--client-ca-file", "/etc/hostname"), "--client-ca-file: /etc/hostname holds no PEM"),
        (("--busy-poll", "soon"), "--busy-poll: invalid duration"),
        (("--busy-poll", "1s"), "--busy-poll: must be at most 10ms"),
        (("--h2-engine", "go"), "--h2-engine: must be one of auto, native, python, got 'go'"),
        (("--ocm-managed-clusters-only",), "--ocm-managed-clusters-only: needs --ocm-integ"),
        (("--cluster-health-probe-interval", "often"), "--cluster-health-probe-interval: inv"),
        (
            ("--cluster-health-probe-failure-threshold", "0"),
            "--cluster-health-probe-failure-threshold: must be a positive integer",
        ),
        (("--cluster-health-probe-timeout", "0"), "--cluster-health-probe-timeout: must be gr"),
        (("--tls-min-version", "TLS12"), "--tls-min-version: unknown TLS version 'TLS12'"),
        (("--tls-cipher-suites", "RC4-SHA"), "--tls-cipher-suites: unknown cipher suite"),
        (("-v", "loud"), "--v: must be a log verbosity 0 or more"),
        (("--ocm-integration=maybe",), "--ocm-integration: invalid boolean 'maybe'"),
        (("--etcd-servers=http://e:2379",), "--etcd-servers: a flag of the Go gateway's generic"),
        (("--feature-gates=Nope=true",), "--feature-gates: unrecognized feature gate: Nope"),
    ],
)
def test_bad_flags_one_line(args: tuple[str, ...], expected: str) -> None:
    """Each bad value stops the start with one line naming the flag and the reason."""
    message = error(*args)
    assert message.startswith(f"cluster-gateway: {expected}")
    assert "\n" not in message


def test_go_command_line_forms() -> None:
    """The Go binary's spellings mean what they mean there: the leading ``apiserver``,
    ``--x=true|false`` booleans, generic gates set aside, klog's ``-v``, TLS settings."""
    config = parse(
        "apiserver",
        "--standalone-debug-mode=true",
        "--bind-address=127.0.0.1",
        "--ocm-integration=false",
        "--access-log=True",
        "--feature-gates=APIPriorityAndFairness=false,HealthinessCheck=true,",
        "-v",
        "4",
        "--tls-min-version=VersionTLS13",
        "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        "--virtual-clutser-with-control-plane=false",
    )
    assert config.standalone and config.access_log and not config.ocm_integration
    assert config.feature_gates.healthiness_check
    assert config.ignored_feature_gates == ("APIPriorityAndFairness=false",)
    assert config.log_verbosity == 4
    assert config.tls_policy.min_version == "VersionTLS13"
    assert config.tls_policy.openssl_ciphers == ("ECDHE-ECDSA-AES128-GCM-SHA256",)
    assert config.authorization_always_allow_paths == ("/healthz", "/readyz", "/livez", "/metrics")


def test_positional_other_than_apiserver_is_a_usage_error() -> None:
    """Only a leading ``apiserver`` is taken; another positional argument is refused."""
    from twisted.python.usage import UsageError

    with pytest.raises(UsageError, match="unexpected argument 'serve'"):
        parse("serve", "--standalone-debug-mode", "--bind-address=127.0.0.1")


def test_mismatched_tls_files(tmp_path: Path) -> None:
    """A certificate with another certificate's key, or one file of the pair, is refused."""
    ca = make_ca("ca")
    one, two = issue_cert(ca, "a", server=True), issue_cert(ca, "b", server=True)
    (tmp_path / "a.crt").write_bytes(one.cert_pem)
    (tmp_path / "b.key").write_bytes(two.key_pem)
    message = error(
        f"--tls-cert-file={tmp_path / 'a.crt'}", f"--tls-private-key-file={tmp_path / 'b.key'}"
    )
    assert message.startswith("cluster-gateway: --tls-cert-file:")
    assert "does not match" in message
    alone = error(f"--tls-cert-file={tmp_path / 'a.crt'}")
    assert alone.startswith("cluster-gateway: --tls-private-key-file:")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("250ms", 0.25)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Go duration syntax."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "1d", "-1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_console_script_one_line() -> None:
    """``cluster-gateway --secure-port x`` prints exactly one line and exits non-zero."""
    result = subprocess.run(
        [str(BIN / "cluster-gateway"), "--secure-port", "x"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "cluster-gateway: --secure-port: must be a port number 0..65535 (0 picks a free port), "
        "got 'x'"
    ]
    unknown = subprocess.run(
        [str(BIN / "cluster-gateway"), "--nope"], capture_output=True, timeout=60
    )
    assert unknown.returncode != 0
    assert unknown.stderr.decode().splitlines() == ["cluster-gateway: option --nope not recognized"]


def test_twistd_lists_the_plugin_and_validates() -> None:
    """``twistd --help`` lists clustergateway; a bad flag under twistd is one line too."""
    listed = subprocess.run([str(BIN / "twistd"), "--help"], capture_output=True, timeout=60)
    assert b"clustergateway" in listed.stdout
    own = subprocess.run(
        [str(BIN / "twistd"), "-n", "clustergateway", "--help"], capture_output=True, timeout=60
    )
    assert own.returncode == 0
    assert own.stdout.startswith(b"Usage: twistd [options] clustergateway [options]")
    assert b"--secrets-dir=" in own.stdout and b"--standalone-debug-mode" in own.stdout
    bad = subprocess.run(
        [str(BIN / "twistd"), "-n", "clustergateway", "--standalone-debug-mode"],
        capture_output=True,
        timeout=60,
    )
    assert bad.returncode != 0
    assert bad.stderr.decode().splitlines() == [
        "cluster-gateway: --standalone-debug-mode: serves without authentication, so it needs "
        "a loopback --bind-address (e.g. 127.0.0.1), got 0.0.0.0"
    ]


def test_build_service_in_memory(tmp_path: Path) -> None:
    """build_service wires registry, tree, site and a TLS listener; nothing runs until started."""
    reactor = MemoryReactorClock()
    registry = SecretRegistry("cluster.core.oam.dev")
    config = GatewayConfig(
        secure_port=0, bind_address="127.0.0.1", standalone=True, cert_dir=tmp_path / "certs"
    )
    service = build_service(reactor, config, registry=registry, source=None, proxy=None)
    assert service.registry is registry
    assert (tmp_path / "certs" / "apiserver.crt").exists()
    assert reactor.tcpServers == []
    service.startService()
    assert reactor.tcpServers[0][0] == 0
    assert service.root.children[b"apis"] is not None
    service.stopService()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"apiserver.crt": "serving-cert"}, "apiserver.key does not exist: the certificate and"),
        (
            {"apiserver.crt": "serving-cert", "apiserver.key": "other-key"},
            "apiserver.key does not match the certificate in",
        ),
    ],
)
def test_unusable_cert_dir_pair_stops_the_start(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    """A half or mismatched pair in --cert-dir stops the start with one line naming the
    flag, the file and the reason, and nothing is generated over it."""
    ca = make_ca("ca")
    one, two = issue_cert(ca, "one", server=True), issue_cert(ca, "two", server=True)
    data = {"serving-cert": one.cert_pem, "other-key": two.key_pem}
    certs = tmp_path / "certs"
    certs.mkdir()
    for name, kind in files.items():
        (certs / name).write_bytes(data[kind])
    config = parse(
        "apiserver",
        f"--cert-dir={certs}",
        "--standalone-debug-mode=true",
        "--bind-address=127.0.0.1",
        f"--secrets-dir={tmp_path}",
    )
    with pytest.raises(ConfigError) as info:
        build_service(MemoryReactorClock(), config)
    message = str(info.value)
    assert message.startswith(f"cluster-gateway: --cert-dir: {certs}/") and expected in message
    assert "\n" not in message
    assert sorted(p.name for p in certs.iterdir()) == sorted(files)


def test_proxy_flags_build_the_konnectivity_dialer(tmp_path: Path) -> None:
    """--proxy-* make ClusterProxy clusters reachable: the proxy's pools get a dialer for
    host:port; without --proxy-host there is none (those clusters answer 503)."""
    from clustergateway.proxy.konnectivity import KonnectivityDialer
    from clustergateway.tap import build_konnectivity

    ca = make_ca("konnectivity-ca")
    client = issue_cert(ca, "gateway", client=True)
    paths = {}
    for name, data in {
        "ca.crt": ca.cert_pem,
        "c.crt": client.cert_pem,
        "c.key": client.key_pem,
    }.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    flags = (
        f"--proxy-ca-cert={paths['ca.crt']}",
        f"--proxy-cert={paths['c.crt']}",
        f"--proxy-key={paths['c.key']}",
    )
    reactor = MemoryReactorClock()
    config = parse(
        "--proxy-host=proxy.example", "--proxy-port=8091", "--proxy-dial-timeout=2500ms", *flags
    )
    dialer = build_konnectivity(reactor, config)
    assert isinstance(dialer, KonnectivityDialer)
    assert dialer.dial_timeout == dialer.connect_timeout == 2.5
    assert parse(*flags).proxy_dial_timeout == 10.0
    assert (dialer.host, dialer.port, dialer.display) == (
        "proxy.example",
        8091,
        "proxy.example:8091",
    )
    assert build_konnectivity(reactor, parse(*flags)) is None


def test_proxy_flags_with_unusable_material(tmp_path: Path) -> None:
    """A proxy certificate that is not PEM, or a key that does not match it, stops the
    start with one line naming the flag (never the material)."""
    from clustergateway.tap import build_konnectivity

    ca = make_ca("konnectivity-ca")
    client = issue_cert(ca, "gateway", client=True)
    other = issue_cert(ca, "other", client=True)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "bad.crt").write_bytes(b"not a certificate")
    (tmp_path / "c.crt").write_bytes(client.cert_pem)
    (tmp_path / "other.key").write_bytes(other.key_pem)
    for cert, key, expected in (
        ("bad.crt", "other.key", "cluster-gateway: --proxy-cert is not a valid PEM certificate"),
        (
            "c.crt",
            "other.key",
            "cluster-gateway: --proxy-cert does not match its key (--proxy-key)",
        ),
    ):
        config = parse(
            "--proxy-host=k",
            f"--proxy-ca-cert={tmp_path / 'ca.crt'}",
            f"--proxy-cert={tmp_path / cert}",
            f"--proxy-key={tmp_path / key}",
        )
        with pytest.raises(SystemExit) as info:
            build_konnectivity(MemoryReactorClock(), config)
        assert str(info.value) == expected
        assert "PRIVATE" not in str(info.value)
