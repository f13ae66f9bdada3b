"""HTTP/1.1 requests answered on their connection (``server.callers``): as twisted.web answers.

Every scenario runs twice through the gateway's real wiring (``build_service``,
the site, the channel, ``ClusterProxy``, the pooled client), in memory: once
with ``site.proxy_entry`` (as the gateway serves by default) and once without
(twisted.web's ``Request`` for everything).  What the caller receives, what the
cluster receives, whether the caller's connection is closed, whether the
cluster connection is aborted and the request metrics must all be the same —
and the scenario states whether the channel path served it at all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from clustergateway.config import GatewayConfig
from clustergateway.proxy.resource import ClusterProxy
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.store import SecretRegistry
from clustergateway.server.callers import H1Answer
from clustergateway.tap import build_service

PROXY = b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy"


def get(path: bytes = b"/api/v1/namespaces/default/configmaps/cm", *extra: bytes) -> bytes:
    lines = [b"GET " + PROXY + path + b" HTTP/1.1", b"Host: gw:9443", b"Accept: */*", *extra]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def answer(
    body: bytes = b'{"kind":"ConfigMap"}', *headers: bytes, code: bytes = b"200 OK"
) -> bytes:
    head = [b"HTTP/1.1 " + code, b"Content-Type: application/json", *headers]
    head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class UpstreamTransport(StringTransport):
    aborted = False

    def abortConnection(self) -> None:  # noqa: N802
        self.aborted = True
        self.loseConnection()


@attrs.define
class Upstream:
    """The cluster's end: every connection the pool opens, in memory."""

    refuse: bool = False
    connections: list[tuple[Any, UpstreamTransport]] = attrs.field(factory=list)

    def stream_endpoint(self, host: str, port: int) -> Upstream:
        return self

    def connect(self, factory: Any) -> Any:
        if self.refuse:
            return fail(ConnectionRefusedError("connection refused"))
        protocol = factory.buildProtocol(None)
        transport = UpstreamTransport()
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return succeed(protocol)

    def reply(self, data: bytes, index: int = -1) -> None:
        self.connections[index][0].dataReceived(data)

    def received(self) -> bytes:
        return b"".join(t.value() for _, t in self.connections)


@attrs.define
class Rig:
    service: Any
    reactor: MemoryReactorClock
    upstream: Upstream
    client: StringTransport
    channel: Any
    proxy: Any = None

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    @property
    def served_lean(self) -> int:
        lean = self.service.site.proxy_entry
        return 0 if lean is None else lean.served

    def outcome(self) -> dict[str, Any]:
        samples = proxy_samples(self.service)
        return {
            # Dates follow the clock: left out of the comparison.
            "to_client": re.sub(rb"\r\nDate: [^\r]*", b"", self.client.value()),
            "to_cluster": self.upstream.received(),
            "client_closed": self.client.disconnecting,
            "cluster_aborted": [t.aborted for _, t in self.upstream.connections],
            "metrics": samples,
        }


def proxy_samples(service: Any) -> list[tuple[str, dict[str, str], float]]:
    """The proxy's metric samples (no ``_created`` timestamps)."""
    return [
        (s.name, s.labels, s.value)
        for family in service.metrics.registry.collect()
        if family.name.startswith("ocm_proxy")
        for s in family.samples
        if not s.name.endswith("_created")
    ]


def rig(tmp_path: Path, lean: bool, *, refuse: bool = False, **config: Any) -> Rig:
    reactor = MemoryReactorClock()
    registry = SecretRegistry("cluster.core.oam.dev")
    registry.replace_all([cluster_secret("c1", endpoint="http://10.0.0.1:6443", token="t0ken")])
    upstream = Upstream(refuse=refuse)
    proxy = ClusterProxy.build(reactor, registry, dialer=upstream)  # type: ignore[arg-type]
    settings = {
        "secure_port": 0,
        "bind_address": "127.0.0.1",
        "standalone": True,
        "cert_dir": tmp_path / "certs",
        **config,
    }
    service = build_service(
        reactor, GatewayConfig(**settings), registry=registry, source=None, proxy=proxy
    )
    proxy.metrics = service.metrics
    if not lean:
        service.site.proxy_entry = None
    protocol = service.site.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
    client = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
    protocol.makeConnection(client)
    return Rig(service, reactor, upstream, client, protocol, proxy)


