"""``--tls-min-version`` and ``--tls-cipher-suites``: Go's names, OpenSSL's settings.

The generic Kubernetes apiserver takes Go's ``crypto/tls`` spellings
(``VersionTLS12``, ``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256``); the listener
here is OpenSSL.  :func:`parse_min_version` and :func:`parse_cipher_suites`
translate them (pure functions, a bad name raising ``ValueError`` that names
it) into a :class:`TLSPolicy` that :func:`clustergateway.auth.tlstrust.server_options`
applies.  As in Go, the suites govern TLS 1.2 and below; TLS 1.3's suites are
always on (Go ignores them in the list, so they are accepted and change nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from OpenSSL import SSL
from twisted.internet.ssl import AcceptableCiphers, TLSVersion

__all__ = ["CIPHER_SUITES", "TLSPolicy", "parse_cipher_suites", "parse_min_version"]

#: Go's ``--tls-min-version`` values → Twisted's TLS versions.
_VERSIONS: Mapping[str, Any] = {
    "VersionTLS10": TLSVersion.TLSv1_0,
    "VersionTLS11": TLSVersion.TLSv1_1,
    "VersionTLS12": TLSVersion.TLSv1_2,
    "VersionTLS13": TLSVersion.TLSv1_3,
}

#: Go's cipher suite names (``k8s.io/component-base/cli/flag``) → OpenSSL's;
#: None for TLS 1.3 suites, which are not configurable in Go either.
CIPHER_SUITES: Mapping[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
}


@attrs.frozen
class TLSPolicy:
    """The lowest TLS version and the TLS ≤1.2 cipher suites (None: OpenSSL's defaults)."""

    min_version: str = "VersionTLS12"
    #: OpenSSL cipher names for TLS 1.2 and below; None keeps Twisted's defaults.
    openssl_ciphers: tuple[str, ...] | None = None

    def certificate_options(self) -> dict[str, Any]:
        """Keyword arguments of ``CertificateOptions`` that apply this policy."""
        version = _VERSIONS[self.min_version]
        if self.openssl_ciphers == ():
            # Only TLS 1.3 suites named: Go then has no suite for TLS 1.2 and below.
            version = TLSVersion.TLSv1_3
        options: dict[str, Any] = {}
        if version < TLSVersion.TLSv1_2:
            options["insecurelyLowerMinimumTo"] = version
        else:
            options["raiseMinimumTo"] = version
        if self.openssl_ciphers:
            # OpenSSL keeps the TLS 1.3 suites on beside these, as Go does.
            options["acceptableCiphers"] = AcceptableCiphers.fromOpenSSLCipherString(
                ":".join(self.openssl_ciphers)
            )
        return options


def parse_min_version(text: str) -> str:
    """A Go TLS version name (``VersionTLS12``); ``ValueError`` naming the choices."""
    if text not in _VERSIONS:
        raise ValueError(f"unknown TLS version {text!r} (want one of {', '.join(_VERSIONS)})")
    return text


def parse_cipher_suites(names: Iterable[str]) -> tuple[str, ...] | None:
    """Go cipher suite names → OpenSSL names; None when the list is empty (defaults).

    Raises ``ValueError`` naming the first unknown suite, or one this
    OpenSSL does not offer (RC4, and 3DES at its default security level).  A
    list of TLS 1.3 suites only leaves TLS 1.2 with no suite (``()``), as in Go.
    """
    names = [name for name in names if name]
    if not names:
        return None
    openssl: list[str] = []
    for name in names:
        if name not in CIPHER_SUITES:
            raise ValueError(
                f"unknown cipher suite {name!r} (Go's names, e.g. "
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
            )
        mapped = CIPHER_SUITES[name]
        if mapped is not None and mapped not in openssl:
            if not _offered(mapped):
                raise ValueError(f"cipher suite {name} is not available in this OpenSSL")
            openssl.append(mapped)
    return tuple(openssl)


def _offered(openssl_name: str) -> bool:
    context = SSL.Context(SSL.TLS_METHOD)
    try:
        context.set_cipher_list(openssl_name.encode("ascii"))
    except SSL.Error:
        return False
    return True
