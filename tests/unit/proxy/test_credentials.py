"""How a cluster's credential becomes what is sent."""

from __future__ import annotations

import pytest

from clustergateway.errors import ServiceUnavailable
from clustergateway.proxy.credentials import (
    ResolvedCredential,
    StaticCredentialProvider,
    resolve_static,
)
from clustergateway.registry.model import ClusterGateway, CredentialSpec, EndpointSpec


def cluster(credential: CredentialSpec | None) -> ClusterGateway:
    return ClusterGateway("c1", EndpointSpec(address="https://127.0.0.1:1"), credential)


def test_token_becomes_bearer() -> None:
    """A ServiceAccountToken is sent as ``Authorization: Bearer``; a pasted newline is trimmed."""
    resolved = resolve_static(cluster(CredentialSpec("ServiceAccountToken", token="abc\n")))
    assert resolved.authorization == b"Bearer abc"
    assert resolved.tls_identity() is None


def test_token_with_inner_line_break_refused() -> None:
    """A token that would split the header is refused with a 503 that does not quote it."""
    with pytest.raises(ServiceUnavailable) as info:
        resolve_static(cluster(CredentialSpec("ServiceAccountToken", token="s3cr3t\nx")))
    assert "s3cr3t" not in info.value.message


def test_certificate_becomes_client_cert() -> None:
    """An X509Certificate is presented in the TLS handshake, no header."""
    resolved = resolve_static(
        cluster(CredentialSpec("X509Certificate", certificate=b"C", private_key=b"K"))
    )
    assert resolved.authorization is None
    assert resolved.tls_identity() == (b"C", b"K")


def test_dynamic_is_a_clear_503() -> None:
    """Exec credentials are not supported yet: 503 saying so, through the provider's Deferred."""
    d = StaticCredentialProvider().credential_for(
        cluster(CredentialSpec("Dynamic", exec_config="{}"))
    )
    failure = []
    d.addErrback(failure.append)
    assert failure and failure[0].check(ServiceUnavailable)
    assert "exec credentials not yet supported" in failure[0].value.message
    assert failure[0].value.code == 503


def test_no_credential_and_unknown_type() -> None:
    """No credential sends none; an unknown type is a 503 naming the type."""
    assert resolve_static(cluster(None)) == ResolvedCredential()
    with pytest.raises(ServiceUnavailable, match="Kerberos"):
        resolve_static(cluster(CredentialSpec("Kerberos")))


def test_repr_hides_material() -> None:
    """Neither the token nor the key shows in a repr (logs, tracebacks)."""
    resolved = ResolvedCredential(b"Bearer secret-token", b"CERT", b"KEY-MATERIAL")
    assert "secret-token" not in repr(resolved)
    assert "KEY-MATERIAL" not in repr(resolved)


def test_a_rotated_token_is_used_at_once() -> None:
    """The provider remembers a cluster's resolved credential only while the Secret's
    credential is the same object; the registry's new object after a rotation wins."""
    provider = StaticCredentialProvider()
    old = cluster(CredentialSpec("ServiceAccountToken", token="old"))
    first = provider.credential_for(old).result
    assert provider.credential_for(old).result is first
    rotated = cluster(CredentialSpec("ServiceAccountToken", token="new"))
    assert provider.credential_for(rotated).result.authorization == b"Bearer new"
    broken = cluster(CredentialSpec("ServiceAccountToken", token="a\nb"))
    failure = provider.credential_for(broken)
    failures: list[object] = []
    failure.addErrback(failures.append)
    assert len(failures) == 1
    assert provider.credential_for(old).result.authorization == b"Bearer old"
