"""Hostile HTTP requests, seeded: for the fuzzing tests and the soak bench.

Every request starts as one a real client sends (a method, a target from the
caller's list, the headers kubectl and the aggregator send) and has random
bytes spliced into one part: the method, the path, the query, a header name
or value, the body, or its length.  Half of them are ``GET``s to the first
four targets, which callers make proxied paths: the hot (lean) path gets the
most attention.  The same ``random.Random`` seed gives the same requests.  :func:`http1_head`
and :func:`h2_status` send one each over a new blocking TLS connection (for
threads: test drivers, the soak bench) and report what the gateway answered.
"""

from __future__ import annotations

import random
import socket
import ssl
from collections.abc import Iterator, Sequence

__all__ = ["h2_cases", "h2_status", "http1_cases", "http1_head", "proxy_targets"]


def proxy_targets(
    proxy: str, unreachable: str, unknown: str, namespace: str = "default"
) -> list[str]:
    """Targets covering every request family: proxied (``proxy``, a proxy URL prefix;
    ``unreachable`` and ``unknown``, clusters that refuse and that do not exist), the
    API's own resources, discovery, OpenAPI, probes and metrics.  The proxied ones
    address ``namespace``: the cases include DELETEs of collections there."""
    group = "/apis/cluster.core.oam.dev/v1alpha1"
    return [
        f"{proxy}/api/v1/namespaces/{namespace}/pods?labelSelector=a%3Db&limit=5",
        f"{proxy}/api/v1/namespaces/{namespace}/configmaps/x",
        f"{proxy}/apis/apps/v1/namespaces/{namespace}/deployments?watch=true&timeoutSeconds=1",
        f"{proxy}/api/v1/namespaces/{namespace}/pods/demo/exec?command=ls&stdout=true",
        f"{unreachable}/api",
        f"{unknown}/api",
        f"{group}/clustergateways",
        f"{group}/clustergateways/x",
        f"{group}/clustergateways/x/health",
        f"{group}/virtualclusters?labelSelector=x",
        group,
        "/apis",
        "/openapi/v2",
        "/openapi/v3/apis/cluster.core.oam.dev/v1alpha1",
        "/version",
        "/healthz?verbose",
        "/readyz",
        "/metrics",
    ]


METHODS = (b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS")
HEADERS = (
    (b"Accept", b"application/json;as=Table;g=meta.k8s.io;v=v1"),
    (b"Content-Type", b"application/merge-patch+json"),
    (b"Impersonate-User", b"alice"),
    (b"X-Remote-User", b"mallory"),
    (b"Connection", b"Upgrade"),
    (b"Upgrade", b"websocket"),
    (b"Sec-WebSocket-Protocol", b"v5.channel.k8s.io"),
    (b"Transfer-Encoding", b"chunked"),
    (b"If-None-Match", b'"abc"'),
)
NASTY = (
    b"%",
    b"%%",
    b"%zz",
    b"%00",
    b"%ff",
    b"%C3%A9",
    b"\xff",
    b"\xc3\xa9",
    b"\x00",
    b"\t",
    b"..",
    b"%2e%2e",
    b"/",
    b"//",
    b"?",
    b"&",
    b"=",
    b";",
    b"#",
    b"\\",
    b'"',
    b"'",
    b"{",
    b"}",
    b"[",
    b"]",
    b" ",
    b"\r",
    b"\n",
    b"\x7f",
    b"\xef\xbc\x8e",
    b"a" * 300,
)


def _splice(rng: random.Random, value: bytes) -> bytes:
    """``value`` with a few random pieces (nasty or arbitrary bytes) put in or over it."""
    for _ in range(rng.randint(1, 3)):
        piece = rng.choice(NASTY) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 8))
        at = rng.randint(0, len(value))
        cut = rng.choice([0, 0, 1, rng.randint(0, 5)])
        value = value[:at] + piece + value[at + cut :]
    return value


def _mangle_target(rng: random.Random, target: bytes, where: str) -> bytes:
    """``target`` with its path or its query mangled."""
    path, mark, query = target.partition(b"?")
    if where == "path":
        return _splice(rng, path) + mark + query
    if rng.random() < 0.5:
        return path + b"?" + (query + b"&" if query else b"") + _splice(rng, b"k=v")
    return path + b"?" + _splice(rng, query)


