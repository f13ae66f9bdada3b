"""A Twisted-native client for the hub (hosting cluster) apiserver.

The gateway talks to its hub for four things: listing and watching cluster
Secrets, TokenReview, SubjectAccessReview, and the health subresource's
Secret update.  This client does all of them without ever blocking the
reactor: requests go through one ``twisted.web.client.Agent`` with a
persistent connection pool; watches are streamed line by line and can be
cancelled.

Configuration is read with the ``kubernetes`` package's own loaders (a
kubeconfig file, or the in-cluster service account), so every kubeconfig
form users already have works: token, client certificate, CA file or data,
``insecure-skip-tls-verify``, ``tls-server-name``, basic auth, exec plugins
(run once at load, and again from the loader's refresh hook when the token
expires).  The token is asked from the loaded ``Configuration`` on every
request, so an in-cluster token file that rotates is picked up (the loader
re-reads it every minute).

Errors are :class:`~clustergateway.errors.StatusError` subclasses: the hub's
own ``Status`` replies keep their code, reason and message; a hub that cannot
be reached is ``ServiceUnavailable``, a broken connection or TLS failure
``BadGateway``, a request that takes too long ``GatewayTimeout``.  No message
or log line carries the token, key or certificate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlencode, urlsplit

import attrs
import yaml
from OpenSSL import SSL
from twisted.internet import defer, ssl
from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    ResponseDone,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from clustergateway import errors

__all__ = [
    "HubClient",
    "HubConfig",
    "HubConfigError",
    "UnexpectedStatus",
    "status_error_from_response",
]

#: Watch lines longer than this (no newline yet) end the stream: a runaway hub.
MAX_WATCH_LINE = 64 * 1024 * 1024
#: Replies larger than this are refused (a list of every cluster Secret fits easily).
MAX_RESPONSE_BODY = 512 * 1024 * 1024
_ALPN = [b"http/1.1"]
_R = TypeVar("_R")


class HubConfigError(ValueError):
    """The hub connection cannot be configured; the message says what is wrong."""


class UnexpectedStatus(errors.StatusError):
    """A hub error whose code has no dedicated class (e.g. 429); keeps the hub's code."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details)
        self.code = code  # type: ignore[misc]
        self.reason = reason  # type: ignore[misc]


_BY_REASON: dict[str, type[errors.StatusError]] = {
    "AlreadyExists": errors.AlreadyExists,
    "Expired": errors.Gone,
    "Gone": errors.Gone,
}
_BY_CODE: dict[int, type[errors.StatusError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    406: errors.NotAcceptable,
    409: errors.Conflict,
    410: errors.Gone,
    413: errors.RequestEntityTooLarge,
    422: errors.UnprocessableEntity,
    500: errors.InternalError,
    502: errors.BadGateway,
    503: errors.ServiceUnavailable,
    504: errors.GatewayTimeout,
}


def status_error_from_response(code: int, body: bytes) -> errors.StatusError:
    """The :class:`StatusError` for a hub reply ``code`` with ``body`` (a Status, or not)."""
    status: dict[str, Any] = {}
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and parsed.get("kind") == "Status":
            status = parsed
    except ValueError:
        pass
    code = int(status.get("code") or code)
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or "")
    if not message:
        text = body[:200].decode("utf-8", "replace").strip()
        message = f"the hub answered {code}" + (f": {text}" if text else "")
    details = status.get("details") if isinstance(status.get("details"), dict) else None
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code)
    if cls is None or cls.code != code:
        return UnexpectedStatus(code, reason or "Unknown", message, details)
    return cls(message, details)


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise HubConfigError(f"cannot read {path}: {e.strerror}") from None


