"""Fixtures for the proxy's own tests: a test upstream and a minimal gateway around
``ClusterProxy`` (the real gateway is exercised by ``tests/e2e/test_proxy_*``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool, PotentialDataLoss, ResponseDone
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from clustergateway.auth.user import UserInfo
from clustergateway.certs import KeyPair, issue_cert, make_ca
from clustergateway.errors import NotFound, StatusError
from clustergateway.proxy.resource import ClusterProxy, ProxySettings
from clustergateway.registry.model import (
    ClusterGateway,
    CredentialSpec,
    EndpointSpec,
    RegistryEntry,
    RegistryListener,
)
from tests.fixtures.proxy import RawClient
from tests.unit.proxy.upstream import Upstream

CALLER = UserInfo("alice", ("team-a", "system:authenticated"), "uid-1", {"scope": ["x"]})


@attrs.frozen
class Pki:
    ca: KeyPair
    serving: KeyPair
    other_ca: KeyPair
    client_ca: KeyPair
    client: KeyPair


@pytest.fixture(scope="session")
def pki() -> Pki:
    ca = make_ca("upstream-ca")
    client_ca = make_ca("upstream-client-ca")
    return Pki(
        ca=ca,
        serving=issue_cert(ca, "upstream", hosts=("127.0.0.1", "localhost"), server=True),
        other_ca=make_ca("someone-else"),
        client_ca=client_ca,
        client=issue_cert(client_ca, "gateway-client", client=True),
    )


@attrs.define
class FakeRegistry:
    """The ``ClusterRegistry`` surface the proxy uses, backed by a dict."""

    clusters: dict[str, ClusterGateway | StatusError] = attrs.field(factory=dict)
    listeners: list[RegistryListener] = attrs.field(factory=list)
    resource_version: int = 0
    synced: bool = True

    def get(self, name: str) -> ClusterGateway:
        value = self.clusters.get(name)
        if value is None:
            raise NotFound.for_object("clustergateways", "cluster.core.oam.dev", name)
        if isinstance(value, StatusError):
            raise value
        return value

    def put(self, cluster: ClusterGateway) -> None:
        event = "MODIFIED" if cluster.name in self.clusters else "ADDED"
        self.clusters[cluster.name] = cluster
        self.resource_version += 1
        entry = RegistryEntry(cluster.name, {}, cluster)
        for listener in list(self.listeners):
            listener(event, entry, self.resource_version)  # type: ignore[arg-type]

    def delete(self, name: str) -> None:
        old = self.clusters.pop(name)
        self.resource_version += 1
        entry = RegistryEntry(name, {}, old if isinstance(old, ClusterGateway) else None)
        for listener in list(self.listeners):
            listener("DELETED", entry, self.resource_version)

    def subscribe(self, listener: RegistryListener) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)


class ProxyRoot(Resource):
    """``/clusters/<name>/proxy<subpath>`` → ``ClusterProxy.render``."""

    isLeaf = True
    _route = re.compile(rb"^/clusters/([^/]+)/proxy(/.*)?$")

    def __init__(self, proxy: ClusterProxy, user: UserInfo) -> None:
        super().__init__()
        self.proxy = proxy
        self.user = user

    def render(self, request: Request) -> bytes | int:
        match = self._route.match(request.path)
        if match is None:
            request.setResponseCode(404)
            return b"no route"
        return self.proxy.render(request, match.group(1).decode(), match.group(2) or b"", self.user)


class _BigChannel(HTTPChannel):
    MAX_LENGTH = 1024 * 1024
    totalHeadersSize = 1024 * 1024


def _channel(site: Site) -> _GenericHTTPChannelProtocol:
    return _GenericHTTPChannelProtocol(_BigChannel())


class HarnessSite(Site):
    protocol = _channel  # type: ignore[assignment]

    def log(self, request: Any) -> None:
        pass


def make_cluster(
    upstream: Upstream | str,
    pki: Pki | None = None,
    *,
    name: str = "c1",
    token: str = "cluster-token",
    ca: bytes | None = None,
    insecure: bool = False,
    credential: CredentialSpec | None = None,
    tls_server_name: str | None = None,
) -> ClusterGateway:
    address = upstream if isinstance(upstream, str) else upstream.url
    if ca is None and pki is not None and not insecure:
        ca = pki.ca.cert_pem
    return ClusterGateway(
        name,
        EndpointSpec(
            address=address, ca_bundle=ca, insecure=insecure, tls_server_name=tls_server_name
        ),
        credential or CredentialSpec("ServiceAccountToken", token=token),
    )


@attrs.define
class Harness:
    """A gateway (plain HTTP) in front of ``ClusterProxy``, and a client for it."""

    reactor: Any
    registry: FakeRegistry
    proxy: ClusterProxy
    port: int = 0
    listening: Any = None
    client_pool: Any = None

    def url(self, cluster: str, subpath: str = "") -> bytes:
        return f"http://127.0.0.1:{self.port}/clusters/{cluster}/proxy{subpath}".encode()

    async def request(
        self,
        method: bytes,
        cluster: str,
        subpath: str,
        headers: dict[bytes, list[bytes]] | None = None,
        body: bytes | None = None,
    ) -> tuple[IResponse, bytes]:
        """One request through the gateway; the whole response body."""
        from io import BytesIO

        from twisted.web.client import FileBodyProducer

        agent = Agent(self.reactor, pool=self.client_pool)
        producer = FileBodyProducer(BytesIO(body)) if body is not None else None
        response = await agent.request(
            method, self.url(cluster, subpath), Headers(headers or {}), producer
        )
        data = await read_body(response)
        return response, data

    async def open(self, method: bytes, cluster: str, subpath: str) -> IResponse:
        agent = Agent(self.reactor, pool=self.client_pool)
        return await agent.request(method, self.url(cluster, subpath))


def start_harness(
    reactor: Any, registry: FakeRegistry, settings: ProxySettings | None = None
) -> Harness:
    proxy = ClusterProxy.build(reactor, registry, settings=settings)
    site = HarnessSite(ProxyRoot(proxy, CALLER), reactor=reactor)
    listening = reactor.listenTCP(0, site, interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    return Harness(reactor, registry, proxy, listening.getHost().port, listening, pool)


async def stop_harness(harness: Harness) -> None:
    await harness.proxy.close()
    await harness.listening.stopListening()


@pytest_twisted.async_yield_fixture
async def upstream(pki: Pki) -> Any:
    from twisted.internet import reactor

    server = Upstream(reactor, pki.serving, pki.client_ca).start()
    yield server
    await server.stop()


@pytest_twisted.async_yield_fixture
async def harness(upstream: Upstream, pki: Pki) -> Any:
    """The gateway with cluster ``c1`` → the TLS upstream (CA verified, bearer token)."""
    from twisted.internet import reactor

    registry = FakeRegistry()
    registry.put(make_cluster(upstream, pki))
    h = start_harness(reactor, registry)
    yield h
    await stop_harness(h)


class _Collect(Protocol):
    def __init__(self, done: Deferred[bytes]) -> None:
        self.done = done
        self.data: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.data))
        else:
            self.done.errback(reason)


def read_body(response: IResponse) -> Deferred[bytes]:
    """The whole body; fails when it was cut short."""
    done: Deferred[bytes] = Deferred()
    response.deliverBody(_Collect(done))
    return done


async def raw_connect(reactor: Any, port: int) -> RawClient:
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    return client


def sleep(reactor: Any, seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


async def eventually(reactor: Any, check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (polling) until ``check()`` holds; fail after ``timeout`` seconds."""
    waited = 0.0
    while not check():
        if waited >= timeout:
            raise AssertionError("condition not met in time")
        await sleep(reactor, 0.02)
        waited += 0.02
