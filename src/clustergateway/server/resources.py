"""Serving ``clustergateways`` and ``virtualclusters``: get, list, watch, health.

:class:`ClusterResources` turns a routed, authorized request into a response
body (or starts a watch stream).  It reads the registry only through
:class:`ServedRegistry` and writes only through a :class:`HealthWriter`, so it
runs the same on a hub-backed registry, a secrets directory, or a test's
in-memory registry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs
import yaml
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

from clustergateway import errors
from clustergateway.api.patch import apply_json_patch, apply_merge_patch
from clustergateway.api.tables import (
    CLUSTER_GATEWAY_COLUMNS,
    VIRTUAL_CLUSTER_COLUMNS,
    Column,
    cluster_gateway_row,
    partial_object_metadata,
    table,
    virtual_cluster_row,
)
from clustergateway.api.types import (
    GroupVersion,
    cluster_gateway_object,
    list_object,
    virtual_cluster_object,
)
from clustergateway.registry.model import ClusterGateway, RegistryEntry, RegistryListener
from clustergateway.registry.selector import LabelSelector, parse_selector
from clustergateway.registry.virtualcluster import VirtualCluster, list_virtual_clusters
from clustergateway.server.negotiate import Representation, negotiate
from clustergateway.server.routes import ResourcePath, first_arg, query_flag
from clustergateway.server.watch import (
    ChangeLog,
    ClusterState,
    WatchOptions,
    WatchStream,
    WatchView,
)

__all__ = [
    "ClusterResources",
    "FieldSelector",
    "HealthWriter",
    "ServedRegistry",
    "UnsupportedMediaType",
    "encode",
    "parse_field_selector",
]


class ServedRegistry(Protocol):
    """What the API layer reads (``registry.store.SecretRegistry`` provides it)."""

    @property
    def resource_version(self) -> int: ...

    @property
    def synced(self) -> bool: ...

    def get(self, name: str) -> ClusterGateway: ...

    def entries(self) -> list[RegistryEntry]: ...

    def subscribe(self, listener: RegistryListener) -> Callable[[], None]: ...

    def virtual_clusters(self, selector: LabelSelector | None = None) -> list[VirtualCluster]: ...

    def virtual_cluster(self, name: str) -> VirtualCluster: ...

    def with_recorded_health(self, name: str, healthy: bool, reason: str) -> ClusterGateway: ...


class HealthWriter(Protocol):
    """Records a cluster's healthiness in its Secret's status annotations."""

    async def write_health(self, name: str, healthy: bool, reason: str) -> None:
        """Raise a ``StatusError`` (e.g. 404 when the Secret vanished) on failure."""


class UnsupportedMediaType(errors.StatusError):
    code = 415
    reason = "UnsupportedMediaType"


@attrs.frozen
class FieldSelector:
    """A ``fieldSelector`` on ``metadata.name``/``metadata.namespace`` (all these kinds allow)."""

    requirements: tuple[tuple[str, bool, str], ...] = ()  # (field, equal, value)

    def matches(self, name: str) -> bool:
        for field, equal, value in self.requirements:
            actual = name if field == "metadata.name" else ""
            if (actual == value) != equal:
                return False
        return True


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse ``metadata.name=x,metadata.name!=y``; other fields → 400 as the apiserver."""
    if not text or not text.strip():
        return FieldSelector()
    requirements = []
    for part in text.split(","):
        part = part.strip()
        op = next((o for o in ("!=", "==", "=") if o in part), None)
        if op is None:
            raise errors.BadRequest(f'invalid selector: "{text}"; can\'t understand "{part}"')
        field, _, value = part.partition(op)
        equal = op != "!="
        field = field.strip()
        if field not in ("metadata.name", "metadata.namespace"):
            raise errors.BadRequest(f'field label not supported: "{field}"')
        requirements.append((field, equal, value.strip()))
    return FieldSelector(tuple(requirements))


