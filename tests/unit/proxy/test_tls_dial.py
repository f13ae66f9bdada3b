"""Reaching clusters: TLS trust, client certificates, dial errors and time limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock

from clustergateway.proxy.credentials import ResolvedCredential
from clustergateway.proxy.dial import DialError, DialTimeout, UpstreamEndpoint, describe_failure
from clustergateway.proxy.paths import UpstreamTarget
from clustergateway.proxy.tls import InsecureClientTLS, TLSConfigError, client_tls_creator
from clustergateway.registry.model import CredentialSpec, EndpointSpec
from tests.unit.proxy.conftest import (
    FakeRegistry,
    Pki,
    make_cluster,
    start_harness,
    stop_harness,
)
from tests.unit.proxy.upstream import Upstream


def reactor() -> Any:
    from twisted.internet import reactor as r

    return r


async def status_of(registry: FakeRegistry, path: str = "/echo/x") -> tuple[int, dict[str, Any]]:
    h = start_harness(reactor(), registry)
    try:
        response, body = await h.request(b"GET", "c1", path)
        return response.code, json.loads(body)
    finally:
        await stop_harness(h)


@pytest_twisted.ensureDeferred
async def test_wrong_ca_is_502_naming_the_cause(upstream: Upstream, pki: Pki) -> None:
    """A server certificate the cluster's CA did not sign: 502 naming cluster and cause."""
    registry = FakeRegistry()
    registry.put(make_cluster(upstream, ca=pki.other_ca.cert_pem))
    code, status = await status_of(registry)
    assert code == 502
    assert status["kind"] == "Status" and status["reason"] == "BadGateway"
    assert "c1" in status["message"]
    assert "certificate verify failed" in status["message"]


@pytest_twisted.ensureDeferred
async def test_server_name_is_verified(upstream: Upstream, pki: Pki) -> None:
    """``tls_server_name`` is the name checked: a name the certificate lacks fails, one
    it carries works even though the address is an IP."""
    registry = FakeRegistry()
    registry.put(make_cluster(upstream, pki, tls_server_name="other.example"))
    code, status = await status_of(registry)
    assert code == 502
    assert "not valid for the expected name" in status["message"]
    registry.put(make_cluster(upstream, pki, tls_server_name="localhost"))
    code, _ = await status_of(registry)
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_insecure_skips_verification(upstream: Upstream) -> None:
    """``insecure`` clusters are reached without verifying the certificate."""
    registry = FakeRegistry()
    registry.put(make_cluster(upstream, insecure=True))
    code, _ = await status_of(registry)
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_client_certificate_presented(upstream: Upstream, pki: Pki) -> None:
    """An X509Certificate credential is presented in the handshake and no token is sent."""
    registry = FakeRegistry()
    credential = CredentialSpec(
        "X509Certificate", certificate=pki.client.cert_pem, private_key=pki.client.key_pem
    )
    registry.put(make_cluster(upstream, pki, credential=credential))
    code, record = await status_of(registry)
    assert code == 200
    assert record["peer_cn"] == "gateway-client"
    assert not [v for n, v in record["headers"] if n.lower() == "authorization"]


@pytest_twisted.ensureDeferred
async def test_refused_is_502(upstream: Upstream, pki: Pki) -> None:
    """Nothing listening: 502 naming the cluster and 'connection refused'."""
    port = upstream.port
    await upstream.stop()
    registry = FakeRegistry()
    registry.put(make_cluster(f"https://127.0.0.1:{port}", pki))
    code, status = await status_of(registry)
    assert code == 502
    assert status["message"] == f"cluster c1: dial tcp 127.0.0.1:{port}: connection refused"


@pytest_twisted.ensureDeferred
async def test_tls_handshake_timeout_is_504(pki: Pki) -> None:
    """A server that accepts but never speaks TLS: 504 after the handshake limit."""
    from clustergateway.proxy.pools import PoolSettings
    from clustergateway.proxy.resource import ProxySettings

    silent = reactor().listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    port = silent.getHost().port
    registry = FakeRegistry()
    registry.put(make_cluster(f"https://127.0.0.1:{port}", pki))
    h = start_harness(
        reactor(),
        registry,
        ProxySettings(pools=PoolSettings(tls_handshake_timeout=0.3)),
    )
    try:
        response, body = await h.request(b"GET", "c1", "/x")
        status = json.loads(body)
        assert response.code == 504
        assert status["reason"] == "Timeout"
        assert "TLS handshake" in status["message"] and "c1" in status["message"]
    finally:
        await stop_harness(h)
        await silent.stopListening()


