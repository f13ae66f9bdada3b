"""The lean proxy path on HTTP/2 streams answers as twisted.web does.

As in ``test_callers``: every scenario runs through the gateway's real
wiring twice, in memory, once with the channel path and once without, and what
the caller sees (decoded by the ``h2`` library's own client: statuses,
headers, bodies, stream ends and resets), what the cluster receives, whether
the cluster connection is aborted and the request metrics must be the same.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from clustergateway.config import GatewayConfig
from clustergateway.proxy.resource import ClusterProxy
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.store import SecretRegistry
from clustergateway.tap import build_service
from tests.unit.server.test_callers import PROXY, Upstream, answer, proxy_samples

PATH = b"/api/v1/namespaces/default/configmaps/cm"
#: ``--h2-engine`` of the rigs (the ``engine`` fixture runs every test on each).
ENGINE = "native"


@pytest.fixture(autouse=True, params=["native", "python"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both listener engines: libnghttp2's (the default) and the pure-Python one."""
    monkeypatch.setattr(sys.modules[__name__], "ENGINE", request.param)
    return str(request.param)


class H2Transport(StringTransport):
    negotiatedProtocol = b"h2"  # noqa: N815 - Twisted's name


@attrs.define
class H2Rig:
    service: Any
    reactor: MemoryReactorClock
    upstream: Upstream
    transport: H2Transport
    protocol: Any
    client: H2Connection
    events: list[Any] = attrs.field(factory=list)

    def flush(self) -> None:
        self.protocol.dataReceived(self.client.data_to_send())
        self.read()

    def read(self) -> None:
        data = self.transport.value()
        self.transport.clear()
        if data:
            self.events += self.client.receive_data(data)
            out = self.client.data_to_send()
            if out:
                self.protocol.dataReceived(out)

    def request(
        self,
        path: bytes = PATH,
        *,
        stream_id: int = 1,
        method: bytes = b"GET",
        body: bytes | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        head = [
            (b":method", method),
            (b":scheme", b"https"),
            (b":authority", b"gw:9443"),
            (b":path", PROXY + path),
            (b"accept", b"*/*"),
            *headers,
        ]
        self.client.send_headers(stream_id, head, end_stream=body is None)
        if body is not None:
            self.client.send_data(stream_id, body, end_stream=True)
        self.flush()

    def reply(self, data: bytes, index: int = -1) -> None:
        self.upstream.reply(data, index)
        self.read()

    @property
    def served_lean(self) -> int:
        lean = self.service.site.proxy_entry
        return 0 if lean is None else lean.served_h2

    def outcome(self) -> dict[str, Any]:
        seen: list[Any] = []
        for e in self.events:
            if isinstance(e, ResponseReceived):
                headers = [(k, v) for k, v in e.headers if k != b"date"]
                seen.append(("response", e.stream_id, headers))
            elif isinstance(e, DataReceived):
                seen.append(("data", e.stream_id, e.data))
            elif isinstance(e, StreamEnded):
                seen.append(("end", e.stream_id))
            elif isinstance(e, StreamReset):
                seen.append(("reset", e.stream_id))
        samples = proxy_samples(self.service)
        return {
            "to_client": _join_data(seen),
            "to_cluster": self.upstream.received(),
            "cluster_aborted": [t.aborted for _, t in self.upstream.connections],
            "client_closed": self.transport.disconnecting,
            "metrics": samples,
        }


def _join_data(seen: list[Any]) -> list[Any]:
    """Consecutive DATA events of a stream as one (frame boundaries may differ)."""
    joined: list[Any] = []
    for item in seen:
        if item[0] == "data" and joined and joined[-1][0] == "data" and joined[-1][1] == item[1]:
            joined[-1] = ("data", item[1], joined[-1][2] + item[2])
        else:
            joined.append(item)
    return joined


def h2_rig(
    tmp_path: Path,
    lean: bool,
    *,
    refuse: bool = False,
    window: int | None = None,
    unhealthy: str | None = None,
) -> H2Rig:
    reactor = MemoryReactorClock()
    registry = SecretRegistry("cluster.core.oam.dev")
    annotations = None
    if unhealthy is not None:
        annotations = {
            "status.cluster.core.oam.dev/healthy": "false",
            "status.cluster.core.oam.dev/healthy-reason": unhealthy,
        }
    registry.replace_all(
        [
            cluster_secret(
                "c1", endpoint="http://10.0.0.1:6443", token="t0ken", annotations=annotations
            )
        ]
    )
    upstream = Upstream(refuse=refuse)
    proxy = ClusterProxy.build(reactor, registry, dialer=upstream)  # type: ignore[arg-type]
    proxy.refuse_unhealthy = True
    config = GatewayConfig(
        secure_port=0,
        bind_address="127.0.0.1",
        standalone=True,
        cert_dir=tmp_path / "certs",
        h2_engine=ENGINE,
    )
    service = build_service(reactor, config, registry=registry, source=None, proxy=proxy)
    proxy.metrics = service.metrics
    if not lean:
        service.site.proxy_entry = None
    assert service.site.h2_engine == ENGINE
    protocol = service.site.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
    transport = H2Transport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
    protocol.makeConnection(transport)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    if window is not None:
        client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
    r = H2Rig(service, reactor, upstream, transport, protocol, client)
    r.flush()
    reactor.advance(0)
    r.read()
    return r


def both(tmp_path: Path, script: Any, *, lean_serves: bool = True, **options: Any) -> H2Rig:
    """Run ``script`` on the lean and on the twisted.web path; assert equal outcomes."""
    lean = h2_rig(tmp_path / "lean", True, **options)
    web = h2_rig(tmp_path / "web", False, **options)
    script(lean)
    script(web)
    assert web.served_lean == 0
    assert (lean.served_lean > 0) == lean_serves
    lean_outcome, web_outcome = lean.outcome(), web.outcome()
    assert lean_outcome == web_outcome
    assert lean_outcome["metrics"], "the proxy's metrics were not read"
    return lean


def test_fixed_length_answer(tmp_path: Path) -> None:
    def script(r: H2Rig) -> None:
        r.request()
        r.reply(answer(b"{}", b"Audit-Id: 42", b"Connection: keep-alive"))

    lean = both(tmp_path, script)
    response, data, end = lean.outcome()["to_client"]
    assert (b":status", b"200") in response[2]
    assert (b"audit-id", b"42") in response[2]
    assert (b"content-length", b"2") in response[2]
    assert not any(name == b"connection" for name, _ in response[2])
    assert data == ("data", 1, b"{}") and end == ("end", 1)
    assert lean.upstream.received().startswith(b"GET " + PATH + b" HTTP/1.1\r\n")


def test_stream_flows_as_it_arrives(tmp_path: Path) -> None:
    def script(r: H2Rig) -> None:
        r.request(PATH + b"?watch=true")
        r.reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        r.reply(b"6\r\nevent1\r\n")
        assert any(isinstance(e, DataReceived) and e.data == b"event1" for e in r.events)
        r.reply(b"6\r\nevent2\r\n0\r\n\r\n")

    lean = both(tmp_path, script)
    assert lean.outcome()["to_client"][-2:] == [("data", 1, b"event1event2"), ("end", 1)]


@pytest.mark.parametrize(
    "reply",
    [
        answer(b'{"kind":"Status","code":404}', code=b"404 Not Found"),
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
    ],
)
def test_cluster_answers(tmp_path: Path, reply: bytes) -> None:
    def script(r: H2Rig) -> None:
        r.request()
        r.reply(reply)

    both(tmp_path, script)


def test_head_request(tmp_path: Path) -> None:
    def script(r: H2Rig) -> None:
        r.request(method=b"HEAD")
        r.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")

    both(tmp_path, script)


def test_several_streams_on_one_connection(tmp_path: Path) -> None:
    def script(r: H2Rig) -> None:
        r.request(stream_id=1)
        r.request(b"/api/v1/pods", stream_id=3)
        r.reply(answer(b"one"), 0)
        r.reply(answer(b"two"), 1)

    lean = both(tmp_path, script)
    assert lean.served_lean == 2


def test_a_request_with_a_body_stays_on_twisted_web(tmp_path: Path) -> None:
    def script(r: H2Rig) -> None:
        r.request(PATH, method=b"POST", body=b'{"kind":"ConfigMap"}')
        r.reply(answer(b"{}", code=b"201 Created"))

    lean = both(tmp_path, script, lean_serves=False)
    assert b'\r\n\r\n{"kind":"ConfigMap"}' in lean.upstream.received()


def test_other_paths_stay_on_twisted_web(tmp_path: Path) -> None:
    def script(r: H2Rig) -> None:
        headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"gw")]
        path = b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1"
        r.client.send_headers(1, [*headers, (b":path", path)], end_stream=True)
        r.flush()
        r.request(stream_id=3)  # and a proxied one beside it, lean
        r.reply(answer(b"{}"))

    lean = both(tmp_path, script)
    assert lean.served_lean == 1
    assert (b":status", b"200") in lean.outcome()["to_client"][0][2]


