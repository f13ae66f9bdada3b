"""The ``proxy`` subresource: one request to a named cluster, forwarded or spliced.

``ClusterProxy.render`` is called by the serving layer once the caller is
authenticated and authorized for ``clustergateways/proxy``.  It looks the
cluster up, resolves its credential, decides the identity (the Secret's
credential, or impersonation of the caller), picks the cluster's connection
pool and hands the request to :class:`~clustergateway.proxy.forward.Relay`
or, for ``Connection: Upgrade``, to :class:`~clustergateway.proxy.upgrade.UpgradeSplice`.
:meth:`ClusterProxy.serve` does this for every request path: it works on an
:class:`~clustergateway.proxy.answer.Answer`, whichever protocol carried the
request; :meth:`ClusterProxy.render` is its twisted.web form.

Every failure the caller sees is a ``Status``: 404 for an unknown cluster,
503 for a cluster whose Secret cannot be used (naming the cause), 502/504 for
an unreachable or slow cluster; upstream answers (401/403/404 from the
cluster included) pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET, Request

from clustergateway.auth.identity import IdentityResolver, Impersonation
from clustergateway.auth.subpath import target_request_info
from clustergateway.auth.user import UserInfo
from clustergateway.eager import Pending, run_eagerly
from clustergateway.errors import (
    BadRequest,
    InternalError,
    ServiceUnavailable,
    StatusError,
)
from clustergateway.observe.labels import request_labels
from clustergateway.observe.metrics import GatewayMetrics
from clustergateway.proxy.admission import ClusterAdmission, Ticket
from clustergateway.proxy.answer import Answer, WebAnswer, write_status
from clustergateway.proxy.credentials import CredentialProvider, StaticCredentialProvider
from clustergateway.proxy.dial import StreamDialer
from clustergateway.proxy.drain import OpenStreams
from clustergateway.proxy.forward import HeadDeadlines, Relay, upstream_error
from clustergateway.proxy.h1client import request_head
from clustergateway.proxy.headers import is_upgrade_request, request_headers, serialize_head
from clustergateway.proxy.konnectivity import KonnectivityDialer
from clustergateway.proxy.paths import (
    PathOutsideEndpoint,
    confine_subpath,
    is_long_running,
    join_path,
    rewrite_query,
    split_uri,
)
from clustergateway.proxy.pools import ClusterPools, ClusterUpstream, PoolSettings
from clustergateway.proxy.upgrade import SpliceSettings, UpgradeSplice
from clustergateway.registry.model import ClusterGateway, ClusterRegistry

__all__ = [
    "ClusterProxy",
    "IdentityHook",
    "ProbeAnswer",
    "ProbeFailed",
    "ProxySettings",
    "is_health_path",
]

#: Distinct targets whose derived facts are memoised (cleared when full).
_TARGET_CACHE_SIZE = 4096


class _Target(NamedTuple):
    """What a proxied target gives: metric labels, the query sent upstream, long-running?"""

    resource: str
    verb: str
    query: bytes
    long_running: bool


#: ``identity_for(cluster, user, request)``: None sends the request with the
#: Secret's credential alone; an :class:`Impersonation` adds its headers.
IdentityHook = Callable[[ClusterGateway, UserInfo, IRequest], "Impersonation | None"]

#: ``authorize_target(user, cluster, method, subpath, query)`` (``--authorize-proxy-subpath``):
#: returns if the caller may do the proxied request at its target, raises a ``Status`` if not.
TargetCheck = Callable[[UserInfo, str, str, str, str], Awaitable[None]]


@attrs.frozen
class ProxySettings:
    """Proxy limits.

    ``response_header_timeout`` bounds the wait for the response head of
    ordinary requests (not watches, followed logs, nested proxies or
    upgrades); it is above the apiserver's own 60 s request timeout, so the
    cluster's own 504 ``Status`` arrives first when it has one.
    """

    response_header_timeout: float | None = 75.0
    pools: PoolSettings = attrs.field(factory=PoolSettings)
    splice: SpliceSettings = attrs.field(factory=SpliceSettings)


@attrs.frozen
class Outbound:
    """One request as it goes to a cluster (see :meth:`ClusterProxy.outbound`).

    ``headers`` start with ``Host`` and end with the gateway's own
    (credential, identity); ``timeout`` bounds the wait for the response head
    (None for watches, followed logs, nested proxies).
    """

    upstream: ClusterUpstream
    method: bytes
    path: bytes
    headers: list[tuple[bytes, list[bytes]]]
    body: bytes | None
    upgrade: bool
    timeout: float | None
    #: The request's place under the caps and its circuit verdict (None: not admitted).
    ticket: Ticket | None = None

    def request_bytes(self) -> bytes:
        """The serialized HTTP/1.1 request (head and body) for the pooled client."""
        body = self.body
        data = request_head(
            self.method, self.path, self.headers, None if body is None else len(body)
        )
        return data if body is None else data + body


_HEALTH_PATHS = (b"/healthz", b"/livez", b"/readyz")
#: Methods counted against ``--max-mutating-requests-inflight``.
_MUTATING = frozenset((b"POST", b"PUT", b"PATCH", b"DELETE"))


def is_health_path(subpath: bytes) -> bool:
    """``/healthz``, ``/livez``, ``/readyz`` or one of their checks (``/readyz/etcd``)."""
    path = subpath.rstrip(b"/")
    return any(path == p or path.startswith(p + b"/") for p in _HEALTH_PATHS)


def _client_address(request: Any) -> bytes | None:
    host = getattr(request.getClientAddress(), "host", None)
    return host.encode("ascii", "replace") if isinstance(host, str) else None


class ProbeFailed(Exception):
    """A probe got no HTTP answer; the message says why (never a credential)."""


class ProbeAnswer(NamedTuple):
    """A probe's HTTP answer: the status and up to 1 KiB of the body."""

    code: int
    body: bytes