@pytest.mark.parametrize(
    ("credential", "message"),
    [
        (ResolvedCredential(client_certificate=b"junk", client_key=b"junk"), "tls.crt"),
    ],
)
def test_bad_client_material(credential: ResolvedCredential, message: str, pki: Pki) -> None:
    """Unusable client material is a configuration error naming the part (never its bytes)."""
    target = UpstreamTarget.from_endpoint(EndpointSpec(address="https://127.0.0.1:1"))
    with pytest.raises(TLSConfigError, match=message):
        client_tls_creator(target, EndpointSpec(address="https://127.0.0.1:1"), credential)


def test_mismatched_key_and_bad_ca(pki: Pki) -> None:
    """A key that does not belong to the certificate, and a CA that is not PEM, are refused."""
    endpoint = EndpointSpec(address="https://127.0.0.1:1", ca_bundle=pki.ca.cert_pem)
    target = UpstreamTarget.from_endpoint(endpoint)
    wrong = ResolvedCredential(
        client_certificate=pki.client.cert_pem, client_key=pki.serving.key_pem
    )
    with pytest.raises(TLSConfigError, match="does not match"):
        client_tls_creator(target, endpoint, wrong)
    bad = EndpointSpec(address="https://127.0.0.1:1", ca_bundle=b"not a pem")
    with pytest.raises(TLSConfigError, match="CA bundle"):
        client_tls_creator(target, bad, ResolvedCredential())


def test_insecure_creator_sends_sni_for_names_only(pki: Pki) -> None:
    """Insecure TLS still sends SNI for a DNS name (not for an IP)."""
    by_ip = client_tls_creator(
        UpstreamTarget.from_endpoint(EndpointSpec(address="https://127.0.0.1:1")),
        EndpointSpec(address="https://127.0.0.1:1", insecure=True),
        ResolvedCredential(),
    )
    assert isinstance(by_ip, InsecureClientTLS) and by_ip.server_name is None
    by_name = client_tls_creator(
        UpstreamTarget.from_endpoint(
            EndpointSpec(address="https://127.0.0.1:1", tls_server_name="kube.local")
        ),
        EndpointSpec(address="https://127.0.0.1:1", insecure=True),
        ResolvedCredential(),
    )
    assert isinstance(by_name, InsecureClientTLS) and by_name.server_name == b"kube.local"


class PendingEndpoint:
    """A stream endpoint whose connect never completes unless told to."""

    def __init__(self) -> None:
        self.attempts: list[Deferred[Any]] = []
        self.cancelled = 0

    def connect(self, factory: Any) -> Deferred[Any]:
        def cancel(_: Deferred[Any]) -> None:
            self.cancelled += 1

        d: Deferred[Any] = Deferred(cancel)
        self.attempts.append(d)
        return d


def test_connect_timeout() -> None:
    """A connect that takes longer than the limit fails as a DialTimeout and is cancelled."""
    clock = Clock()
    stream = PendingEndpoint()
    endpoint = UpstreamEndpoint(clock, stream, "10.0.0.1:6443", None, 5.0, 5.0)
    d = endpoint.connect(Factory.forProtocol(Protocol))
    failures: list[Any] = []
    d.addErrback(failures.append)
    clock.advance(4.9)
    assert not failures
    clock.advance(0.2)
    assert failures and failures[0].check(DialTimeout)
    assert str(failures[0].value) == "connecting to 10.0.0.1:6443 timed out after 5s"
    assert stream.cancelled == 1
    assert not clock.getDelayedCalls()


def test_connect_errors_and_cancel() -> None:
    """Connection errors become DialError; cancelling the attempt cancels the connect."""
    clock = Clock()
    stream = PendingEndpoint()
    endpoint = UpstreamEndpoint(clock, stream, "h:1", None, 5.0, 5.0)
    d = endpoint.connect(Factory.forProtocol(Protocol))
    failures: list[Any] = []
    d.addErrback(failures.append)
    stream.attempts[0].errback(error.ConnectionRefusedError())
    assert failures[0].check(DialError) and not failures[0].check(DialTimeout)
    assert str(failures[0].value) == "dial tcp h:1: connection refused"
    assert not clock.getDelayedCalls()

    d = endpoint.connect(Factory.forProtocol(Protocol))
    d.addErrback(lambda _: None)
    d.cancel()
    assert stream.cancelled == 1
    assert not clock.getDelayedCalls()


def test_describe_failure() -> None:
    """Failure texts are short and carry no object reprs."""
    from OpenSSL import SSL

    assert (
        describe_failure(SSL.Error([("SSL routines", "", "certificate verify failed")]))
        == "certificate verify failed"
    )
    assert describe_failure(error.DNSLookupError("x")) == "name resolution failed"
    assert describe_failure(error.ConnectionLost()) == "the server closed the connection"
