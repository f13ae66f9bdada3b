"""The Resource tree of the aggregated API and the one path every request takes through it.

``/apis/...`` is routed by :func:`~clustergateway.server.routes.parse_apis_path`
on the raw path; then, for every request except the probes, :class:`Gate`
authenticates the caller, authorizes the request's attributes and runs the
handler as a coroutine (cancelled when the client goes away).  Handlers return
the body, or ``NOT_DONE_YET`` when they own the response (watches, the proxy);
any ``StatusError`` becomes the ``Status`` response.

    /                      the list of served paths
    /api                   404 (no core group here; clients tolerate it)
    /apis[/<g>[/<v>]]      discovery (legacy and aggregated v2/v2beta1)
    /apis/<g>/<v>/...      clustergateways (+ /proxy, /health), virtualclusters
    /openapi/v2            Swagger 2.0
    /openapi/v3[/apis/<g>/<v>]
    /version
    /healthz /livez /readyz
    /metrics               ``build_root(metrics=...)``: gated like the rest
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import ClassVar, Protocol

import attrs
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from clustergateway import errors
from clustergateway.api.discovery import AGGREGATED_CONTENT_TYPES, DiscoveryDocuments
from clustergateway.api.openapi import OpenAPIDocuments
from clustergateway.api.types import GroupVersion
from clustergateway.auth.guard import RequestAttributes, RequestGuard
from clustergateway.auth.user import UserInfo
from clustergateway.eager import Pending, run_eagerly
from clustergateway.fence.twisted_web import request_disconnected
from clustergateway.proxy.answer import Answer, WebAnswer, write_status
from clustergateway.server.negotiate import parse_accept
from clustergateway.server.probes import Check, ProbeResource
from clustergateway.server.resources import ClusterResources, HealthWriter, ServedRegistry
from clustergateway.server.routes import (
    Discovery,
    ResourcePath,
    parse_apis_path,
    request_attributes,
)
from clustergateway.server.watch import ChangeLog

__all__ = ["ClusterProxyRenderer", "Gate", "GatewayRoot", "build_root", "version_info"]

Handler = Callable[[IRequest, UserInfo], Awaitable[bytes | int]]


class ClusterProxyRenderer(Protocol):
    """The proxy as the tree calls it (``clustergateway.proxy.resource.ClusterProxy``)."""

    def render(
        self, request: IRequest, cluster_name: str, subpath: bytes, user: UserInfo
    ) -> bytes | int: ...


def finish_with(request: IRequest, body: bytes) -> None:
    """Write ``body`` and finish, unless the client is already gone."""
    if request.finished or request_disconnected(request):  # type: ignore[attr-defined]
        return
    request.write(body)
    request.finish()


def json_body(request: IRequest, body: bytes, content_type: bytes = b"application/json") -> bytes:
    request.setResponseCode(200)
    request.responseHeaders.setRawHeaders(b"content-type", [content_type])
    request.responseHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
    return body


def not_found() -> errors.NotFound:
    return errors.NotFound("the server could not find the requested resource")


@attrs.frozen
class Gate:
    """Authenticate, authorize, run the handler; every failure a ``Status``."""

    guard: RequestGuard
    gv: GroupVersion

    _log: ClassVar[Logger] = Logger()

    def run(
        self,
        request: IRequest,
        route: Discovery | ResourcePath | None,
        handler: Handler,
    ) -> int:
        """Serve twisted.web's ``request`` with ``handler`` once the caller may."""
        answer = WebAnswer(request)
        try:
            attributes = request_attributes(
                request.method, request.path, route, request.args or {}, self.gv
            )
        except Exception as e:
            self._refuse(answer, e)
            return NOT_DONE_YET
        self.serve(answer, attributes, lambda user: handler(request, user))
        return NOT_DONE_YET

    def serve(
        self,
        answer: Answer,
        attributes: RequestAttributes,
        handler: Callable[[UserInfo], Awaitable[bytes | int]],
    ) -> None:
        """Authenticate and authorize the caller of ``answer``, then run ``handler``.

        The one gate of every request path: twisted.web's requests come through
        :meth:`run`, the channels' proxied requests (``server.callers``) straight here.
        """
        # Usually nothing waits (cached review answers, a static credential): then
        # no Deferred is built and there is nothing to cancel when the caller leaves.
        outcome = run_eagerly(self._run(answer, attributes, handler))
        if isinstance(outcome, Pending):
            d = outcome.deferred
            answer.when_over(lambda gone: d.cancel() if gone else None)

    async def _run(
        self,
        answer: Answer,
        attributes: RequestAttributes,
        handler: Callable[[UserInfo], Awaitable[bytes | int]],
    ) -> None:
        request = answer.request
        try:
            user = await self.guard.authenticate(request)
            request.gateway_user = user
            await self.guard.authorize(user, attributes)
            body = await handler(user)
        except CancelledError:
            return
        except Exception as e:
            self._refuse(answer, e)
            return
        if body is not NOT_DONE_YET:
            finish_with(request, body)  # type: ignore[arg-type]

    def _refuse(self, answer: Answer, error: Exception) -> None:
        """Answer a failure: its ``Status``, or a 500 (logged) for a bug."""
        if not isinstance(error, errors.StatusError):
            request = answer.request
            self._log.failure(
                "Serving {method} {path} failed",
                Failure(error),
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("utf-8", "replace"),
            )
            error = errors.InternalError("Internal error occurred: see the gateway log")
        write_status(answer, error)


