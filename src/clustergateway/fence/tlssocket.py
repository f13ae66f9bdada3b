"""TLS read and written by OpenSSL on the socket itself, instead of Twisted's memory BIOs.

Twisted's TLS (``twisted.protocols.tls.TLSMemoryBIOProtocol``) sits between a
TCP transport and the application as a protocol wrapper: every read is a
``recv`` into Python, a ``bio_write`` into OpenSSL, ``SSL_read`` calls until
``WantReadError`` is raised, and a ``dataReceived`` through the wrapper; every
write goes the other way through ``bio_read``.  Profiling the proxy under load
put about a third of the gateway's CPU in that layer (it terminates TLS on both
sides of every proxied request).

Here the same pyOpenSSL ``Connection`` — built by the same connection creators,
so verification, ALPN, SNI, client certificates and trust reloads behave as
before — is attached to the socket's file descriptor (``SSL_set_fd``), and the
TCP transport itself is switched into a TLS transport in place: ``doRead`` is
one ``SSL_read`` (the ``read`` syscall and decryption both in C), a write is
one ``SSL_write`` of Twisted's already-joined send buffer, and the application
protocol is called by the transport directly, with no wrapper between.

The switch happens on a connected ``twisted.internet.tcp`` transport (a
``Server`` from ``accept`` or a ``Client`` from ``connectTCP``) before any byte
was exchanged; :func:`start_tls` changes its class to a subclass with
:class:`_SocketTLS` in front.  Anything else (an in-memory transport, or a
stream that is itself TLS, such as a tunnel through an ``https://`` egress
proxy) keeps Twisted's memory-BIO TLS: see :class:`ServerTLSFactory` and
:class:`ClientTLSFactory`.

What the transport offers, as Twisted's TLS transports do: ``ISSLTransport``,
``getPeerCertificate()``, ``getHandle()`` (the ``OpenSSL.SSL.Connection``),
``negotiatedProtocol`` (ALPN), ``handshakeCompleted()`` on an
``IHandshakeListener`` protocol, ``failVerification()`` for Twisted's
host-name check, ``close_notify`` on an orderly close.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib
from twisted.internet import main, tcp
from twisted.internet.interfaces import (
    IHandshakeListener,
    IProtocol,
    IProtocolFactory,
    ISSLTransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import classImplements, implementer

__all__ = [
    "ClientTLSFactory",
    "ServerTLSFactory",
    "begin_handshake",
    "can_start_tls",
    "start_tls",
]

_log = Logger()

#: One TLS record carries at most 16 KiB of plaintext; a read that filled
#: this much may have more records behind it in OpenSSL's buffer.
_RECORD = 16384
#: Records one read decrypts before handing them over: 16 (256 KiB) took
#: ~5-6% off the CPU per MiB of a splice and of 64 MiB GETs against 8
#: (fewer passes through the reactor and the receiving protocol per MiB).
_RECORDS_PER_READ = 16


class _SocketTLS:
    """The TLS half of a ``tcp.Connection`` whose socket OpenSSL reads and writes.

    Mixed in front of the transport's own class by :func:`start_tls`; the
    ``tcp.Connection`` methods it overrides are exactly the ones that touch the
    socket's bytes (``doRead``, ``doWrite`` before the handshake,
    ``writeSomeData``, the orderly-close hooks).
    """

    #: The buffer every socket-TLS read decrypts into, record after record:
    #: reads run on the reactor thread only and copy their bytes out (once)
    #: before the next one, so one serves all connections (one each would
    #: cost its size per idle watch).
    _read_buffer: ClassVar[Any] = _ffi.new("char[]", _RECORD * _RECORDS_PER_READ)

    _tls: SSL.Connection
    _tls_ready: bool
    _tls_failure: Failure | None
    _tls_wants_write: bool
    #: Registered with the reactor for writability.
    _tls_writer: bool
    #: Queued with the reactor's ``write_soon``.
    _tls_write_soon: bool
    #: Aborts a server connection whose handshake has not finished (set by the
    #: factory's ``handshake_timeout``); cancelled by the handshake or the close.
    _tls_deadline: Any

    # --- reading ---------------------------------------------------------

    def doRead(self) -> Any:  # noqa: N802 - Twisted's name
        if not self._tls_ready:
            return self._tls_handshake()
        return self._tls_read()

    def _tls_read(self) -> Any:
        """Read what OpenSSL can give now, then hand it over in one piece.

        ``SSL_read`` returns one record (at most 16 KiB) at a time; a bulk
        stream gets up to ``_RECORDS_PER_READ`` records, decrypted one after
        the other into the buffer and copied out once, in one
        ``dataReceived`` (fewer calls down the splice or the response); a
        small request is one record and one call, with no extra read.
        More plaintext may already be decrypted and buffered in OpenSSL, where
        epoll cannot see it (``pending``); bytes still in the kernel wake us
        again, so one busy connection cannot starve the others.

        ``SSL_read`` is called through pyOpenSSL's binding into one reused
        buffer (``_read_buffer``); pyOpenSSL's ``recv`` allocates a fresh
        buffer and checks its callback helpers on every call, a visible share
        of the small-GET profile.  Failures still go through pyOpenSSL's own
        error mapping, so they raise the exceptions ``recv`` would.
        """
        ssl = self._tls._ssl
        buffer = self._read_buffer
        got = 0
        room = _RECORD * _RECORDS_PER_READ
        outcome: Any = None
        while True:
            size = _lib.SSL_read(ssl, buffer + got, _RECORD)
            if size <= 0:
                outcome = self._tls_read_failed(size)
                break
            got += size
            if room - got < _RECORD or (size < _RECORD and not _lib.SSL_pending(ssl)):
                break
        if got:
            self.protocol.dataReceived(_ffi.buffer(buffer, got)[:])  # type: ignore[attr-defined]
        return outcome

    def _tls_read_failed(self, result: int) -> Any:
        """What an ``SSL_read`` that returned ``result`` (<= 0) means for the connection."""
        try:
            self._tls._raise_ssl_error(self._tls._ssl, result)
        except SSL.WantReadError:
            return None
        except SSL.ZeroReturnError:  # the peer's close_notify
            return main.CONNECTION_DONE
        except SSL.SysCallError as e:
            # (-1, "Unexpected EOF"): closed without close_notify, as HTTP
            # peers commonly do; the framing of HTTP says whether anything
            # was cut, not TLS.
            return main.CONNECTION_DONE if e.args[0] == -1 else main.CONNECTION_LOST
        except SSL.WantWriteError:  # post-handshake message needing a write
            self.startWriting()
            return None
        except SSL.Error as e:
            return e
        return None

    # --- the handshake ---------------------------------------------------

    def _tls_handshake(self) -> Any:
        try:
            self._tls.do_handshake()
        except SSL.WantReadError:
            self._tls_wants_write = False
            return None
        except SSL.WantWriteError:
            self._tls_wants_write = True
            self.startWriting()
            return None
        except SSL.Error as e:
            return self._tls_failure.value if self._tls_failure is not None else e
        if self._tls_failure is not None:  # failVerification() during the handshake
            return self._tls_failure.value
        self._tls_ready = True
        self._tls_cancel_deadline()
        listener = IHandshakeListener(self.protocol, None)  # type: ignore[attr-defined]
        if listener is not None:
            listener.handshakeCompleted()
        if self.disconnected:  # type: ignore[attr-defined]
            return None
        if self.dataBuffer or self._tempDataBuffer or self.disconnecting:  # type: ignore[attr-defined]
            self.startWriting()
        # Application data may have come with the handshake's last flight.
        return self._tls_read()

    def doWrite(self) -> Any:  # noqa: N802 - Twisted's name
        self._tls_write_soon = False
        if not self._tls_ready:
            result = self._tls_handshake()
            if not self._tls_ready:
                if not self._tls_wants_write:
                    self.stopWriting()  # resumed after the handshake
                return result
            if self.disconnected:
                return result
        result = super().doWrite()  # type: ignore[misc]
        if (
            result is None
            and not self._tls_writer
            and (self._tempDataBuffer or self.offset < len(self.dataBuffer))  # type: ignore[attr-defined]
        ):
            # Flushed early (see startWriting) into a full socket: now wait for it.
            self._tls_writer = True
            tcp.Connection.startWriting(self)  # type: ignore[arg-type]
        return result

    # --- when to write -----------------------------------------------------

    def startWriting(self) -> None:  # noqa: N802 - Twisted's name
        """Write at the end of this reactor pass rather than after the next poll.

        Twisted registers a transport with something to send for writability
        and sends when epoll says so: two ``epoll_ctl`` calls and one more
        pass of the loop per response.  A reactor offering ``write_soon``
        (``fence.reactor.LeanEPollReactor``) instead calls ``doWrite`` once
        the events of the current pass are handled — every write of the pass
        joined into one TLS record and one ``send`` — and only a send that
        does not fit the socket falls back to waiting for writability.
        """
        if self._tls_writer or self._tls_write_soon:
            return
        write_soon = getattr(self.reactor, "write_soon", None)  # type: ignore[attr-defined]
        if write_soon is None or not self._tls_ready:
            self._tls_writer = True
            tcp.Connection.startWriting(self)  # type: ignore[arg-type]
            return
        self._tls_write_soon = True
        write_soon(self)

    def stopWriting(self) -> None:  # noqa: N802 - Twisted's name
        self._tls_writer = False
        tcp.Connection.stopWriting(self)  # type: ignore[arg-type]

    def failVerification(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        """Twisted's host-name check rejected the peer (called during ``do_handshake``)."""
        self._tls_failure = reason

    # --- writing and closing ---------------------------------------------

    def writeSomeData(self, data: bytes) -> Any:  # noqa: N802 - Twisted's name
        """One ``SSL_write`` (through the binding, as reads are; partial writes on)."""
        view = memoryview(data)[: self.SEND_LIMIT]  # type: ignore[attr-defined]
        ssl = self._tls._ssl
        with _ffi.from_buffer(view) as pointer:
            sent: int = _lib.SSL_write(ssl, pointer, len(view))
        if sent > 0:
            return sent
        try:
            self._tls._raise_ssl_error(ssl, sent)
        except (SSL.WantWriteError, SSL.WantReadError):
            return 0
        except SSL.Error:
            return main.CONNECTION_LOST
        return 0

    def _send_close_notify(self) -> None:
        if self._tls_ready:
            try:
                self._tls.shutdown()
            except SSL.Error:
                pass

    def _postLoseConnection(self) -> Any:  # noqa: N802 - Twisted's name
        self._send_close_notify()
        return super()._postLoseConnection()  # type: ignore[misc]

    def _closeWriteConnection(self) -> Any:  # noqa: N802 - Twisted's name
        self._send_close_notify()
        return super()._closeWriteConnection()  # type: ignore[misc]

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        self._tls_cancel_deadline()
        super().connectionLost(reason)  # type: ignore[misc]

    def _tls_cancel_deadline(self) -> None:
        deadline = self._tls_deadline
        if deadline is not None:
            self._tls_deadline = None
            if deadline.active():
                deadline.cancel()

    # --- what TLS transports tell ----------------------------------------

    def getHandle(self) -> SSL.Connection:  # noqa: N802 - Twisted's name
        """The ``OpenSSL.SSL.Connection`` (socket calls such as ``setsockopt`` reach the socket)."""
        return self._tls

    def getPeerCertificate(self) -> Any:  # noqa: N802 - Twisted's name
        return self._tls.get_peer_certificate()

    @property
    def negotiatedProtocol(self) -> bytes | None:  # noqa: N802 - Twisted's name
        if not self._tls_ready:
            return None
        try:
            return self._tls.get_alpn_proto_negotiated() or None
        except (NotImplementedError, SSL.Error):
            return None


