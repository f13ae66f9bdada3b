"""A konnectivity proxy-server stand-in, for tests, the bench and the demo.

An independent implementation of the server side of ``ProxyService.Proxy``
(the public ``konnectivity-client`` proto, vendored as
``konnectivity_client.proto`` and compiled with ``grpcio-tools`` at run time)
on the ``grpcio`` server: its own HTTP/2, its own protobuf runtime, its own
threads.  So a mistake in the gateway's hand-written client
(``clustergateway.proxy.konnectivity``) cannot hide in a shared encoder.

It plays both halves of the real deployment, proxy-server and agent: a
``DIAL_REQ`` for ``<cluster-name>:443`` is "routed" by the host name to the
address registered with :meth:`KonnectivityProxyServer.add_cluster` (a
simulated cluster), and bytes are relayed over a plain socket.

mTLS with its own CA (:class:`KonnectivityPki`): the server certificate is
for ``localhost``/``127.0.0.1``; the gateway's client certificate is signed
by the same CA and required.

Counters (``channels``: distinct client connections that made calls;
``streams``: ``Proxy`` calls; ``dials``: ``DIAL_REQ`` received) and fault
knobs: ``refuse_dials`` (answer every dial with that error), ``stalled``
(hold dial answers and relayed bytes), :meth:`drop_channels` (every channel
drops mid-stream, the server listens again at once), :meth:`stop` (kill) and
:meth:`start` again on the same port.

The gRPC servicer runs in ``grpcio``'s thread pool, never on the reactor;
everything here is thread-safe and the reactor only reads counters.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import queue
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from clustergateway.certs import KeyPair, issue_cert, make_ca, write_pem

__all__ = ["KonnectivityPki", "KonnectivityProxyServer", "proto_modules"]

PROTO = Path(__file__).with_name("konnectivity_client.proto")
_generated: tuple[ModuleType, ModuleType] | None = None
_generate_lock = threading.Lock()


def proto_modules() -> tuple[ModuleType, ModuleType]:
    """``(konnectivity_client_pb2, konnectivity_client_pb2_grpc)``, compiled once per
    process from the vendored proto into a cache directory keyed by its content."""
    global _generated
    with _generate_lock:
        if _generated is not None:
            return _generated
        from grpc_tools import protoc

        text = PROTO.read_bytes()
        digest = hashlib.sha256(text).hexdigest()[:16]
        out = Path(tempfile.gettempdir()) / f"clustergateway-konnectivity-{digest}"
        if not (out / "konnectivity_client_pb2_grpc.py").exists():
            staging = Path(tempfile.mkdtemp(prefix="konnectivity-proto-"))
            code = protoc.main(
                [
                    "protoc",
                    f"-I{PROTO.parent}",
                    f"--python_out={staging}",
                    f"--grpc_python_out={staging}",
                    PROTO.name,
                ]
            )
            if code != 0:
                raise RuntimeError(f"protoc failed on {PROTO} (exit {code})")
            try:
                os.rename(staging, out)
            except OSError:
                pass  # another process got there first
        if str(out) not in sys.path:
            sys.path.insert(0, str(out))
        pb2 = _load("konnectivity_client_pb2", out)
        pb2_grpc = _load("konnectivity_client_pb2_grpc", out)
        _generated = (pb2, pb2_grpc)
        return _generated


def _load(name: str, directory: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@attrs.frozen
class KonnectivityPki:
    """The proxy-server's CA, its serving pair and the gateway's client pair, as files."""

    directory: Path
    ca: KeyPair
    server: KeyPair
    client: KeyPair

    @classmethod
    def load_or_create(cls, directory: Path) -> KonnectivityPki:
        """Reuse the files in ``directory`` when all are there, else create them."""
        names = ("ca", "server", "client")
        paths = {n: (directory / f"{n}.crt", directory / f"{n}.key") for n in names}
        if all(c.exists() and k.exists() for c, k in paths.values()):
            pairs = {n: KeyPair(c.read_bytes(), k.read_bytes()) for n, (c, k) in paths.items()}
            return cls(directory, pairs["ca"], pairs["server"], pairs["client"])
        return cls.create(directory)

    @classmethod
    def create(
        cls, directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
    ) -> KonnectivityPki:
        ca = make_ca("konnectivity-ca")
        pki = cls(
            directory,
            ca,
            issue_cert(ca, "konnectivity-proxy-server", hosts=hosts, server=True),
            issue_cert(ca, "cluster-gateway", client=True),
        )
        write_pem(directory, "ca.crt", ca.cert_pem)
        write_pem(directory, "ca.key", ca.key_pem, private=True)
        write_pem(directory, "server.crt", pki.server.cert_pem)
        write_pem(directory, "server.key", pki.server.key_pem, private=True)
        write_pem(directory, "client.crt", pki.client.cert_pem)
        write_pem(directory, "client.key", pki.client.key_pem, private=True)
        return pki

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def client_cert_path(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key_path(self) -> Path:
        return self.directory / "client.key"


_END = object()


@attrs.define(eq=False)
class KonnectivityProxyServer:
    """The stand-in proxy-server; see the module docstring."""

    pki: KonnectivityPki
    #: ``routes[cluster-name] = (host, port)``: where an agent would connect.
    routes: dict[str, tuple[str, int]] = attrs.field(factory=dict)
    refuse_dials: str | None = None
    max_workers: int = 256
    port: int = 0
    channels: int = 0
    streams: int = 0
    dials: int = 0
    active_streams: int = 0
    _peers: set[str] = attrs.field(factory=set)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _unstalled: threading.Event = attrs.field(factory=threading.Event)
    _server: Any = None
    _contexts: set[Any] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        self._unstalled.set()

    # -- control ---------------------------------------------------------------------

    def add_cluster(self, name: str, host: str, port: int) -> None:
        self.routes[name] = (host, port)

    @property
    def stalled(self) -> bool:
        return not self._unstalled.is_set()

    @stalled.setter
    def stalled(self, value: bool) -> None:
        if value:
            self._unstalled.clear()
        else:
            self._unstalled.set()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, port: int | None = None, host: str = "127.0.0.1") -> int:
        """Listen on ``host`` (``port``, else the last port, else a free one); returns it."""
        import grpc

        _pb2, pb2_grpc = proto_modules()
        server = grpc.server(
            _thread_pool(self.max_workers),
            options=[
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 1000),
                ("grpc.http2.max_ping_strikes", 0),
                ("grpc.so_reuseport", 0),
            ],
        )
        pb2_grpc.add_ProxyServiceServicer_to_server(_Servicer(self), server)
        credentials = grpc.ssl_server_credentials(
            [(self.pki.server.key_pem, self.pki.server.cert_pem)],
            root_certificates=self.pki.ca.cert_pem,
            require_client_auth=True,
        )
        wanted = self.port if port is None else port
        bound = int(server.add_secure_port(f"{host}:{wanted}", credentials))
        if not bound:
            raise RuntimeError(f"cannot listen on {host}:{wanted}")
        server.start()
        self._server = server
        self.port = bound
        return bound

    def stop(self) -> None:
        """Kill the server: every call is cancelled, every channel dropped (blocks briefly:
        call it from a thread when the reactor must keep running)."""
        server, self._server = self._server, None
        self._unstalled.set()
        # Wait for the shutdown to finish, so that a restart on the same port never
        # races the old server's last connections (seconds on a loaded machine).
        if server is not None and not server.stop(grace=None).wait(60):
            raise RuntimeError("the konnectivity stand-in did not stop within 60s")

    def drop_channels(self) -> None:
        """Drop every channel mid-stream and listen again on the same port at once (a
        proxy-server restart; blocks briefly, as :meth:`stop`)."""
        self.stop()
        self.start(self.port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- counting (called from grpc threads) -------------------------------------------

    def _call_started(self, context: Any) -> None:
        with self._lock:
            self.streams += 1
            self.active_streams += 1
            peer = context.peer()
            if peer not in self._peers:
                self._peers.add(peer)
                self.channels += 1

    def _call_ended(self) -> None:
        with self._lock:
            self.active_streams -= 1

    def _dialed(self) -> None:
        with self._lock:
            self.dials += 1

    def wait_unstalled(self, timeout: float) -> bool:
        return self._unstalled.wait(timeout)

    def stats(self) -> dict[str, int]:
        """The counters, for a report."""
        with self._lock:
            return {
                "channels": self.channels,
                "streams": self.streams,
                "dials": self.dials,
                "active_streams": self.active_streams,
            }


def _thread_pool(workers: int) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="konnectivity-standin")


class _Servicer:
    """``ProxyService``: one relay per call (the proto's server side)."""

    def __init__(self, owner: KonnectivityProxyServer) -> None:
        self.owner = owner
        self.pb2, _ = proto_modules()

    def Proxy(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:  # noqa: N802
        owner = self.owner
        owner._call_started(context)
        relay = _Relay(owner, self.pb2, request_iterator)
        context.add_callback(relay.close)
        threading.Thread(target=relay.read_client, daemon=True, name="konn-read").start()
        try:
            while True:
                item = relay.out.get()
                if item is _END:
                    return
                yield item
        finally:
            relay.close()
            owner._call_ended()


@attrs.define(eq=False)
class _Relay:
    """One call: the client's packets in, a socket to the cluster, packets out."""

    owner: KonnectivityProxyServer
    pb2: Any
    requests: Iterator[Any]
    out: queue.Queue[Any] = attrs.field(factory=queue.Queue)
    sock: socket.socket | None = None
    connect_id: int = 0
    closed: bool = False
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def packet(self, kind: str, **payload: Any) -> Any:
        pb2 = self.pb2
        field, message = {
            "DIAL_RSP": ("dialResponse", pb2.DialResponse),
            "DATA": ("data", pb2.Data),
            "CLOSE_RSP": ("closeResponse", pb2.CloseResponse),
            "DIAL_CLS": ("closeDial", pb2.CloseDial),
        }[kind]
        return pb2.Packet(type=pb2.PacketType.Value(kind), **{field: message(**payload)})

    def read_client(self) -> None:
        pb2 = self.pb2
        try:
            for packet in self.requests:
                kind = pb2.PacketType.Name(packet.type)
                if kind == "DIAL_REQ":
                    self.dial(packet.dialRequest)
                elif kind == "DATA":
                    if not self.owner.wait_unstalled(60):
                        break
                    sock = self.sock
                    if sock is not None and packet.data.connectID == self.connect_id:
                        try:
                            sock.sendall(packet.data.data)
                        except OSError:
                            self.finish(error="write to the cluster failed")
                elif kind == "CLOSE_REQ":
                    self.finish()
                elif kind == "DIAL_CLS":
                    self.close()
        except Exception:  # the call was cancelled (client gone, server stopped)
            pass
        self.close()

    def dial(self, request: Any) -> None:
        owner = self.owner
        owner._dialed()
        if not owner.wait_unstalled(60):
            return
        if owner.refuse_dials is not None:
            self.out.put(self.packet("DIAL_RSP", error=owner.refuse_dials, random=request.random))
            return
        host, _, _port = request.address.rpartition(":")
        route = owner.routes.get(host)
        if request.protocol != "tcp" or route is None:
            self.out.put(
                self.packet(
                    "DIAL_RSP",
                    error=f"No agent available for {request.address}",
                    random=request.random,
                )
            )
            return
        try:
            sock = socket.create_connection(route, timeout=10)
        except OSError as e:
            self.out.put(
                self.packet("DIAL_RSP", error=f"dial {request.address}: {e}", random=request.random)
            )
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self.closed:
                sock.close()
                return
            self.sock = sock
            self.connect_id = (id(self) & 0xFFFFFFF) + 1
        self.out.put(self.packet("DIAL_RSP", connectID=self.connect_id, random=request.random))
        threading.Thread(
            target=self.read_cluster, args=(sock,), daemon=True, name="konn-backend"
        ).start()

    def read_cluster(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.finish()
                return
            if not self.owner.wait_unstalled(60):
                self.close()
                return
            self.out.put(self.packet("DATA", connectID=self.connect_id, data=data))

    def finish(self, error: str = "") -> None:
        """Close the cluster side; tell the client (CLOSE_RSP) and end the call."""
        self._end(self.packet("CLOSE_RSP", connectID=self.connect_id, error=error))

    def close(self) -> None:
        """End the call without a word (cancelled, or the client half-closed)."""
        self._end(None)

    def _end(self, last: Any) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            sock, self.sock = self.sock, None
        if sock is not None:
            _close_socket(sock)
        if last is not None:
            self.out.put(last)
        self.out.put(_END)


def _close_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m clustergateway.testing.konnectivity``: run the stand-in until SIGTERM."""
    import argparse
    import json
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8090", help="HOST:PORT")
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument(
        "--route", action="append", default=[], help="CLUSTER=HOST:PORT (repeatable)"
    )
    parser.add_argument("--stats-file", type=Path, help="counters as JSON, rewritten every 0.2s")
    args = parser.parse_args(argv)
    server = KonnectivityProxyServer(KonnectivityPki.load_or_create(args.cert_dir))
    for route in args.route:
        name, _, address = route.partition("=")
        host, _, port = address.rpartition(":")
        server.add_cluster(name, host, int(port))
    host, _, port = args.listen.rpartition(":")
    bound = server.start(int(port), host)
    print(f"konnectivity proxy-server ready on {host}:{bound}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.2):
        if args.stats_file is not None:
            temporary = args.stats_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(server.stats()))
            temporary.replace(args.stats_file)
    server.stop()


if __name__ == "__main__":
    main()
