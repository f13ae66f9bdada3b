"""Serving over real sockets: the console script, HTTP/2 and HTTP/1.1, discovery ETags."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h2.connection
import h2.events
import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.e2e.api_helpers import token_cluster
from tests.fixtures.gateway import RunningGateway, wait_until

pytestmark = pytest.mark.e2e

AGGREGATED = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
BIN = Path(sys.executable).parent


def tls_context(ca: Path, protocol: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols([protocol])
    return context


def http11_get(
    gateway: RunningGateway, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", gateway.port, context=tls_context(gateway.ca_path, "http/1.1"), timeout=10
    )
    try:
        connection.request("GET", path, headers={"Authorization": "Bearer x", **headers})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


class H2Client:
    """A minimal blocking HTTP/2 client (h2 + ssl) for one connection."""

    def __init__(self, port: int, ca: Path) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = tls_context(ca, "h2").wrap_socket(raw, server_hostname="127.0.0.1")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection()
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def start(self, path: str, headers: dict[str, str]) -> int:
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream,
            [
                (":method", "GET"),
                (":path", path),
                (":scheme", "https"),
                (":authority", "127.0.0.1"),
                *headers.items(),
            ],
            end_stream=True,
        )
        self.sock.sendall(self.conn.data_to_send())
        return stream

    def read_until(
        self, stream: int, predicate: Any, timeout: float = 10
    ) -> tuple[dict[str, str], bytes, bool]:
        """Read events until ``predicate(headers, body, ended)``; return the state."""
        headers: dict[str, str] = {}
        body = b""
        ended = False
        deadline = time.monotonic() + timeout
        while not predicate(headers, body, ended):
            if time.monotonic() > deadline:
                raise AssertionError(f"h2 stream {stream}: timeout; got {headers} {body!r}")
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("connection closed")
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    ended = True
            self.sock.sendall(self.conn.data_to_send())
        return headers, body, ended

    def get(self, path: str, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
        stream = self.start(path, headers)
        got, body, _ = self.read_until(stream, lambda h, b, ended: ended)
        return got, body

    def close(self) -> None:
        self.sock.close()


@pytest_twisted.ensureDeferred
async def test_aggregated_discovery_over_h2_and_http11(gateway) -> None:
    """Both protocols serve aggregated discovery with its content type; a matching ETag is 304."""
    status, headers, body = await deferToThread(
        http11_get, gateway, "/apis", {"Accept": AGGREGATED}
    )
    assert status == 200
    assert (
        headers["content-type"]
        == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    etag = headers["etag"]
    assert json.loads(body)["kind"] == "APIGroupDiscoveryList"
    again = await deferToThread(
        http11_get, gateway, "/apis", {"Accept": AGGREGATED, "If-None-Match": etag}
    )
    assert again[0] == 304

    def over_h2() -> tuple[dict[str, str], dict[str, str]]:
        client = H2Client(gateway.port, gateway.ca_path)
        try:
            first, _ = client.get("/apis", {"accept": AGGREGATED})
            second, _ = client.get("/apis", {"accept": AGGREGATED, "if-none-match": etag})
            return first, second
        finally:
            client.close()

    first, second = await deferToThread(over_h2)
    assert first[":status"] == "200" and first["etag"] == etag
    assert second[":status"] == "304"


@pytest_twisted.ensureDeferred
async def test_watch_streams_over_h2(gateway) -> None:
    """A watch over HTTP/2 delivers the initial state and later events on the open stream."""
    gateway.write_secrets("a.yaml", token_cluster("alpha"))
    await wait_until(lambda: gateway.registry.entry("alpha") is not None)
    client = await deferToThread(H2Client, gateway.port, gateway.ca_path)
    path = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways?watch=true"
    try:
        stream = await deferToThread(client.start, path, {"authorization": "Bearer x"})
        headers, body, _ = await deferToThread(
            client.read_until, stream, lambda h, b, e: b"alpha" in b
        )
        assert headers[":status"] == "200"
        gateway.write_secrets("b.yaml", token_cluster("beta"))
        _, body, ended = await deferToThread(
            client.read_until, stream, lambda h, b, e: b"beta" in b
        )
        assert not ended
        events = [json.loads(line) for line in body.splitlines()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "beta")]
    finally:
        client.close()


@pytest_twisted.ensureDeferred
async def test_console_script_serves_and_stops(tmp_path) -> None:
    """The console script serves HTTPS on a free port and stops cleanly on SIGTERM."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "c.yaml").write_text(json.dumps(token_cluster("alpha")))
    process = subprocess.Popen(
        [
            str(BIN / "cluster-gateway"),
            "--standalone-debug-mode",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            f"--secrets-dir={secrets}",
            f"--cert-dir={tmp_path / 'certs'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def wait_for_port() -> int:
            assert process.stdout is not None
            for raw in process.stdout:
                found = re.search(rb"Serving HTTPS on https://127\.0\.0\.1:(\d+)", raw)
                if found:
                    return int(found.group(1))
            raise AssertionError("the gateway exited before serving")

        port = await deferToThread(wait_for_port)

        def ready() -> tuple[int, bytes]:
            context = tls_context(tmp_path / "certs" / "ca.crt", "http/1.1")
            for _ in range(100):
                connection = http.client.HTTPSConnection(
                    "127.0.0.1", port, context=context, timeout=5
                )
                connection.request("GET", "/readyz")
                response = connection.getresponse()
                answer = response.status, response.read()
                connection.close()
                if answer[0] == 200:
                    return answer
                time.sleep(0.1)
            return answer

        assert await deferToThread(ready) == (200, b"ok")
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = await deferToThread(process.communicate, None, 30)
    # twistd stops the reactor cleanly, then re-raises the signal as its exit status.
    assert process.returncode in (0, -signal.SIGTERM)
    assert b"Server Shut Down." in rest
