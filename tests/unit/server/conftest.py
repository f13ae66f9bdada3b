"""The gateway's Resource tree on an in-memory Site, a real registry and a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from twisted.internet.testing import MemoryReactorClock

from clustergateway import errors
from clustergateway.api.types import GroupVersion
from clustergateway.auth.guard import RequestAttributes, StandaloneGuard
from clustergateway.auth.user import UserInfo
from clustergateway.certs import KeyPair, issue_cert, make_ca
from clustergateway.registry.store import SecretRegistry
from clustergateway.server.site import GatewaySite
from clustergateway.server.tree import GatewayRoot, build_root
from clustergateway.server.watch import ChangeLog
from tests.fixtures.gateway import token_cluster
from tests.unit.server.memhttp import Response, request

GROUP = "cluster.core.oam.dev"
BASE = "/apis/cluster.core.oam.dev/v1alpha1"


@attrs.define
class RecordingWriter:
    """A HealthWriter that remembers what it was asked to write."""

    written: list[tuple[str, bool, str]] = attrs.field(factory=list)
    error: errors.StatusError | None = None

    async def write_health(self, name: str, healthy: bool, reason: str) -> None:
        if self.error is not None:
            raise self.error
        self.written.append((name, healthy, reason))


@attrs.define
class RecordingProxy:
    """A proxy renderer that records its calls and answers a fixed body."""

    calls: list[tuple[str, bytes, UserInfo, bytes]] = attrs.field(factory=list)

    def render(self, request: Any, cluster_name: str, subpath: bytes, user: UserInfo) -> bytes:
        self.calls.append((cluster_name, subpath, user, request.uri))
        request.setResponseCode(200)
        return b"proxied"


@attrs.define
class ScriptedGuard:
    """A guard whose answers the test sets; records every authorization."""

    user: UserInfo | None = UserInfo("alice", ("team",))
    allow: bool = True
    seen: list[RequestAttributes] = attrs.field(factory=list)

    async def authenticate(self, request: Any) -> UserInfo:
        if self.user is None:
            raise errors.Unauthorized("Unauthorized")
        return self.user

    async def authorize(self, user: UserInfo, attributes: RequestAttributes) -> None:
        self.seen.append(attributes)
        if not self.allow:
            raise errors.Forbidden(f'User "{user.name}" cannot {attributes.verb}')


@attrs.define
class Served:
    """Everything a serving test touches."""

    site: GatewaySite
    root: GatewayRoot
    registry: SecretRegistry
    changes: ChangeLog
    clock: MemoryReactorClock
    writer: RecordingWriter | None
    proxy: RecordingProxy | None

    def get(self, path: str, **headers: str) -> Response:
        return request(self.site, "GET", path, {k.replace("_", "-"): v for k, v in headers.items()})

    def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        return request(self.site, method, path, headers, body)


@pytest.fixture(scope="session")
def client_pair() -> KeyPair:
    ca = make_ca("test-ca")
    return issue_cert(ca, "gateway", client=True)


def build_served(
    *,
    guard: Any = None,
    writer: RecordingWriter | None = None,
    proxy: RecordingProxy | None = None,
    group: str = GROUP,
) -> Served:
    clock = MemoryReactorClock()
    registry = SecretRegistry(group)
    changes = ChangeLog.follow(registry)
    root = build_root(
        gv=GroupVersion(group),
        registry=registry,
        changes=changes,
        guard=guard or StandaloneGuard(),
        clock=clock,
        proxy=proxy,
        health_writer=writer,
    )
    site = GatewaySite(root, reactor=clock)
    return Served(site, root, registry, changes, clock, writer, proxy)


@pytest.fixture
def served() -> Served:
    """A tree with a health writer and a recording proxy, registry empty and unsynced."""
    return build_served(writer=RecordingWriter(), proxy=RecordingProxy())


@pytest.fixture
def make_served() -> Callable[..., Served]:
    return build_served


def token_secret(name: str, **changes: Any) -> dict[str, Any]:
    """A token cluster Secret with the token ``token-<name>``."""
    return token_cluster(name, **{"token": f"token-{name}", **changes})
