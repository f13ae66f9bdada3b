"""Pod streams in memory: option parsing, handshakes, exec over WebSocket and SPDY, logs."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from clustergateway.errors import BadRequest
from clustergateway.testing.faults import Faults
from clustergateway.testing.spdy import (
    DataFrame,
    FrameDecoder,
    FrameEncoder,
    GoAwayFrame,
    GoAwayStatus,
    SynReplyFrame,
    SynStreamFrame,
)
from clustergateway.testing.streams import (
    PodStreams,
    negotiate,
    parse_exec_options,
    parse_ports,
    websocket_head,
)
from clustergateway.testing.upgraded import exec_status

POD = {
    "metadata": {"name": "demo", "namespace": "default", "uid": "u-1"},
    "spec": {"containers": [{"name": "main"}]},
}
TWO = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}


def _args(**values) -> dict[bytes, list[bytes]]:
    return {
        k.encode(): [x.encode() for x in (v if isinstance(v, list) else [v])]
        for k, v in values.items()
    }


def test_exec_options_defaults_and_tty():
    """stdout/stderr default to true; a terminal drops stderr; 'True' (Python client) counts."""
    options = parse_exec_options(_args(command=["echo", "hi"]), POD, "demo", False)
    assert (options.command, options.container) == (("echo", "hi"), "main")
    assert (options.stdin, options.stdout, options.stderr, options.tty) == (
        False,
        True,
        True,
        False,
    )
    tty = parse_exec_options(_args(command="sh", stdin="True", tty="1"), POD, "demo", False)
    assert (tty.stdin, tty.stderr, tty.tty) == (True, False, True)


@pytest.mark.parametrize(
    ("args", "pod", "message"),
    [
        ({}, POD, "at least one command"),
        ({"command": "x", "stdout": "false", "stderr": "false"}, POD, "at least 1 of stdin"),
        ({"command": "x", "container": "nope"}, POD, "container nope is not valid"),
        ({"command": "x"}, TWO, "a container name must be specified for pod demo"),
    ],
)
def test_exec_options_errors(args, pod, message):
    """Requests kube-apiserver/kubelet refuse are 400 Status errors with their wording."""
    with pytest.raises(BadRequest, match=message):
        parse_exec_options(_args(**args), pod, "demo", False)


def test_ports_from_either_parameter():
    """ports= (Python client) and port= (kubelet), comma-separated, validated."""
    assert parse_ports(_args(ports="80,8080")) == [80, 8080]
    assert parse_ports(_args(port=["1", "2"])) == [1, 2]
    for bad in ({}, {"ports": ""}, {"ports": "x"}, {"ports": "0"}, {"ports": "70000"}):
        with pytest.raises(BadRequest):
            parse_ports(_args(**bad))


def test_negotiation_prefers_the_client_order():
    """The first offered protocol we support wins; none in common gives None."""
    supported = ("v5.channel.k8s.io", "v4.channel.k8s.io")
    assert negotiate(["v4.channel.k8s.io", "v5.channel.k8s.io"], supported) == "v4.channel.k8s.io"
    assert negotiate(["x"], supported) is None


def test_websocket_accept_token():
    """The 101 carries RFC 6455's accept token and the chosen subprotocol."""
    head = websocket_head(b"dGhlIHNhbXBsZSBub25jZQ==", "v5.channel.k8s.io")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert head.endswith(b"Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n")


def test_exec_status_shapes():
    """Success, NonZeroExitCode with an ExitCode cause, InternalError: kubelet's shapes."""
    assert exec_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    failed = exec_status(3, ["sh", "-c", "exit 3"])
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    internal = exec_status(None, ["x"], error="boom")
    assert (internal["reason"], internal["code"]) == ("InternalError", 500)


# -- in-memory connections ------------------------------------------------------------


class _Leaf(Resource):
    isLeaf = True

    def __init__(self, streams: PodStreams, subresource: str):
        super().__init__()
        self.streams = streams
        self.subresource = subresource

    def render(self, request):
        return self.streams.render(request, self.subresource, "default", "demo", POD)


def _connect(subresource: str, head: str, faults: Faults | None = None):
    """A Site serving one subresource over a StringTransport; returns (transport, protocol)."""
    clock = MemoryReactorClock()
    streams = PodStreams(clock, faults or Faults(), lambda ns, pod, c: ["l1", "l2", "l3"])
    site = Site(_Leaf(streams, subresource))
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(head.encode())
    return clock, transport, protocol


def _ws_head(query: str, protocols: str = "v5.channel.k8s.io") -> str:
    return (
        f"GET /exec?{query} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
    )


def _split_head(transport: StringTransport) -> tuple[bytes, bytes]:
    head, _, rest = transport.value().partition(b"\r\n\r\n")
    transport.clear()
    return head, rest


