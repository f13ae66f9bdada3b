"""Which headers cross the gateway, in each direction (pure functions).

Inbound (client → cluster): hop-by-hop headers and the tokens a ``Connection``
header names are dropped (kept: ``Connection: Upgrade`` and ``Upgrade`` on an
upgrade request); the caller's own credentials and identity claims
(``Authorization``, ``Proxy-Authorization``, ``X-Remote-*``, ``Impersonate-*``)
are **always** dropped, so a caller's token never reaches a managed cluster and
nobody can claim an identity the gateway did not establish; ``Expect`` is
dropped (Twisted has answered ``100 Continue`` already); ``Host`` and the body
framing are set by the gateway; ``X-Forwarded-For`` gets the caller's address
appended.  Everything else passes verbatim.

Outbound (cluster → client): hop-by-hop headers dropped, everything else
verbatim.

Names are compared lower-cased against sets of bytes: this runs on every
request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "HOP_BY_HOP",
    "connection_tokens",
    "is_upgrade_request",
    "request_headers",
    "response_header_pairs",
    "response_headers",
    "serialize_head",
]

#: RFC 9110 §7.6.1 plus the legacy names proxies drop.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Never forwarded upstream, whatever the request: credentials, framing the
# gateway redoes, and Expect (already answered).
_INBOUND_DROPPED = HOP_BY_HOP | {
    b"authorization",
    b"host",
    b"content-length",
    b"expect",
    b"x-forwarded-for",
}
_OUTBOUND_DROPPED = HOP_BY_HOP | {b"content-length"}
_INBOUND_DROPPED_PREFIXES = (b"x-remote-", b"impersonate-")

RawHeaders = Iterable[tuple[bytes, Sequence[bytes]]]


def connection_tokens(values: Sequence[bytes] | None) -> frozenset[bytes]:
    """The lower-cased tokens of ``Connection`` header values."""
    if not values:
        return frozenset()
    tokens = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                tokens.add(token)
    return frozenset(tokens)


def is_upgrade_request(connection: Sequence[bytes] | None, upgrade: Sequence[bytes] | None) -> bool:
    """True for an HTTP/1.1 upgrade: ``Connection`` names ``upgrade`` and ``Upgrade`` is set."""
    return bool(upgrade) and b"upgrade" in connection_tokens(connection)


def request_headers(
    headers: RawHeaders,
    *,
    client_address: bytes | None,
    upgrade: bool = False,
) -> list[tuple[bytes, list[bytes]]]:
    """The caller's headers that may go upstream, as ``(name, values)`` pairs.

    ``headers`` are ``Headers.getAllRawHeaders()`` pairs.  With ``upgrade``,
    ``Upgrade`` is kept and ``Connection: Upgrade`` is emitted; tokens the
    caller's ``Connection`` header names are dropped either way.  The caller's
    address is appended to ``X-Forwarded-For``.
    """
    items: list[tuple[bytes, bytes, Sequence[bytes]]] = []
    named: frozenset[bytes] = frozenset()
    forwarded_for: list[bytes] = []
    upgrade_values: list[bytes] | None = None
    for name, values in headers:
        lower = name.lower()
        if lower == b"connection":
            named = connection_tokens(values)
        elif lower == b"x-forwarded-for":
            forwarded_for.extend(values)
        elif lower == b"upgrade":
            upgrade_values = list(values)
        items.append((lower, name, values))
    out: list[tuple[bytes, list[bytes]]] = [
        (name, list(values))
        for lower, name, values in items
        if not (
            lower in _INBOUND_DROPPED
            or lower in named
            or lower.startswith(_INBOUND_DROPPED_PREFIXES)
        )
    ]
    if upgrade and upgrade_values:
        out.append((b"Connection", [b"Upgrade"]))
        out.append((b"Upgrade", upgrade_values))
    if client_address:
        if forwarded_for:
            out.append((b"X-Forwarded-For", [b", ".join(forwarded_for) + b", " + client_address]))
        else:
            out.append((b"X-Forwarded-For", [client_address]))
    return out


def response_headers(headers: RawHeaders) -> Iterable[tuple[bytes, Sequence[bytes]]]:
    """The cluster's response headers that go back to the caller."""
    named: frozenset[bytes] = frozenset()
    items = list(headers)
    for name, values in items:
        if name.lower() == b"connection":
            named = connection_tokens(values)
            break
    for name, values in items:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in named:
            continue
        yield name, values


def response_header_pairs(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """:func:`response_headers` for flat ``(name, value)`` pairs as a parser yields them.

    Also drops ``Content-Length``: the caller sets it from the parsed framing.
    One pass lowers each name once (this runs for every proxied response); the
    headers a ``Connection`` header names are dropped afterwards, wherever they were.
    """
    kept: list[tuple[bytes, bytes, bytes]] = []
    connection: list[bytes] = []
    for name, value in headers:
        lower = name.lower()
        if lower == b"connection":
            connection.append(value)
        elif lower not in _OUTBOUND_DROPPED:
            kept.append((lower, name, value))
    if connection:
        named = connection_tokens(connection)
        return [(name, value) for lower, name, value in kept if lower not in named]
    return [(name, value) for _, name, value in kept]


def serialize_head(
    method: bytes, target: bytes, headers: Iterable[tuple[bytes, Sequence[bytes]]]
) -> bytes:
    """An HTTP/1.1 request head, for the upgrade path's raw connection.

    Header values must already be free of CR/LF: Twisted's ``Headers``
    sanitizes the caller's, and the gateway's own (credential, identity) are
    validated where they are made.
    """
    lines = [method + b" " + target + b" HTTP/1.1"]
    for name, values in headers:
        for value in values:
            lines.append(name + b": " + value)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)
