"""tap wiring of delegated auth: the flags, and a start that cannot delegate stops at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from clustergateway.auth.delegating import DelegatingGuard
from clustergateway.auth.service import TrustService
from clustergateway.config import GatewayConfig, Options
from clustergateway.tap import build_service


def parse(*args: str) -> GatewayConfig:
    options = Options()
    options.parseOptions(["--secrets-dir", "/", *args])
    return options.config


def test_auth_flag_defaults() -> None:
    """The apiserver's defaults: 10 s caches, the three health paths always allowed."""
    config = parse()
    assert config.authentication_token_webhook_cache_ttl == 10.0
    assert config.authorization_webhook_cache_authorized_ttl == 10.0
    assert config.authorization_webhook_cache_unauthorized_ttl == 10.0
    assert config.authorization_always_allow_paths == ("/healthz", "/readyz", "/livez")
    assert (
        not config.authentication_skip_lookup and not config.authentication_tolerate_lookup_failure
    )


def test_auth_flags_parsed() -> None:
    """Durations in Go syntax, lists comma-separated, switches."""
    config = parse(
        "--authentication-token-webhook-cache-ttl",
        "1m30s",
        "--authorization-webhook-cache-unauthorized-ttl",
        "0",
        "--authorization-always-allow-paths",
        "/healthz,/metrics",
        "--requestheader-uid-headers",
        "X-Remote-Uid",
        "--authentication-skip-lookup",
        "--authentication-tolerate-lookup-failure",
    )
    assert config.authentication_token_webhook_cache_ttl == 90.0
    assert config.authorization_webhook_cache_unauthorized_ttl == 0.0
    assert config.authorization_always_allow_paths == ("/healthz", "/metrics")
    assert config.requestheader_uid_headers == ("X-Remote-Uid",)
    assert config.authentication_skip_lookup and config.authentication_tolerate_lookup_failure


def test_bad_duration_names_the_flag() -> None:
    """A bad TTL stops the start with one line naming the flag."""
    with pytest.raises(SystemExit, match="--authentication-token-webhook-cache-ttl: invalid"):
        parse("--authentication-token-webhook-cache-ttl", "ten")


def test_no_hub_to_delegate_to_stops_the_start(tmp_path: Path, monkeypatch) -> None:
    """Not standalone, no kubeconfig, not in a pod: one line saying what to give."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    (tmp_path / "secrets").mkdir()
    config = GatewayConfig(secrets_dir=tmp_path / "secrets", cert_dir=tmp_path / "certs")
    with pytest.raises(SystemExit) as info:
        build_service(MemoryReactorClock(), config)
    assert str(info.value).startswith(
        "cluster-gateway: --authentication-kubeconfig: no hub to delegate caller"
    )
    assert "--standalone-debug-mode" in str(info.value)


def test_delegated_service_has_guard_and_trust(tmp_path: Path) -> None:
    """With a hub kubeconfig the gateway serves through the delegating guard and a trust
    service, and TLS asks for client certificates once trust is loaded."""
    kubeconfig = tmp_path / "hub.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: h, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: h, user: u}}]\ncurrent-context: c\n"
    )
    (tmp_path / "secrets").mkdir()
    service = build_service(
        MemoryReactorClock(),
        GatewayConfig(
            secrets_dir=tmp_path / "secrets",
            cert_dir=tmp_path / "certs",
            kubeconfig=kubeconfig,
            authorize_proxy_subpath=True,
        ),
    )
    assert isinstance(service.root.gate.guard, DelegatingGuard)
    assert any(isinstance(s, TrustService) for s in service)
    proxy = service.root.children[b"apis"].proxy
    assert proxy.authorize_target == service.root.gate.guard.authorize_proxy_target
    # The target reviews feed the escalation access-review histogram.
    assert service.root.gate.guard.authorizer.on_target_review == service.metrics.access_review