def both(tmp_path: Path, script: Any, **options: Any) -> tuple[Rig, Rig]:
    """Run ``script(rig)`` on the lean and on the twisted.web path; assert equal outcomes."""
    lean = rig(tmp_path / "lean", True, **options)
    web = rig(tmp_path / "web", False, **options)
    script(lean)
    script(web)
    assert web.served_lean == 0
    lean_outcome, web_outcome = lean.outcome(), web.outcome()
    assert lean_outcome == web_outcome
    assert lean_outcome["metrics"], "the proxy's metrics were not read"
    return lean, web


def test_fixed_length_answer(tmp_path: Path) -> None:
    def script(r: Rig) -> None:
        r.send(get())
        r.upstream.reply(answer(b"{}", b"Audit-Id: 42", b"Connection: keep-alive"))

    lean, _ = both(tmp_path, script)
    assert lean.served_lean == 1
    out = lean.client.value()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Audit-Id: 42\r\n" in out and b"Connection" not in out
    assert out.endswith(b"Content-Length: 2\r\n\r\n{}")
    sent = lean.upstream.received()
    assert sent.startswith(b"GET /api/v1/namespaces/default/configmaps/cm HTTP/1.1\r\n")
    assert b"Authorization: Bearer t0ken\r\n" in sent
    assert b"X-Forwarded-For: 192.0.2.7\r\n" in sent


def test_stream_is_chunked_and_flows_as_it_arrives(tmp_path: Path) -> None:
    seen: dict[str, list[bytes]] = {}

    def script(r: Rig) -> None:
        r.send(get(b"/api/v1/configmaps?watch=1"))
        r.upstream.reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        steps = [r.client.value()]
        r.upstream.reply(b"5\r\nevent\r\n")
        steps.append(r.client.value())
        r.upstream.reply(b"0\r\n\r\n")
        seen.setdefault("steps", []).extend(steps)

    lean, _ = both(tmp_path, script)
    assert lean.served_lean == 1
    head, event, *_ = seen["steps"]
    assert head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")  # before any event
    assert event.endswith(b"5\r\nevent\r\n")
    assert lean.client.value().endswith(b"0\r\n\r\n")


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
        answer(b'{"kind":"Status","code":404}', code=b"404 Not Found"),
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall until close",
        b"HTTP/1.1 599 Whatever\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_cluster_answers(tmp_path: Path, reply: bytes) -> None:
    def script(r: Rig) -> None:
        r.send(get())
        r.upstream.reply(reply)
        if b"until close" in reply:
            r.upstream.connections[-1][0].connectionLost(Failure(ConnectionRefusedError()))

    lean, _ = both(tmp_path, script)
    assert lean.served_lean == 1


def test_head_request(tmp_path: Path) -> None:
    def script(r: Rig) -> None:
        r.send(get().replace(b"GET ", b"HEAD ", 1))
        r.upstream.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")

    lean, _ = both(tmp_path, script)
    assert lean.served_lean == 1
    assert lean.client.value().endswith(b"Content-Length: 99\r\n\r\n")


def test_connection_close_from_the_caller(tmp_path: Path) -> None:
    def script(r: Rig) -> None:
        r.send(get(b"/api", b"Connection: close"))
        r.upstream.reply(answer())

    lean, _ = both(tmp_path, script)
    assert lean.served_lean == 1
    assert b"\r\nConnection: close\r\n" in lean.client.value()
    assert lean.client.disconnecting


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    def script(r: Rig) -> None:
        r.send(get(b"/one") + get(b"/two"))
        r.upstream.reply(answer(b"1"))
        r.upstream.reply(answer(b"2"))

    lean, _ = both(tmp_path, script)
    assert lean.served_lean == 2
    out = lean.client.value()
    assert out.index(b"\r\n\r\n1") < out.index(b"\r\n\r\n2")


