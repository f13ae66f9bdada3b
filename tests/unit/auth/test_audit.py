"""The audit log: one JSON line per request, written when the response ends, no credentials."""

from __future__ import annotations

import io
import json

import pytest_twisted
from twisted.internet.task import Clock
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from clustergateway.auth.audit import AuditingGuard, AuditLog
from clustergateway.auth.identity import IdentityDecision, Impersonation
from clustergateway.auth.user import UserInfo
from clustergateway.errors import Unauthorized

PROXY = (
    b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy/api/v1/namespaces/default/pods"
)
ALICE = UserInfo("alice", ("dev", "system:authenticated"))


def make_request(method: bytes = b"GET", path: bytes = PROXY, query: bytes = b"") -> Request:
    request = Request(DummyChannel(), False)
    request.method = method
    request.path = path
    request.uri = path + (b"?" + query if query else b"")
    request.clientproto = b"HTTP/1.1"
    request.requestHeaders.setRawHeaders(b"user-agent", [b"kubectl/v1.33"])
    request.requestHeaders.setRawHeaders(b"authorization", [b"Bearer s3cr3t-token"])
    return request


class FixedGuard:
    def __init__(self, user: UserInfo | None) -> None:
        self.user = user

    async def authenticate(self, request: Request) -> UserInfo:
        if self.user is None:
            raise Unauthorized("Unauthorized")
        return self.user

    async def authorize(self, user: UserInfo, attributes: object) -> None:
        return None


class CountingStream(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def setup() -> tuple[Clock, CountingStream, AuditLog]:
    clock = Clock()
    clock.advance(1_700_000_000.25)
    stream = CountingStream()
    return clock, stream, AuditLog(clock, stream)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest_twisted.ensureDeferred
async def test_proxied_request_line() -> None:
    """A served proxy request: caller, cluster, verb, identity, code, latency, bytes."""
    clock, stream, audit = setup()
    guard = AuditingGuard(FixedGuard(ALICE), audit)
    request = make_request(query=b"impersonate=true&token=leak")
    assert await guard.authenticate(request) == ALICE
    request.cg_identity = IdentityDecision(Impersonation.of_user(ALICE), "caller")
    clock.advance(0.5)
    request.setResponseCode(200)
    request.write(b"x" * 100)
    request.finish()
    assert stream.flushes == 0  # no flush (disk write) per line...
    clock.advance(audit.flush_delay)
    assert stream.flushes == 1  # ...but soon after
    [line] = lines(stream)
    assert line == {
        "time": "2023-11-14T22:13:20.250000Z",
        "user": "alice",
        "groups": ["dev", "system:authenticated"],
        "method": "GET",
        "verb": "get",
        "path": PROXY.decode(),
        "resource": "clustergateways/proxy",
        "cluster": "c1",
        "identity": {
            "origin": "caller",
            "impersonate": {"user": "alice", "groups": ["dev", "system:authenticated"]},
        },
        "code": 200,
        "latencySeconds": 0.5,
        "bytes": 100,
        "remote": "192.168.1.1",
        "userAgent": "kubectl/v1.33",
    }
    assert "s3cr3t" not in stream.getvalue() and "leak" not in stream.getvalue()


@pytest_twisted.ensureDeferred
async def test_unauthenticated_request_line() -> None:
    """A refused caller is recorded with no user and the 401 the server answered."""
    clock, stream, audit = setup()
    guard = AuditingGuard(FixedGuard(None), audit)
    request = make_request(path=b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways")
    try:
        await guard.authenticate(request)
    except Unauthorized:
        request.setResponseCode(401)
        request.write(b"{}")
        request.finish()
    audit.flush()
    [line] = lines(stream)
    assert (line["user"], line["groups"], line["code"], line["verb"]) == ("", [], 401, "list")
    assert line["resource"] == "clustergateways" and "cluster" not in line
    assert "identity" not in line


@pytest_twisted.ensureDeferred
async def test_client_gone_is_marked_aborted() -> None:
    """A response cut by the client's disconnect is still written, marked aborted."""
    clock, stream, audit = setup()
    request = make_request()
    await AuditingGuard(FixedGuard(ALICE), audit).authenticate(request)
    request.write(b"partial")
    request.connectionLost(ConnectionError("gone"))
    audit.flush()
    [line] = lines(stream)
    assert line["aborted"] is True and line["bytes"] == 7


def test_open_file_appends_and_close_flushes(tmp_path) -> None:
    """A path opens in append mode; close() writes out what is buffered."""
    path = tmp_path / "audit.log"
    path.write_text('{"old":1}\n')
    audit = AuditLog.open(str(path), Clock())
    audit.write({"new": 2})
    audit.close()
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"old": 1}, {"new": 2}]


def test_dash_is_stdout(capsys) -> None:
    """`-` writes to standard output and close() leaves it open."""
    audit = AuditLog.open("-", Clock())
    audit.write({"a": 1})
    audit.close()
    assert capsys.readouterr().out == '{"a":1}\n'