@attrs.frozen
class HubConfig:
    """Where the hub is and how to authenticate to it (material in memory).

    ``authorization`` returns the ``Authorization`` header value for the next
    request (or None); it may refresh an expiring token.
    """

    server: str
    ca_pem: bytes | None = attrs.field(default=None, repr=False)
    cert_pem: bytes | None = attrs.field(default=None, repr=False)
    key_pem: bytes | None = attrs.field(default=None, repr=False)
    insecure: bool = False
    tls_server_name: str | None = None
    authorization: Callable[[], str | None] = attrs.field(default=lambda: None, repr=False)

    @classmethod
    def from_kubernetes(cls, configuration: Any) -> HubConfig:
        """From a loaded ``kubernetes.client.Configuration`` (files are read now)."""
        server = str(configuration.host or "").rstrip("/")
        parts = urlsplit(server)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise HubConfigError(f"the hub server {server!r} is not an https:// URL")

        def authorization() -> str | None:
            value = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
            return str(value).strip() if value else None

        cert, key = _read(configuration.cert_file), _read(configuration.key_file)
        if (cert is None) != (key is None):
            raise HubConfigError("the hub client certificate needs both a certificate and a key")
        return cls(
            server=server,
            ca_pem=_read(configuration.ssl_ca_cert),
            cert_pem=cert,
            key_pem=key,
            insecure=not configuration.verify_ssl,
            tls_server_name=getattr(configuration, "tls_server_name", None) or None,
            authorization=authorization,
        )

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], context: str | None = None) -> HubConfig:
        """Load a kubeconfig file (blocking: call at startup, before the reactor runs)."""
        from kubernetes.client import Configuration
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.kube_config import KubeConfigLoader

        path = Path(path)
        try:
            config_dict = yaml.safe_load(path.read_text())
        except OSError as e:
            raise HubConfigError(f"cannot read kubeconfig {path}: {e.strerror}") from None
        except yaml.YAMLError:
            raise HubConfigError(f"kubeconfig {path} is not valid YAML") from None
        if not isinstance(config_dict, dict):
            raise HubConfigError(f"kubeconfig {path} is not a kubeconfig")
        configuration = Configuration()
        try:
            loader = KubeConfigLoader(  # type: ignore[no-untyped-call]
                config_dict=config_dict,
                active_context=context,
                config_base_path=str(path.resolve().parent),
            )
            loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, KeyError, ValueError, TypeError) as e:
            raise HubConfigError(f"kubeconfig {path}: {e}") from None
        return cls.from_kubernetes(configuration)

    @classmethod
    def in_cluster(
        cls,
        *,
        environ: Mapping[str, str] | None = None,
        token_filename: str | None = None,
        cert_filename: str | None = None,
    ) -> HubConfig:
        """The pod's service account (``KUBERNETES_SERVICE_HOST``, the mounted token and CA)."""
        from kubernetes.client import Configuration
        from kubernetes.config import incluster_config
        from kubernetes.config.config_exception import ConfigException

        configuration = Configuration()
        try:
            incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=token_filename or incluster_config.SERVICE_TOKEN_FILENAME,
                cert_filename=cert_filename or incluster_config.SERVICE_CERT_FILENAME,
                environ=dict(environ if environ is not None else os.environ),
            ).load_and_set(configuration)
        except ConfigException as e:
            raise HubConfigError(f"in-cluster config: {e}") from None
        return cls.from_kubernetes(configuration)


@implementer(IOpenSSLClientConnectionCreator)
@attrs.frozen
class _UnverifiedTLS:
    """``insecure-skip-tls-verify``: no server verification, still SNI and client cert."""

    options: ssl.CertificateOptions
    server_name: bytes | None

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:  # noqa: N802,N803
        connection: SSL.Connection = self.options.clientConnectionForTLS(tlsProtocol)
        if self.server_name is not None:
            connection.set_tlsext_host_name(self.server_name)
        return connection


@implementer(IPolicyForHTTPS)
@attrs.frozen
class _HubTLSPolicy:
    """One TLS creator for the one hub address, whatever netloc the Agent asks for."""

    creator: IOpenSSLClientConnectionCreator

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:  # noqa: N802
        return self.creator


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _tls_creator(config: HubConfig) -> IOpenSSLClientConnectionCreator:
    parts = urlsplit(config.server)
    server_name = config.tls_server_name or parts.hostname or ""
    client: ssl.PrivateCertificate | None = None
    try:
        if config.cert_pem is not None and config.key_pem is not None:
            client = ssl.PrivateCertificate.loadPEM(config.cert_pem + b"\n" + config.key_pem)
        if config.insecure:
            options = ssl.CertificateOptions(
                verify=False,
                acceptableProtocols=_ALPN,
                privateKey=client.privateKey.original if client else None,
                certificate=client.original if client else None,
                raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            )
            sni = None if _is_ip(server_name) else server_name.encode("idna")
            return _UnverifiedTLS(options, sni)
        if config.ca_pem and config.ca_pem.strip():
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding

            roots = [
                ssl.Certificate.loadPEM(c.public_bytes(Encoding.PEM))
                for c in x509.load_pem_x509_certificates(config.ca_pem)
            ]
            trust = ssl.trustRootFromCertificates(roots)
        else:
            trust = ssl.platformTrust()
        return ssl.optionsForClientTLS(
            server_name,
            trustRoot=trust,
            clientCertificate=client,
            acceptableProtocols=_ALPN,
            extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
        )
    except (ValueError, SSL.Error) as e:
        raise HubConfigError(f"the hub TLS material cannot be used: {e}") from None