def test_unknown_cluster_and_refused_cluster(tmp_path: Path) -> None:
    unknown = b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/nope/proxy/api"

    def script(r: H2Rig) -> None:
        headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"gw")]
        r.client.send_headers(1, [*headers, (b":path", unknown)], end_stream=True)
        r.flush()

    lean = both(tmp_path, script)
    response = lean.outcome()["to_client"][0]
    assert (b":status", b"404") in response[2]

    def refused(r: H2Rig) -> None:
        r.request()

    lean = both(tmp_path / "refused", refused, refuse=True)
    response, data, _ = lean.outcome()["to_client"]
    assert (b":status", b"502") in response[2]
    assert b"cluster c1" in data[2]


def test_unhealthy_cluster_is_refused_without_dialing(tmp_path: Path) -> None:
    """HealthinessCheck over HTTP/2: 503 with retry-after and the reason, on both paths
    alike, and no connection to the cluster."""

    def script(r: H2Rig) -> None:
        r.request()

    lean = both(tmp_path, script, unhealthy="probe failed")
    response, data, _ = lean.outcome()["to_client"]
    assert (b":status", b"503") in response[2]
    assert (b"retry-after", b"1") in response[2]
    assert b"cluster c1 is unhealthy: probe failed" in data[2]
    assert lean.upstream.connections == []