def encode(obj: Mapping[str, Any], representation: Representation) -> bytes:
    """The response body of ``obj`` in JSON or YAML."""
    if representation.format == "yaml":
        return yaml.safe_dump(dict(obj), sort_keys=False, default_flow_style=False).encode()
    return json.dumps(obj, separators=(",", ":")).encode()


_READ_METHODS = (b"GET", b"HEAD")
_ALL_FORMATS: frozenset[Any] = frozenset({"json", "yaml", "table", "partial"})
_WATCH_FORMATS: frozenset[Any] = frozenset({"json", "table", "partial"})


def _method_not_allowed() -> errors.StatusError:
    return errors.MethodNotAllowed(
        "the server does not allow this method on the requested resource"
    )


@attrs.define
class ClusterResources:
    """Serves ``clustergateways`` (get, list, watch, ``health``) and ``virtualclusters``."""

    gv: GroupVersion
    registry: ServedRegistry
    changes: ChangeLog
    clock: IReactorTime
    #: None: ``health`` updates answer 405 (e.g. ``--secrets-dir`` is read-only).
    health_writer: HealthWriter | None = None
    min_request_timeout: float = 1800.0

    async def serve(self, request: IRequest, route: ResourcePath) -> bytes | int:
        """The body to send (code and headers set on ``request``), or ``NOT_DONE_YET``."""
        method = request.method
        if route.subresource == "health":
            if method in _READ_METHODS:
                return self._respond_object(request, route.resource, route.name)
            if method in (b"PUT", b"PATCH"):
                return await self._update_health(request, route.name)
            raise _method_not_allowed()
        if method not in _READ_METHODS:
            raise _method_not_allowed()
        args = request.args or {}
        if route.legacy_watch or (not route.name and query_flag(args, b"watch")):
            return self._watch(request, route)
        if route.name:
            return self._respond_object(request, route.resource, route.name)
        return self._respond_list(request, route.resource)

    # -- get / list --------------------------------------------------------------------

    def _respond(self, request: IRequest, rep: Representation, obj: Mapping[str, Any]) -> bytes:
        body = encode(obj, rep)
        request.setResponseCode(200)
        request.responseHeaders.setRawHeaders(b"content-type", [rep.content_type])
        request.responseHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
        return body

    def _row(
        self, resource: str, item: Any, rep: Representation, include: Any, rv: int | None = None
    ) -> Any:
        if resource == "clustergateways":
            return cluster_gateway_row(item, self.gv, include, rep.version, resource_version=rv)
        return virtual_cluster_row(item, self.gv, include, rep.version, resource_version=rv)

    def _object(self, resource: str, item: Any, rv: int | None = None) -> dict[str, Any]:
        if resource == "clustergateways":
            return cluster_gateway_object(item, self.gv, resource_version=rv)
        return virtual_cluster_object(item, self.gv, resource_version=rv)

    def _columns(self, resource: str) -> tuple[Column, ...]:
        return CLUSTER_GATEWAY_COLUMNS if resource == "clustergateways" else VIRTUAL_CLUSTER_COLUMNS

    def _lookup(self, resource: str, name: str) -> Any:
        if resource == "clustergateways":
            return self.registry.get(name)
        return self.registry.virtual_cluster(name)

    def _respond_object(self, request: IRequest, resource: str, name: str) -> bytes:
        rep = negotiate(request.getHeader(b"accept"), _ALL_FORMATS)
        include = _include_object(request)
        item = self._lookup(resource, name)
        if rep.format == "table":
            rows = [self._row(resource, item, rep, include)]
            doc = table(
                self._columns(resource), rows, resource_version=None, table_version=rep.version
            )
            return self._respond(request, rep, doc)
        obj = self._object(resource, item)
        if rep.format == "partial":
            obj = partial_object_metadata(obj, rep.version)
        return self._respond(request, rep, obj)

    def _items(self, request: IRequest, resource: str) -> tuple[int, list[Any]]:
        args = request.args or {}
        if first_arg(args, b"continue"):
            raise errors.BadRequest("continue tokens are not supported: lists are never paginated")
        labels = parse_selector(first_arg(args, b"labelSelector"))
        fields = parse_field_selector(first_arg(args, b"fieldSelector"))
        version = self.registry.resource_version
        items: list[Any]
        if resource == "clustergateways":
            items = [
                e.gateway
                for e in self.registry.entries()
                if e.gateway is not None and labels.matches(e.gateway.labels)
            ]
        else:
            items = self.registry.virtual_clusters(labels)
        return version, [i for i in items if fields.matches(i.name)]

    def _respond_list(self, request: IRequest, resource: str) -> bytes:
        rep = negotiate(request.getHeader(b"accept"), _ALL_FORMATS)
        include = _include_object(request)
        version, items = self._items(request, resource)
        if rep.format == "table":
            rows = [self._row(resource, i, rep, include) for i in items]
            doc = table(
                self._columns(resource), rows, resource_version=version, table_version=rep.version
            )
            return self._respond(request, rep, doc)
        objects = [self._object(resource, i) for i in items]
        if rep.format == "partial":
            meta = [partial_object_metadata(o, rep.version) for o in objects]
            doc = list_object(
                "PartialObjectMetadataList", f"meta.k8s.io/{rep.version}", meta, version
            )
            return self._respond(request, rep, doc)
        kind = "ClusterGatewayList" if resource == "clustergateways" else "VirtualClusterList"
        return self._respond(request, rep, list_object(kind, self.gv.api_version, objects, version))

    # -- watch -------------------------------------------------------------------------

    def _watch(self, request: IRequest, route: ResourcePath) -> int:
        rep = negotiate(request.getHeader(b"accept"), _WATCH_FORMATS)
        include = _include_object(request)
        args = request.args or {}
        options = WatchOptions.parse(
            first_arg(args, b"resourceVersion"),
            first_arg(args, b"timeoutSeconds"),
            query_flag(args, b"allowWatchBookmarks"),
            first_arg(args, b"sendInitialEvents"),
        )
        if first_arg(args, b"continue"):
            raise errors.BadRequest("continue tokens are not supported")
        labels = parse_selector(first_arg(args, b"labelSelector"))
        fields = parse_field_selector(first_arg(args, b"fieldSelector"))
        if route.name:  # legacy /watch/<resource>/<name>
            fields = FieldSelector(fields.requirements + (("metadata.name", True, route.name),))
        view = self._watch_view(route.resource, rep, include, labels, fields)
        WatchStream(
            request,
            self.changes,
            view,
            self.clock,
            options,
            min_request_timeout=self.min_request_timeout,
        ).start()
        return NOT_DONE_YET

    def _watch_view(
        self,
        resource: str,
        rep: Representation,
        include: Any,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> WatchView:
        group = self.gv.group
        project: Callable[[str, ClusterState], Any]
        extras: tuple[Any, ...] = ()
        if resource == "clustergateways":

            def project(name: str, state: ClusterState) -> Any:
                entry = state.entry
                if entry is None or entry.gateway is None or not fields.matches(name):
                    return None
                return entry.gateway if labels.matches(entry.gateway.labels) else None

            kind = "ClusterGateway"
        else:

            def project(name: str, state: ClusterState) -> Any:
                if not fields.matches(name) or name == "local":
                    return None
                secrets = [state.entry.secret] if state.entry is not None else []
                managed = [state.managed] if state.managed is not None else []
                found = list_virtual_clusters(secrets, managed, group=group, selector=labels)
                return next((c for c in found if c.name == name), None)

            local = [c for c in self.registry.virtual_clusters(labels) if c.name == "local"]
            extras = tuple(c for c in local if fields.matches(c.name))
            kind = "VirtualCluster"

        def bookmark(version: int, initial_end: bool) -> dict[str, Any]:
            meta: dict[str, Any] = {"resourceVersion": str(version)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            if rep.format == "table":
                return table((), (), resource_version=version, table_version=rep.version) | {
                    "metadata": meta
                }
            if rep.format == "partial":
                return {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": f"meta.k8s.io/{rep.version}",
                    "metadata": meta,
                }
            return {"kind": kind, "apiVersion": self.gv.api_version, "metadata": meta}

        def render(item: Any, version: int) -> dict[str, Any]:
            if rep.format == "table":
                row = self._row(resource, item, rep, include, version)
                return table(
                    self._columns(resource),
                    [row],
                    resource_version=version,
                    table_version=rep.version,
                )
            obj = self._object(resource, item, version)
            if rep.format == "partial":
                return partial_object_metadata(obj, rep.version)
            return obj

        return WatchView(project, render, bookmark, rep.content_type, extras)

    # -- health ------------------------------------------------------------------------

    async def _update_health(self, request: IRequest, name: str) -> bytes:
        if self.health_writer is None:
            raise errors.MethodNotAllowed(
                "clustergateways/health is read-only here: this gateway reads its clusters "
                "from --secrets-dir, not from a hub"
            )
        gateway = self.registry.get(name)
        current = cluster_gateway_object(gateway, self.gv)
        desired = _updated_object(request, current)
        meta = desired.get("metadata") if isinstance(desired, dict) else None
        if isinstance(meta, dict) and meta.get("name") not in (None, name):
            raise errors.BadRequest(
                f"the name of the object ({meta.get('name')}) does not match the name "
                f"on the URL ({name})"
            )
        healthy, reason = _health_of(desired)
        await self.health_writer.write_health(name, healthy, reason)
        # What every reader will show once the write is seen: the recorded
        # health combined with OCM's verdict (Go answered the Secret alone).
        updated = self.registry.with_recorded_health(name, healthy, reason)
        rep = negotiate(request.getHeader(b"accept"), frozenset({"json", "yaml"}))
        return self._respond(request, rep, cluster_gateway_object(updated, self.gv))


def _include_object(request: IRequest) -> str:
    include = first_arg(request.args or {}, b"includeObject") or "Metadata"
    if include not in ("None", "Metadata", "Object"):
        raise errors.BadRequest(f'invalid includeObject "{include}": want None, Metadata or Object')
    return include


def _read_json(request: IRequest) -> Any:
    content = request.content
    raw = content.read() if content is not None else b""
    try:
        return json.loads(raw)
    except ValueError as e:
        raise errors.BadRequest(f"the request body is not valid JSON: {e}") from None


def _updated_object(request: IRequest, current: dict[str, Any]) -> Any:
    """The object a PUT or PATCH asks for."""
    body = _read_json(request)
    if request.method == b"PUT":
        if not isinstance(body, dict):
            raise errors.BadRequest("the request body must be a ClusterGateway object")
        return body
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type in (b"application/merge-patch+json", b"application/strategic-merge-patch+json"):
        return apply_merge_patch(current, body)
    if content_type == b"application/json-patch+json":
        return apply_json_patch(current, body)
    raise UnsupportedMediaType(
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json, "
        f"application/strategic-merge-patch+json (got {content_type.decode('latin-1')!r})"
    )


def _health_of(obj: Any) -> tuple[bool, str]:
    status = obj.get("status") if isinstance(obj, dict) else None
    if status is None:
        status = {}
    if not isinstance(status, dict):
        raise errors.UnprocessableEntity("status: must be an object")
    healthy = status.get("healthy", False)
    reason = status.get("healthyReason", "")
    if not isinstance(healthy, bool):
        raise errors.UnprocessableEntity("status.healthy: must be true or false")
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise errors.UnprocessableEntity("status.healthyReason: must be a string")
    return healthy, reason
