"""An upgrade sink: the upstream end of the splice benchmark (``python -m bench.sink``).

Answers any request with ``101 Switching Protocols`` (``Upgrade: SPDY/3.1``, as
kubelet answers a port-forward) and then moves raw bytes as fast as the
kernel and OpenSSL allow, so the proxy in the middle is what limits the rate:

- ``?mode=down&bytes=N``: sends N bytes after the 101, then closes;
- ``?mode=up&bytes=N``: reads N bytes, answers ``OK\\n``, then closes.

Blocking sockets, one thread per connection, 1 MiB buffers: the per-byte work
is in C (``SSL_read``/``SSL_write``), which a Python or Twisted upstream with
SPDY framing (the simulator's port-forward) would not be.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

__all__ = ["main"]

CHUNK = 1 << 20
_HEAD_LIMIT = 65536
_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Connection: Upgrade\r\n"
    b"Upgrade: SPDY/3.1\r\n"
    b"X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n"
)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk or len(data) > _HEAD_LIMIT:
            raise ConnectionError("no request head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            head, rest = _read_head(sock)
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            query = parse_qs(urlsplit(target).query)
            mode = query.get("mode", ["down"])[0]
            total = int(query.get("bytes", ["0"])[0])
            sock.sendall(_RESPONSE)
            if mode == "down":
                block = memoryview(bytes(CHUNK))
                left = total
                while left > 0:
                    n = min(left, CHUNK)
                    sock.sendall(block[:n])
                    left -= n
            else:
                buf = bytearray(CHUNK)
                left = total - len(rest)
                while left > 0:
                    n = sock.recv_into(buf, min(left, CHUNK))
                    if n == 0:
                        return
                    left -= n
                sock.sendall(b"OK\n")
            if isinstance(sock, ssl.SSLSocket):
                try:
                    sock.unwrap()
                except (OSError, ValueError):
                    pass
        except (OSError, ValueError, IndexError, ConnectionError):
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext | None) -> None:
        self.context = context
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True)
        return sock, addr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", help="serving certificate (PEM); plain TCP without it")
    parser.add_argument("--key")
    options = parser.parse_args(argv)
    context = None
    if options.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(options.cert, options.key)
        context.set_alpn_protocols(["http/1.1"])
    server = _Server(("127.0.0.1", options.port), context)
    print(f"sink ready on 127.0.0.1:{options.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