def _ws_events(client: WsConnection, data: bytes) -> list[object]:
    client.receive_data(data)
    return list(client.events())


def test_websocket_exec_v5_with_stdin_close():
    """v5: stdin on channel 0, CLOSE (255) ends it, stdout on 1, Status on 3, then close 1000."""
    _, transport, protocol = _connect(
        "exec", _ws_head("command=cat&stdin=true&stdout=true&stderr=true")
    )
    head, rest = _split_head(transport)
    assert head.startswith(b"HTTP/1.1 101 ") and b"v5.channel.k8s.io" in head
    client = WsConnection(ConnectionType.CLIENT)
    protocol.dataReceived(client.send(BytesMessage(data=b"\x00hello")))
    protocol.dataReceived(client.send(BytesMessage(data=b"\xff\x00")))
    events = _ws_events(client, rest + transport.value())
    messages = [e.data for e in events if isinstance(e, BytesMessage)]
    assert messages[0] == b"\x01hello"
    assert json.loads(messages[1][1:]) == {"metadata": {}, "status": "Success"}
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1000


def test_websocket_exec_tty_waits_for_the_first_size():
    """With tty, the command starts once the first resize arrives and sees that size."""
    clock, transport, protocol = _connect(
        "exec", _ws_head("command=stty&command=size&tty=true&stdin=true")
    )
    _, rest = _split_head(transport)
    client = WsConnection(ConnectionType.CLIENT)
    _ws_events(client, rest)
    assert transport.value() == b""
    protocol.dataReceived(client.send(BytesMessage(data=b'\x04{"Width":120,"Height":40}\n')))
    messages = [
        e.data for e in _ws_events(client, transport.value()) if isinstance(e, BytesMessage)
    ]
    assert messages[0] == b"\x0140 120\r\n"


def test_websocket_refused_by_fault_and_bad_handshakes():
    """refuse_websocket gives 403; an unknown subprotocol or missing key gives 400."""
    _, transport, _ = _connect("exec", _ws_head("command=true"), Faults(refuse_websocket=True))
    assert transport.value().startswith(b"HTTP/1.1 403 ")
    _, transport, _ = _connect("exec", _ws_head("command=true", protocols="bogus"))
    assert transport.value().startswith(b"HTTP/1.1 400 ")
    _, transport, _ = _connect(
        "exec", "GET /exec?command=true HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 400 ")
    _, transport, _ = _connect("exec", "GET /exec?command=true HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400 ")
    assert b"Upgrade request required" in transport.value()


def _spdy_head(protocol: str) -> str:
    return (
        "POST /exec?command=sh&command=-c&command=cat%3Bexit%204"
        "&stdin=true&stdout=true&stderr=true HTTP/1.1\r\n"
        "Host: x\r\nContent-Length: 0\r\nConnection: Upgrade\r\n"
        f"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\r\n"
    )


def test_spdy_exec_streams_and_exit_status():
    """SPDY v4: streams by streamtype; stdin to stdout; NonZeroExitCode Status; FINs."""
    _, transport, protocol = _connect("exec", _spdy_head("v4.channel.k8s.io"))
    head, rest = _split_head(transport)
    assert b"X-Stream-Protocol-Version: v4.channel.k8s.io" in head
    assert rest == b""
    encoder, decoder = FrameEncoder(), FrameDecoder()
    kinds = ["error", "stdin", "stdout", "stderr"]
    protocol.dataReceived(
        b"".join(
            encoder.encode(SynStreamFrame(2 * i + 1, {"streamtype": [k]}))
            for i, k in enumerate(kinds)
        )
        + encoder.encode(DataFrame(3, b"piped"))
        + encoder.encode(DataFrame(3, b"", fin=True))
    )
    decoder.feed(transport.value())
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    assert frames[:4] == [SynReplyFrame(i, {}) for i in (1, 3, 5, 7)]
    assert DataFrame(5, b"piped") in frames
    status = next(f for f in frames if isinstance(f, DataFrame) and f.stream_id == 1 and f.data)
    assert json.loads(status.data)["details"]["causes"][0]["message"] == "4"
    fins = {f.stream_id for f in frames if isinstance(f, DataFrame) and f.fin}
    assert fins == {1, 3, 5, 7}


def test_spdy_garbage_closes_cleanly():
    """Bytes that are not SPDY end the connection with GOAWAY; nothing raises."""
    _, transport, protocol = _connect("exec", _spdy_head("v4.channel.k8s.io"))
    _split_head(transport)
    protocol.dataReceived(b"\x80\x07\x00\x01" + b"\x00" * 12)
    decoder = FrameDecoder()
    decoder.feed(transport.value())
    assert decoder.next_frame() == GoAwayFrame(0, GoAwayStatus.PROTOCOL_ERROR)
    assert transport.disconnecting


