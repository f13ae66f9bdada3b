"""What runs on a pod connection after ``101 Switching Protocols``.

Two wire formats carry the same Kubernetes stream semantics:

- SPDY/3.1 (:class:`SpdyConnection`): one SPDY stream per standard stream
  (``streamtype`` header) or per port-forward data/error pair;
- WebSocket (:class:`WebSocketConnection`, framing by ``wsproto``): one-byte
  channel prefixes (``v4``/``v5.channel.k8s.io``, ``base64.*``), or SPDY frames
  tunnelled in binary messages (``SPDY/3.1+portforward.k8s.io``).

On top of them sit the two applications: :class:`ExecSession` (exec and attach:
a :mod:`~clustergateway.testing.commands` process wired to stdin, stdout,
stderr, the error/status stream and resize events) and :class:`PortForwarder`
(each forwarded connection dials ``127.0.0.1:<port>``).

Backpressure is end to end and never buffers without bound: every connection
registers itself as its transport's producer.  When the client transport's
write buffer fills, the connection stops reading the client and pauses every
producer feeding it (port-forward target sockets); when a target socket's
write buffer fills, the client connection stops reading.  No exception from a
handler escapes to the reactor: it ends the connection and is logged.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    TextMessage,
)
from zope.interface import implementer

from clustergateway.testing.commands import (
    CommandEnv,
    CommandNotFound,
    CommandSet,
    ProcessIO,
    TerminalSize,
    onlcr,
)
from clustergateway.testing.spdy import RstStatus, SpdySession, SpdyStream

__all__ = [
    "ExecOptions",
    "ExecSession",
    "PortForwarder",
    "SpdyConnection",
    "WebSocketConnection",
    "exec_status",
]

_log = Logger()

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255
#: How long a finished session waits for the client to hang up before closing.
CLOSE_GRACE = 5.0
#: Most bytes queued for a port-forward target that is still connecting.
MAX_PENDING_TARGET_BYTES = 256 * 1024
#: How long a terminal session waits for the client's first size before starting.
FIRST_SIZE_WAIT = 0.5
#: kubelet's default for the client to open its SPDY streams.
STREAM_CREATION_TIMEOUT = 30.0


def exec_status(code: int | None, argv: list[str], error: str | None = None) -> dict[str, Any]:
    """The ``metav1.Status`` kubelet writes on the error stream when a command ends.

    ``code`` 0 is ``Success``; another code is ``NonZeroExitCode`` with an
    ``ExitCode`` cause; ``error`` (the command could not start) an
    ``InternalError``.  Same JSON shape as Go's ``json.Marshal(status)``.
    """
    if error is not None:
        message = f"error executing command in container: {error}"
        return {
            "metadata": {},
            "status": "Failure",
            "message": f"Internal error occurred: {message}",
            "reason": "InternalError",
            "details": {"causes": [{"message": message}]},
            "code": 500,
        }
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: error executing command "
            f"[{' '.join(argv)}], exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


@attrs.frozen
class ExecOptions:
    """What an exec/attach request asked for (after kubelet's rules)."""

    command: tuple[str, ...]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


# -- flow control shared by both connection kinds ---------------------------


@implementer(IPushProducer)
class _ReadPause:
    """A producer handed to a consumer (a target socket) that pauses client reads."""

    def __init__(self, connection: _UpgradedConnection, key: object):
        self._connection = connection
        self._key = key

    def pauseProducing(self) -> None:
        self._connection.pause_reading(self._key)

    def resumeProducing(self) -> None:
        self._connection.resume_reading(self._key)

    def stopProducing(self) -> None:
        self._connection.resume_reading(self._key)


@implementer(IPushProducer)
class _UpgradedConnection(Protocol):
    """Base of the client-facing protocols: pause bookkeeping and safe teardown."""

    transport: Any  # ITransport & IPushProducer (TCP or TLS); typed loosely for mypy

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._read_pauses: set[object] = set()
        self._sources: set[Any] = set()
        self._write_blocked = False
        self.finished = False
        self._close_timer: Any = None
        self.on_lost: list[Callable[[], None]] = []

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)

    # reading the client
    def pause_reading(self, key: object) -> None:
        """Stop reading the client while ``key`` (a slow consumer) needs it."""
        if not self._read_pauses and self.transport is not None:
            self.transport.pauseProducing()
        self._read_pauses.add(key)

    def resume_reading(self, key: object) -> None:
        if key in self._read_pauses:
            self._read_pauses.discard(key)
            if not self._read_pauses and self.transport is not None and not self.finished:
                self.transport.resumeProducing()

    # writing to the client: producers that feed us
    def add_source(self, producer: Any) -> None:
        """``producer`` writes to the client; pause it while the client is slow."""
        self._sources.add(producer)
        if self._write_blocked:
            producer.pauseProducing()

    def remove_source(self, producer: Any) -> None:
        self._sources.discard(producer)

    def pauseProducing(self) -> None:
        self._write_blocked = True
        self.pause_reading("client-write-buffer")
        for source in list(self._sources):
            source.pauseProducing()

    def resumeProducing(self) -> None:
        self._write_blocked = False
        self.resume_reading("client-write-buffer")
        for source in list(self._sources):
            source.resumeProducing()

    def stopProducing(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """Close the client connection (queued bytes are still written).

        The producer registered in ``connectionMade`` goes first: a TLS
        transport postpones its shutdown (close_notify, then the TCP close)
        until its producer is unregistered, so without that the connection
        stayed open until the client hung up, unlike a real kubelet's.
        """
        self.finished = True
        if self.transport is not None:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def close_after_grace(self) -> None:
        """Give the client :data:`CLOSE_GRACE` seconds to hang up itself, then close."""
        if self._close_timer is None:
            self._close_timer = self.reactor.callLater(CLOSE_GRACE, self.close_now)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.finished = True
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        for callback in self.on_lost:
            try:
                callback()
            except Exception:
                _log.failure("cleanup after a pod stream connection failed")


class SpdyConnection(_UpgradedConnection):
    """SPDY/3.1 on the raw (TLS) connection; ``on_stream`` gets each client stream."""

    def __init__(self, reactor: Any, on_stream: Callable[[SpdyStream], None]):
        super().__init__(reactor)
        self.session = SpdySession(
            write=self._write, close_transport=self.close_now, on_stream=on_stream
        )
        self.on_lost.append(self.session.connection_lost)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.finished:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self.session.data_received(data)


class WebSocketConnection(_UpgradedConnection):
    """A server WebSocket after the handshake; messages go to ``on_message``.

    ``on_message(data)`` gets each complete data message as bytes (text
    messages UTF-8 encoded); ``on_close()`` runs once when the peer closes or
    the connection drops.
    """

    #: The largest message accepted (kubectl writes at most 32 KiB at a time).
    MAX_MESSAGE = 16 * 1024 * 1024

    def __init__(self, reactor: Any) -> None:
        super().__init__(reactor)
        self.ws = WsConnection(ConnectionType.SERVER)
        self.on_message: Callable[[bytes], None] = lambda data: None
        self.on_close: Callable[[], None] = lambda: None
        self._message = bytearray()
        self._closed_notified = False
        self.on_lost.append(self._notify_close)

    def send(self, data: bytes) -> None:
        """Send one binary message (dropped once closing)."""
        if self.transport is None or self.ws.state is not ConnectionState.OPEN:
            return
        self.transport.write(self.ws.send(_bytes_message(data)))

    def send_text(self, text: str) -> None:
        if self.transport is None or self.ws.state is not ConnectionState.OPEN:
            return
        self.transport.write(self.ws.send(TextMessage(data=text)))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the TCP connection ends after the reply (or a grace)."""
        if self.transport is None:
            return
        if self.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self.transport.write(self.ws.send(CloseConnection(code=code, reason=reason)))
        if self.ws.state is ConnectionState.CLOSED:
            self.close_now()
        else:
            self.close_after_grace()

    def dataReceived(self, data: bytes) -> None:
        if self.finished:
            return
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                self._handle(event)
        except Exception:
            _log.failure("WebSocket pod stream failed")
            self.close_now()

    def _handle(self, event: object) -> None:
        if isinstance(event, Message):
            chunk = event.data.encode("utf-8") if isinstance(event, TextMessage) else event.data
            if len(self._message) + len(chunk) > self.MAX_MESSAGE:
                self.close(1009, "message too big")
                return
            if event.message_finished and not self._message:
                self.on_message(bytes(chunk))
            else:
                self._message += chunk
                if event.message_finished:
                    message, self._message = bytes(self._message), bytearray()
                    self.on_message(message)
        elif isinstance(event, Ping):
            self.transport.write(self.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if self.ws.state is ConnectionState.REMOTE_CLOSING:
                self.transport.write(self.ws.send(event.response()))
            self._notify_close()
            self.close_now()

    def _notify_close(self) -> None:
        if not self._closed_notified:
            self._closed_notified = True
            self.on_close()


def _bytes_message(data: bytes) -> BytesMessage:
    return BytesMessage(data=data)


class TunnelledSpdy:
    """SPDY frames carried in WebSocket binary messages (kubectl >= 1.31 port-forward)."""

    def __init__(self, websocket: WebSocketConnection, on_stream: Callable[[SpdyStream], None]):
        self.websocket = websocket
        self.session = SpdySession(
            write=websocket.send, close_transport=websocket.close, on_stream=on_stream
        )
        websocket.on_message = self.session.data_received
        websocket.on_close = self.session.connection_lost


# -- exec and attach ----------------------------------------------------------


class _ResizeDecoder:
    """kubectl writes ``{"Width":W,"Height":H}`` objects back to back (JSON encoder)."""

    def __init__(self, on_size: Callable[[TerminalSize], None]):
        self._buffer = ""
        self._decoder = json.JSONDecoder()
        self._on_size = on_size

    def feed(self, data: bytes) -> None:
        self._buffer += data.decode("utf-8", "replace")
        if len(self._buffer) > 64 * 1024:
            self._buffer = ""  # garbage; forget it
            return
        while True:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = ""
                return
            try:
                value, end = self._decoder.raw_decode(text)
            except ValueError:
                self._buffer = text
                return
            self._buffer = text[end:]
            if isinstance(value, dict):
                try:
                    size = TerminalSize(int(value.get("Width", 0)), int(value.get("Height", 0)))
                except (TypeError, ValueError):
                    continue
                self._on_size(size)


@attrs.define(eq=False)
class ExecSession:
    """One exec/attach: a process wired to the client's standard streams.

    The transport side supplies ``send_stdout``, ``send_stderr``, ``send_status``
    (the error stream) and ``finish`` (close streams, then the connection).
    """

    reactor: Any
    commands: CommandSet
    options: ExecOptions
    env: CommandEnv
    send_stdout: Callable[[bytes], None]
    send_stderr: Callable[[bytes], None]
    send_status: Callable[[dict[str, Any]], None]
    finish: Callable[[], None]
    attach: bool = False
    process: Any = None
    done: bool = False
    _resize: _ResizeDecoder | None = None
    _sized: bool = False
    _running: bool = False
    _size_timer: Any = None
    _early_stdin: list[bytes] = attrs.field(factory=list)
    _early_close: bool = False

    def start(self) -> None:
        """Spawn the command (or, for attach, the container's main process).

        With a terminal the command waits for the client's first size (kubectl
        sends it at once) for up to :data:`FIRST_SIZE_WAIT` seconds, so a command
        like ``stty size`` sees the real size.  Input arriving meanwhile is kept.
        """
        options = self.options
        self.env.tty = options.tty
        argv = list(options.command) if not self.attach else ["cat"]
        process_io = ProcessIO(self._stdout, self._stderr, self._exited)
        try:
            self.process = self.commands.spawn(argv, process_io, self.env)
        except CommandNotFound as exc:
            self._end(exec_status(None, argv, error=f"failed to exec in container: {exc}"))
            return
        if options.tty and not self._sized:
            self._size_timer = self.reactor.callLater(FIRST_SIZE_WAIT, self._run)
        else:
            self._run()

    def _run(self) -> None:
        if self._running or self.done or self.process is None:
            return
        if self._size_timer is not None and self._size_timer.active():
            self._size_timer.cancel()
        self._running = True
        if not (self.attach and not self.options.stdin):
            # (attach without stdin: the main process neither reads nor ends)
            self.process.start()
        early, self._early_stdin = self._early_stdin, []
        for data in early:
            self.stdin(data)
        if self._early_close:
            self.stdin_closed()

    def _stdout(self, data: bytes) -> None:
        if self.options.stdout and not self.done:
            self.send_stdout(onlcr(data) if self.options.tty else data)

    def _stderr(self, data: bytes) -> None:
        if self.done:
            return
        if self.options.tty:
            self._stdout(data)  # a terminal merges the two
        elif self.options.stderr:
            self.send_stderr(data)

    def _exited(self, code: int) -> None:
        self._end(exec_status(code, list(self.options.command)))

    def _end(self, status: dict[str, Any]) -> None:
        if self.done:
            return
        self.done = True
        self.send_status(status)
        self.finish()

    def stdin(self, data: bytes) -> None:
        if self.process is None or not self.options.stdin or self.done:
            return
        if not self._running:
            self._early_stdin.append(data)
        else:
            self.process.stdin(data)

    def stdin_closed(self) -> None:
        if self.process is None or not self.options.stdin or self.done:
            return
        if not self._running:
            self._early_close = True
        else:
            self.process.stdin_closed()

    def resize(self, data: bytes) -> None:
        if self._resize is None:
            self._resize = _ResizeDecoder(self._apply_size)
        self._resize.feed(data)

    def _apply_size(self, size: TerminalSize) -> None:
        self._sized = True
        if self.process is not None and not self.done:
            self.process.resize(size)
            self._run()
        else:
            self.env.size = size

    def client_gone(self) -> None:
        if self._size_timer is not None and self._size_timer.active():
            self._size_timer.cancel()
        if self.process is not None and not self.done:
            self.done = True
            self.process.terminate()


def serve_exec_spdy(
    connection: SpdyConnection,
    protocol_version: str,
    make_session: Callable[..., ExecSession],
) -> None:
    """Wire an exec/attach onto a SPDY connection (kubelet's stream handshake).

    The client opens one stream per standard stream, each with a
    ``streamtype`` header; the command starts once all expected streams exist.
    """
    streams: dict[str, SpdyStream] = {}
    state: dict[str, Any] = {}

    def send_status(status: dict[str, Any]) -> None:
        error = streams.get("error")
        if error is None:
            return
        if protocol_version in ("v4.channel.k8s.io", "v5.channel.k8s.io"):
            error.write(json.dumps(status, separators=(",", ":")).encode())
        elif status.get("status") != "Success":
            error.write(str(status.get("message", "error")).encode())

    def finish() -> None:
        for stream in streams.values():
            stream.close()
        connection.close_after_grace()

    session = make_session(
        send_stdout=lambda data: streams["stdout"].write(data) if "stdout" in streams else None,
        send_stderr=lambda data: streams["stderr"].write(data) if "stderr" in streams else None,
        send_status=send_status,
        finish=finish,
    )
    options = session.options
    expected = {"error"}
    if options.stdin:
        expected.add("stdin")
    if options.stdout:
        expected.add("stdout")
    if options.stderr and not options.tty:
        expected.add("stderr")
    if options.tty and protocol_version not in ("", "channel.k8s.io", "v2.channel.k8s.io"):
        expected.add("resize")

    def on_stream(stream: SpdyStream) -> None:
        kind = stream.header("streamtype", "") or ""
        if kind not in ("error", "stdin", "stdout", "stderr", "resize") or kind in streams:
            stream.reset(RstStatus.REFUSED_STREAM)
            return
        stream.reply()
        streams[kind] = stream
        if kind == "stdin":
            stream.on_data = session.stdin
            stream.on_end = session.stdin_closed
            stream.on_reset = lambda _status: session.stdin_closed()
        elif kind == "resize":
            stream.on_data = session.resize
        if expected <= set(streams) and not state.get("started"):
            state["started"] = True
            timer = state.pop("timer", None)
            if timer is not None and timer.active():
                timer.cancel()
            session.start()

    def too_slow() -> None:
        _log.info("exec client did not open its streams in time")
        connection.session.go_away()

    connection.session.on_stream = on_stream
    state["timer"] = connection.reactor.callLater(STREAM_CREATION_TIMEOUT, too_slow)

    def lost() -> None:
        timer = state.get("timer")
        if timer is not None and timer.active():
            timer.cancel()
        session.client_gone()

    connection.on_lost.append(lost)


def _channel_sender(
    websocket: WebSocketConnection, base64_codec: bool
) -> Callable[[int, bytes], None]:
    """Send ``data`` on a channel: a channel byte + bytes, or ``'0'+n`` + base64 text."""

    def send(channel: int, data: bytes) -> None:
        if base64_codec:
            websocket.send_text(chr(ord("0") + channel) + base64.b64encode(data).decode())
        else:
            websocket.send(bytes([channel]) + data)

    return send


def _channel_message(message: bytes, base64_codec: bool) -> tuple[int, bytes] | None:
    """Split a received channel message into (channel, payload); None if unusable."""
    if not message:
        return None
    channel, data = message[0], message[1:]
    if base64_codec:
        channel -= ord("0")
        try:
            data = base64.b64decode(data)
        except ValueError:
            return None
    return channel, data


def serve_exec_websocket(
    websocket: WebSocketConnection,
    subprotocol: str,
    make_session: Callable[..., ExecSession],
) -> None:
    """Wire an exec/attach onto a channel WebSocket (v5/v4/base64, kubelet's format)."""
    base64_codec = subprotocol.startswith("base64.")
    version = subprotocol.removeprefix("base64.")
    structured_status = version in ("v4.channel.k8s.io", "v5.channel.k8s.io")

    send = _channel_sender(websocket, base64_codec)

    def send_status(status: dict[str, Any]) -> None:
        if structured_status:
            send(ERROR, json.dumps(status, separators=(",", ":")).encode())
        elif status.get("status") != "Success":
            send(ERROR, str(status.get("message", "error")).encode())

    session = make_session(
        send_stdout=lambda data: send(STDOUT, data),
        send_stderr=lambda data: send(STDERR, data),
        send_status=send_status,
        finish=lambda: websocket.close(1000),
    )

    def on_message(message: bytes) -> None:
        parsed = _channel_message(message, base64_codec)
        if parsed is None:
            return
        channel, data = parsed
        if channel == STDIN:
            session.stdin(data)
        elif channel == RESIZE:
            session.resize(data)
        elif channel == CLOSE and version == "v5.channel.k8s.io" and data[:1] == bytes([STDIN]):
            session.stdin_closed()

    websocket.on_message = on_message
    websocket.on_close = session.client_gone
    session.start()


# -- port-forward ---------------------------------------------------------------


class _TargetProtocol(Protocol):
    """The simulator's TCP connection to ``127.0.0.1:<port>`` for one forwarded stream."""

    transport: Any

    def __init__(self, pair: _ForwardedConnection):
        self.pair = pair

    def connectionMade(self) -> None:
        self.pair.target_connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.pair.from_target(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.pair.target_lost()


class _TargetFactory(ClientFactory):
    noisy = False

    def __init__(self, pair: _ForwardedConnection):
        self.pair = pair

    def buildProtocol(self, addr: Any) -> _TargetProtocol:
        return _TargetProtocol(self.pair)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.pair.target_failed(reason)


@attrs.define(eq=False)
class _ForwardedConnection:
    """One forwarded TCP connection: client data stream <-> target socket.

    ``send_data``/``send_error`` write to the client, ``close_data`` ends the
    client's view of the data (FIN), ``done`` is called once at the end.
    """

    forwarder: PortForwarder
    port: int
    send_data: Callable[[bytes], None]
    send_error: Callable[[str], None]
    close_data: Callable[[], None]
    done: Callable[[], None]
    target: _TargetProtocol | None = None
    pending: list[bytes] = attrs.field(factory=list)
    pending_size: int = 0
    client_ended: bool = False
    finished: bool = False
    connector: Any = None

    def start(self) -> None:
        self.connector = self.forwarder.reactor.connectTCP(
            "127.0.0.1", self.port, _TargetFactory(self), timeout=10
        )

    # client -> target
    def from_client(self, data: bytes) -> None:
        if self.finished:
            return
        if self.target is None:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > MAX_PENDING_TARGET_BYTES:
                self.forwarder.connection.pause_reading(("connecting", self))
            return
        self.target.transport.write(data)

    def client_closed(self) -> None:
        """The client finished sending (FIN on its data stream)."""
        self.client_ended = True
        if self.target is not None and self.target.transport is not None:
            # No more client bytes: drop the producer first.  With a paused producer
            # registered, Twisted's doWrite resumes it instead of half-closing, and
            # the target would never see EOF.
            self.target.transport.unregisterProducer()
            self.forwarder.connection.resume_reading(self)
            half_close = getattr(self.target.transport, "loseWriteConnection", None)
            if half_close is not None:
                half_close()
            else:
                self.target.transport.loseConnection()

    def client_reset(self) -> None:
        """The client gave up on this connection: drop the target."""
        self.client_ended = True
        if self.target is not None and self.target.transport is not None:
            self.target.transport.loseConnection()
        elif self.connector is not None and self.target is None:
            self.connector.stopConnecting()
        self._finish()

    # target events
    def target_connected(self, target: _TargetProtocol) -> None:
        self.target = target
        if self.finished:
            target.transport.loseConnection()
            return
        connection = self.forwarder.connection
        target.transport.registerProducer(_ReadPause(connection, self), True)
        connection.add_source(target.transport)
        pending, self.pending, self.pending_size = self.pending, [], 0
        for data in pending:
            target.transport.write(data)
        connection.resume_reading(("connecting", self))
        if self.client_ended:
            self.client_closed()

    def from_target(self, data: bytes) -> None:
        if not self.finished:
            self.send_data(data)

    def target_lost(self) -> None:
        if self.target is not None:
            self.forwarder.connection.remove_source(self.target.transport)
        self.forwarder.connection.resume_reading(self)
        self.forwarder.connection.resume_reading(("connecting", self))
        self._finish()

    def target_failed(self, reason: Failure) -> None:
        if self.finished:
            return
        self.forwarder.connection.resume_reading(("connecting", self))
        self.send_error(
            f"error forwarding port {self.port} to pod {self.forwarder.pod_name}, "
            f"uid {self.forwarder.pod_uid}: failed to connect to localhost:{self.port} "
            f"inside namespace {self.forwarder.namespace}: dial tcp 127.0.0.1:{self.port}: "
            f"{reason.getErrorMessage()}"
        )
        self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.close_data()
        self.done()


@attrs.define(eq=False)
class PortForwarder:
    """Port-forward for one pod connection; knows how to dial the named ports."""

    reactor: Any  # IReactorTCP & IReactorTime
    connection: _UpgradedConnection
    namespace: str
    pod_name: str
    pod_uid: str
    forwards: set[_ForwardedConnection] = attrs.field(factory=set)

    def open(
        self,
        port: int,
        send_data: Callable[[bytes], None],
        send_error: Callable[[str], None],
        close_data: Callable[[], None],
        done: Callable[[], None],
    ) -> _ForwardedConnection:
        forward = _ForwardedConnection(self, port, send_data, send_error, close_data, lambda: None)

        def finished() -> None:
            self.forwards.discard(forward)
            done()

        forward.done = finished
        self.forwards.add(forward)
        forward.start()
        return forward

    def client_gone(self) -> None:
        for forward in list(self.forwards):
            forward.client_reset()


def serve_portforward_spdy(
    forwarder: PortForwarder, session: SpdySession, on_lost: list[Callable[[], None]]
) -> None:
    """kubelet's SPDY port-forward: pairs of error/data streams per ``requestid``."""
    pairs: dict[str, dict[str, SpdyStream]] = {}

    def request_id(stream: SpdyStream) -> str:
        value = stream.header("requestid")
        if value:
            return value
        # Old clients: the error stream's id, or the data stream's id minus 2.
        offset = 2 if stream.header("streamtype") == "data" else 0
        return str(stream.stream_id - offset)

    def on_stream(stream: SpdyStream) -> None:
        kind = stream.header("streamtype", "")
        if kind not in ("data", "error"):
            stream.reset(RstStatus.REFUSED_STREAM)
            return
        rid = request_id(stream)
        pair = pairs.setdefault(rid, {})
        if kind in pair:
            stream.reset(RstStatus.STREAM_IN_USE)
            return
        stream.reply()
        pair[kind] = stream
        if kind == "error":
            stream.on_data = lambda data: None  # the client writes nothing here
        if "data" in pair and "error" in pair:
            _start_pair(rid, pair)

    def _start_pair(rid: str, pair: dict[str, SpdyStream]) -> None:
        data, error = pair["data"], pair["error"]
        try:
            port = int(data.header("port", "") or "")
            if not 0 < port < 65536:
                raise ValueError(port)
        except ValueError:
            error.write(f"invalid port {data.header('port')!r}".encode())
            error.close()
            data.close()
            pairs.pop(rid, None)
            return

        def done() -> None:
            error.close()
            pairs.pop(rid, None)

        forward = forwarder.open(
            port,
            send_data=data.write,
            send_error=lambda text: error.write(text.encode()),
            close_data=data.close,
            done=done,
        )
        data.producer = None
        data.on_data = forward.from_client
        data.on_end = forward.client_closed
        data.on_reset = lambda _status: forward.client_reset()

    session.on_stream = on_stream
    on_lost.append(forwarder.client_gone)


def _send_text(send: Callable[[int, bytes], None], channel: int, text: str) -> None:
    send(channel, text.encode())


def serve_portforward_websocket(
    forwarder: PortForwarder, websocket: WebSocketConnection, ports: list[int], base64_codec: bool
) -> None:
    """kubelet's channel port-forward: channels 2i (data) and 2i+1 (error) per port."""
    remaining = {"count": len(ports)}
    forwards: dict[int, _ForwardedConnection] = {}

    send = _channel_sender(websocket, base64_codec)

    def one_done() -> None:
        remaining["count"] -= 1
        if remaining["count"] == 0:
            websocket.close(1000)

    for index, port in enumerate(ports):
        prefix = port.to_bytes(2, "little")
        send(2 * index, prefix)
        send(2 * index + 1, prefix)

    for index, port in enumerate(ports):
        data_channel = 2 * index
        forwards[data_channel] = forwarder.open(
            port,
            send_data=functools.partial(send, data_channel),
            send_error=functools.partial(_send_text, send, data_channel + 1),
            close_data=lambda: None,
            done=one_done,
        )

    def on_message(message: bytes) -> None:
        parsed = _channel_message(message, base64_codec)
        if parsed is None:
            return
        channel, data = parsed
        forward = forwards.get(channel)
        if forward is not None and data:
            forward.from_client(data)

    websocket.on_message = on_message
    websocket.on_close = forwarder.client_gone
