"""HTTP/1.1 upgrades (exec, attach, port-forward, cp): forward the head, then splice.

``Agent`` swallows ``101`` (twisted-notes §1.4), so an upgrade request goes
over a raw connection: the gateway writes the request head (with the
cluster's credential instead of the caller's) and reads the response head.

- ``101``: the head is relayed verbatim (it carries ``Sec-WebSocket-Accept``,
  the chosen subprotocol, ``X-Stream-Protocol-Version``), the client
  connection is taken over (:func:`clustergateway.fence.takeover.take_over`, which
  also hands over bytes the client sent early) and bytes flow both ways
  untouched.  Each side's transport is registered as the producer of the
  other, exactly as ``twisted.protocols.portforward`` does, so neither
  direction buffers without bound.
- anything else (a cluster refusing WebSocket answers 400/403, and kubectl
  then falls back to SPDY): relayed verbatim, head and body, then both
  connections are closed.

When either side ends, the other is closed.  A watchdog closes a splice that
has been idle (no byte either way) or alive for too long.

Metrics (when the proxy gives the splice its cluster's recorder): an open
upgrade session from the relayed 101 until the splice closes, and the bytes
that went through (spliced or relayed after the head), added once at the end.
The request itself (in flight, code 101, duration) is recorded by the proxy
around ``request.notifyFinish()``, which fires once the client's connection is
gone.  The splice does not look into the upgraded protocol: a session "ends"
when one side closes its connection, so a client that finished its WebSocket
close handshake but keeps its socket open, talking to a cluster that does the
same, stays open (and in flight) until one of them hangs up or the watchdog
fires.  Real apiservers hang up after the close handshake.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from clustergateway.errors import BadGateway, BadRequest, GatewayTimeout
from clustergateway.fence.takeover import can_take_over, take_over
from clustergateway.fence.twisted_web import ChunkedTransferDecoder
from clustergateway.observe.metrics import ClusterMetrics
from clustergateway.proxy.answer import WebAnswer, write_status
from clustergateway.proxy.forward import report_failure, upstream_error
from clustergateway.proxy.h1client import NO_BODY_CODES

__all__ = ["SpliceSettings", "UpgradeSplice"]

_MAX_HEAD = 64 * 1024


@attrs.frozen
class SpliceSettings:
    """Limits of an upgraded connection.

    ``idle_timeout``: close after this long without a byte in either direction
    (kubelet's own streaming idle timeout is 4 h).  ``max_lifetime``: close
    after this long regardless (None: never).  The idle timer also bounds the
    wait for the cluster's answer to the upgrade.
    """

    idle_timeout: float | None = 4 * 3600.0
    max_lifetime: float | None = 24 * 3600.0


def _parse_status(head: bytes) -> int | None:
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        return None
    try:
        code = int(parts[1])
    except ValueError:
        return None
    return code if 100 <= code <= 999 else None


def _framing(head: bytes) -> tuple[bool, int | None]:
    """``(chunked, content_length)`` of a response head."""
    chunked = False
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                length = None
    return chunked, length


class _UpstreamSide(Protocol):
    """The connection to the cluster."""

    def __init__(self, splice: UpgradeSplice) -> None:
        self.splice = splice
        #: Set while this connection counts as open in the cluster's metrics.
        self.metrics: ClusterMetrics | None = None
        self.lost = False

    def connectionMade(self) -> None:  # noqa: N802
        self.splice.upstream_connected(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.splice.from_upstream(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.lost = True
        metrics = self.metrics
        if metrics is not None:
            self.metrics = None
            metrics.upstream_closed()
        self.splice.upstream_lost(reason)

    def record_new(
        self, metrics: ClusterMetrics, dial_s: float | None, tls_s: float | None
    ) -> None:
        """Count this new connection (open until it is lost) with its dial and TLS times."""
        metrics.upstream_connected(dial_s, tls_s, False)
        if self.lost:
            metrics.upstream_closed()
        else:
            self.metrics = metrics


class _ClientSide(Protocol):
    """The caller's connection, once taken over from ``twisted.web``."""

    def __init__(self, splice: UpgradeSplice) -> None:
        self.splice = splice

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.splice.from_client(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.splice.client_lost(reason)


@attrs.define(eq=False)
class UpgradeSplice:
    """One upgrade request: dial, forward the head, then splice or relay.

    States: ``dialing`` → ``head`` (waiting for the response head) →
    ``spliced`` (after 101) or ``relaying`` (a non-101 answer, until its body
    ends) → ``closed``.
    """

    # Twisted's Request, reactor and transports are zope-interface/untyped
    # territory that mypy cannot check; they stay Any here.
    request: Any
    reactor: Any
    cluster: str
    settings: SpliceSettings = attrs.field(factory=SpliceSettings)
    #: The cluster's recorder (upgrade sessions, bytes); None records nothing.
    metrics: ClusterMetrics | None = None
    state: str = "new"
    _head: bytes = b""
    _buffer: bytes = b""
    _upstream: _UpstreamSide | None = None
    _client_transport: Any = None
    _connecting: Deferred[Any] | None = None
    _activity: int = 0
    _seen_activity: int = -1
    _last_change: float = 0.0
    _idle_timer: Any = None
    _life_timer: Any = None
    _remaining: int | None = None
    _decoder: Any = None
    _registered: bool = False
    #: Counted as an open upgrade session (after the 101, until closed).
    _session_open: bool = False
    _to_cluster: int = 0
    _from_cluster: int = 0
    #: The request's ``admission.Ticket`` (told how the cluster answered), or None.
    ticket: Any = None

    _log = Logger()

    def start(self, endpoint: Any, head: bytes) -> None:
        """Dial the cluster and send ``head`` (the request head and body)."""
        request = self.request
        if not can_take_over(request):
            _write_status(
                request, BadRequest("connection upgrades need an HTTP/1.1 connection")
            )
            return
        self._head = head
        self.state = "dialing"
        request.notifyFinish().addErrback(self._client_gone_early)
        self._start_watchdog()
        side = _UpstreamSide(self)
        metrics = self.metrics
        timed = getattr(endpoint, "connect_timed", None) if metrics is not None else None
        if metrics is None or timed is None:
            d = connectProtocol(endpoint, side)
        else:
            # Every upgrade dials a connection of its own: a new one, never pooled.
            d = timed(Factory.forProtocol(lambda: side))
            d.addCallback(lambda result: side.record_new(metrics, result[1], result[2]))
        self._connecting = d
        d.addErrback(self._dial_failed)

    # -- before the answer -------------------------------------------------

    def _dial_failed(self, failure: Failure) -> None:
        self._connecting = None
        if self.state != "dialing":
            return  # cancelled because the client left, or the watchdog fired
        self._close_timers()
        self.state = "closed"
        report_failure(self.ticket, failure)
        _write_status(self.request, upstream_error(self.cluster, failure))

    def _client_gone_early(self, _reason: Failure) -> None:
        if self.state in ("dialing", "head"):
            self._abort_upstream()

    def _abort_upstream(self) -> None:
        self.state = "closed"
        self._close_timers()
        if self._connecting is not None:
            d, self._connecting = self._connecting, None
            d.cancel()
        if self._upstream is not None and self._upstream.transport is not None:
            self._upstream.transport.abortConnection()  # type: ignore[attr-defined]

    def upstream_connected(self, upstream: _UpstreamSide) -> None:
        self._connecting = None
        if self.state != "dialing":
            upstream.transport.abortConnection()  # type: ignore[union-attr]
            return
        self._upstream = upstream
        self.state = "head"
        transport: Any = upstream.transport
        transport.write(self._head)
        self._head = b""

    def from_upstream(self, data: bytes) -> None:
        self._activity += 1
        state = self.state
        if state == "spliced":
            self._from_cluster += len(data)
            self._client_transport.write(data)
        elif state == "head":
            self._read_head(data)
        elif state == "relaying":
            self._from_cluster += len(data)
            self._relay(data)

    def _read_head(self, data: bytes) -> None:
        buffer = self._buffer + data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                self._fail_head(f"the response head is larger than {_MAX_HEAD} bytes")
            else:
                self._buffer = buffer
            return
        self._buffer = b""
        head, rest = buffer[: end + 4], buffer[end + 4 :]
        code = _parse_status(head)
        if code is None:
            self._fail_head("the cluster sent an invalid response")
            return
        if self.ticket is not None:
            self.ticket.answered()
        # The head is relayed raw, past Request.setResponseCode: record the code for logs/audit.
        self.request.code = code
        if code == 101:
            self._switch(head, rest)
        elif code < 200:
            self._read_head(rest)  # an interim answer: the real one follows
        else:
            self._start_relay(code, head, rest)

    def _fail_head(self, why: str) -> None:
        self._abort_upstream()
        _write_status(self.request, BadGateway(f"cluster {self.cluster}: {why}"))

    def _take_over(self, head: bytes) -> bool:
        try:
            client_side: Any = _ClientSide(self)
            self._client_transport = take_over(self.request, client_side, head)
        except Exception:
            self._log.failure(
                "Taking over the connection for cluster {cluster} failed", cluster=self.cluster
            )
            self._abort_upstream()
            return False
        return True

    def _cross_register(self) -> None:
        client = self._client_transport
        upstream: Any = self._upstream.transport if self._upstream else None
        if upstream is None or client is None:
            return
        # Client slow → stop reading the cluster; cluster slow → stop reading
        # the client (twisted.protocols.portforward.ProxyClient.connectionMade).
        client.registerProducer(upstream, True)
        upstream.registerProducer(client, True)
        self._registered = True

    # -- 101: splice ---------------------------------------------------------

    def _switch(self, head: bytes, rest: bytes) -> None:
        self.state = "spliced"
        if not self._take_over(head):
            return
        if self.state != "spliced":
            return  # the client left during the takeover
        if self.metrics is not None:
            self.metrics.upgrade_open(+1)
            self._session_open = True
        if rest:
            self._from_cluster += len(rest)
            self._client_transport.write(rest)
        self._cross_register()

    def from_client(self, data: bytes) -> None:
        self._activity += 1
        if self.state == "spliced":
            self._to_cluster += len(data)
            transport: Any = self._upstream.transport  # type: ignore[union-attr]
            transport.write(data)
        # relaying: the cluster refused the upgrade; the client's bytes go nowhere.

    # -- not 101: relay verbatim, then close -----------------------------------

    def _start_relay(self, code: int, head: bytes, rest: bytes) -> None:
        self.state = "relaying"
        chunked, length = _framing(head)
        if self.request.method == b"HEAD" or code in NO_BODY_CODES:
            length, chunked = 0, False
        if chunked:
            self._decoder = ChunkedTransferDecoder(lambda _data: None, self._relay_done)
        else:
            self._remaining = length
        if not self._take_over(head):
            return
        self._cross_register()
        if self._remaining == 0:
            self._close_both()
        elif rest:
            self._from_cluster += len(rest)
            self._relay(rest)

    def _relay(self, data: bytes) -> None:
        if self._decoder is not None:
            self._client_transport.write(data)
            try:
                self._decoder.dataReceived(data)
            except Exception:
                self._close_both()
        elif self._remaining is not None:
            data = data[: self._remaining]
            self._remaining -= len(data)
            self._client_transport.write(data)
            if self._remaining == 0:
                self._close_both()
        else:
            self._client_transport.write(data)  # ends when the cluster closes

    def _relay_done(self, _rest: bytes) -> None:
        self._decoder = None
        self._close_both()

    # -- the end ----------------------------------------------------------------

    def upstream_lost(self, reason: Failure) -> None:
        state = self.state
        if state == "head":
            self.state = "closed"
            self._close_timers()
            _write_status(
                self.request,
                BadGateway(
                    f"cluster {self.cluster}: the connection closed before the upgrade was answered"
                ),
            )
        elif state in ("spliced", "relaying"):
            self._close_both()

    def client_lost(self, reason: Failure) -> None:
        if self.state in ("spliced", "relaying"):
            self._close_both()

    def _close_both(self, abort: bool = False) -> None:
        """End a splice or relay: close both connections, record it once.

        Producers are unregistered first: a TLS transport postpones its
        shutdown until its producer is gone.
        """
        if self.state == "closed":
            return
        self.state = "closed"
        self._close_timers()
        self._record_close()
        client = self._client_transport
        upstream: Any = self._upstream.transport if self._upstream else None
        registered, self._registered = self._registered, False
        for transport in (client, upstream):
            if transport is None:
                continue
            if registered:
                transport.unregisterProducer()
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()

    def _record_close(self) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        if self._session_open:
            self._session_open = False
            metrics.upgrade_open(-1)
        metrics.bytes(self._to_cluster, self._from_cluster)

    # -- watchdog -------------------------------------------------------------

    def _start_watchdog(self) -> None:
        settings = self.settings
        if settings.idle_timeout:
            self._last_change = self.reactor.seconds()
            self._idle_timer = self.reactor.callLater(settings.idle_timeout / 4, self._check_idle)
        if settings.max_lifetime:
            self._life_timer = self.reactor.callLater(settings.max_lifetime, self._expire)

    def _check_idle(self) -> None:
        self._idle_timer = None
        idle = self.settings.idle_timeout
        assert idle is not None
        now = self.reactor.seconds()
        if self._activity != self._seen_activity:
            self._seen_activity = self._activity
            self._last_change = now
        elif now - self._last_change >= idle:
            self._expire_idle()
            return
        self._idle_timer = self.reactor.callLater(idle / 4, self._check_idle)

    def _expire_idle(self) -> None:
        self._log.info(
            "Closing an idle upgraded connection to cluster {cluster}", cluster=self.cluster
        )
        self._expire(idle=True)

    def _expire(self, idle: bool = False) -> None:
        self._life_timer = None
        if self.state in ("dialing", "head"):
            self._abort_upstream()
            _write_status(
                self.request,
                GatewayTimeout(f"cluster {self.cluster}: no answer to the upgrade request"),
            )
        else:
            if not idle:
                self._log.info(
                    "Closing an upgraded connection to cluster {cluster}: maximum lifetime",
                    cluster=self.cluster,
                )
            self._close_both(abort=True)

    def shut_down(self) -> None:
        """Shutdown after the grace period: close the session (or refuse it, unanswered)."""
        if self.state == "closed":
            return
        self._log.info(
            "Closing an upgraded connection to cluster {cluster}: the gateway is shutting down",
            cluster=self.cluster,
        )
        self._expire(idle=True)

    def _close_timers(self) -> None:
        for timer in (self._idle_timer, self._life_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._idle_timer = self._life_timer = None


def _write_status(request: Any, error: Any) -> None:
    """Answer twisted.web's ``request`` with ``error`` (``answer.write_status``)."""
    write_status(WebAnswer(request), error)
