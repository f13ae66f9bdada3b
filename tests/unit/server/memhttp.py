"""Drive a ``Site`` in memory: raw HTTP/1.1 bytes in, a parsed response out.

The gateway's own ``GatewaySite`` is exercised byte for byte (limits, headers,
error pages) on a ``StringTransport``; nothing touches the network.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport


@attrs.frozen
class Response:
    code: int
    headers: dict[str, list[str]]
    body: bytes
    complete: bool

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def raw_request(
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body and "content-length" not in {k.lower() for k in (headers or {})}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def connect(site: Any) -> tuple[Any, StringTransport]:
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = site.buildProtocol(address)
    transport = StringTransport(
        peerAddress=address, hostAddress=IPv4Address("TCP", "127.0.0.1", 9443)
    )
    protocol.makeConnection(transport)
    return protocol, transport


def parse(data: bytes) -> Response:
    """Parse one response (possibly still streaming: ``complete`` False)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"no complete response head in {data!r}")
    status, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    code = int(status.split()[1])
    if headers.get("transfer-encoding") == ["chunked"]:
        body, complete = _dechunk(rest)
    elif "content-length" in headers:
        length = int(headers["content-length"][0])
        body, complete = rest[:length], len(rest) >= length
    else:
        body, complete = rest, False
    return Response(code, headers, body, complete)


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    out = b""
    while data:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            return out, False
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out, True
        out += data[:size]
        data = data[size + 2 :]
    return out, False


def request(
    site: Any, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Response:
    """Send one request on a fresh connection; the response as written so far."""
    proto, transport = connect(site)
    proto.dataReceived(raw_request(method, path, headers, body))
    return parse(transport.value())