def http1_cases(rng: random.Random, targets: Sequence[str], count: int) -> Iterator[bytes]:
    """``count`` mangled HTTP/1.1 requests to ``targets`` (the first four: proxied paths)."""
    for _ in range(count):
        # Half the cases are proxied GETs, the lean hot path; the rest any family.
        method = b"GET" if rng.random() < 0.5 else rng.choice(METHODS)
        target = rng.choice(targets[:4] if rng.random() < 0.5 else targets).encode()
        headers = [(b"Host", b"gateway"), (b"Authorization", b"Bearer standalone")]
        headers += rng.sample(HEADERS, rng.randint(0, 3))
        body = b'{"metadata":{"name":"x"}}' if method in (b"POST", b"PUT", b"PATCH") else b""
        part = rng.choice(
            ["path", "query", "query", "name", "value", "value", "method", "body", "length"]
        )
        if part == "method":
            method = _splice(rng, method)
        elif part in ("path", "query"):
            target = _mangle_target(rng, target, part)
        elif part in ("name", "value"):
            i = rng.randrange(len(headers))
            name, value = headers[i]
            if part == "name":
                headers[i] = (_splice(rng, name), value)
            else:
                headers[i] = (name, _splice(rng, value))
        elif part == "body":
            body = _splice(rng, body)
        chunked = any(n == b"Transfer-Encoding" for n, _ in headers)
        if part == "length":
            headers.append((b"Content-Length", rng.choice([b"-1", b"abc", b"99999999999", b"3"])))
        elif not chunked:
            headers.append((b"Content-Length", b"%d" % len(body)))
        if chunked:
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        head = b"%s %s HTTP/1.1\r\n" % (method, target)
        head += b"".join(b"%s: %s\r\n" % h for h in headers)
        yield head + b"Connection: close\r\n\r\n" + body


def h2_cases(
    rng: random.Random, targets: Sequence[str], count: int
) -> Iterator[list[tuple[bytes, bytes]]]:
    """``count`` mangled HTTP/2 request header lists to ``targets``."""
    for _ in range(count):
        method = b"GET" if rng.random() < 0.5 else rng.choice(METHODS)
        path = rng.choice(targets[:4] if rng.random() < 0.5 else targets).encode()
        headers = [
            (b":method", method),
            (b":scheme", b"https"),
            (b":authority", b"gateway"),
            (b":path", path),
            (b"authorization", b"Bearer standalone"),
        ]
        headers += [(n.lower(), v) for n, v in rng.sample(HEADERS, rng.randint(0, 2))]
        where = rng.choice(["path", "query", "query", "header"])
        if where != "header":
            headers[3] = (b":path", _mangle_target(rng, path, where))
        else:
            i = rng.randrange(len(headers))
            name, value = headers[i]
            if rng.random() < 0.8:
                headers[i] = (name, _splice(rng, value))
            else:
                headers[i] = (_splice(rng, name), value)
        yield headers


def _tls(port: int, ca: str, alpn: list[str], host: str = "127.0.0.1") -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(alpn)
    raw = socket.create_connection((host, port), timeout=10)
    return context.wrap_socket(raw, server_hostname=host)


def _read_head(sock: ssl.SSLSocket) -> bytes:
    """What arrives until the status line is in (or the peer closes, or 1 s of silence)."""
    data = b""
    try:
        while b"\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
    except (TimeoutError, ssl.SSLError, ConnectionError):
        pass
    return data


def http1_head(port: int, ca: str, request: bytes) -> bytes:
    """Send ``request`` over a new TLS connection; what came back up to the status line."""
    try:
        with _tls(port, ca, ["http/1.1"]) as sock:
            sock.settimeout(1)
            sock.sendall(request)
            return _read_head(sock)
    except (OSError, ssl.SSLError):
        return b""


def h2_status(port: int, ca: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The ``:status`` an HTTP/2 stream with ``headers`` gets (empty: none), on a new
    TLS connection; the headers are sent as given, unvalidated."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    config = h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
    )
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    try:
        conn.send_headers(1, headers, end_stream=True)
    except h2.exceptions.ProtocolError:
        return b""  # the client library refuses to send it at all
    try:
        with _tls(port, ca, ["h2"]) as sock:
            sock.settimeout(1)
            sock.sendall(conn.data_to_send())
            while data := sock.recv(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        return dict(event.headers).get(b":status", b"")
                    if isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                        return b""
                sock.sendall(conn.data_to_send())
    except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
        pass
    return b""
