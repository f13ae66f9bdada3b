"""H1Channel: request heads parsed by llhttp, with exactly Twisted's HTTPChannel behaviour.

Most tests are differential: the same bytes, cut into the same packets, go to
a ``GatewaySite`` on :class:`H1Channel` and to the same site on Twisted's
stock ``HTTPChannel``; what the client receives, what the resource sees and
whether the connection is closed or paused must be identical.  The tests
after the table check the behaviours the gateway relies on directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.http import HTTPFactory
from twisted.web.iweb import INonQueuedRequestFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import provider

from clustergateway.fence.h1channel import H1Channel
from clustergateway.fence.takeover import can_take_over, take_over
from clustergateway.server.site import GatewayRequest, GatewaySite

CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)
SERVER = IPv4Address("TCP", "127.0.0.1", 9443)
SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n"
GET = b"GET /api/v1/pods?limit=5 HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\n\r\n"
KUBECTL = (
    b"GET /apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy/api/v1/pods HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9443\r\n"
    b"User-Agent: kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef0\r\n"
    b"Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json\r\n"
    b"Authorization: Bearer not-a-real-token\r\n"
    b"Kubectl-Command: kubectl get\r\n"
    b"Accept-Encoding: gzip\r\n\r\n"
)


class Sink(Protocol):
    """The protocol an upgraded connection is handed to: keeps every byte."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)


class Recorder(Resource):
    """Records each request; answers ``#n`` (or holds the answer back); takes over upgrades."""

    isLeaf = True

    def __init__(self, hold: bool = False) -> None:
        super().__init__()
        self.hold = hold
        self.seen: list[tuple[Any, ...]] = []
        self.held: list[tuple[Request, bytes]] = []
        self.sink: Sink | None = None

    def render(self, request: Request) -> Any:
        headers = sorted(
            (name, tuple(values)) for name, values in request.requestHeaders.getAllRawHeaders()
        )
        self.seen.append(
            (request.method, request.uri, request.clientproto, headers, request.content.read())
        )
        if request.requestHeaders.hasHeader(b"upgrade") and can_take_over(request):
            self.sink = Sink()
            take_over(request, self.sink, SWITCHED)
            return NOT_DONE_YET
        answer = b"#%d" % len(self.seen)
        request.setHeader(b"content-length", b"%d" % len(answer))
        if self.hold:
            self.held.append((request, answer))
            return NOT_DONE_YET
        return answer

    def release(self) -> None:
        """Answer the held requests (finishing one lets the channel parse the next)."""
        while self.held:
            request, answer = self.held.pop(0)
            request.write(answer)
            request.finish()


class StockSite(GatewaySite):
    """The gateway's site on Twisted's own line-by-line ``HTTPChannel``."""

    protocol = HTTPFactory.protocol


@attrs.frozen
class Outcome:
    output: bytes
    seen: list[tuple[Any, ...]]
    upgraded: bytes | None
    closed: bool
    paused: bool
    #: The connection went over to Twisted's line parser (not compared: stock has none).
    line_parsing: bool = attrs.field(eq=False, default=False)


@attrs.frozen
class Limits:
    line: int = 1 << 20
    head: int = (1 << 20) + 64 * 1024
    headers: int = 1000
    body: int = 3 * 1024 * 1024


def connect(
    site_class: type[GatewaySite], resource: Resource, limits: Limits = Limits()
) -> tuple[Any, StringTransport, MemoryReactorClock]:
    clock = MemoryReactorClock()
    site = site_class(resource, reactor=clock)
    site.max_request_body = limits.body
    protocol = site.buildProtocol(CLIENT)
    channel = protocol._channel
    channel.MAX_LENGTH = limits.line
    channel.totalHeadersSize = limits.head
    channel.maxHeaders = limits.headers
    transport = StringTransport(peerAddress=CLIENT, hostAddress=SERVER)
    protocol.makeConnection(transport)
    return protocol, transport, clock


