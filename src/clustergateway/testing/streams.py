"""The simulated pod's stream subresources: ``log``, ``exec``, ``attach``, ``portforward``.

The REST core resolves the pod and calls :meth:`PodStreams.render`, which
answers like kube-apiserver + kubelet together would:

- ``log``: the pod's lines as ``text/plain``; ``follow=true`` keeps the chunked
  response open and appends a generated line every ``follow_interval``
  seconds until the client leaves (``tailLines``, ``timestamps``,
  ``limitBytes``, ``container`` honoured);
- ``exec``/``attach``: HTTP/1.1 Upgrade to WebSocket (``v5``/``v4.channel.k8s.io``
  and their ``base64.`` variants, kubectl >= 1.30 and the Python client) or to
  SPDY/3.1 (``X-Stream-Protocol-Version`` ``v5``..``v1``; kubectl 1.29 and the
  fallback of newer ones), running a command from
  :mod:`~clustergateway.testing.commands`;
- ``portforward``: SPDY (``portforward.k8s.io``), SPDY tunnelled in WebSocket
  (``SPDY/3.1+portforward.k8s.io``, kubectl >= 1.31) and the channel WebSocket
  protocol (``ports=``, the Python client), each forwarded connection dialling
  ``127.0.0.1:<port>`` on the simulator's machine.

Errors before the upgrade are ``Status`` objects, as kubelet/apiserver send them.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Mapping
from typing import Any, cast

import attrs
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET
from wsproto.utilities import generate_accept_token
from zope.interface import implementer

from clustergateway.errors import BadRequest, Forbidden, NotFound, StatusError, render_status
from clustergateway.fence.takeover import can_take_over, take_over
from clustergateway.testing.commands import CommandEnv, CommandSet, PodFilesystem
from clustergateway.testing.upgraded import (
    ExecOptions,
    ExecSession,
    PortForwarder,
    SpdyConnection,
    TunnelledSpdy,
    WebSocketConnection,
    serve_exec_spdy,
    serve_exec_websocket,
    serve_portforward_spdy,
    serve_portforward_websocket,
)

__all__ = [
    "EXEC_SPDY_PROTOCOLS",
    "EXEC_WEBSOCKET_PROTOCOLS",
    "PodStreams",
    "negotiate",
    "parse_exec_options",
    "parse_ports",
]

#: SPDY protocol versions for exec/attach, preferred first (kubelet's list).
EXEC_SPDY_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
)
#: WebSocket subprotocols for exec/attach.
EXEC_WEBSOCKET_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "base64.v4.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
)
PORTFORWARD_SPDY_PROTOCOL = "portforward.k8s.io"
PORTFORWARD_TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
#: WebSocket subprotocols for channel port-forward (kubelet accepts these).
PORTFORWARD_WEBSOCKET_PROTOCOLS = (
    "v4.channel.k8s.io",
    "portforward.k8s.io",
    "base64.v4.channel.k8s.io",
    "base64.channel.k8s.io",
)

_TRUE = {"true", "1", "yes"}
_LOG_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def _values(args: Mapping[bytes, list[bytes]], name: str) -> list[str]:
    return [v.decode("utf-8", "replace") for v in args.get(name.encode(), [])]


def _flag(args: Mapping[bytes, list[bytes]], name: str, default: bool = False) -> bool:
    values = _values(args, name)
    if not values:
        return default
    return values[-1].strip().lower() in _TRUE


def _header_list(request: Any, name: str) -> list[str]:
    """All comma-separated tokens of every ``name`` header line."""
    raw = request.requestHeaders.getRawHeaders(name.encode(), [])
    return [
        token.strip()
        for line in raw
        for token in line.decode("latin-1").split(",")
        if token.strip()
    ]


def negotiate(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The first protocol the client offered that we support (client preference wins)."""
    for protocol in offered:
        if protocol in supported:
            return protocol
    return None


def pod_containers(pod: Mapping[str, Any]) -> list[str]:
    """Names of the pod's containers, in spec order."""
    spec = pod.get("spec") or {}
    return [c.get("name", "") for c in spec.get("containers") or [] if isinstance(c, dict)]


