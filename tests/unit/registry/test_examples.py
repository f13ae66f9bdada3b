"""The sample Secrets in examples/secrets/ are valid clusters, one per way of access."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock

from clustergateway.registry.secrets_dir import DirectorySecretSource
from clustergateway.registry.store import SecretRegistry

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "secrets"


def test_examples_convert() -> None:
    """Every sample converts without error through the directory source, and together
    they cover every credential type and both endpoint types."""
    registry = SecretRegistry("cluster.core.oam.dev")
    source = DirectorySecretSource(Clock(), EXAMPLES, registry)
    source.startService()
    source.stopService()
    entries = registry.entries()
    assert len(entries) == len(list(EXAMPLES.glob("*.yaml")))
    assert [e.error for e in entries if e.error] == []
    gateways = registry.gateways()
    assert {g.credential.type for g in gateways} == {
        "ServiceAccountToken",
        "X509Certificate",
        "Dynamic",
    }
    assert {g.endpoint.type for g in gateways} == {"Const", "ClusterProxy"}
    behind = registry.get("example-behind-proxy").endpoint
    assert behind.proxy_url == "socks5://egress.example:1080"
    assert behind.tls_server_name == "cluster.example" and behind.insecure is False
    assert registry.virtual_cluster("example-x509").alias == "Production (client certificate)"
