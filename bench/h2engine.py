"""CPU per exchange of an HTTP/2 server engine, in memory: h2 (today's) vs libnghttp2.

    .venv/bin/python -m bench.h2engine                 # 20,000 GETs per shape, best of 5
    .venv/bin/python -m bench.h2engine --exchanges 5000 --rounds 3

The server side of a proxied GET as the listener sees it, without sockets,
TLS or Twisted: a client (ngh2, fast, outside the timer) sends a kubectl-like
request head (the same headers as ``bench.h1parse``); the engine under test
parses the bytes into events, answers with a response head and a 616-byte
body with END_STREAM (the small-GET row's ConfigMap), and serializes its
frames; the client reads them (outside the timer).  One connection is reused,
so HPACK's dynamic tables are warm, as on a pooled connection.

Two shapes: ``16x1`` hands the engine one request at a time (kubectl, one
stream in flight per connection); ``4x32`` hands it 32 requests in one read
and takes the 32 answers in one write (the kube-aggregator's multiplexed
connection).  The figure is process CPU time per exchange on the server
side only, and the frames it parsed and built per second of that CPU (a
request is one HEADERS frame in; an answer is HEADERS and DATA out).

Engines: ``h2`` configured as Twisted's ``H2Connection`` configures it
(``client_side=False, header_encoding=None``, validation on); ``ngh2`` (a
Cython binding with libnghttp2 in its wheel) with its defaults; ``ctypes``,
Debian's ``libnghttp2.so.14`` through the smallest ctypes binding that serves
this exchange (what a hand-written binding with no compiler step costs).
Numbers move when the machine is busy: compare rows of one run.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ENGINES", "SHAPES", "best_of", "main", "run_engine"]

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"127.0.0.1:9443"),
    (
        b":path",
        b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy"
        b"/api/v1/namespaces/default/pods?limit=500",
    ),
    (b"user-agent", b"kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef0"),
    (
        b"accept",
        b"application/json;as=Table;v=v1;g=meta.k8s.io,"
        b"application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
    ),
    (
        b"authorization",
        b"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJzdWIiOiJzeXN0ZW06c2Vy"
        b"dmljZWFjY291bnQ6ZGVmYXVsdDpkZWZhdWx0In0.c2lnbmF0dXJl",
    ),
    (b"kubectl-command", b"kubectl get"),
    (b"kubectl-session", b"4b2e1f2a-5c6d-4e7f-8a9b-0c1d2e3f4a5b"),
    (b"accept-encoding", b"gzip"),
]
BODY = b"x" * 616
RESPONSE = [
    (b":status", b"200"),
    (b"audit-id", b"7f1b9e52-1f5c-4f0e-9a57-2a8b3c4d5e6f"),
    (b"cache-control", b"no-cache, private"),
    (b"content-type", b"application/json"),
    (b"x-kubernetes-pf-flowschema-uid", b"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"),
    (b"x-kubernetes-pf-prioritylevel-uid", b"1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"),
    (b"content-length", b"616"),
    (b"date", b"Mon, 07 Dec 2026 23:00:00 GMT"),
]


class H2Engine:
    """The pure-Python stack (h2, hpack, hyperframe) as Twisted drives it."""

    name = "h2"

    def __init__(self) -> None:
        import h2.config
        import h2.connection
        import h2.events

        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.received = h2.events.RequestReceived

    def serve(self, data: bytes) -> bytes:
        conn = self.conn
        for event in conn.receive_data(data):
            if type(event) is self.received:
                stream_id = event.stream_id
                conn.send_headers(stream_id, RESPONSE)
                conn.send_data(stream_id, BODY, end_stream=True)
        return conn.data_to_send()  # type: ignore[no-any-return]


class Ngh2Engine:
    """libnghttp2 through ngh2 (Cython, the library vendored in the wheel)."""

    name = "ngh2"

    def __init__(self) -> None:
        import ngh2
        import ngh2.events

        self.conn = ngh2.Connection(ngh2.Role.SERVER)
        self.conn.initiate_connection()
        self.received = ngh2.events.RequestReceived

    def serve(self, data: bytes) -> bytes:
        conn = self.conn
        conn.receive_data(data)
        for event in conn.events():
            if type(event) is self.received:
                stream_id = event.stream_id
                conn.send_response(stream_id, RESPONSE)
                conn.send_data(stream_id, BODY, end_stream=True)
        return conn.data_to_send()


class CtypesEngine:
    """Debian's libnghttp2 (``libnghttp2.so.14``) through a minimal ctypes binding.

    The smallest binding that serves this exchange: the callbacks a server
    needs (begin headers, one per header field, frame received, stream
    closed, body read), ``mem_recv``/``mem_send``, ``submit_response``.
    It measures what a hand-written binding without a compiler step would
    cost per exchange next to ngh2's Cython one over the same library.
    """

    name = "ctypes"

    def __init__(self) -> None:
        import ctypes
        import ctypes.util

        c = ctypes
        lib = c.CDLL(ctypes.util.find_library("nghttp2") or "libnghttp2.so.14")
        self.c, self.lib = c, lib

        class FrameHd(c.Structure):
            _fields_ = [
                ("length", c.c_size_t),
                ("stream_id", c.c_int32),
                ("type", c.c_uint8),
                ("flags", c.c_uint8),
                ("reserved", c.c_uint8),
            ]

        class Nv(c.Structure):
            _fields_ = [
                ("name", c.c_char_p),
                ("value", c.c_char_p),
                ("namelen", c.c_size_t),
                ("valuelen", c.c_size_t),
                ("flags", c.c_uint8),
            ]

        read_cb = c.CFUNCTYPE(
            c.c_ssize_t,
            c.c_void_p,
            c.c_int32,
            c.POINTER(c.c_uint8),
            c.c_size_t,
            c.POINTER(c.c_uint32),
            c.c_void_p,
            c.c_void_p,
        )

        class DataProvider(c.Structure):
            _fields_ = [("source", c.c_void_p), ("read_callback", read_cb)]

        frame_cb = c.CFUNCTYPE(c.c_int, c.c_void_p, c.POINTER(FrameHd), c.c_void_p)
        header_cb = c.CFUNCTYPE(
            c.c_int,
            c.c_void_p,
            c.POINTER(FrameHd),
            c.POINTER(c.c_uint8),
            c.c_size_t,
            c.POINTER(c.c_uint8),
            c.c_size_t,
            c.c_uint8,
            c.c_void_p,
        )
        close_cb = c.CFUNCTYPE(c.c_int, c.c_void_p, c.c_int32, c.c_uint32, c.c_void_p)
        self.requests: list[int] = []
        self.headers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytes] = {}

        def on_begin_headers(session: Any, frame: Any, user: Any) -> int:
            self.headers[frame[0].stream_id] = []
            return 0

        def on_header(
            session: Any,
            frame: Any,
            name: Any,
            namelen: int,
            value: Any,
            valuelen: int,
            flags: int,
            user: Any,
        ) -> int:
            self.headers[frame[0].stream_id].append(
                (c.string_at(name, namelen), c.string_at(value, valuelen))
            )
            return 0

        def on_frame_recv(session: Any, frame: Any, user: Any) -> int:
            hd = frame[0]
            if hd.type == 0x01 and hd.flags & 0x01:  # HEADERS with END_STREAM
                self.requests.append(hd.stream_id)
            return 0

        def on_close(session: Any, stream_id: int, code: int, user: Any) -> int:
            self.headers.pop(stream_id, None)
            self.bodies.pop(stream_id, None)
            return 0

        def on_read(
            session: Any,
            stream_id: int,
            buf: Any,
            length: int,
            flags: Any,
            source: Any,
            user: Any,
        ) -> int:
            body = self.bodies[stream_id]
            n = min(length, len(body))
            c.memmove(buf, body, n)
            self.bodies[stream_id] = body[n:]
            if n == len(body):
                flags[0] |= 0x01  # NGHTTP2_DATA_FLAG_EOF
            return n

        # Kept referenced: libnghttp2 holds the raw function pointers.
        self.callbacks = [
            frame_cb(on_begin_headers),
            header_cb(on_header),
            frame_cb(on_frame_recv),
            close_cb(on_close),
        ]
        self.provider = DataProvider(None, read_cb(on_read))
        cbs = c.c_void_p()
        lib.nghttp2_session_callbacks_new(c.byref(cbs))
        lib.nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, self.callbacks[0])
        lib.nghttp2_session_callbacks_set_on_header_callback(cbs, self.callbacks[1])
        lib.nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, self.callbacks[2])
        lib.nghttp2_session_callbacks_set_on_stream_close_callback(cbs, self.callbacks[3])
        self.session = c.c_void_p()
        lib.nghttp2_session_server_new(c.byref(self.session), cbs, None)
        lib.nghttp2_session_callbacks_del(cbs)
        lib.nghttp2_submit_settings(self.session, 0, None, 0)
        lib.nghttp2_session_mem_send.restype = c.c_ssize_t
        lib.nghttp2_session_mem_recv.restype = c.c_ssize_t
        self.nva = (Nv * len(RESPONSE))(*(Nv(n, v, len(n), len(v), 0) for n, v in RESPONSE))
        self.out = c.POINTER(c.c_uint8)()

    def serve(self, data: bytes) -> bytes:
        c, lib, session = self.c, self.lib, self.session
        if lib.nghttp2_session_mem_recv(session, data, len(data)) < 0:
            raise RuntimeError("nghttp2_session_mem_recv failed")
        for stream_id in self.requests:
            self.bodies[stream_id] = BODY
            lib.nghttp2_submit_response(
                session, stream_id, self.nva, len(RESPONSE), c.byref(self.provider)
            )
        self.requests.clear()
        chunks = []
        while True:
            n = lib.nghttp2_session_mem_send(session, c.byref(self.out))
            if n <= 0:
                break
            chunks.append(c.string_at(self.out, n))
        return b"".join(chunks)


ENGINES: dict[str, Callable[[], Any]] = {
    "h2": H2Engine,
    "ngh2": Ngh2Engine,
    "ctypes": CtypesEngine,
}


def run_engine(factory: Callable[[], Any], exchanges: int, batch: int) -> dict[str, float]:
    """``exchanges`` GETs through a fresh engine, ``batch`` per read; server CPU only."""
    import ngh2
    import ngh2.events

    client = ngh2.Connection(ngh2.Role.CLIENT)
    client.initiate_connection()
    engine = factory()
    # Prefaces and SETTINGS both ways, outside the timer.
    engine_out = engine.serve(client.data_to_send())
    client.receive_data(engine_out)
    client.events()
    engine.serve(client.data_to_send())
    responses = 0
    cpu = 0.0
    gc.collect()
    for _ in range(exchanges // batch):
        for _ in range(batch):
            client.send_request(REQUEST, end_stream=True)
        data = client.data_to_send()
        started = time.process_time()
        out = engine.serve(data)
        cpu += time.process_time() - started
        client.receive_data(out)
        responses += sum(1 for e in client.events() if type(e) is ngh2.events.StreamClosed)
    done = (exchanges // batch) * batch
    if responses != done:
        raise RuntimeError(f"{engine.name}: {responses} answers to {done} requests")
    us = cpu / done * 1e6
    return {"exchanges": done, "cpu_us_per_exchange": us, "frames_per_cpu_s": 3 / us * 1e6}


#: The two shapes of the bench's HTTP/2 rows: requests handed over per read.
SHAPES = (("16x1", 1), ("4x32", 32))


def best_of(
    candidates: dict[str, Any], measure: Callable[[Any, int], float], rounds: int
) -> dict[str, dict[str, float]]:
    """``{shape: {name: best µs}}``: ``measure(candidate, batch)`` ``rounds`` times,
    the candidates interleaved within each round so machine noise hits all alike."""
    best: dict[str, dict[str, float]] = {}
    for shape, batch in SHAPES:
        row = best[shape] = {}
        for _ in range(rounds):
            for name, candidate in candidates.items():
                us = measure(candidate, batch)
                row[name] = min(row.get(name, us), us)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.h2engine", description=__doc__)
    parser.add_argument("--exchanges", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5, help="best of this many")
    options = parser.parse_args(argv)
    import h2
    import ngh2

    print(
        f"h2 {h2.__version__}, ngh2 {ngh2.__version__}; server CPU per GET, best of "
        f"{options.rounds} rounds of {options.exchanges}"
    )
    print("| Shape | Engine | CPU µs/exchange | frames/s of CPU | × h2 |")
    print("|---|---|---|---|---|")
    best = best_of(
        ENGINES,
        lambda factory, batch: run_engine(factory, options.exchanges, batch)["cpu_us_per_exchange"],
        options.rounds,
    )
    for shape, row in best.items():
        for name, us in row.items():
            print(f"| {shape} | {name} | {us:.2f} | {3 / us * 1e6:,.0f} | {row['h2'] / us:.1f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