def resolve_container(pod: Mapping[str, Any], pod_name: str, requested: str) -> str:
    """The container a request addresses, with the apiserver's errors."""
    names = pod_containers(pod)
    if requested:
        if requested not in names:
            raise BadRequest(f"container {requested} is not valid for pod {pod_name}")
        return requested
    if len(names) == 1:
        return names[0]
    if not names:
        raise BadRequest(f"pod {pod_name} does not have a host assigned")
    raise BadRequest(
        f"a container name must be specified for pod {pod_name}, choose one of: [{' '.join(names)}]"
    )


def parse_exec_options(
    args: Mapping[bytes, list[bytes]], pod: Mapping[str, Any], pod_name: str, attach: bool
) -> ExecOptions:
    """Exec/attach query parameters, validated and defaulted like the apiserver/kubelet.

    ``stdout`` and ``stderr`` default to true (``PodExecOptions`` defaults);
    ``tty`` drops ``stderr`` (a terminal has one output).
    """
    command = tuple(_values(args, "command"))
    if not attach and not command:
        raise BadRequest("you must specify at least one command for the container")
    container = resolve_container(pod, pod_name, (_values(args, "container") or [""])[-1])
    stdin = _flag(args, "stdin")
    stdout = _flag(args, "stdout", True)
    stderr = _flag(args, "stderr", True)
    tty = _flag(args, "tty")
    if tty:
        stderr = False
    if not (stdin or stdout or stderr):
        raise BadRequest("you must specify at least 1 of stdin, stdout, stderr")
    return ExecOptions(command, container, stdin, stdout, stderr, tty)


def parse_ports(args: Mapping[bytes, list[bytes]]) -> list[int]:
    """``ports=`` (the client's name) or ``port=`` (kubelet's), comma-separated."""
    raw = _values(args, "ports") + _values(args, "port")
    if not raw:
        raise BadRequest('query parameter "port" is required')
    ports: list[int] = []
    for value in raw:
        if not value:
            raise BadRequest('query parameter "port" cannot be empty')
        for piece in value.split(","):
            try:
                port = int(piece)
            except ValueError:
                raise BadRequest(f'unable to parse "{value}" as a port') from None
            if not 0 < port < 65536:
                raise BadRequest(f'port "{value}" must be > 0 and < 65536')
            ports.append(port)
    return ports