class GatedResource(Resource):
    """A leaf whose requests go through the :class:`Gate`."""

    isLeaf = True

    def __init__(self, gate: Gate) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.gate = gate

    def render(self, request: IRequest) -> int:
        return self.gate.run(request, None, self.handle)

    async def handle(self, request: IRequest, user: UserInfo) -> bytes | int:
        raise not_found()


def _read_only(request: IRequest) -> None:
    if request.method not in (b"GET", b"HEAD"):
        raise errors.MethodNotAllowed(
            "the server does not allow this method on the requested resource"
        )


class ApisResource(Resource):
    """``/apis/...``: discovery documents, the two resources and their subresources."""

    isLeaf = True

    def __init__(
        self,
        gate: Gate,
        documents: DiscoveryDocuments,
        clusters: ClusterResources,
        proxy: ClusterProxyRenderer | None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.gate = gate
        self.documents = documents
        self.clusters = clusters
        self.proxy = proxy

    def render(self, request: IRequest) -> int:
        route = parse_apis_path(request.path, self.gate.gv)
        return self.gate.run(request, route, lambda r, u: self._serve(r, u, route))

    async def _serve(
        self, request: IRequest, user: UserInfo, route: Discovery | ResourcePath | None
    ) -> bytes | int:
        if route is None:
            raise not_found()
        if isinstance(route, Discovery):
            _read_only(request)
            return self._discovery(request, route)
        if route.subresource == "proxy":
            if self.proxy is None:
                raise errors.ServiceUnavailable(
                    "proxy not configured: this gateway serves the API only"
                )
            return self.proxy.render(request, route.name, route.subpath, user)
        return await self.clusters.serve(request, route)

    def _discovery(self, request: IRequest, route: Discovery) -> bytes:
        docs = self.documents
        request.responseHeaders.setRawHeaders(b"vary", [b"Accept"])
        if route.document == "group":
            return json_body(request, docs.group)
        if route.document == "resource_list":
            return json_body(request, docs.resource_list)
        version = aggregated_version(request.getHeader(b"accept"))
        if version is None:
            return json_body(request, docs.group_list)
        body, etag = docs.aggregated[version]
        request.responseHeaders.setRawHeaders(b"etag", [etag])
        if etag in _etags(request.getHeader(b"if-none-match")):
            request.setResponseCode(304)
            return b""
        return json_body(request, body, AGGREGATED_CONTENT_TYPES[version].encode())


def aggregated_version(accept: bytes | None) -> str | None:
    """``v2``/``v2beta1`` when ``Accept`` prefers aggregated discovery, None for legacy."""
    if not accept:
        return None
    for media in parse_accept(accept.decode("latin-1")):
        if media.type != "application" or media.subtype != "json":
            if media.type == "*" or media.subtype == "*":
                return None
            continue
        params = media.params
        if params.get("as") == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io":
            if params.get("v") in AGGREGATED_CONTENT_TYPES:
                return params["v"]
            continue
        if "as" not in params:
            return None
    return None


def _etags(header: bytes | None) -> set[bytes]:
    if not header:
        return set()
    return {t.strip().removeprefix(b"W/") for t in header.split(b",")}


class OpenAPIResource(GatedResource):
    """``/openapi/v2``, ``/openapi/v3`` and ``/openapi/v3/apis/<g>/<v>`` (JSON, with ETags)."""

    def __init__(self, gate: Gate, documents: OpenAPIDocuments) -> None:
        super().__init__(gate)
        self.documents = documents

    async def handle(self, request: IRequest, user: UserInfo) -> bytes | int:
        _read_only(request)
        docs = self.documents
        path = b"/".join(request.postpath or []).strip(b"/").decode("utf-8", "replace")
        if path == "v2":
            body, etag = docs.v2, docs.v2_etag
        elif path == "v3":
            body, etag = docs.v3_index, None
        elif path == f"v3/{docs.v3_gv_path}":
            body, etag = docs.v3, docs.v3_etag
            if request.args and b"hash" in request.args:
                request.responseHeaders.setRawHeaders(
                    b"cache-control", [b"public, immutable, max-age=31536000"]
                )
        else:
            raise not_found()
        if not _accepts_json(request.getHeader(b"accept")):
            raise errors.NotAcceptable("only application/json is served here (no protobuf OpenAPI)")
        if etag is not None:
            request.responseHeaders.setRawHeaders(b"etag", [etag])
            if etag in _etags(request.getHeader(b"if-none-match")):
                request.setResponseCode(304)
                return b""
        return json_body(request, body)


def _accepts_json(accept: bytes | None) -> bool:
    if not accept or not accept.strip():
        return True
    for media in parse_accept(accept.decode("latin-1")):
        if media.type == "*" or (media.type == "application" and media.subtype in ("*", "json")):
            return True
    return False


def version_info() -> dict[str, str]:
    """``/version``: kubectl prints ``gitVersion``."""
    try:
        version = metadata.version("clustergateway")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    machine = platform.machine().lower().replace("x86_64", "amd64").replace("aarch64", "arm64")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{version}",
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": f"python{platform.python_version()}",
        "compiler": sys.implementation.name,
        "platform": f"{sys.platform}/{machine}",
    }