_PROBE_BODY_LIMIT = 1024


class _ProbeSink:
    """Collects a probe's answer (a short body is all a health endpoint sends)."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.done: Deferred[ProbeAnswer] = Deferred()
        self._code = 0
        self._body = b""

    def head_received(self, head: Any, producer: Any) -> None:
        self._code = head.code

    def body_received(self, data: bytes) -> None:
        if len(self._body) < _PROBE_BODY_LIMIT:
            self._body = (self._body + data)[:_PROBE_BODY_LIMIT]

    def body_done(self) -> None:
        if not self.done.called:
            self.done.callback(ProbeAnswer(self._code, self._body))

    def failed(self, reason: Failure, head_received: bool) -> None:
        if not self.done.called:
            self.done.errback(ProbeFailed(upstream_error(self.cluster, reason).message))

    def time_out(self, exchange: Any, timeout: float) -> None:
        if not self.done.called:
            self.done.errback(ProbeFailed(f"no answer within {timeout:g}s"))
        exchange.cancel()


@attrs.define
class ClusterProxy:
    """Forwards ``…/clustergateways/{name}/proxy/{subpath}`` requests to clusters.

    Build with :meth:`build` (in ``tap.makeService``); call :meth:`close` on
    shutdown to close pooled connections.
    """

    reactor: Any
    registry: ClusterRegistry
    pools: ClusterPools
    credentials: CredentialProvider = attrs.field(factory=StaticCredentialProvider)
    identity_for: IdentityHook = attrs.field(factory=lambda: IdentityResolver().identity_for)
    settings: ProxySettings = attrs.field(factory=ProxySettings)
    _unsubscribe: Callable[[], None] | None = None
    authorize_target: TargetCheck | None = None
    #: Where requests are counted (``observe.metrics``); None records nothing.
    #: Setting it also makes the connection pools record (see ``ClusterPools``).
    metrics: GatewayMetrics | None = attrs.field(
        default=None, on_setattr=lambda self, _a, value: self._share_metrics(value)
    )
    _targets: dict[tuple[bytes, bytes, bytes], _Target] = attrs.field(factory=dict, init=False)
    #: ``HealthinessCheck``: answer 503 for unhealthy clusters without dialing them.
    refuse_unhealthy: bool = False
    #: Seconds a refused caller is told to wait (``Retry-After``).  client-go
    #: (kubectl, controllers) retries such a 503 up to 10 times: at 1 s kubectl
    #: reports the reason after ~10 s instead of hanging for minutes, and a
    #: refusal costs no dial, so the retries are cheap.
    retry_after: int = 1
    #: Caps and circuits (``proxy.admission``); None admits everything.
    admission: ClusterAdmission | None = None
    #: Long-running responses and upgraded sessions open now (ended at shutdown).
    open_streams: OpenStreams = attrs.field(factory=OpenStreams)
    #: Response-head deadlines of the requests in flight.
    deadlines: HeadDeadlines = attrs.field(init=False)

    _log = Logger()

    def __attrs_post_init__(self) -> None:
        self._share_metrics(self.metrics)
        self.deadlines = HeadDeadlines(self.reactor)

    def _share_metrics(self, metrics: GatewayMetrics | None) -> GatewayMetrics | None:
        self.pools.metrics = metrics
        return metrics

    @classmethod
    def build(
        cls,
        reactor: Any,
        registry: ClusterRegistry,
        *,
        settings: ProxySettings | None = None,
        credentials: CredentialProvider | None = None,
        identity_for: IdentityHook | None = None,
        dialer: StreamDialer | None = None,
        admission: ClusterAdmission | None = None,
        konnectivity: KonnectivityDialer | None = None,
    ) -> ClusterProxy:
        """A proxy over ``registry`` whose pools follow the registry's changes.

        With ``admission``, requests are capped and circuits kept per cluster,
        and each cluster's connect timeout is its own (annotation or flag).
        ``konnectivity`` dials ``ClusterProxy`` clusters (``--proxy-host``).
        """
        settings = settings or ProxySettings()
        pools = ClusterPools(reactor, settings.pools, dialer, konnectivity=konnectivity)
        if admission is not None:
            limits = admission.limits
            pools.connect_timeout_for = lambda cluster: limits(cluster).connect_timeout
            pools.on_retire = admission.forget
        unsubscribe = registry.subscribe(pools.on_registry_event)
        proxy = cls(
            reactor,
            registry,
            pools,
            credentials or StaticCredentialProvider(),
            identity_for or IdentityResolver().identity_for,
            settings,
            unsubscribe,
        )
        proxy.admission = admission
        return proxy

    def close(self) -> Any:
        """Stop following the registry and close idle upstream connections."""
        self.deadlines.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        return self.pools.close()

    def render(self, request: Request, cluster_name: str, subpath: bytes, user: UserInfo) -> int:
        """Proxy twisted.web's ``request`` for ``user`` (already authenticated and
        authorized) to ``cluster_name``; ``subpath`` is the raw path after
        ``/proxy`` (empty or starting with ``/``, still percent-encoded).

        The response, or a ``Status``, is written later: returns ``NOT_DONE_YET``.
        """
        answer = WebAnswer(request)
        try:
            outcome = run_eagerly(self.serve(answer, cluster_name, subpath, user))
        except BaseException:
            self._failed(Failure(), answer, cluster_name)
            return NOT_DONE_YET
        if isinstance(outcome, Pending):
            outcome.deferred.addErrback(self._failed, answer, cluster_name)
        return NOT_DONE_YET

    async def serve(self, answer: Answer, cluster_name: str, subpath: bytes, user: UserInfo) -> int:
        """Proxy the request ``answer`` holds to ``cluster_name`` for ``user``.

        The one serving coroutine of every request path (after the ``Gate``):
        counts the request, resolves the cluster, builds the outbound request
        (:meth:`outbound`: target check, admission, credential, identity) and
        relays the answer, or splices an upgrade.  A ``StatusError`` raised
        before anything was sent is the caller's answer (the ``Gate`` writes it).
        Returns ``NOT_DONE_YET``: the answer is written as the cluster's arrives.
        """
        request = answer.request
        metrics = self.metrics
        if metrics is not None:
            ended = self.record_start(
                metrics, cluster_name, request.method, subpath, request.uri, answer.body_length()
            )
            answer.when_over(lambda _: ended(answer.code, answer.sent))
        cluster = self.registry.get(cluster_name)
        out = await self.outbound(answer, cluster, subpath, user)
        if out is None:
            return NOT_DONE_YET
        if out.upgrade:
            self._splice(answer, cluster, out)
        else:
            Relay(answer, cluster.name, self.deadlines, self.open_streams).start(out)
        return NOT_DONE_YET

    def record_start(
        self,
        metrics: GatewayMetrics,
        cluster_name: str,
        method: bytes,
        subpath: bytes,
        uri: bytes,
        body_length: int,
    ) -> Callable[[int, int], None]:
        """Count a request in flight; returns ``ended(code, bytes_sent)`` to call once."""
        recorder = metrics.cluster(cluster_name)
        target = self._target(method, subpath, split_uri(uri)[1])
        resource, verb = target.resource, target.verb
        started = self.reactor.seconds()
        recorder.inflight(+1)

        def ended(code: int, sent: int) -> None:
            recorder.inflight(-1)
            recorder.bytes(body_length, sent)
            recorder.request_finished(resource, verb, code, self.reactor.seconds() - started)

        return ended

    def _target(self, method: bytes, subpath: bytes, query: bytes) -> _Target:
        """What the gateway derives from a target, memoised (bounded).

        Parsing the target (unquote, ``parse_qs``, Kubernetes' request-info
        rules, the query rewrite) per request was a visible share of the
        small-GET profile; the same few targets repeat, and all of it is a
        pure function of them.
        """
        key = (method, subpath, query)
        target = self._targets.get(key)
        if target is None:
            resource, verb = request_labels(
                target_request_info(
                    method.decode("ascii", "replace"),
                    subpath.decode("utf-8", "replace"),
                    query.decode("utf-8", "replace"),
                )
            )
            target = _Target(
                resource,
                verb,
                rewrite_query(query) if query else b"",
                is_long_running(subpath, query),
            )
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[key] = target
        return target

    def admit(
        self, cluster: ClusterGateway, subpath: bytes, long_running: bool, mutating: bool
    ) -> Ticket | None:
        """Admit one request to ``cluster``, or raise the ``Status`` that refuses it.

        The one admission check of both request paths (twisted.web's and the
        lean one both build their request with :meth:`outbound`).  With
        ``HealthinessCheck`` an unhealthy cluster is refused (503 with
        ``Retry-After``) before any connection is made, except for its own
        ``/healthz``, ``/livez`` and ``/readyz``: an external prober (Go's
        addon-manager probes through the proxy, then PUTs ``health``) must
        still see it recover.  A cluster unhealthy only because its circuit is
        open is left to the circuit.  Then the caps and the circuit
        (``proxy.admission``): the ticket returned must be released when the
        request ends.
        """
        if not (
            cluster.healthy
            or cluster.circuit_open
            or not self.refuse_unhealthy
            or is_health_path(subpath)
        ):
            self._refuse_unhealthy(cluster)
        admission = self.admission
        if admission is None:
            return None
        return admission.admit(cluster, long_running, mutating)

    def _refuse_unhealthy(self, cluster: ClusterGateway) -> None:
        reason = cluster.healthy_reason or "no reason given"
        raise ServiceUnavailable(
            f"cluster {cluster.name} is unhealthy: {reason}",
            {
                "name": cluster.name,
                "kind": "clustergateways",
                "retryAfterSeconds": self.retry_after,
            },
        )

    async def outbound(
        self, answer: Answer, cluster: ClusterGateway, subpath: bytes, user: UserInfo
    ) -> Outbound | None:
        """What to send to ``cluster`` for ``answer``'s request, or None when the
        caller already left.

        Checks the target (``--authorize-proxy-subpath``), admits the request
        (:meth:`admit`: health, caps, circuit; its ticket is released when the
        request is over), resolves the credential and identity, picks the
        upstream and assembles the head's parts.
        """
        request = answer.request
        method = request.method
        _, query = split_uri(request.uri)
        try:
            confine_subpath(subpath)
        except PathOutsideEndpoint as e:
            raise BadRequest(f"cluster {cluster.name}: {e}") from None
        if self.authorize_target is not None:
            await self.authorize_target(
                user,
                cluster.name,
                method.decode("ascii", "replace"),
                subpath.decode("utf-8", "replace"),
                query.decode("utf-8", "replace"),
            )
        shape = self._target(method, subpath, query)
        query_out, long_running = shape.query, shape.long_running
        in_headers = request.requestHeaders
        upgrade = is_upgrade_request(
            in_headers.getRawHeaders(b"connection"), in_headers.getRawHeaders(b"upgrade")
        )
        ticket = self.admit(
            cluster, subpath, long_running or upgrade, method in _MUTATING and not upgrade
        )
        try:
            credential = await self.credentials.credential_for(cluster)
            impersonation = self.identity_for(cluster, user, request)
            try:
                upstream = self.pools.upstream_for(cluster, credential)
            except ValueError as e:  # UnsupportedEndpoint, TLSConfigError
                raise ServiceUnavailable(
                    f"cluster {cluster.name}: {e}",
                    {"name": cluster.name, "kind": "clustergateways"},
                ) from None
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        if answer.done:
            if ticket is not None:
                ticket.release()
            return None
        if ticket is not None:
            release = ticket.release
            answer.when_over(lambda _: release())
        target = upstream.target
        path = join_path(target.base_path, subpath)
        if query_out:
            path += b"?" + query_out
        headers = request_headers(
            in_headers.getAllRawHeaders(),
            client_address=_client_address(request),
            upgrade=upgrade,
        )
        headers.insert(0, (b"Host", [target.host_header]))
        if credential.authorization is not None:
            headers.append((b"Authorization", [credential.authorization]))
        if impersonation is not None:
            headers.extend((name, [value]) for name, value in impersonation.headers())
        if long_running:
            timeout = None
        elif ticket is not None:
            timeout = ticket.limits.response_header_timeout
        else:
            timeout = self.settings.response_header_timeout
        return Outbound(upstream, method, path, headers, answer.body(), upgrade, timeout, ticket)

    async def probe(self, cluster: ClusterGateway, path: bytes, timeout: float) -> ProbeAnswer:
        """``GET path`` on ``cluster`` as the gateway itself: the Secret's credential,
        the cluster's egress and pool, no caller identity; not admitted (a probe
        is how an unhealthy cluster is seen to recover).

        Returns the status and the first bytes of the body; raises
        :class:`ProbeFailed` naming the cause (unusable endpoint or credential,
        dial or TLS error, no answer within ``timeout`` seconds).
        """
        try:
            credential = await self.credentials.credential_for(cluster)
            upstream = self.pools.upstream_for(cluster, credential)
        except StatusError as e:
            raise ProbeFailed(e.message) from None
        except ValueError as e:  # UnsupportedEndpoint, TLSConfigError
            raise ProbeFailed(str(e)) from None
        target = upstream.target
        headers = [(b"Host", [target.host_header]), (b"Accept", [b"text/plain, */*"])]
        if credential.authorization is not None:
            headers.append((b"Authorization", [credential.authorization]))
        out = Outbound(
            upstream, b"GET", join_path(target.base_path, path), headers, None, False, timeout
        )
        sink = _ProbeSink(cluster.name)
        exchange = upstream.send(sink, out)
        timer = self.reactor.callLater(timeout, sink.time_out, exchange, timeout)
        try:
            return await sink.done
        finally:
            if timer.active():
                timer.cancel()

    def _splice(self, answer: Answer, cluster: ClusterGateway, out: Outbound) -> None:
        """Splice an upgrade (exec, attach, port-forward): twisted.web's request only,
        whose channel the splice takes over."""
        request = answer.request
        body = out.body
        head_headers = out.headers
        if body is not None:
            head_headers.append((b"Content-Length", [b"%d" % len(body)]))
        head = serialize_head(out.method, out.path, head_headers)
        if body is not None:
            head += body
        splice = UpgradeSplice(request, self.reactor, cluster.name, self.settings.splice)
        splice.metrics = self.metrics.cluster(cluster.name) if self.metrics else None
        splice.ticket = out.ticket
        streams = self.open_streams
        streams.add_session(splice)
        answer.when_over(lambda _: streams.discard_session(splice))
        splice.start(out.upstream.endpoint, head)

    def _failed(self, failure: Failure, answer: Answer, cluster: str) -> None:
        if failure.check(CancelledError):
            return
        error = failure.value
        if not isinstance(error, StatusError):
            self._log.failure(
                "Proxying a request to cluster {cluster} failed", failure, cluster=cluster
            )
            error = InternalError(f"cluster {cluster}: internal error while proxying")
        write_status(answer, error)