@implementer(IBodyProducer)
class _BytesBody:
    """A request body already in memory (no cooperator, hence no global reactor)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:  # noqa: N802
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


class _BodyCollector(Protocol):
    """Reads a whole (bounded) response body; readBody without its size blindness."""

    def __init__(self, done: Deferred[bytes], limit: int) -> None:
        self._done = done
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._size += len(data)
        if self._size > self._limit:
            if not self._done.called:
                self._done.errback(
                    errors.BadGateway(f"the hub answered more than {self._limit} bytes")
                )
            if self.transport is not None:
                self.transport.stopProducing()  # type: ignore[attr-defined]
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(reason)


def _read_body(response: IResponse, limit: int = MAX_RESPONSE_BODY) -> Deferred[bytes]:
    """The body of ``response``; cancelling closes the connection."""
    collector: _BodyCollector

    def cancel(_: Deferred[bytes]) -> None:
        if collector.transport is not None:
            collector.transport.stopProducing()  # type: ignore[attr-defined]

    done: Deferred[bytes] = Deferred(cancel)
    collector = _BodyCollector(done, limit)
    response.deliverBody(collector)
    return done


class _WatchLines(Protocol):
    """Splits a watch body into JSON events and hands each to ``on_event``."""

    def __init__(
        self, on_event: Callable[[dict[str, Any]], None], done: Deferred[None], describe: str
    ) -> None:
        self._on_event = on_event
        self._done = done
        self._describe = describe
        #: The start of an event whose newline has not arrived yet.
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._failed: errors.StatusError | None = None
        #: Set by the watch's canceller: the Deferred fails with CancelledError.
        self.cancelled = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._failed is not None:
            return
        if b"\n" not in data:
            self._pending.append(data)
            self._pending_size += len(data)
        else:
            lines = b"".join([*self._pending, data]).split(b"\n")
            tail = lines.pop()
            self._pending, self._pending_size = ([tail], len(tail)) if tail else ([], 0)
            for line in lines:
                if line.strip() and not self._deliver(line):
                    return
        if self._pending_size > MAX_WATCH_LINE:
            self._fail(errors.BadGateway(f"{self._describe}: watch event larger than allowed"))

    def _deliver(self, line: bytes) -> bool:
        try:
            event = json.loads(line)
        except ValueError:
            self._fail(errors.BadGateway(f"{self._describe}: watch sent a line that is not JSON"))
            return False
        if not isinstance(event, dict):
            self._fail(errors.BadGateway(f"{self._describe}: watch sent a non-object event"))
            return False
        try:
            self._on_event(event)
        except errors.StatusError as e:
            self._fail(e)
            return False
        except Exception as e:  # the consumer's bug: end this stream, not the process
            self._fail(errors.InternalError(f"{self._describe}: watch event handler failed: {e!r}"))
            return False
        return True

    def _fail(self, error: errors.StatusError) -> None:
        self._failed = error
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self._done.called or self.cancelled:
            return  # cancelled: the Deferred fails with CancelledError
        if self._failed is not None:
            self._done.errback(self._failed)
        elif reason.check(ResponseDone):
            rest = b"".join(self._pending)
            if rest.strip():
                self._deliver(rest)
            self._done.callback(None)
        else:
            self._done.errback(
                errors.BadGateway(f"{self._describe}: watch stream broken: {_reasons(reason)}")
            )


def _was_cancelled(failure: Failure) -> bool:
    """True if ``failure`` is (or wraps, as ResponseNeverReceived does) a cancellation."""
    if failure.check(CancelledError):
        return True
    return any(_was_cancelled(f) for f in getattr(failure.value, "reasons", None) or ())


def _reasons(failure: Failure) -> str:
    """A short text for a connection failure (nested ResponseFailed reasons unwrapped)."""
    value = failure.value
    inner = getattr(value, "reasons", None)
    if inner:
        return "; ".join(_reasons(f) for f in inner)
    if isinstance(value, SSL.Error):
        return f"TLS error: {value}"
    text = failure.getErrorMessage()
    return text or type(value).__name__


@attrs.define(eq=False)
class HubClient:
    """Requests to the hub apiserver; build with :meth:`from_kubeconfig` / :meth:`in_cluster`."""

    reactor: IReactorTime
    config: HubConfig
    agent: Agent
    pool: HTTPConnectionPool
    #: Seconds a non-watch request may take, head and body.
    request_timeout: float = 30.0
    user_agent: str = "cluster-gateway"

    _log: ClassVar[Logger] = Logger()

    @classmethod
    def from_config(
        cls,
        reactor: Any,
        config: HubConfig,
        *,
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        user_agent: str = "cluster-gateway",
    ) -> HubClient:
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 8
        # Below the apiserver's own idle cut, so a cached connection is rarely stale.
        pool.cachedConnectionTimeout = 60
        policy = _HubTLSPolicy(_tls_creator(config)) if config.server.startswith("https:") else None
        if policy is not None:
            agent = Agent(reactor, contextFactory=policy, pool=pool, connectTimeout=connect_timeout)
        else:
            agent = Agent(reactor, pool=pool, connectTimeout=connect_timeout)
        return cls(reactor, config, agent, pool, request_timeout, user_agent)

    @classmethod
    def from_kubeconfig(
        cls, reactor: Any, path: str | os.PathLike[str], context: str | None = None, **kwargs: Any
    ) -> HubClient:
        """A client for the cluster of a kubeconfig's (current) context."""
        return cls.from_config(reactor, HubConfig.from_kubeconfig(path, context), **kwargs)

    @classmethod
    def in_cluster(cls, reactor: Any, **kwargs: Any) -> HubClient:
        """A client for the cluster the gateway's pod runs in."""
        return cls.from_config(reactor, HubConfig.in_cluster(), **kwargs)

    @property
    def server(self) -> str:
        return self.config.server

    def close(self) -> Deferred[None]:
        """Close idle pooled connections (watches are ended by cancelling them)."""
        closed: Deferred[None] = self.pool.closeCachedConnections()
        return closed

    # -- requests ---------------------------------------------------------------------

    def _url(self, path: str, params: Mapping[str, Any] | None) -> bytes:
        url = self.config.server + (path if path.startswith("/") else "/" + path)
        if params:
            query = {
                k: ("true" if v is True else "false" if v is False else v)
                for k, v in params.items()
                if v is not None
            }
            url += "?" + urlencode(query, doseq=True)
        return url.encode()

    def _headers(self, content_type: str | None) -> Headers:
        headers = Headers(
            {b"accept": [b"application/json"], b"user-agent": [self.user_agent.encode()]}
        )
        authorization = self.config.authorization()
        if authorization:
            headers.setRawHeaders(b"authorization", [authorization.encode()])
        if content_type:
            headers.setRawHeaders(b"content-type", [content_type.encode()])
        return headers

    def _describe(self, method: str, path: str) -> str:
        return f"hub {method} {path}"

    def _connection_error(self, failure: Failure, describe: str) -> errors.StatusError:
        if failure.check(net_error.ConnectError, net_error.DNSLookupError):
            return errors.ServiceUnavailable(
                f"{describe}: hub {self.config.server} unreachable: {_reasons(failure)}"
            )
        return errors.BadGateway(f"{describe}: {_reasons(failure)}")

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: bytes | None,
        content_type: str | None,
    ) -> Deferred[IResponse]:
        producer = _BytesBody(body) if body is not None else None
        return self.agent.request(
            method.encode(), self._url(path, params), self._headers(content_type), producer
        )

    async def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: bytes | None,
        content_type: str | None,
    ) -> dict[str, Any]:
        describe = self._describe(method, path)
        try:
            response = await self._send(method, path, params, body, content_type)
            data = await _read_body(response)
        except CancelledError:
            raise
        except Exception as e:
            if _was_cancelled(Failure(e)):
                raise CancelledError() from None
            # ConnectError, ResponseNeverReceived, ResponseFailed, PartialDownloadError ...
            raise self._connection_error(Failure(e), describe) from None
        if not 200 <= response.code < 300:
            raise status_error_from_response(response.code, data)
        try:
            result = json.loads(data) if data.strip() else {}
        except ValueError:
            raise errors.BadGateway(
                f"{describe}: the hub answered {response.code} without JSON"
            ) from None
        if not isinstance(result, dict):
            raise errors.BadGateway(f"{describe}: the hub answered a non-object")
        return result

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One request; the decoded JSON reply, or a :class:`StatusError`."""
        raw = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        exchange = self._exchange(
            method, path, params, raw, content_type if raw is not None else None
        )
        return await self._bounded(exchange, method, path, timeout)

    async def get_bytes(
        self, path: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> tuple[int, bytes]:
        """``GET path``: the status code and the raw body, whatever the code (probes)."""

        async def exchange() -> tuple[int, bytes]:
            describe = self._describe("GET", path)
            try:
                response = await self._send("GET", path, params, None, None)
                return response.code, await _read_body(response)
            except CancelledError:
                raise
            except Exception as e:
                if _was_cancelled(Failure(e)):
                    raise CancelledError() from None
                raise self._connection_error(Failure(e), describe) from None

        return await self._bounded(exchange(), "GET", path, timeout)

    async def _bounded(
        self, coroutine: Coroutine[Any, Any, _R], method: str, path: str, timeout: float | None
    ) -> _R:
        """``coroutine`` cut after ``timeout`` (default: ``request_timeout``) seconds."""
        d = Deferred.fromCoroutine(coroutine)
        limit = self.request_timeout if timeout is None else timeout
        if limit > 0:
            d.addTimeout(limit, self.reactor)
        try:
            return await d
        except defer.TimeoutError:
            raise errors.GatewayTimeout(
                f"{self._describe(method, path)}: no answer from the hub within {limit:g}s"
            ) from None

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.request_json("GET", path, params=params)

    async def post_json(
        self, path: str, body: Any, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self.request_json("POST", path, params=params, body=body)

    async def put_json(
        self, path: str, body: Any, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self.request_json("PUT", path, params=params, body=body)

    async def patch_json(
        self,
        path: str,
        body: Any,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/merge-patch+json",
    ) -> dict[str, Any]:
        return await self.request_json(
            "PATCH", path, params=params, body=body, content_type=content_type
        )

    async def delete_json(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self.request_json("DELETE", path, params=params)

    # -- watch ------------------------------------------------------------------------

    def watch(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        on_event: Callable[[dict[str, Any]], None],
    ) -> Deferred[None]:
        """Stream a watch, calling ``on_event(event)`` for every JSON line.

        The Deferred fires with None when the hub ends the stream cleanly
        (``timeoutSeconds``, apiserver shutdown), fails with a
        :class:`StatusError` on an error reply or a broken connection, and can
        be cancelled (which closes the connection).  An ``on_event`` that
        raises ends the stream with that error.  ``ERROR`` events are passed
        to ``on_event`` like the others.
        """
        describe = self._describe("WATCH", path)
        state: dict[str, Any] = {}

        def cancel(_: Deferred[None]) -> None:
            state["cancelled"] = True
            request = state.get("request")
            if request is not None and not request.called:
                request.cancel()
            protocol = state.get("protocol")
            if protocol is not None:
                protocol.cancelled = True
                if protocol.transport is not None:
                    protocol.transport.stopProducing()

        done: Deferred[None] = Deferred(cancel)
        request = self._send("GET", path, {**(params or {}), "watch": "true"}, None, None)
        state["request"] = request

        def on_response(response: IResponse) -> None:
            if done.called or state.get("cancelled"):
                return None
            if response.code != 200:
                body = _read_body(response)
                body.addCallback(
                    lambda data: (
                        None
                        if done.called
                        else done.errback(status_error_from_response(response.code, data))
                    )
                )
                body.addErrback(
                    lambda f: (
                        None if done.called else done.errback(self._connection_error(f, describe))
                    )
                )
                return None
            protocol = _WatchLines(on_event, done, describe)
            state["protocol"] = protocol
            response.deliverBody(protocol)
            return None

        def on_failure(failure: Failure) -> None:
            if not done.called and not state.get("cancelled"):
                done.errback(self._connection_error(failure, describe))

        request.addCallbacks(on_response, on_failure)
        return done