def test_spdy_protocol_mismatch_is_forbidden():
    """No common X-Stream-Protocol-Version: 403 before any upgrade."""
    _, transport, _ = _connect("exec", _spdy_head("v9.channel.k8s.io"))
    assert transport.value().startswith(b"HTTP/1.1 403 ")


def test_spdy_port_forward_pairs_streams_and_dials_the_port():
    """A data/error pair with requestid dials 127.0.0.1:<port>; bytes flow both ways; FIN ends."""
    clock, transport, protocol = _connect(
        "portforward",
        "POST /portforward HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: Upgrade\r\n"
        "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n",
    )
    _split_head(transport)
    encoder, decoder = FrameEncoder(), FrameDecoder()
    headers = {"port": ["8080"], "requestid": ["0"]}
    protocol.dataReceived(
        encoder.encode(SynStreamFrame(1, {"streamtype": ["error"], **headers}))
        + encoder.encode(SynStreamFrame(3, {"streamtype": ["data"], **headers}))
        + encoder.encode(DataFrame(3, b"early"))
    )
    host, port, factory, _timeout, _bind = clock.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 8080)
    target_transport = StringTransport()
    target = factory.buildProtocol(None)
    target.makeConnection(target_transport)
    assert target_transport.value() == b"early"
    target.dataReceived(b"reply")
    protocol.dataReceived(encoder.encode(DataFrame(3, b"", fin=True)))
    assert target_transport.disconnecting
    target.connectionLost(None)
    decoder.feed(transport.value())
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    assert DataFrame(3, b"reply") in frames
    assert DataFrame(3, b"", fin=True) in frames and DataFrame(1, b"", fin=True) in frames


def test_client_slow_pauses_reading_and_sources():
    """A full client write buffer stops reading the client and pauses the target socket."""
    clock, transport, protocol = _connect(
        "exec", _ws_head("command=cat&stdin=true&stdout=true&stderr=true")
    )
    producer = transport.producer
    source = StringTransport()
    producer.add_source(source)
    producer.pauseProducing()
    assert transport.producerState == "paused" and source.producerState == "paused"
    producer.resumeProducing()
    assert transport.producerState == "producing" and source.producerState == "producing"


# -- logs ---------------------------------------------------------------------------


class _Request(DummyRequest):
    """DummyRequest whose registerProducer records a push producer (instead of pulling)."""

    producer = None

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None


def _log_request(**args) -> DummyRequest:
    request = _Request([b""])
    request.args = _args(**args)
    return request


def test_log_tail_and_timestamps():
    """tailLines keeps the last lines; timestamps prefix RFC 3339 times."""
    streams = PodStreams(Clock(), Faults(), lambda ns, pod, c: [f"{c} {i}" for i in range(5)])
    body = streams.render(_log_request(tailLines="2", timestamps="true"), "log", "d", "demo", POD)
    assert body == (
        b"2024-01-01T00:00:03.000000000Z main 3\n2024-01-01T00:00:04.000000000Z main 4\n"
    )
    bad = _log_request(tailLines="-1")
    streams.render(bad, "log", "d", "demo", POD)
    assert bad.responseCode == 400


def test_log_follow_generates_lines_and_pauses():
    """follow=true writes the log, then one line per interval; a paused client gets none."""
    clock = Clock()
    streams = PodStreams(clock, Faults(), lambda ns, pod, c: ["only"])
    request = _log_request(follow="true")
    streams.render(request, "log", "d", "demo", POD)
    assert request.written == [b"only\n"]
    clock.advance(0.2)
    clock.advance(0.2)
    assert request.written[1:] == [b"main: follow line 2\n", b"main: follow line 3\n"]
    request.producer.pauseProducing()
    clock.advance(5)
    assert len(request.written) == 3
    request.producer.resumeProducing()
    clock.advance(0.2)
    assert request.written[-1] == b"main: follow line 4\n"
    assert not request.finished
    request.producer.stopProducing()
    assert clock.getDelayedCalls() == []


def test_websocket_exec_base64_protocol():
    """base64.channel.k8s.io: text messages '<digit><base64>'; success sends no error text."""
    _, transport, _ = _connect(
        "exec", _ws_head("command=echo&command=hi", protocols="base64.channel.k8s.io")
    )
    head, rest = _split_head(transport)
    assert b"Sec-WebSocket-Protocol: base64.channel.k8s.io" in head
    client = WsConnection(ConnectionType.CLIENT)
    events = _ws_events(client, rest)
    texts = [e.data for e in events if isinstance(e, TextMessage)]
    assert texts == ["1aGkK"]
    assert isinstance(events[-1], CloseConnection)