_classes: dict[type, type] = {}


def _tls_class(base: type) -> type:
    cls = _classes.get(base)
    if cls is None:
        cls = type(f"TLS{base.__name__}", (_SocketTLS, base), {})
        classImplements(cls, ISSLTransport)  # type: ignore[misc]  # built at run time
        _classes[base] = cls
    return cls


def can_start_tls(transport: Any) -> bool:
    """True for a live TCP transport on which nothing was sent or buffered yet."""
    return bool(
        isinstance(transport, tcp.Connection)
        and not isinstance(transport, _SocketTLS)
        and transport.connected
        and not transport.dataBuffer
        and not transport._tempDataBuffer
    )


def _attach(connection: SSL.Connection, transport: Any, server: bool) -> None:
    """Point the creator's connection at the transport's socket.

    Connection creators hand out memory-BIO connections with everything set
    per connection (ALPN offer, SNI, verification, Twisted's host-name check
    in the verify callback; its application data, a :class:`_CreatorView`,
    which Twisted's ALPN selection reads too).  ``SSL_set_fd`` swaps the two memory BIOs — which
    OpenSSL owns and frees here — for a socket BIO on the same descriptor,
    keeping all of it; pyOpenSSL is then told it is a socket connection.
    This reaches into pyOpenSSL's binding, as ``proxy.tls.verify_error_of``
    does; ``tests/unit/fence/test_tlssocket.py`` pins it.
    """
    if _lib.SSL_set_fd(connection._ssl, transport.socket.fileno()) != 1:
        raise SSL.Error("SSL_set_fd failed")
    connection._into_ssl = connection._from_ssl = None
    connection._socket = transport.socket
    if server:
        connection.set_accept_state()
    else:
        connection.set_connect_state()