def test_headers_and_query_reach_the_cluster_as_before(tmp_path: Path) -> None:
    def script(r: Rig) -> None:
        r.send(
            get(
                b"/api/v1/pods?labelSelector=a%3Db&__dryRun=All&impersonate=true",
                b"Authorization: Bearer caller",
                b"X-Remote-User: mallory",
                b"Impersonate-User: admin",
                b"Connection: keep-alive, X-Drop",
                b"X-Drop: 1",
                b"X-Forwarded-For: 10.1.1.1",
                b"Kubectl-Session: abc",
            )
        )
        r.upstream.reply(answer())

    lean, _ = both(tmp_path, script)
    assert lean.served_lean == 1
    sent = lean.upstream.received()
    assert b"dryRun=All" in sent and b"mallory" not in sent and b"X-Drop" not in sent
    assert b"X-Forwarded-For: 10.1.1.1, 192.0.2.7\r\n" in sent


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/nope/proxy/api", b"404"),
        (PROXY + b"/api", b"502"),
    ],
)
def test_errors_are_status_objects(tmp_path: Path, path: bytes, code: bytes) -> None:
    def script(r: Rig) -> None:
        r.send(b"GET " + path + b" HTTP/1.1\r\nHost: gw\r\n\r\n")

    lean, _ = both(tmp_path, script, refuse=True)
    assert lean.served_lean == 1
    out = lean.client.value()
    assert out.startswith(b"HTTP/1.1 " + code)
    assert b'"kind":"Status"' in out and b"Content-Type: application/json\r\n" in out


def test_no_answer_in_time_is_504(tmp_path: Path) -> None:
    def script(r: Rig) -> None:
        r.send(get())
        r.reactor.advance(76)

    lean, _ = both(tmp_path, script)
    assert lean.served_lean == 1
    assert lean.client.value().startswith(b"HTTP/1.1 504 ")
    assert lean.upstream.connections[0][1].aborted


def test_watches_have_no_head_timeout(tmp_path: Path) -> None:
    def script(r: Rig) -> None:
        r.send(get(b"/api/v1/pods?watch=true"))
        r.reactor.advance(3600)

    lean, _ = both(tmp_path, script)
    assert lean.client.value() == b""


def test_truncated_body_drops_the_caller(tmp_path: Path) -> None:
    def script(r: Rig) -> None:
        r.send(get())
        r.upstream.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
        r.upstream.connections[-1][0].connectionLost(Failure(ConnectionRefusedError()))

    lean, _ = both(tmp_path, script)
    assert lean.client.disconnecting
    assert lean.client.value().endswith(b"short")


def test_caller_leaving_aborts_the_cluster_request(tmp_path: Path) -> None:
    def script(r: Rig) -> None:
        r.send(get(b"/api/v1/pods?watch=true"))
        r.upstream.reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        r.channel.connectionLost(Failure(ConnectionRefusedError()))

    lean, _ = both(tmp_path, script)
    assert lean.upstream.connections[0][1].aborted


def test_the_lean_request_is_held_by_the_channel(tmp_path: Path) -> None:
    """HTTPChannel tells the requests it holds when the connection is lost."""
    r = rig(tmp_path, True)
    r.send(get())
    assert [type(q) for q in r.channel._channel.requests] == [H1Answer]
    r.upstream.reply(answer())
    assert r.channel._channel.requests == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST "
        + PROXY
        + b"/api/v1/configmaps HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}",
        b"GET " + PROXY + b"/api HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
        b"GET " + PROXY + b"/api HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\n\r\n",
        b"GET " + PROXY + b"/api HTTP/1.0\r\nHost: gw\r\n\r\n",
        b"GET " + PROXY + b"/api/v1/namespaces/d/pods/p/exec HTTP/1.1\r\nHost: gw\r\n"
        b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET /apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1 HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /apis/cluster.core.oam.dev/v1alpha1/clustergateways HTTP/1.1\r\nHost: gw\r\n\r\n",
    ],
    ids=["body", "empty-length", "expect", "http1.0", "upgrade", "object", "list"],
)
def test_left_to_twisted_web(tmp_path: Path, request_bytes: bytes) -> None:
    r = rig(tmp_path, True)
    r.send(request_bytes)
    assert r.served_lean == 0


def test_access_log_keeps_every_request_on_twisted_web(tmp_path: Path) -> None:
    r = rig(tmp_path, True, access_log=True)
    assert r.service.site.proxy_entry is None
    r.send(get())
    r.upstream.reply(answer())
    assert r.client.value().startswith(b"HTTP/1.1 200 OK")