def test_no_answer_in_time_is_504(tmp_path: Path) -> None:
    def script(r: H2Rig) -> None:
        r.request()
        r.reactor.advance(120)
        r.read()

    lean = both(tmp_path, script)
    assert (b":status", b"504") in lean.outcome()["to_client"][0][2]
    assert lean.upstream.connections[0][1].aborted


def test_truncated_body_resets_the_stream_not_the_connection(tmp_path: Path) -> None:
    def script(r: H2Rig) -> None:
        r.request()
        r.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
        r.upstream.connections[-1][0].connectionLost(Failure(ConnectionRefusedError()))
        r.read()

    lean = both(tmp_path, script)
    outcome = lean.outcome()
    assert outcome["to_client"][-1] == ("reset", 1)
    assert not outcome["client_closed"]


def test_caller_resetting_the_stream_aborts_the_cluster_request(tmp_path: Path) -> None:
    def script(r: H2Rig) -> None:
        r.request(PATH + b"?watch=true")
        r.reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        r.client.reset_stream(1)
        r.flush()

    lean = both(tmp_path, script)
    assert lean.upstream.connections[0][1].aborted


def test_a_small_window_holds_the_cluster_back(tmp_path: Path) -> None:
    """HTTP/2 flow control reaches the cluster connection: when the caller's
    window is spent the cluster's socket is paused, as on twisted.web."""

    def script(r: H2Rig) -> None:
        r.request(PATH + b"?watch=true")
        r.reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        r.reply(b"20\r\n" + b"x" * 32 + b"\r\n")
        upstream = r.upstream.connections[0][1]
        assert upstream.producerState == "paused"
        r.client.increment_flow_control_window(1000, stream_id=1)
        r.flush()
        assert upstream.producerState == "producing"

    lean = both(tmp_path, script, window=16)
    assert b"".join(e[2] for e in lean.outcome()["to_client"] if e[0] == "data") == b"x" * 32


def test_many_watches_on_one_connection_share_its_window(tmp_path: Path) -> None:
    """The kube-aggregator multiplexes many watches on one HTTP/2 connection. Past
    the connection's flow-control window (64 KiB, not yet acknowledged by the
    client) every stream waits; the client's connection-level WINDOW_UPDATE
    wakes them all, and every event arrives, in order, on its own stream."""
    streams = list(range(1, 17, 2))
    event = b"e" * 10_000

    def script(r: H2Rig) -> None:
        for stream_id in streams:
            r.request(PATH + b"?watch=true", stream_id=stream_id)
        for index, _ in enumerate(streams):
            r.reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", index)
        chunk = b"%x\r\n%s\r\n" % (len(event), event)
        for _ in range(2):
            for index, _ in enumerate(streams):
                r.reply(chunk, index)
        held = sum(len(e.data) for e in r.events if isinstance(e, DataReceived))
        assert held <= 65_535 < len(streams) * 2 * len(event)
        for _ in range(10):  # the client acknowledges what it read, until all came
            got = sum(len(e.data) for e in r.events if isinstance(e, DataReceived))
            r.client.increment_flow_control_window(max(got, 1))
            for stream_id in streams:
                r.client.increment_flow_control_window(2 * len(event), stream_id=stream_id)
            r.flush()
        # Everything came on the window updates alone, before any stream ended.
        for stream_id in streams:
            got = [e.data for e in r.events if isinstance(e, DataReceived)]
            body = b"".join(
                e.data for e in r.events if isinstance(e, DataReceived) and e.stream_id == stream_id
            )
            assert body == event * 2, (stream_id, len(body), sum(map(len, got)))
        for index, _ in enumerate(streams):
            r.reply(b"0\r\n\r\n", index)

    lean = both(tmp_path, script)
    seen = lean.outcome()["to_client"]
    for stream_id in streams:
        body = b"".join(e[2] for e in seen if e[0] == "data" and e[1] == stream_id)
        assert body == event * 2
        assert ("end", stream_id) in seen
    assert lean.served_lean == len(streams)
