"""``--tls-min-version`` / ``--tls-cipher-suites``: Go's names to OpenSSL settings."""

from __future__ import annotations

import pytest
from twisted.internet.ssl import TLSVersion

from clustergateway.tlspolicy import TLSPolicy, parse_cipher_suites, parse_min_version


def test_versions() -> None:
    """Go's four names; anything else names the choices."""
    for name in ("VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13"):
        assert parse_min_version(name) == name
    with pytest.raises(ValueError, match="unknown TLS version 'TLS12'.*VersionTLS13"):
        parse_min_version("TLS12")


def test_cipher_suites_mapped() -> None:
    """Go names map to OpenSSL names (duplicates folded); TLS 1.3 names change nothing;
    an empty list keeps the defaults."""
    assert parse_cipher_suites(
        [
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_AES_128_GCM_SHA256",
        ]
    ) == ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305")
    assert parse_cipher_suites([]) is None
    assert parse_cipher_suites(["TLS_AES_256_GCM_SHA384"]) == ()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ECDHE-RSA-AES128-GCM-SHA256", "unknown cipher suite 'ECDHE-RSA-AES128-GCM-SHA256'"),
        ("TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_RC4_128_SHA is not available"),
    ],
)
def test_cipher_suite_errors(name: str, message: str) -> None:
    """OpenSSL's own spelling is not Go's; a suite this OpenSSL lacks is named."""
    with pytest.raises(ValueError, match=message):
        parse_cipher_suites([name])


def test_certificate_options() -> None:
    """The policy becomes CertificateOptions arguments: raise to 1.2/1.3, lower only when
    asked, and a TLS 1.3-only suite list leaves TLS 1.2 out as Go does."""
    assert TLSPolicy().certificate_options() == {"raiseMinimumTo": TLSVersion.TLSv1_2}
    assert TLSPolicy("VersionTLS13").certificate_options() == {"raiseMinimumTo": TLSVersion.TLSv1_3}
    assert TLSPolicy("VersionTLS11").certificate_options() == {
        "insecurelyLowerMinimumTo": TLSVersion.TLSv1_1
    }
    assert TLSPolicy(openssl_ciphers=()).certificate_options() == {
        "raiseMinimumTo": TLSVersion.TLSv1_3
    }
    chosen = TLSPolicy(openssl_ciphers=("ECDHE-RSA-AES128-GCM-SHA256",)).certificate_options()
    assert "acceptableCiphers" in chosen