@attrs.frozen
class _CreatorView:
    """What connection creators use of the TLS protocol they are given: its
    factory (whose wrapped factory may offer ALPN protocols) and, for
    Twisted's host-name check, ``failVerification``."""

    factory: TLSMemoryBIOFactory
    transport: Any

    def failVerification(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        self.transport.failVerification(reason)


def connection_for(
    creator: Any, factory: TLSMemoryBIOFactory, transport: Any, *, server: bool
) -> SSL.Connection:
    """A new connection from ``creator`` for ``transport``, as it would make one
    for Twisted's TLS protocol built by ``factory`` (so the ALPN offer is the same)."""
    view = _CreatorView(factory, transport)
    if server:
        connection: SSL.Connection = creator.serverConnectionForTLS(view)
    else:
        connection = creator.clientConnectionForTLS(view)
    connection.set_app_data(view)  # as TLSMemoryBIOProtocol sets itself
    return connection


def start_tls(transport: Any, memory: SSL.Connection, *, server: bool) -> None:
    """Switch ``transport`` (see :func:`can_start_tls`) to TLS on its socket.

    ``memory`` is what the connection creator returned for it (see
    :func:`connection_for`).  A server waits for the client's hello; a
    client must then call :func:`begin_handshake` — after its protocol is
    connected, since on loopback the whole handshake can complete inside
    that first call and ``handshakeCompleted`` must find the protocol.
    """
    _attach(memory, transport, server)
    connection = memory
    transport.__class__ = _tls_class(type(transport))
    transport._tls = connection
    transport._tls_ready = False
    transport._tls_failure = None
    transport._tls_wants_write = False
    transport._tls_writer = False
    transport._tls_write_soon = False
    transport._tls_deadline = None


def _handshake_expired(transport: Any) -> None:
    """A peer that has not finished its handshake in time (a silent TCP connection, a
    slow one) is cut: closing politely would wait for the handshake it never sends."""
    transport._tls_deadline = None
    if not transport.disconnected and not transport._tls_ready:
        transport.abortConnection()


def begin_handshake(transport: Any) -> None:
    """Send a client's hello (and finish the handshake, if the server is that quick)."""
    result = transport._tls_handshake()
    if result is not None:
        transport.reactor.callLater(0, _lose, transport, result)


def _lose(transport: Any, why: BaseException) -> None:
    if not transport.disconnected:
        transport.stopReading()
        transport.stopWriting()
        transport.connectionLost(Failure(why))


@implementer(IProtocol)
class _Starter(Protocol):
    """Stands first on a new connection: switches it to TLS, then steps aside.

    After :meth:`makeConnection` the transport calls ``app`` directly (the
    endpoint's wrapper protocol, if any, is bypassed: it has done its job).
    When the transport cannot take TLS on its socket, the connection gets
    Twisted's memory-BIO TLS instead, with this object forwarding to it.
    """

    def __init__(
        self,
        app: IProtocol,
        creator: Any,
        fallback: TLSMemoryBIOFactory,
        addr: Any,
        server: bool,
        deadline: tuple[Any, float] | None = None,
    ):
        self.deadline = deadline
        self.app = app
        self.creator = creator
        self.fallback = fallback
        self.addr = addr
        self.server = server
        self.wrapped: Any = None
        #: Why TLS could not be set up on the connection (it was closed).
        self.refused: Failure | None = None

    def makeConnection(self, transport: Any) -> None:  # noqa: N802 - Twisted's name
        Protocol.makeConnection(self, transport)
        if can_start_tls(transport):
            try:
                memory = connection_for(self.creator, self.fallback, transport, server=self.server)
                start_tls(transport, memory, server=self.server)
            except Exception:
                # A creator that raises (or a descriptor OpenSSL refuses) costs
                # this connection only: left open, it would reach dataReceived
                # with nothing to hand bytes to, and on a listening port the
                # exception would drop the rest of the accept batch.
                self.refused = Failure()
                _log.failure(
                    "TLS could not be set up on a new {side} connection; it is closed",
                    self.refused,
                    side="server" if self.server else "client",
                )
                transport.abortConnection()
                return
            if self.deadline is not None:
                clock, timeout = self.deadline
                transport._tls_deadline = clock.callLater(timeout, _handshake_expired, transport)
            transport.protocol = self.app
            self.app.makeConnection(transport)
            if not self.server:
                begin_handshake(transport)
            return
        wrapped = self.fallback.buildProtocol(self.addr)
        if wrapped is None:
            transport.loseConnection()
            return
        self.wrapped = wrapped
        wrapped.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self.wrapped is not None:
            self.wrapped.dataReceived(data)

    def connectionLost(self, reason: Failure = main.CONNECTION_DONE) -> None:  # type: ignore[assignment]  # noqa: N802
        if self.wrapped is not None:
            self.wrapped.connectionLost(reason)
        elif self.refused is not None and not self.server:
            # Whoever dialed waits on its protocol to hear how the connection
            # ended (the handshake, or this): tell it now, with the cause,
            # rather than leave it to its handshake timeout.
            self.app.connectionLost(self.refused)


@implementer(IProtocolFactory)
class _TLSFactory:
    """Builds connections whose TLS OpenSSL does on the socket (see module docs)."""

    _server: bool = False

    def __init__(
        self,
        creator: Any,
        factory: IProtocolFactory,
        clock: Any = None,
        handshake_timeout: float | None = None,
    ) -> None:
        """``handshake_timeout`` (seconds, with ``clock``): how long a connection may
        take to finish its TLS handshake before it is aborted (TLS on the socket only)."""
        self.wrapped = factory
        self.creator = creator
        self._fallback = TLSMemoryBIOFactory(creator, not self._server, factory, clock=clock)
        self.noisy = False
        self._deadline = (
            (clock, handshake_timeout) if clock is not None and handshake_timeout else None
        )

    def buildProtocol(self, addr: Any) -> IProtocol | None:  # noqa: N802 - Twisted's name
        app = self.wrapped.buildProtocol(addr)
        if app is None:
            return None
        return _Starter(app, self.creator, self._fallback, addr, self._server, self._deadline)

    def doStart(self) -> None:  # noqa: N802 - Twisted's name
        self.wrapped.doStart()

    def doStop(self) -> None:  # noqa: N802 - Twisted's name
        self.wrapped.doStop()

    def logPrefix(self) -> str:  # noqa: N802 - Twisted's name
        prefix = getattr(self.wrapped, "logPrefix", None)
        return str(prefix()) if prefix is not None else type(self.wrapped).__name__


class ServerTLSFactory(_TLSFactory):
    """Serve ``factory``'s protocol over TLS from ``creator`` (an
    ``IOpenSSLServerConnectionCreator``), on the socket when possible."""

    _server = True


class ClientTLSFactory(_TLSFactory):
    """Connect ``factory``'s protocol over TLS from ``creator`` (an
    ``IOpenSSLClientConnectionCreator``), on the socket when possible."""

    _server = False