def websocket_head(key: bytes, subprotocol: str | None) -> bytes:
    """The 101 answer to a WebSocket handshake."""
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + generate_accept_token(key),
    ]
    if subprotocol:
        lines.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def spdy_head(protocol: str | None) -> bytes:
    """The 101 answer to a SPDY/3.1 upgrade, echoing the chosen stream protocol."""
    lines = [b"HTTP/1.1 101 Switching Protocols", b"Connection: Upgrade", b"Upgrade: SPDY/3.1"]
    if protocol:
        lines.append(b"X-Stream-Protocol-Version: " + protocol.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _timestamp(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


@implementer(IPushProducer)
@attrs.define(eq=False)
class LogFollower:
    """``logs -f``: write the existing lines, then one generated line per interval.

    Registered as the request's producer, so a client that stops reading
    pauses the generator instead of filling memory.
    """

    reactor: Any
    request: Any
    container: str
    interval: float
    timestamps: bool
    limit_bytes: int | None
    next_number: int
    written: int = 0
    _loop: LoopingCall | None = None
    _stopped: bool = False

    def start(self, lines: list[str], first_stamp: float) -> None:
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addBoth(lambda _: self._stop())
        for index, line in enumerate(lines):
            self._emit(line, first_stamp + index)
        self.resumeProducing()

    def _emit(self, line: str, stamp: float) -> None:
        if self._stopped:
            return
        text = (f"{_timestamp(stamp)} " if self.timestamps else "") + line + "\n"
        data = text.encode()
        if self.limit_bytes is not None:
            data = data[: max(self.limit_bytes - self.written, 0)]
        self.written += len(data)
        if data:
            self.request.write(data)
        if self.limit_bytes is not None and self.written >= self.limit_bytes:
            self._stop()
            self.request.unregisterProducer()
            self.request.finish()

    def _tick(self) -> None:
        self._emit(f"{self.container}: follow line {self.next_number}", self.reactor.seconds())
        self.next_number += 1

    def pauseProducing(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def resumeProducing(self) -> None:
        if self._stopped or self._loop is not None:
            return
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False)

    def stopProducing(self) -> None:
        self._stop()

    def _stop(self) -> None:
        self._stopped = True
        self.pauseProducing()


@attrs.define(eq=False)
class PodStreams:
    """Serves the stream subresources of the simulated pods.

    ``log_lines_for(namespace, pod, container)`` supplies a pod's log.  Files
    written by ``kubectl cp`` (``tar``) persist per pod in ``filesystems``.
    """

    reactor: Any
    faults: Any
    log_lines_for: Callable[[str, str, str], list[str]]
    commands: CommandSet = attrs.field(factory=CommandSet)
    filesystems: dict[tuple[str, str], PodFilesystem] = attrs.field(factory=dict)
    follow_interval: float = 0.2
    connections: set[Any] = attrs.field(factory=set)

    _log = Logger()

    def render(
        self, request: Any, subresource: str, namespace: str, pod_name: str, pod: dict[str, Any]
    ) -> bytes | int:
        """Answer one pod stream request; ``NOT_DONE_YET`` once it streams."""
        try:
            if subresource == "log":
                return self._render_log(request, namespace, pod_name, pod)
            if subresource in ("exec", "attach"):
                return self._render_exec(request, subresource, namespace, pod_name, pod)
            if subresource == "portforward":
                return self._render_portforward(request, namespace, pod_name, pod)
            raise NotFound(f"pods/{subresource} is not a stream subresource")
        except StatusError as error:
            body: bytes = render_status(request, error)
            return body

    def filesystem(self, namespace: str, pod_name: str) -> PodFilesystem:
        """The in-memory files of a pod (created on first use)."""
        return self.filesystems.setdefault((namespace, pod_name), PodFilesystem())

    def close_all(self) -> None:
        """Drop every upgraded connection (the simulator is stopping)."""
        for connection in list(self.connections):
            connection.close_now()

    # -- log ----------------------------------------------------------------

    def _render_log(
        self, request: Any, namespace: str, pod_name: str, pod: dict[str, Any]
    ) -> bytes | int:
        args = request.args
        container = resolve_container(pod, pod_name, (_values(args, "container") or [""])[-1])
        if _flag(args, "previous"):
            raise BadRequest(
                f'previous terminated container "{container}" in pod "{pod_name}" not found'
            )
        tail = self._int_arg(args, "tailLines")
        limit = self._int_arg(args, "limitBytes", minimum=1)
        timestamps = _flag(args, "timestamps")
        lines = list(self.log_lines_for(namespace, pod_name, container))
        total = len(lines)
        first = 0
        if tail is not None:
            first = max(total - tail, 0)
            lines = lines[first:]
        request.setHeader(b"content-type", b"text/plain")
        epoch = _LOG_EPOCH.timestamp()
        if not _flag(args, "follow"):
            body = "".join(
                (f"{_timestamp(epoch + first + i)} " if timestamps else "") + line + "\n"
                for i, line in enumerate(lines)
            ).encode()
            if limit is not None:
                body = body[:limit]
            request.setHeader(b"content-length", str(len(body)).encode())
            return body
        follower = LogFollower(
            self.reactor,
            request,
            container,
            self.follow_interval,
            timestamps,
            limit,
            next_number=total + 1,
        )
        follower.start(lines, epoch + first)
        return NOT_DONE_YET

    @staticmethod
    def _int_arg(args: Mapping[bytes, list[bytes]], name: str, minimum: int = 0) -> int | None:
        values = _values(args, name)
        if not values:
            return None
        try:
            value = int(values[-1])
        except ValueError:
            raise BadRequest(f"{name}: invalid value {values[-1]!r}") from None
        if value < minimum:
            raise BadRequest(f"{name}: must be greater than or equal to {minimum}")
        return value

    # -- upgrades -------------------------------------------------------------

    def _upgrade_kind(self, request: Any) -> str:
        tokens = {t.lower() for t in _header_list(request, "upgrade")}
        if "websocket" in tokens:
            kind = "websocket"
        elif "spdy/3.1" in tokens:
            kind = "spdy"
        else:
            raise BadRequest("Upgrade request required")
        if not can_take_over(request):
            raise BadRequest("Upgrade request required: upgrades need an HTTP/1.1 connection")
        if kind == "websocket":
            if getattr(self.faults, "refuse_websocket", False):
                raise Forbidden("websocket upgrades are refused by the simulated cluster (fault)")
            if request.getHeader(b"sec-websocket-version") != b"13" or not request.getHeader(
                b"sec-websocket-key"
            ):
                raise BadRequest("bad WebSocket handshake: need Sec-WebSocket-Version 13 and a key")
        return kind

    def _track(self, connection: Any) -> None:
        self.connections.add(connection)
        connection.on_lost.append(lambda: self.connections.discard(connection))

    def _websocket(
        self, request: Any, supported: tuple[str, ...], allow_none: bool
    ) -> tuple[WebSocketConnection, str]:
        offered = _header_list(request, "sec-websocket-protocol")
        chosen = negotiate(offered, supported)
        if chosen is None and (offered or not allow_none):
            raise BadRequest(
                f"requested protocol(s) are not supported: {offered}; supports {list(supported)}"
            )
        connection = WebSocketConnection(self.reactor)
        self._track(connection)
        head = websocket_head(request.getHeader(b"sec-websocket-key"), chosen)
        take_over(request, cast(Any, connection), head)
        return connection, chosen or ""

    def _spdy_protocol(self, request: Any, supported: tuple[str, ...], allow_none: bool) -> str:
        offered = _header_list(request, "x-stream-protocol-version")
        if not offered and allow_none:
            return ""
        chosen = negotiate(offered, supported)
        if chosen is None:
            raise Forbidden(
                "unable to upgrade: unable to negotiate protocol: "
                f"client supports {offered}, server accepts {list(supported)}"
            )
        return chosen

    def _render_exec(
        self, request: Any, subresource: str, namespace: str, pod_name: str, pod: dict[str, Any]
    ) -> int:
        attach = subresource == "attach"
        options = parse_exec_options(request.args, pod, pod_name, attach)
        kind = self._upgrade_kind(request)
        env = CommandEnv(self.reactor, self.filesystem(namespace, pod_name), hostname=pod_name)
        make_session = functools.partial(
            ExecSession,
            reactor=self.reactor,
            commands=self.commands,
            options=options,
            env=env,
            attach=attach,
        )
        if kind == "websocket":
            websocket, chosen = self._websocket(request, EXEC_WEBSOCKET_PROTOCOLS, True)
            serve_exec_websocket(websocket, chosen, make_session)
        else:
            protocol = self._spdy_protocol(request, EXEC_SPDY_PROTOCOLS, True)
            connection = SpdyConnection(self.reactor, lambda stream: None)
            serve_exec_spdy(connection, protocol, make_session)
            self._track(connection)
            take_over(request, cast(Any, connection), spdy_head(protocol))
        self._log.debug(
            "{subresource} {namespace}/{pod} over {kind}",
            subresource=subresource,
            namespace=namespace,
            pod=pod_name,
            kind=kind,
        )
        return NOT_DONE_YET

    def _render_portforward(
        self, request: Any, namespace: str, pod_name: str, pod: dict[str, Any]
    ) -> int:
        kind = self._upgrade_kind(request)
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        if kind == "spdy":
            self._spdy_protocol(request, (PORTFORWARD_SPDY_PROTOCOL,), False)
            connection = SpdyConnection(self.reactor, lambda stream: None)
            forwarder = PortForwarder(self.reactor, connection, namespace, pod_name, uid)
            serve_portforward_spdy(forwarder, connection.session, connection.on_lost)
            self._track(connection)
            take_over(request, cast(Any, connection), spdy_head(PORTFORWARD_SPDY_PROTOCOL))
            return NOT_DONE_YET
        offered = _header_list(request, "sec-websocket-protocol")
        if PORTFORWARD_TUNNEL_PROTOCOL in offered:
            websocket, _ = self._websocket(request, (PORTFORWARD_TUNNEL_PROTOCOL,), False)
            tunnel = TunnelledSpdy(websocket, lambda stream: None)
            forwarder = PortForwarder(self.reactor, websocket, namespace, pod_name, uid)
            serve_portforward_spdy(forwarder, tunnel.session, websocket.on_lost)
            return NOT_DONE_YET
        ports = parse_ports(request.args)
        websocket, chosen = self._websocket(request, PORTFORWARD_WEBSOCKET_PROTOCOLS, True)
        forwarder = PortForwarder(self.reactor, websocket, namespace, pod_name, uid)
        serve_portforward_websocket(forwarder, websocket, ports, chosen.startswith("base64."))
        return NOT_DONE_YET