def drive(
    site_class: type[GatewaySite],
    packets: Iterable[bytes],
    *,
    hold: bool = False,
    limits: Limits = Limits(),
) -> Outcome:
    """Send ``packets`` one by one (as a socket would, not after the server closed)."""
    resource = Recorder(hold)
    protocol, transport, _ = connect(site_class, resource, limits)
    for packet in packets:
        if transport.disconnecting:
            break
        protocol.dataReceived(packet)
        resource.release()
    sink = resource.sink
    return Outcome(
        output=re.sub(rb"\r\nDate: [^\r]*", b"", transport.value()),
        seen=resource.seen,
        upgraded=None if sink is None else b"".join(sink.received),
        closed=bool(transport.disconnecting),
        paused=transport.producerState == "paused",
        line_parsing=getattr(protocol._channel, "_line_parsing", False),
    )


def splits(data: bytes) -> Iterable[list[bytes]]:
    """The whole, every cut into two packets, and one byte per packet."""
    yield [data]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


SMALL = Limits(line=80, head=120, headers=3)

#: (id, bytes, limits): every input, cut every way, must give Twisted's outcome.
CASES: list[tuple[str, bytes, Limits]] = [
    ("get", GET, Limits()),
    ("kubectl-get", KUBECTL, Limits()),
    ("pipelined", GET + KUBECTL + GET, Limits()),
    ("http10", b"GET / HTTP/1.0\r\nHost: gw\r\n\r\n", Limits()),
    ("http10-then-more", b"GET / HTTP/1.0\r\n\r\n" + GET, Limits()),
    ("http10-keep-alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET, Limits()),
    ("connection-close", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + GET, Limits()),
    ("connection-close-listed", b"GET / HTTP/1.1\r\nConnection: close, te\r\n\r\n" + GET, Limits()),
    ("content-length", b"PUT /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + GET, Limits()),
    ("content-length-0", b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + GET, Limits()),
    ("content-length-padded", b"PUT / HTTP/1.1\r\nContent-Length:  05 \r\n\r\nhello", Limits()),
    (
        "chunked-trailers",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n" + GET,
        Limits(),
    ),
    (
        "chunked-upper",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
        Limits(),
    ),
    (
        "chunked-bad-size",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n",
        Limits(),
    ),
    (
        "chunked-http10",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        Limits(),
    ),
    (
        "te-gzip-chunked",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        Limits(),
    ),
    (
        "te-identity-cl",
        b"PUT / HTTP/1.1\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nab",
        Limits(),
    ),
    (
        "te-and-cl",
        b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nab",
        Limits(),
    ),
    ("cl-twice", b"PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", Limits()),
    ("cl-signed", b"PUT / HTTP/1.1\r\nContent-Length: +2\r\n\r\nab", Limits()),
    ("cl-list", b"PUT / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nab", Limits()),
    (
        "expect-continue",
        b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
        Limits(),
    ),
    (
        "expect-continue-10",
        b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
        Limits(),
    ),
    (
        "body-over-cap",
        b"PUT / HTTP/1.1\r\nContent-Length: 9\r\n\r\n123456789" + GET,
        Limits(body=8),
    ),
    (
        "chunked-over-cap",
        b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n"
        + GET,
        Limits(body=8),
    ),
    ("cookies", b"GET / HTTP/1.1\r\nCookie: a=1; b=2\r\nCookie: c\r\n\r\n", Limits()),
    (
        "value-blanks",
        b"GET / HTTP/1.1\r\nX-A:  v \t\r\nX-B:\tw\r\nX-C:\r\nX-D: a  b\r\n\r\n",
        Limits(),
    ),
    (
        "repeated-header",
        b"GET / HTTP/1.1\r\nx-a: 1\r\nX-A: 2\r\nTE: t\r\nwww-authenticate: w\r\n\r\n",
        Limits(),
    ),
    ("value-obs-text", b"GET / HTTP/1.1\r\nX-A: caf\xc3\xa9\x7f\x01\r\n\r\n" + GET, Limits()),
    ("folded-header", b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n" + GET, Limits()),
    ("blank-line-first", b"\r\n" + GET + b"\r\n" + GET, Limits()),
    ("two-blank-lines", b"\r\n\r\n" + GET, Limits()),
    ("bare-lf", b"GET / HTTP/1.1\nHost: x\n\n", Limits()),
    ("bare-lf-header", b"GET / HTTP/1.1\r\nHost: x\n\r\n\r\n", Limits()),
    ("lowercase-method", b"get / HTTP/1.1\r\n\r\n" + GET, Limits()),
    ("unknown-method", b"FROB / HTTP/1.1\r\n\r\n" + GET, Limits()),
    ("query-method", b"QUERY / HTTP/1.1\r\n\r\n", Limits()),
    ("http09", b"GET /\r\n\r\n", Limits()),
    ("http09-version", b"GET / HTTP/0.9\r\n\r\n", Limits()),
    ("http2-version", b"GET / HTTP/2.0\r\n\r\n", Limits()),
    ("rtsp-version", b"GET / RTSP/1.0\r\n\r\n", Limits()),
    ("http12", b"GET / HTTP/1.2\r\n\r\n", Limits()),
    ("double-space", b"GET  / HTTP/1.1\r\n\r\n", Limits()),
    ("trailing-space", b"GET / HTTP/1.1 \r\n\r\n", Limits()),
    ("space-in-target", b"GET /a b HTTP/1.1\r\n\r\n", Limits()),
    ("target-high-bytes", b"GET /\x7f\x80\xb0 HTTP/1.1\r\n\r\n" + GET, Limits()),
    ("target-above-b0", b"GET /\xb1 HTTP/1.1\r\n\r\n", Limits()),
    ("target-relative", b"GET x HTTP/1.1\r\n\r\n", Limits()),
    ("target-absolute", b"GET http://h:1/p?q=%zz#f HTTP/1.1\r\n\r\n", Limits()),
    ("target-asterisk", b"OPTIONS * HTTP/1.1\r\n\r\n", Limits()),
    ("connect", b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n" + GET, Limits()),
    ("header-space-before-colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", Limits()),
    ("header-no-colon", b"GET / HTTP/1.1\r\nHost\r\n\r\n", Limits()),
    ("header-empty-name", b"GET / HTTP/1.1\r\n: x\r\n\r\n", Limits()),
    ("header-nul", b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", Limits()),
    ("header-cr", b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", Limits()),
    ("header-bad-name", b"GET / HTTP/1.1\r\nX{Y}: v\r\n\r\n", Limits()),
    (
        "upgrade",
        b"GET /exec HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nEARLY",
        Limits(),
    ),
    ("upgrade-10", b"GET /exec HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n", Limits()),
    (
        "upgrade-with-body",
        b"POST /exec HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: test\r\n"
        b"Content-Length: 3\r\n\r\nabcEARLY",
        Limits(),
    ),
    ("upgrade-no-connection", b"GET /exec HTTP/1.1\r\nUpgrade: test\r\n\r\nEARLY", Limits()),
    (
        "limit-headers-ok",
        b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n" + b"GET / HTTP/1.1\r\n\r\n",
        SMALL,
    ),
    ("limit-headers-over", b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", SMALL),
    ("limit-line-ok", b"GET /" + b"a" * 60 + b" HTTP/1.1\r\n\r\n", SMALL),
    ("limit-line-over", b"GET /" + b"a" * 80 + b" HTTP/1.1\r\n\r\n", SMALL),
    ("limit-line-unended", b"GET /" + b"a" * 100, SMALL),
    (
        "limit-head-over",
        b"GET / HTTP/1.1\r\nA: " + b"a" * 60 + b"\r\nB: " + b"b" * 60 + b"\r\n\r\n",
        SMALL,
    ),
    (
        "limit-head-at",
        b"GET / HTTP/1.1\r\nA: " + b"a" * 47 + b"\r\nB: " + b"b" * 47 + b"\r\n\r\n",
        SMALL,
    ),
]


def test_cases_are_distinct() -> None:
    """The table's ids are unique (pytest would silently merge duplicates)."""
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("hold", [False, True], ids=["answered-at-once", "answered-later"])
@pytest.mark.parametrize(("data", "limits"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_same_as_twisted_for_every_packet_split(data: bytes, limits: Limits, hold: bool) -> None:
    """For the same bytes cut into the same packets, the client gets the same bytes, the
    resource the same requests, and the connection ends up closed/paused the same way as
    with Twisted's HTTPChannel; whether answers come at once or after the next packet."""
    for packets in splits(data):
        expected = drive(StockSite, packets, hold=hold, limits=limits)
        assert drive(GatewaySite, packets, hold=hold, limits=limits) == expected, packets


#: The cases whose connection goes over to Twisted's line parser; every other one
#: (including the request after a body, an upgrade or a CONNECT) stays with llhttp.
TWISTED_PARSES = {
    "bare-lf",
    "bare-lf-header",
    "blank-line-first",
    "cl-list",
    "cl-signed",
    "cl-twice",
    "connection-close-listed",  # Twisted keeps it open, llhttp refuses what follows
    "double-space",
    "folded-header",
    "header-bad-name",
    "header-cr",
    "header-empty-name",
    "header-no-colon",
    "header-nul",
    "header-space-before-colon",
    "http09",
    "http09-version",
    "http12",
    "http2-version",
    "limit-head-at",  # within Twisted's limits, above the smaller of the two
    "limit-head-over",
    "limit-headers-over",
    "limit-line-over",
    "limit-line-unended",
    "lowercase-method",
    "rtsp-version",
    "space-in-target",
    "target-above-b0",
    "target-high-bytes",
    "target-relative",
    "te-and-cl",
    "te-identity-cl",
    "trailing-space",
    "two-blank-lines",
    "unknown-method",
    "value-obs-text",
}


def test_the_table_covers_what_it_claims() -> None:
    """The differential table is not vacuous: requests are served, bodies read, 400s sent,
    upgrades handed over, over-long lines dropped (as Twisted does, without a word), and
    only the listed inputs leave llhttp for Twisted's parser."""
    outcomes = {name: drive(GatewaySite, [data], limits=limits) for name, data, limits in CASES}
    assert {name for name, outcome in outcomes.items() if outcome.line_parsing} == TWISTED_PARSES
    assert [seen[0] for seen in outcomes["pipelined"].seen] == [b"GET"] * 3
    assert outcomes["chunked-trailers"].seen[0][4] == b"hello world"
    assert outcomes["content-length"].seen[0][4] == b"hello"
    assert outcomes["unknown-method"].seen[0][0] == b"FROB"
    assert outcomes["value-obs-text"].seen[0][3][0] == (b"X-A", (b"caf\xc3\xa9\x7f\x01",))
    assert outcomes["value-blanks"].seen[0][3] == [
        (b"X-A", (b"v",)),
        (b"X-B", (b"w",)),
        (b"X-C", (b"",)),
        (b"X-D", (b"a  b",)),
    ]
    for name in ("double-space", "http09", "http2-version", "rtsp-version", "te-gzip-chunked"):
        assert outcomes[name].output == b"HTTP/1.1 400 Bad Request\r\n\r\n", name
        assert outcomes[name].closed, name
    assert outcomes["limit-headers-over"].output.startswith(b"HTTP/1.1 400 ")
    assert outcomes["limit-head-over"].output.startswith(b"HTTP/1.1 400 ")
    assert outcomes["limit-line-over"] == Outcome(b"", [], None, True, False)
    assert outcomes["limit-head-at"].seen
    assert outcomes["upgrade"].upgraded == b"EARLY"
    assert outcomes["upgrade-with-body"].upgraded == b"EARLY"
    assert outcomes["upgrade-with-body"].seen[0][4] == b"abc"
    assert b" 413 " in outcomes["body-over-cap"].output
    assert b" 413 " in outcomes["chunked-over-cap"].output


# -- behaviours the gateway relies on -------------------------------------------------


def h1(
    resource: Resource, limits: Limits = Limits()
) -> tuple[Any, StringTransport, MemoryReactorClock]:
    return connect(GatewaySite, resource, limits)


def test_gateway_site_serves_with_h1channel() -> None:
    """GatewaySite builds its HTTP/1.1 channel as an H1Channel, with the raised limits."""
    protocol, _, _ = h1(Resource())
    site_protocol = GatewaySite(Resource(), reactor=MemoryReactorClock()).buildProtocol(CLIENT)
    assert isinstance(protocol._channel, H1Channel)
    assert site_protocol._channel.MAX_LENGTH == 1 << 20
    assert site_protocol._channel.maxHeaders == 1000


def test_pipelined_requests_wait_for_the_one_before() -> None:
    """Three requests in one packet: the second reaches the resource only when the first is
    answered, and the answers leave in order."""
    resource = Recorder(hold=True)
    protocol, transport, _ = h1(resource)
    protocol.dataReceived(GET + KUBECTL + b"DELETE /x HTTP/1.1\r\n\r\n")
    assert [seen[0] for seen in resource.seen] == [b"GET"]
    request, answer = resource.held.pop(0)
    request.write(answer)
    request.finish()
    assert [seen[0] for seen in resource.seen] == [b"GET", b"GET"]
    resource.release()
    assert [seen[0] for seen in resource.seen] == [b"GET", b"GET", b"DELETE"]
    assert re.findall(rb"#\d", transport.value()) == [b"#1", b"#2", b"#3"]
    assert not transport.disconnecting


def test_kubectl_headers_reach_the_request() -> None:
    """Method, target, version and headers (canonical names, values as sent) as Twisted has them."""
    resource = Recorder()
    protocol, _, _ = h1(resource)
    protocol.dataReceived(KUBECTL)
    method, uri, version, headers, body = resource.seen[0]
    assert (method, version, body) == (b"GET", b"HTTP/1.1", b"")
    assert uri == b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy/api/v1/pods"
    assert dict(headers)[b"Authorization"] == (b"Bearer not-a-real-token",)
    assert dict(headers)[b"User-Agent"] == (b"kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef0",)
    assert len(headers) == 6


def test_chunked_body_and_trailers_split_at_every_byte() -> None:
    """A chunked body arrives whole whatever the packet boundaries; trailers are dropped."""
    data = (
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nTrailer-A: 1\r\n\r\n"
    )
    for packets in splits(data):
        outcome = drive(GatewaySite, packets)
        assert [seen[4] for seen in outcome.seen] == [b"abcdefg"], packets
        assert b"Trailer-A" not in repr(outcome.seen).encode()


def test_expect_100_continue_is_answered_before_the_body() -> None:
    """``Expect: 100-continue`` gets ``100 Continue`` as soon as the head is in."""
    resource = Recorder()
    protocol, transport, _ = h1(resource)
    protocol.dataReceived(b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    protocol.dataReceived(b"data")
    assert resource.seen[0][4] == b"data"
    assert b"HTTP/1.1 200 OK" in transport.value()


def test_malformed_request_line_is_400_and_closed() -> None:
    """A broken request line gets a bare 400 and the connection is closed; nothing is served."""
    resource = Recorder()
    protocol, transport, _ = h1(resource)
    protocol.dataReceived(b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n")
    assert transport.value() == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert transport.disconnecting
    assert resource.seen == []


def test_oversized_head_is_400() -> None:
    """Headers beyond the total head limit (lines each within the line limit) get a 400."""
    resource = Recorder()
    protocol, transport, _ = h1(resource, Limits(line=1000, head=3000))
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 900) for i in range(4))
    protocol.dataReceived(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
    assert transport.value() == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert transport.disconnecting
    assert resource.seen == []


def test_gateway_limits_take_a_20k_label_selector_and_refuse_2_mib_of_headers() -> None:
    """With the site's own limits, a 20 KiB target is served; 2 MiB of headers get a 400."""
    resource = Recorder()
    protocol, _, _ = h1(resource)
    target = b"/api/v1/pods?labelSelector=" + b",".join(b"k%d!=v" % i for i in range(3000))
    protocol.dataReceived(b"GET " + target + b" HTTP/1.1\r\n\r\n")
    assert resource.seen[0][1] == target
    protocol, transport, _ = h1(resource)
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(256))
    protocol.dataReceived(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
    assert transport.value() == b"HTTP/1.1 400 Bad Request\r\n\r\n"


def test_http10_closes_and_http11_keeps_alive() -> None:
    """HTTP/1.0 (even with keep-alive) and ``Connection: close`` end the connection after the
    answer; plain HTTP/1.1 keeps it open for the next request."""
    for head, closes in [
        (b"GET / HTTP/1.0\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", False),
    ]:
        resource = Recorder()
        protocol, transport, _ = h1(resource)
        protocol.dataReceived(head)
        assert transport.value().endswith(b"#1"), head
        assert bool(transport.disconnecting) == closes, head


def test_body_over_the_cap_is_413() -> None:
    """A body larger than the site's cap is answered 413 ``Status``, by length or chunked."""
    for data in [
        b"PUT / HTTP/1.1\r\nContent-Length: 20\r\n\r\n" + b"x" * 20,
        b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n"
        + b"x" * 20
        + b"\r\n0\r\n\r\n",
    ]:
        resource = Recorder()
        protocol, transport, _ = h1(resource, Limits(body=10))
        protocol.dataReceived(data)
        assert transport.value().startswith(b"HTTP/1.1 413 "), data
        assert b'"reason":"RequestEntityTooLarge"' in transport.value().replace(b" ", b"")
        assert resource.seen == []


def test_upgrade_head_followed_by_early_bytes() -> None:
    """Bytes that follow an upgrade head in the same packet, and those sent while the resource
    still holds the connection, reach the protocol that takes it over, in order."""
    resource = Recorder()
    protocol, transport, _ = h1(resource)
    protocol.dataReceived(
        b"GET /exec HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n\x00frame-1"
    )
    protocol.dataReceived(b"frame-2")
    assert resource.sink is not None
    assert b"".join(resource.sink.received) == b"\x00frame-1frame-2"
    assert transport.value() == SWITCHED


def test_bytes_parked_during_a_request_are_handed_to_a_late_takeover() -> None:
    """An upgrade answered later (after more packets came in) still gets every early byte."""

    class LateUpgrade(Resource):
        isLeaf = True

        def __init__(self) -> None:
            super().__init__()
            self.requests: list[Request] = []

        def render(self, request: Request) -> Any:
            self.requests.append(request)
            return NOT_DONE_YET

    resource = LateUpgrade()
    protocol, transport, _ = h1(resource)
    protocol.dataReceived(b"GET /exec HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nab")
    protocol.dataReceived(b"cd")
    sink = Sink()
    take_over(resource.requests[0], sink, SWITCHED)
    protocol.dataReceived(b"ef")
    assert b"".join(sink.received) == b"abcdef"


def test_pipelined_bytes_beyond_16k_pause_reading_until_answered() -> None:
    """While a request is being answered, more than 16 KiB of further input pauses the
    transport (Twisted's backpressure); answering resumes it and serves what was parked."""
    resource = Recorder(hold=True)
    protocol, transport, _ = h1(resource)
    protocol.dataReceived(GET)
    big = b"PUT /big HTTP/1.1\r\nContent-Length: 20000\r\n\r\n" + b"x" * 20000
    protocol.dataReceived(big[:10000])
    assert transport.producerState == "producing"
    protocol.dataReceived(big[10000:])
    assert transport.producerState == "paused"
    resource.release()
    assert transport.producerState == "producing"
    assert [seen[1] for seen in resource.seen] == [b"/api/v1/pods?limit=5", b"/big"]
    assert resource.seen[1][4] == b"x" * 20000


def test_idle_timeout_is_off_while_a_request_is_handled() -> None:
    """Every packet restarts the idle timer; a request being answered suspends it; the answer
    restores it, and an idle connection is closed when it runs out."""
    resource = Recorder(hold=True)
    protocol, transport, clock = h1(resource)
    clock.advance(59)
    protocol.dataReceived(GET[:10])
    clock.advance(59)
    assert not transport.disconnecting
    protocol.dataReceived(GET[10:])
    clock.advance(600)
    assert not transport.disconnecting
    resource.release()
    clock.advance(59)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting


@pytest.mark.parametrize("first", [b"GET /a HTTP/1.1\r\n", b"FROB /a HTTP/1.1\r\n\r\n"])
def test_a_dribbled_head_is_cut_at_the_idle_timeout(first: bytes) -> None:
    """Slowloris: header bytes arriving every 10 s do not keep a head alive; it must be
    complete within the idle timeout (60 s) of its first packet, on our parser and on
    Twisted's (after a head llhttp refused, the FROB)."""
    protocol, transport, clock = h1(Recorder())
    protocol.dataReceived(first)
    if first.startswith(b"FROB"):
        protocol.dataReceived(b"GET /b HTTP/1.1\r\n")
    for _ in range(5):
        clock.advance(10)
        protocol.dataReceived(b"X-Slow: 1\r\n")
    assert not transport.disconnecting
    clock.advance(11)
    assert transport.disconnecting


def test_alpn_h2_still_switches_to_http2() -> None:
    """A connection that negotiated ``h2`` is served by Twisted's H2Connection, not H1Channel."""
    protocol, transport, _ = h1(Recorder())
    transport.negotiatedProtocol = b"h2"  # type: ignore[attr-defined]
    protocol.dataReceived(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    )
    assert not isinstance(protocol._channel, H1Channel)
    assert transport.value()[3:4] == b"\x04"  # the server's SETTINGS frame


def test_request_factory_as_twisted_calls_it() -> None:
    """A factory providing ``INonQueuedRequestFactory`` gets the channel alone, others also
    the queue position; a factory replaced between requests is the one used next."""
    calls: list[tuple[Any, ...]] = []

    @provider(INonQueuedRequestFactory)
    def unqueued(channel: Any) -> Request:
        calls.append(("unqueued",))
        return GatewayRequest(channel)

    def queued(channel: Any, queued: object) -> Request:
        calls.append(("queued", queued))
        return GatewayRequest(channel, queued)

    protocol, _, _ = h1(Recorder())
    protocol.requestFactory = unqueued
    protocol.dataReceived(GET)
    protocol.requestFactory = queued
    protocol.dataReceived(GET)
    assert calls == [("unqueued",), ("queued", 0)]


def test_refused_head_switches_the_connection_to_twisteds_parser() -> None:
    """A head llhttp refuses (an unknown method) is read by Twisted's line parser, which keeps
    serving that connection, including the pipelined request behind it."""
    resource = Recorder()
    protocol, transport, _ = h1(resource)
    protocol.dataReceived(b"FROB /a HTTP/1.1\r\nX: 1\r\n\r\n" + GET)
    protocol.dataReceived(GET)
    assert [seen[:2] for seen in resource.seen] == [
        (b"FROB", b"/a"),
        (b"GET", b"/api/v1/pods?limit=5"),
        (b"GET", b"/api/v1/pods?limit=5"),
    ]
    assert protocol._channel._line_parsing