class VersionResource(GatedResource):
    def __init__(self, gate: Gate, info: dict[str, str]) -> None:
        super().__init__(gate)
        self.body = json.dumps(info, indent=2).encode()

    async def handle(self, request: IRequest, user: UserInfo) -> bytes | int:
        _read_only(request)
        return json_body(request, self.body)


class PathListResource(GatedResource):
    """``/``: the served paths, as the apiserver lists them."""

    def __init__(self, gate: Gate, paths: list[str]) -> None:
        super().__init__(gate)
        self.body = json.dumps({"paths": paths}, indent=2).encode()

    async def handle(self, request: IRequest, user: UserInfo) -> bytes | int:
        _read_only(request)
        return json_body(request, self.body)


class MetricsEndpoint(GatedResource):
    """``/metrics`` behind the gate: a non-resource ``get /metrics`` at the hub, as
    for any apiserver (open in ``--standalone-debug-mode``, whose guard allows all)."""

    def __init__(self, gate: Gate, metrics: Resource) -> None:
        super().__init__(gate)
        self.metrics = metrics

    async def handle(self, request: IRequest, user: UserInfo) -> bytes | int:
        _read_only(request)
        return self.metrics.render(request)  # type: ignore[no-any-return]


class GatewayRoot(Resource):
    """The root: fixed children, everything else a gated 404 ``Status``."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.gate = gate
        self.healthz = ProbeResource("healthz")
        self.livez = ProbeResource("livez")
        self.readyz = ProbeResource("readyz")
        self.putChild(b"healthz", self.healthz)
        self.putChild(b"livez", self.livez)
        self.putChild(b"readyz", self.readyz)

    def paths(self) -> list[str]:
        gv = self.gate.gv
        served = [f"/{name.decode()}" for name in self.children if name]
        served += [f"/apis/{gv.group}", gv.path, "/openapi/v3", "/openapi/v2"]
        return sorted(set(served) - {"/openapi", "/"})

    def getChild(self, path: bytes, request: IRequest) -> Resource:  # noqa: N802 - Twisted's name
        if path == b"":
            return PathListResource(self.gate, self.paths())
        return GatedResource(self.gate)


def build_root(
    *,
    gv: GroupVersion,
    registry: ServedRegistry,
    changes: ChangeLog,
    guard: RequestGuard,
    clock: IReactorTime,
    proxy: ClusterProxyRenderer | None = None,
    health_writer: HealthWriter | None = None,
    min_request_timeout: float = 1800.0,
    metrics: Resource | None = None,
) -> GatewayRoot:
    """The whole tree; ``/readyz`` passes once the registry made its first full sync."""
    gate = Gate(guard, gv)
    root = GatewayRoot(gate)
    if metrics is not None:
        root.putChild(b"metrics", MetricsEndpoint(gate, metrics))
    clusters = ClusterResources(
        gv,
        registry,
        changes,
        clock,
        health_writer=health_writer,
        min_request_timeout=min_request_timeout,
    )
    root.putChild(b"apis", ApisResource(gate, DiscoveryDocuments.build(gv), clusters, proxy))
    root.putChild(b"openapi", OpenAPIResource(gate, OpenAPIDocuments.build(gv)))
    root.putChild(b"version", VersionResource(gate, version_info()))
    root.readyz.add_check(
        Check(
            "registry-synced",
            lambda: None if registry.synced else "the cluster registry has not synced yet",
        )
    )
    return root