def test_idle_timeout_counts_from_the_end_of_a_long_response(tmp_path: Path) -> None:
    """A watch quiet for an hour keeps its connection; 60 s after it ends, it closes."""
    closed: dict[str, list[bool]] = {}

    def script(r: Rig) -> None:
        r.send(get(b"/api/v1/pods?watch=true"))
        r.upstream.reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        r.reactor.advance(3600)
        states = [r.client.disconnecting]
        r.upstream.reply(b"0\r\n\r\n")
        r.reactor.advance(59)
        states.append(r.client.disconnecting)
        r.reactor.advance(2)
        states.append(r.client.disconnecting)
        closed.setdefault("states", []).extend(states)

    lean, _ = both(tmp_path, script)
    assert lean.served_lean == 1
    assert closed["states"] == [False, False, True] * 2


def test_head_deadlines_fire_late_never_early() -> None:
    from twisted.internet.task import Clock

    from clustergateway.proxy.forward import HeadDeadlines

    @attrs.define(eq=False)
    class Waiting:
        timed_out_at: float | None = None
        clock: Clock | None = None

        def time_out(self) -> None:
            assert self.clock is not None
            self.timed_out_at = self.clock.seconds()

    clock = Clock()
    deadlines = HeadDeadlines(clock)
    slow, answered = Waiting(clock=clock), Waiting(clock=clock)
    clock.advance(0.5)
    deadlines.add(slow, 10)
    second = deadlines.add(answered, 10)
    deadlines.remove(answered, second)
    for _ in range(9):
        clock.advance(1)
    assert slow.timed_out_at is None
    for _ in range(3):
        clock.advance(1)
    assert slow.timed_out_at is not None and 10.5 <= slow.timed_out_at <= 12.5
    assert answered.timed_out_at is None
    assert clock.getDelayedCalls() == []  # no timer left once nothing waits


HEALTH = "status.cluster.core.oam.dev/healthy"
REASON = "status.cluster.core.oam.dev/healthy-reason"


def unhealthy_rig(tmp_path: Path, lean: bool) -> Rig:
    """A rig whose cluster ``c1`` is unhealthy and whose proxy refuses unhealthy clusters."""
    r = rig(tmp_path, lean)
    registry = r.service.registry
    annotations = {HEALTH: "false", REASON: "GET /healthz: connection refused"}
    registry.replace_all(
        [
            cluster_secret(
                "c1", endpoint="http://10.0.0.1:6443", token="t0ken", annotations=annotations
            )
        ]
    )
    r.proxy.refuse_unhealthy = True
    r.proxy.retry_after = 15
    return r


def test_unhealthy_cluster_is_refused_without_dialing(tmp_path: Path) -> None:
    """HealthinessCheck: 503 naming the cluster and the reason, Retry-After, no dial;
    both paths answer byte for byte alike and count the 503."""
    lean = unhealthy_rig(tmp_path / "lean", True)
    web = unhealthy_rig(tmp_path / "web", False)
    for r in (lean, web):
        r.send(get())
    assert lean.served_lean == 1 and web.served_lean == 0
    assert lean.outcome() == web.outcome()
    out = lean.client.value()
    assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 15\r\n" in out
    body = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert body["message"] == "cluster c1 is unhealthy: GET /healthz: connection refused"
    assert body["details"] == {"name": "c1", "kind": "clustergateways", "retryAfterSeconds": 15}
    assert lean.upstream.connections == [] and web.upstream.connections == []
    assert (
        "ocm_proxy_proxied_requests_by_cluster_total",
        {"cluster": "c1", "code": "503"},
        1.0,
    ) in (lean.outcome()["metrics"])


@pytest.mark.parametrize(
    "path", [b"/healthz", b"/livez", b"/readyz", b"/readyz/etcd", b"/healthz/"]
)
def test_unhealthy_cluster_health_paths_are_forwarded(tmp_path: Path, path: bytes) -> None:
    """The cluster's own /healthz, /livez, /readyz still reach it (recovery is visible)."""
    lean = unhealthy_rig(tmp_path / "lean", True)
    lean.send(get(path))
    lean.upstream.reply(answer(b"ok"))
    assert lean.upstream.received().startswith(b"GET " + path + b" HTTP/1.1\r\n")
    assert lean.client.value().endswith(b"\r\n\r\nok")


def test_unhealthy_cluster_is_served_without_the_gate(tmp_path: Path) -> None:
    """Without HealthinessCheck an unhealthy cluster is proxied to as before."""
    r = unhealthy_rig(tmp_path, True)
    r.proxy.refuse_unhealthy = False
    r.send(get())
    r.upstream.reply(answer(b"{}"))
    assert r.client.value().startswith(b"HTTP/1.1 200 OK\r\n")
