"""Reaching a cluster's apiserver: a byte stream, then TLS, each with a time limit.

Two layers, so other ways to reach a cluster slot in without touching the rest:

- a :class:`StreamDialer` gives an ``IStreamClientEndpoint`` for a TCP byte
  stream to ``host:port``.  :class:`DirectDialer` connects directly; an HTTP
  ``CONNECT`` or SOCKS5 dialer (``proxy-url``) returns an endpoint that
  tunnels instead;
- :class:`UpstreamEndpoint` runs that endpoint under a connect time limit and,
  for ``https``, completes the TLS handshake (under its own limit) **before**
  the application protocol is connected, so a certificate problem is reported
  as such (not as a lost request) and a handshake that stalls is a timeout.

Failures become :class:`DialError` (→ 502) or :class:`DialTimeout` (→ 504),
whose messages name the address and the cause and are safe to show a caller.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as _Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from clustergateway.fence.tlssocket import ClientTLSFactory
from clustergateway.proxy.paths import ip_version
from clustergateway.proxy.tls import verify_error_of

__all__ = [
    "DialError",
    "DialTimeout",
    "DirectDialer",
    "NoDelayEndpoint",
    "StreamDialer",
    "TunnelError",
    "TunnelLost",
    "TunnelTimeout",
    "UpstreamEndpoint",
    "describe_failure",
]


class DialError(Exception):
    """The cluster could not be reached; the message is fit for the caller."""


class DialTimeout(DialError):
    """Connecting or the TLS handshake took longer than allowed."""


class TunnelError(Exception):
    """Reaching the cluster through an egress proxy failed.

    The text starts ``via proxy <scheme>://<host>:<port>`` (never with the
    proxy's credentials) and says what the proxy answered.
    """


class TunnelLost(error.ConnectionLost):
    """The tunnel under an established connection went away (a konnectivity channel or
    call lost): the cluster did not end the connection.  A watch relayed over it may end
    cleanly at an event boundary (``forward.tunnel_cut_is_clean``)."""


class TunnelTimeout(TunnelError):
    """The egress proxy did not set up the tunnel in time (a 504, like other dial timeouts)."""


class StreamDialer(Protocol):
    """Where TCP byte streams to a cluster come from."""

    def stream_endpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        """An endpoint whose connections are byte streams to ``host:port``."""


@attrs.frozen
class DirectDialer:
    """Plain TCP to the cluster address (IP literals skip name resolution).

    ``timeout`` is only a backstop: :class:`UpstreamEndpoint` enforces the
    configured connect limit itself, name resolution included.  Connections
    have ``TCP_NODELAY`` set (:class:`NoDelayEndpoint`).
    """

    reactor: IReactorTCP
    timeout: float = 30.0

    def stream_endpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        version = ip_version(host)
        endpoint: IStreamClientEndpoint
        if version == 4:
            endpoint = TCP4ClientEndpoint(self.reactor, host, port, timeout=self.timeout)
        elif version == 6:
            endpoint = TCP6ClientEndpoint(self.reactor, host, port, timeout=self.timeout)
        else:
            endpoint = HostnameEndpoint(self.reactor, host, port, timeout=self.timeout)
        return NoDelayEndpoint(endpoint)


@implementer(IStreamClientEndpoint)
@attrs.frozen
class NoDelayEndpoint:
    """TCP connections from ``endpoint`` with Nagle's algorithm off, as Go dials them.

    TLS on the socket (``fence.tlssocket``) sends each record with its own ``send``;
    with Nagle on, the kernel holds back all but the first record of a write
    until the cluster acknowledges it, which the cluster may delay by 40 ms or
    more.  A spliced exec or port-forward stream waited that long in about a
    third of the rounds (issue 24), and so would any request whose head or
    body spans records.  The option is set once the connection is made,
    before the reactor sends what the protocol wrote.
    """

    endpoint: IStreamClientEndpoint

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:  # noqa: N803
        return self.endpoint.connect(protocolFactory).addCallback(_no_delay)


def _no_delay(protocol: IProtocol) -> IProtocol:
    transport: Any = getattr(protocol, "transport", None)
    try:
        transport.setTcpNoDelay(True)
    except (AttributeError, OSError):  # not TCP, or already closed
        pass
    return protocol


def _ssl_reasons(value: SSL.Error) -> str:
    reasons = []
    for entry in value.args[0] if value.args and isinstance(value.args[0], list) else []:
        if isinstance(entry, tuple) and entry:
            reasons.append(str(entry[-1]))
    return ", ".join(r for r in reasons if r) or "TLS error"


def describe_failure(value: BaseException | None) -> str:
    """A short, credential-free description of a connection or TLS failure."""
    if isinstance(value, SSL.Error):
        return _ssl_reasons(value)
    if isinstance(value, VerificationError):
        return "the server certificate is not valid for the expected name"
    if isinstance(value, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(value, error.DNSLookupError):
        return "name resolution failed"
    if isinstance(value, error.ConnectionDone | error.ConnectionLost):
        return "the server closed the connection"
    text = str(value).strip()
    return text or type(value).__name__


def _now(reactor: Any) -> float:
    """``reactor.seconds()`` (the interface's zope typing defeats mypy)."""
    return float(reactor.seconds())


@implementer(IProtocolFactory)
class _GateFactory(Factory["_HandshakeGate"]):
    """Builds the application protocol behind a :class:`_HandshakeGate`."""

    noisy = False

    def __init__(self, app_factory: IProtocolFactory, attempt: _Attempt) -> None:
        self.app_factory = app_factory
        self.attempt = attempt

    def buildProtocol(self, addr: IAddress | None) -> _HandshakeGate | None:
        app = self.app_factory.buildProtocol(addr)  # type: ignore[arg-type]  # passed through as given
        if app is None:
            return None
        return _HandshakeGate(app, self.attempt)


@implementer(IHandshakeListener)
class _HandshakeGate(_Protocol):
    """Stands in for the application protocol until the TLS handshake completes.

    Then it steps aside: the TLS wrapper's ``wrappedProtocol`` becomes the
    application protocol itself, so no extra layer stays on the data path.
    """

    def __init__(self, app: IProtocol, attempt: _Attempt) -> None:
        self.app = app
        self.attempt = attempt

    def handshakeCompleted(self) -> None:
        tls: Any = self.transport
        if self.attempt.result.called:
            # Timed out or cancelled just before: the connection is unwanted.
            tls.abortConnection()
            return
        if hasattr(tls, "wrappedProtocol"):  # Twisted's memory-BIO TLS protocol
            tls.wrappedProtocol = self.app
        else:  # a transport doing TLS on its socket calls its protocol directly
            tls.protocol = self.app
        self.app.makeConnection(tls)
        self.attempt.connected(self.app)

    def dataReceived(self, data: bytes) -> None:  # pragma: no cover - TLS delivers none yet
        self.app.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.attempt.failed(reason, during_tls=True, verify_error=verify_error_of(self.transport))


@attrs.define
class _Attempt:
    """One connection attempt: connect, maybe handshake, with time limits and cancel."""

    reactor: IReactorTime
    address: str
    result: Deferred[IProtocol] = attrs.field(init=False)
    _pending: Deferred[Any] | None = None
    _transport: Any = None
    _timer: IDelayedCall | None = None
    _phase: str = "connect"
    _timed_out: bool = False
    #: When the attempt started and how long its steps took (for metrics):
    #: ``dial_s`` up to the byte stream (TCP, egress tunnel included), ``tls_s``
    #: from there to the end of the handshake (None without TLS).
    started: float = 0.0
    dial_s: float | None = None
    tls_s: float | None = None
    #: The application protocol is connected (the result fired with it).
    succeeded: bool = False

    def __attrs_post_init__(self) -> None:
        self.result = Deferred(self._cancel)

    def start_timer(self, seconds: float | None, phase: str) -> None:
        self._phase = phase
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if seconds is not None and seconds > 0:
            self._timer = self.reactor.callLater(seconds, self._time_out, seconds)

    def _time_out(self, seconds: float) -> None:
        self._timer = None
        self._timed_out = True
        what = "TLS handshake with" if self._phase == "tls" else "connecting to"
        self._finish_failure(
            Failure(DialTimeout(f"{what} {self.address} timed out after {seconds:g}s"))
        )

    def _cancel(self, _d: Deferred[IProtocol]) -> None:
        self._stop_timer()
        self._abort()

    def _abort(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abortConnection()

    def _finish_failure(self, failure: Failure) -> None:
        if self.result.called:
            return
        self._stop_timer()
        self._abort()
        if not self.result.called:
            self.result.errback(failure)

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def wait_stream(self, pending: Deferred[Any]) -> None:
        self._pending = pending

    def stream_connected(self, protocol: Any) -> None:
        self._pending = None
        self.dial_s = _now(self.reactor) - self.started
        self._transport = protocol.transport if protocol is not None else None

    def connected(self, protocol: IProtocol) -> None:
        self._stop_timer()
        self._pending = None
        self._transport = None
        if self.dial_s is None:
            self.dial_s = _now(self.reactor) - self.started
        else:
            self.tls_s = _now(self.reactor) - self.started - self.dial_s
        if not self.result.called:
            self.succeeded = True
            self.result.callback(protocol)

    def failed(
        self, reason: Failure, *, during_tls: bool = False, verify_error: str | None = None
    ) -> None:
        self._pending = None
        if self.result.called:
            return
        if reason.check(CancelledError):
            return  # our own cancel; the result is already settled
        cause = describe_failure(reason.value)
        if during_tls:
            if "certificate verify failed" in cause:
                detail = f": {verify_error}" if verify_error else ""
                cause = f"server certificate verification failed ({cause}){detail}"
            message = f"TLS handshake with {self.address} failed: {cause}"
        elif reason.check(TunnelError):
            message = f"dial tcp {self.address} {cause}"
        else:
            message = f"dial tcp {self.address}: {cause}"
        cls = DialTimeout if reason.check(error.TimeoutError, TunnelTimeout) else DialError
        self._transport = None
        self._finish_failure(Failure(cls(message)))


@implementer(IStreamClientEndpoint)
@attrs.frozen
class UpstreamEndpoint:
    """Connections to one cluster: a stream from the dialer, TLS when ``creator`` is set.

    ``connect`` fires with the application protocol once it is connected —
    for TLS, after a successful handshake.  Cancelling it aborts the attempt.
    :meth:`connect_timed` also says how long dialing and the handshake took.
    """

    reactor: IReactorTime
    stream: IStreamClientEndpoint
    address: str
    creator: IOpenSSLClientConnectionCreator | None = None
    connect_timeout: float | None = 10.0
    handshake_timeout: float | None = 10.0

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:  # noqa: N803
        return self._attempt(protocolFactory).result

    def connect_timed(
        self,
        protocolFactory: IProtocolFactory,  # noqa: N803
    ) -> Deferred[tuple[IProtocol, float | None, float | None]]:
        """Like :meth:`connect`, firing with ``(protocol, dial_s, tls_s)``.

        ``dial_s``: until the byte stream was up (TCP, and the egress proxy's
        tunnel if any); ``tls_s``: the TLS handshake after it (None for
        ``http``).  Both in ``reactor.seconds()`` terms.
        """
        attempt = self._attempt(protocolFactory)
        return attempt.result.addCallback(lambda p: (p, attempt.dial_s, attempt.tls_s))

    def _attempt(self, protocolFactory: IProtocolFactory) -> _Attempt:  # noqa: N803
        attempt = _Attempt(self.reactor, self.address, started=_now(self.reactor))
        if self.creator is None:
            factory: IProtocolFactory = protocolFactory
        else:
            # TLS by OpenSSL on the socket when the stream is a plain TCP
            # connection, Twisted's memory-BIO TLS otherwise (``fence.tlssocket``).
            factory = ClientTLSFactory(
                self.creator, _GateFactory(protocolFactory, attempt), clock=self.reactor
            )
        attempt.start_timer(self.connect_timeout, "connect")
        pending = self.stream.connect(factory)
        attempt.wait_stream(pending)

        def on_stream(protocol: Any) -> None:
            if attempt.succeeded:
                # The TLS handshake already finished inside the stream's own
                # connect (a quick server answered while the client's first
                # handshake step ran): the connection is in use, keep it.
                return
            if attempt.result.called:
                # Settled meanwhile (timeout/cancel): drop the late connection.
                if protocol is not None and protocol.transport is not None:
                    protocol.transport.abortConnection()
                return
            if self.creator is None:
                attempt.connected(protocol)
            else:
                attempt.stream_connected(protocol)
                attempt.start_timer(self.handshake_timeout, "tls")

        def on_stream_failure(failure: Failure) -> None:
            attempt.failed(failure)

        pending.addCallbacks(on_stream, on_stream_failure)
        return attempt
