"""The fence: every use of another library's private names, in one package.

The gateway reaches past the public APIs of Twisted, pyOpenSSL,
prometheus-client and h2 where no public API does what it needs, and nowhere
else.  The modules here are those overrides (``reactor``, ``tlssocket``,
``takeover``) and small accessors with names of ours for the rest
(``twisted_web``, ``twistd``, ``openssl``, ``prometheus``, ``h2``).  Those
libraries are pinned in ``pyproject.toml`` to the releases tested with these
names; ``make test-latest`` runs the unit suite against their newest releases
(CI reports it, allowed to fail), and ``tests/unit/test_fence.py`` fails, with the
name, when an installed release lacks a name listed below, or when code outside
this package uses a private name of those libraries.

Every foreign private name the project relies on, by library; after each, the
module of ours that uses it and why no public API serves.  Three modules
here are whole overrides of Twisted's HTTP channels and use its names
directly: ``h1channel`` (request heads parsed by llhttp), ``h2channel``
(the pure-Python HTTP/2 engine: frames sent in the pass they are ready) and
``h2engine_ngh2`` (the default HTTP/2 engine, libnghttp2 through ngh2,
serving Twisted's ``H2Stream``).

Twisted
-------

The reactor (``fence.reactor``: dispatch without a logging context per event,
pass-end writes, busy polling; ``EPollReactor.doPoll`` is one method with no
hooks):

- ``twisted.internet.epollreactor.EPollReactor._doReadOrWrite`` — the dispatch
  of one readiness event, with its error handling.
- ``twisted.internet.epollreactor.EPollReactor._poller`` — the epoll object.
- ``twisted.internet.epollreactor.EPollReactor._selectables`` — fd → selectable.

TLS on the socket (``fence.tlssocket``: a ``tcp.Connection`` switched in place
into a TLS transport; Twisted's TLS is a memory-BIO wrapper only):

- ``twisted.internet.tcp.Connection._tempDataBuffer`` — writes not yet joined
  into ``dataBuffer``: whether anything is pending before the switch.
- ``twisted.internet.tcp.Connection._postLoseConnection`` and
  ``twisted.internet.tcp.Connection._closeWriteConnection`` — overridden to send
  TLS ``close_notify`` on an orderly close.

The channel takeover after a 101 (``fence.takeover``; ``twisted.web`` has no
HTTP Upgrade API, Twisted ticket #3204):

- ``twisted.web.http.HTTPChannel._dataBuffer`` — bytes the client sent after the
  request head, parked by the channel (also ``fence.h1channel``).
- ``twisted.web.http.HTTPChannel._networkProducer`` — the transport's producer slot,
  freed for the new protocol (also ``fence.h2channel``).

``twisted.web`` (``fence.twisted_web``):

- ``twisted.web.http._GenericHTTPChannelProtocol`` — the ALPN switch ``Site``
  builds per connection (``GenericHTTPChannelProtocol``; ``server.site`` names it,
  ``fence.h2channel`` subclasses it).
- ``twisted.web.http._GenericHTTPChannelProtocol._channel`` — the channel it serves
  with (``channel_of``: ``server.shutdown``, ``testing.http``, ``server.site``,
  ``fence.h2channel``).
- ``twisted.web.http._GenericHTTPChannelProtocol._site`` — ``switch_site``
  (``testing.http``, ``fence.h2channel``).
- ``twisted.web.http._GenericHTTPChannelProtocol._timeOut`` — the idle timeout it
  gives an HTTP/2 channel (``set_switch_timeout``: ``testing.http``,
  ``server.site``, ``fence.h2channel``).
- ``twisted.web.http._GenericHTTPChannelProtocol._negotiatedProtocol``,
  ``twisted.web.http._GenericHTTPChannelProtocol._requestFactory``,
  ``twisted.web.http._GenericHTTPChannelProtocol._factory``,
  ``twisted.web.http._GenericHTTPChannelProtocol._callLater`` — read when
  ``fence.h2channel`` swaps in its own HTTP/2 connection.
- ``twisted.web.http._ChunkedTransferDecoder`` — ``ChunkedTransferDecoder``:
  ``proxy.upgrade`` follows a chunked 101 body with it; no public decoder.
- ``twisted.web.http.HTTPChannel._respondToBadRequestAndDisconnect`` — overridden by
  ``BadRequestHookChannel`` (``testing.http``: a ``Status`` instead of a bare
  400); called by ``fence.h1channel``.
- ``twisted.web.http.HTTPChannel._handlingRequest``,
  ``twisted.web.http.HTTPChannel._transferDecoder``,
  ``twisted.web.http.HTTPChannel._maybeChooseTransferDecoder``,
  ``twisted.web.http.HTTPChannel._savedTimeOut`` — the channel state
  ``fence.h1channel`` keeps in step with its own head parser; ``hold_request``
  sets the request in hand for ``server.callers`` (a request answered on its
  connection).
- ``twisted.web.http.Request._disconnected`` — the client went away
  (``request_disconnected``: ``testing.watch``, ``server.tree``,
  ``proxy.answer``); ``notifyFinish`` says it only once.
- ``twisted.web.server.Request._handleStar`` — ``OPTIONS *`` in
  ``server.site``'s own ``process`` (``handle_star``).
- ``twisted.web.http_headers._nameEncoder`` — ``encode_header_name``,
  ``HEADER_NAME_ENCODER`` and ``header_names_valid`` (``fence.h1channel``,
  ``fence.h2channel``, ``fence.h2engine_ngh2``, ``server.callers``): the
  canonical header-name bytes ``Headers`` stores, and which names it refuses.
- ``twisted.web.http_headers.Headers._rawHeaders`` — ``raw_headers``
  (``fence.h1channel``, ``server.callers``): filled and read
  in place on the hot path, without ``getAllRawHeaders``' copies.
- ``twisted.web._http2`` — Twisted's HTTP/2 server (``H2Connection``,
  ``H2Stream``); ``fence.h2channel`` subclasses its connection and
  ``fence.h2engine_ngh2`` builds its streams.
- ``twisted.web._http2._END_STREAM_SENTINEL`` — ``END_STREAM``
  (``fence.h2channel``).
- ``twisted.web._http2.H2Connection._requestReceived``,
  ``twisted.web._http2.H2Connection._requestDataReceived``,
  ``twisted.web._http2.H2Connection._requestEnded``,
  ``twisted.web._http2.H2Connection._requestAborted``,
  ``twisted.web._http2.H2Connection._sendPrioritisedData``,
  ``twisted.web._http2.H2Connection._handleWindowUpdate``,
  ``twisted.web._http2.H2Connection._consumerBlocked``,
  ``twisted.web._http2.H2Connection._stillProducing``,
  ``twisted.web._http2.H2Connection._outboundStreamQueues``,
  ``twisted.web._http2.H2Connection._requestDone``,
  ``twisted.web._http2.H2Connection._respondToBadRequestAndDisconnect``,
  ``twisted.web._http2.H2Connection._isSecure`` — overridden or read by
  ``fence.h2channel`` and ``fence.h2engine_ngh2``.
- ``twisted.web._http2.H2Stream._conn`` — an HTTP/2 stream's connection, which has
  the transport (``stream_connection``: ``auth.clientcert``,
  ``testing.apiserver``, ``server.callers``).
- ``twisted.web._http2.H2Stream._request`` — the request a stream reports resets
  to (``set_stream_request``: ``server.callers``).
- ``twisted.web._http2.H2Stream._convertHeaders`` — overridden by
  ``fence.h2engine_ngh2.GatewayH2Stream``: the request's headers filled straight
  into ``Headers``' dict, as Twisted fills them, without re-checking what
  libnghttp2 already checked (no public way to build a stream's request).

``twistd`` (``fence.twistd``):

- ``twisted.scripts.twistd._SomeApplicationRunner`` — ``runApp`` without its exit
  by the stopping signal (``tap.main``: exit 0 after a clean drain).

pyOpenSSL
---------

(``fence.tlssocket``: ``SSL_set_fd``, and ``SSL_read``/``SSL_write`` into a
reused buffer; ``fence.openssl``: ``SSL_get_verify_result`` for
``proxy.tls``.  pyOpenSSL wraps none of these.)

- ``OpenSSL._util.lib`` and ``OpenSSL._util.ffi`` — pyOpenSSL's cffi binding.
  It is cryptography's binding, which keeps only the functions pyOpenSSL itself
  calls; those called here: ``OpenSSL._util.lib.SSL_set_fd``,
  ``OpenSSL._util.lib.SSL_read``, ``OpenSSL._util.lib.SSL_write``,
  ``OpenSSL._util.lib.SSL_pending``, ``OpenSSL._util.lib.SSL_get_verify_result``
  (hence cryptography's bound in ``pyproject.toml`` too).
- ``OpenSSL.SSL.Connection._ssl`` — the ``SSL*``.
- ``OpenSSL.SSL.Connection._raise_ssl_error`` — pyOpenSSL's error mapping, so
  failures raise what ``recv``/``send`` would.
- ``OpenSSL.SSL.Connection._into_ssl``, ``OpenSSL.SSL.Connection._from_ssl``,
  ``OpenSSL.SSL.Connection._socket`` — reset so pyOpenSSL treats a memory-BIO
  connection as the socket connection ``SSL_set_fd`` made it.

prometheus-client
-----------------

(``fence.prometheus``: lock-free value cells for ``observe.metrics``' hot
path; updates without per-call checks and a lock that guards nothing on the
reactor thread.)

- ``prometheus_client.Counter._value`` and ``prometheus_client.Gauge._value`` —
  a child's value cell.
- ``prometheus_client.Histogram._sum``, ``prometheus_client.Histogram._buckets``,
  ``prometheus_client.Histogram._upper_bounds`` — a histogram child's cells and
  bounds.

h2
--

(``fence.h2``; ``server.h2guard`` installs it.)

- ``h2.frame_buffer.FrameBuffer._data`` — the bytes of a frame still arriving:
  its declared length is refused before its body is buffered.

hyperframe, priority, hpack, cryptography: no private names of their own
(cryptography's functions are reached through pyOpenSSL's binding, above).  ``fence.h2``
also writes a GOAWAY past ``h2``'s state machine (``server.shutdown``), with
public names only.
"""

__all__: list[str] = []
