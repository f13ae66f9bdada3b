"""Which headers cross the gateway (pure functions)."""

from __future__ import annotations

from clustergateway.proxy.headers import (
    connection_tokens,
    is_upgrade_request,
    request_headers,
    response_headers,
    serialize_head,
)


def names(headers: list[tuple[bytes, list[bytes]]]) -> list[bytes]:
    return [n.lower() for n, _ in headers]


def test_credentials_and_identity_claims_always_dropped() -> None:
    """A caller's token, proxy credentials and identity claims never go upstream."""
    out = request_headers(
        [
            (b"Authorization", [b"Bearer caller"]),
            (b"Proxy-Authorization", [b"Basic x"]),
            (b"X-Remote-User", [b"admin"]),
            (b"X-Remote-Group", [b"system:masters"]),
            (b"X-Remote-Extra-Scopes", [b"x"]),
            (b"Impersonate-User", [b"admin"]),
            (b"Impersonate-Group", [b"system:masters"]),
            (b"Impersonate-Extra-Foo", [b"x"]),
            (b"Impersonate-Uid", [b"1"]),
            (b"Expect", [b"100-continue"]),
            (b"Host", [b"gateway:9443"]),
            (b"Content-Length", [b"5"]),
            (b"Accept", [b"application/json"]),
            (b"User-Agent", [b"kubectl/v1.33"]),
        ],
        client_address=None,
    )
    assert out == [
        (b"Accept", [b"application/json"]),
        (b"User-Agent", [b"kubectl/v1.33"]),
    ]


def test_hop_by_hop_and_connection_tokens_dropped() -> None:
    """Hop-by-hop headers and the headers a ``Connection`` header names are dropped."""
    out = request_headers(
        [
            (b"Connection", [b"keep-alive, X-Secret", b"close"]),
            (b"Keep-Alive", [b"timeout=5"]),
            (b"X-Secret", [b"s"]),
            (b"Te", [b"trailers"]),
            (b"Trailer", [b"X"]),
            (b"Transfer-Encoding", [b"chunked"]),
            (b"Upgrade", [b"websocket"]),
            (b"Proxy-Connection", [b"keep-alive"]),
            (b"X-Kept", [b"1", b"2"]),
        ],
        client_address=None,
    )
    assert out == [(b"X-Kept", [b"1", b"2"])]


def test_upgrade_keeps_upgrade_and_connection() -> None:
    """On an upgrade ``Connection: Upgrade`` and ``Upgrade`` survive, other tokens do not;
    WebSocket and SPDY negotiation headers pass verbatim."""
    out = request_headers(
        [
            (b"Connection", [b"Upgrade, X-Secret"]),
            (b"Upgrade", [b"SPDY/3.1"]),
            (b"X-Secret", [b"s"]),
            (b"X-Stream-Protocol-Version", [b"v4.channel.k8s.io", b"v3.channel.k8s.io"]),
            (b"Sec-Websocket-Key", [b"k"]),
        ],
        client_address=b"10.1.1.1",
        upgrade=True,
    )
    assert out == [
        (b"X-Stream-Protocol-Version", [b"v4.channel.k8s.io", b"v3.channel.k8s.io"]),
        (b"Sec-Websocket-Key", [b"k"]),
        (b"Connection", [b"Upgrade"]),
        (b"Upgrade", [b"SPDY/3.1"]),
        (b"X-Forwarded-For", [b"10.1.1.1"]),
    ]


def test_forwarded_for_appended() -> None:
    """The caller's address is appended to any ``X-Forwarded-For`` it sent."""
    out = request_headers(
        [(b"X-Forwarded-For", [b"1.1.1.1", b"2.2.2.2"])], client_address=b"127.0.0.1"
    )
    assert out == [(b"X-Forwarded-For", [b"1.1.1.1, 2.2.2.2, 127.0.0.1"])]
    assert request_headers([], client_address=b"::1") == [(b"X-Forwarded-For", [b"::1"])]


def test_connection_tokens_and_upgrade_detection() -> None:
    """``Connection`` tokens are comma-separated, case-insensitive, across values."""
    assert connection_tokens([b"Keep-Alive, Upgrade", b" x "]) == {b"keep-alive", b"upgrade", b"x"}
    assert connection_tokens(None) == frozenset()
    assert is_upgrade_request([b"keep-alive, Upgrade"], [b"websocket"])
    assert not is_upgrade_request([b"Upgrade"], None)
    assert not is_upgrade_request([b"keep-alive"], [b"websocket"])


def test_response_headers() -> None:
    """Responses lose hop-by-hop headers (and ones ``Connection`` names); the rest stays."""
    out = list(
        response_headers(
            [
                (b"Content-Type", [b"application/json"]),
                (b"Connection", [b"X-Hop"]),
                (b"X-Hop", [b"1"]),
                (b"Proxy-Authenticate", [b"Basic"]),
                (b"Audit-Id", [b"abc"]),
                (b"Www-Authenticate", [b"Bearer"]),
            ]
        )
    )
    assert out == [
        (b"Content-Type", [b"application/json"]),
        (b"Audit-Id", [b"abc"]),
        (b"Www-Authenticate", [b"Bearer"]),
    ]


def test_serialize_head() -> None:
    """A request head: request line, one line per value, blank line."""
    head = serialize_head(b"GET", b"/a?b=1", [(b"Host", [b"h:1"]), (b"X", [b"1", b"2"])])
    assert head == b"GET /a?b=1 HTTP/1.1\r\nHost: h:1\r\nX: 1\r\nX: 2\r\n\r\n"
