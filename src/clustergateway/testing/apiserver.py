"""Request handling of the simulated cluster: authenticate, record, route, answer.

One leaf :class:`ApiResource` takes every path.  For each request it
authenticates the caller (bearer token, client certificate; anonymous only for
health and version), applies impersonation, records the request, applies the
latency/stall/deny faults, then routes on :func:`parse_request_info`:
non-resource paths, discovery, review APIs, pod stream subresources, and CRUD,
list and watch on the object store.  Every error is a ``Status``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from clustergateway.auth.user import ANONYMOUS, UserInfo
from clustergateway.errors import (
    BadRequest,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    StatusError,
    Unauthorized,
    UnprocessableEntity,
    render_status,
)
from clustergateway.fence.twisted_web import stream_connection
from clustergateway.testing import discovery, hubapis, openapi
from clustergateway.testing.http import SimRequest
from clustergateway.testing.kinds import ResourceType
from clustergateway.testing.media import Representation, choose_representation
from clustergateway.testing.patches import (
    MalformedPatch,
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from clustergateway.testing.protobuf import (
    PROTOBUF,
    ProtobufError,
    UnsupportedProtobufKind,
    decode_object,
)
from clustergateway.testing.requestinfo import RequestInfo, parse_request_info
from clustergateway.testing.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from clustergateway.testing.simauth import (
    apply_impersonation,
    bearer_token,
    user_from_certificate,
)
from clustergateway.testing.tables import partial_metadata, table_for
from clustergateway.testing.watch import WatchOptions, WatchStream

if TYPE_CHECKING:
    from clustergateway.testing.server import SimulatedCluster

__all__ = ["ApiResource", "RecordedRequest", "UnsupportedMediaType"]

import attrs

Object = dict[str, Any]

#: Paths kube-apiserver's default RBAC opens to anonymous callers.
_PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
_HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
_STREAM_SUBRESOURCES = ("exec", "attach", "portforward", "log")
_RECORDED_BODY_LIMIT = 64 * 1024


class UnsupportedMediaType(StatusError):
    code = 415
    reason = "UnsupportedMediaType"


def _redact(headers: dict[str, list[str]]) -> str:
    shown = {k: (["<redacted>"] if k == "authorization" else v) for k, v in headers.items()}
    return repr(shown)


@attrs.frozen
class RecordedRequest:
    """What one request to the simulated cluster looked like, for test assertions.

    ``user`` is the effective identity (after impersonation; None when
    authentication failed); ``impersonated_by`` the authenticated caller when
    it impersonated someone.  ``body`` holds at most the first 64 KiB.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, list[str]] = attrs.field(repr=_redact)
    user: UserInfo | None
    impersonated_by: UserInfo | None
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")

    def header(self, name: str) -> str | None:
        """The first value of a header (any case), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


def _decode(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _headers_of(request: SimRequest) -> dict[str, list[str]]:
    return {
        _decode(name).lower(): [_decode(v) for v in values]
        for name, values in request.requestHeaders.getAllRawHeaders()
    }


def _query_of(request: SimRequest) -> dict[str, list[str]]:
    query = urlsplit(_decode(request.uri)).query
    return parse_qs(query, keep_blank_values=True)


def _last(query: dict[str, list[str]], key: str, default: str = "") -> str:
    values = query.get(key)
    return values[-1] if values else default


def _bool_param(query: dict[str, list[str]], key: str) -> bool | None:
    value = _last(query, key)
    if value == "":
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BadRequest(f"invalid value for {key}: {value!r}")


def _int_param(query: dict[str, list[str]], key: str) -> int | None:
    value = _last(query, key)
    if value == "":
        return None
    try:
        return int(value)
    except ValueError as e:
        raise BadRequest(f"invalid value for {key}: {value!r}: must be an integer") from e


def _dry_run(query: dict[str, list[str]], body: Object | None = None) -> bool:
    values = list(query.get("dryRun") or [])
    if body and isinstance(body.get("dryRun"), list):
        values += body["dryRun"]
    for value in values:
        if value != "All":
            raise BadRequest(f'unsupported dry run value {value!r}: supported values: "All"')
    return bool(values)


def _not_found_path() -> NotFound:
    return NotFound("the server could not find the requested resource", {})


def _forbidden(user: UserInfo, info: RequestInfo) -> Forbidden:
    group = info.group
    resource = info.resource + (f"/{info.subresource}" if info.subresource else "")
    target = f'{resource} "{info.name}"' if info.name else resource
    scope = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    return Forbidden(
        f'{target} is forbidden: User "{user.name}" cannot {info.verb} resource "{resource}"'
        f' in API group "{group}" {scope}',
        {"name": info.name, "group": group, "kind": info.resource},
    )


@attrs.define(eq=False)
class _Call:
    """One request in flight with everything parsed once."""

    request: SimRequest
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, list[str]]
    body: bytes
    user: UserInfo = ANONYMOUS

    def header(self, name: str) -> str:
        values = self.headers.get(name)
        return values[0] if values else ""

    def json_body(self) -> Any:
        if self.request.body_too_large:
            raise self.request.too_large_error()
        content_type = self.header("content-type").split(";")[0].strip().lower()
        if not self.body.strip():
            raise BadRequest("the request body is empty")
        if content_type == PROTOBUF:
            try:
                return decode_object(self.body)
            except UnsupportedProtobufKind as e:
                raise UnsupportedMediaType(str(e)) from e
            except ProtobufError as e:
                raise BadRequest(f"the request body is not a valid protobuf object: {e}") from e
        try:
            if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
                return yaml.safe_load(self.body)
            if content_type and "json" not in content_type and content_type != "*/*":
                raise UnsupportedMediaType(
                    f"the body of the request was in an unknown format - accepted media types"
                    f' include: application/json, application/yaml (got "{content_type}")'
                )
            return json.loads(self.body)
        except (ValueError, yaml.YAMLError) as e:
            raise BadRequest(f"the request body is not valid JSON: {e}") from e


class ApiResource(Resource):
    """The whole API surface of one simulated cluster (a leaf taking every path)."""

    isLeaf = True
    _log = Logger()

    def __init__(self, cluster: SimulatedCluster) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.cluster = cluster

    def render(self, request: SimRequest) -> int:
        d = ensureDeferred(self._handle(request))
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET

    # -- pipeline ----------------------------------------------------------------

    async def _handle(self, request: SimRequest) -> None:
        try:
            await self._serve(request)
        except CancelledError:
            return
        except StatusError as error:
            self._fail(request, error)
        except Exception:
            self._log.failure("simulated cluster handler failed")
            self._fail(
                request, InternalError("an internal error occurred in the simulated cluster")
            )

    def _fail(self, request: SimRequest, error: StatusError) -> None:
        if request.gone or request.finished:
            return
        if request.startedWriting:
            request.loseConnection()  # type: ignore[no-untyped-call]
            return
        body = render_status(request, error)
        request.write(body)
        request.finish()

    def _authenticate(self, call: _Call) -> tuple[UserInfo | None, StatusError | None]:
        cluster = self.cluster
        token = bearer_token(call.header("authorization"))
        if token is not None:
            user = cluster.tokens.lookup(token)
            if user is None:
                return None, Unauthorized("Unauthorized")
            return user, None
        channel = call.request.channel
        transport = getattr(channel, "transport", None)
        if transport is None:  # HTTP/2: the stream's connection has the transport
            transport = getattr(stream_connection(channel), "transport", None)
        cert = None
        if transport is not None and hasattr(transport, "getPeerCertificate"):
            cert = transport.getPeerCertificate()
        if cert is not None:
            try:
                return user_from_certificate(cert), None
            except StatusError as error:
                return None, error
        if call.header("authorization"):
            return None, Unauthorized("Unauthorized")
        if call.path.rstrip("/") in _PUBLIC_PATHS or call.path.startswith(
            tuple(p + "/" for p in _HEALTH_PATHS)
        ):
            return ANONYMOUS, None
        return None, Unauthorized("Unauthorized")

    async def _serve(self, request: SimRequest) -> None:
        cluster = self.cluster
        body = request.content.read() if request.content is not None else b""
        call = _Call(
            request=request,
            method=_decode(request.method).upper(),
            path=_decode(request.path),
            query=_query_of(request),
            headers=_headers_of(request),
            body=body,
        )
        user, error = self._authenticate(call)
        impersonator: UserInfo | None = None
        if user is not None and error is None:
            try:
                user, impersonator = apply_impersonation(user, call.headers, self._may_impersonate)
            except StatusError as e:
                error = e
        if cluster.record_requests:
            cluster.requests.append(
                RecordedRequest(
                    method=call.method,
                    path=call.path,
                    query=call.query,
                    headers=call.headers,
                    user=user if error is None else None,
                    impersonated_by=impersonator if error is None else None,
                    body=body[:_RECORDED_BODY_LIMIT],
                )
            )
        faults = cluster.faults
        if faults.latency > 0:
            await deferLater(cluster.reactor, faults.latency, lambda: None)
        await cluster.wait_unstalled()
        if error is not None:
            raise error
        assert user is not None
        call.user = user
        info = parse_request_info(call.method, call.path, call.query)
        if info.discovery:
            self._discovery(call, info)
        elif not info.is_resource:
            self._non_resource(call)
        else:
            await self._resource(call, info)

    def _may_impersonate(self, user: UserInfo, kind: str, value: str) -> bool:
        return not self.cluster.faults.denies(user.name, "impersonate", kind.split("/")[0])

    # -- responses ---------------------------------------------------------------

    def _send(
        self,
        call: _Call,
        obj: Any,
        *,
        code: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        request = call.request
        if request.gone or request.finished:
            return
        data = json.dumps(obj, separators=(",", ":")).encode()
        request.setResponseCode(code)
        request.responseHeaders.setRawHeaders(b"content-type", [content_type.encode()])
        request.responseHeaders.setRawHeaders(b"content-length", [str(len(data)).encode()])
        request.responseHeaders.setRawHeaders(b"cache-control", [b"no-cache, private"])
        for name, value in (headers or {}).items():
            request.responseHeaders.setRawHeaders(name.encode(), [value.encode()])
        request.write(data)
        request.finish()

    def _send_text(self, call: _Call, text: str, code: int = 200) -> None:
        request = call.request
        data = text.encode()
        request.setResponseCode(code)
        request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
        request.responseHeaders.setRawHeaders(b"content-length", [str(len(data)).encode()])
        request.responseHeaders.setRawHeaders(b"x-content-type-options", [b"nosniff"])
        request.write(data)
        request.finish()

    # -- non-resource paths --------------------------------------------------------

    def _non_resource(self, call: _Call) -> None:
        if call.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{call.method} is not allowed on {call.path}")
        path = call.path.rstrip("/") or "/"
        if path in _HEALTH_PATHS or path.startswith(tuple(p + "/" for p in _HEALTH_PATHS)):
            if _bool_param(call.query, "verbose"):
                name = path.strip("/").split("/")[0]
                self._send_text(call, f"[+]ping ok\n[+]etcd ok\n{name} check passed\n")
            else:
                self._send_text(call, "ok")
            return
        if path == "/version":
            self._send(call, discovery.version_info(self.cluster.minor_version))
            return
        types = self.cluster.store.types
        if path == "/openapi/v3":
            self._send(call, openapi.openapi_v3_root(types))
            return
        if path.startswith("/openapi/v3/"):
            parts = path[len("/openapi/v3/") :].split("/")
            document = None
            if parts[0] == "api" and len(parts) == 2:
                document = openapi.group_version_document(types, "", parts[1])
            elif parts[0] == "apis" and len(parts) == 3:
                document = openapi.group_version_document(types, parts[1], parts[2])
            if document is not None:
                self._send(call, document, headers={"etag": discovery.etag_of(document)})
                return
        raise _not_found_path()

    # -- discovery ---------------------------------------------------------------------

    def _discovery(self, call: _Call, info: RequestInfo) -> None:
        types = self.cluster.store.types
        if call.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{call.method} is not allowed on {call.path}")
        top_level = info.version == "" and (info.api_prefix == "api" or info.group == "")
        if top_level:
            representation = choose_representation(call.header("accept"), discovery=True)
            if representation is None:
                raise NotAcceptable("only application/json is served")
            core = info.api_prefix == "api"
            if representation.as_kind == "APIGroupDiscoveryList":
                document = discovery.aggregated_discovery(
                    types, core=core, version=representation.version
                )
                etag = discovery.etag_of(document)
                if etag in (call.header("if-none-match") or "").split(","):
                    request = call.request
                    request.setResponseCode(304)
                    request.responseHeaders.setRawHeaders(b"etag", [etag.encode()])
                    request.finish()
                    return
                self._send(
                    call,
                    document,
                    content_type=representation.content_type,
                    headers={"etag": etag, "vary": "Accept"},
                )
                return
            document = (
                discovery.api_versions(self.cluster.server_address)
                if core
                else discovery.api_group_list(types)
            )
            self._send(call, document, headers={"vary": "Accept"})
            return
        if info.version == "":
            group_doc = discovery.api_group(types, info.group)
            if group_doc is None:
                raise _not_found_path()
            self._send(call, group_doc)
            return
        resources = discovery.api_resource_list(types, info.group, info.version)
        if resources is None:
            raise _not_found_path()
        self._send(call, resources)

    # -- resources -----------------------------------------------------------------------

    async def _resource(self, call: _Call, info: RequestInfo) -> None:
        cluster = self.cluster
        rtype = cluster.store.types.find(info.group, info.version, info.resource)
        if rtype is None:
            raise _not_found_path()
        if rtype.namespaced is False and info.namespace and rtype.resource != "namespaces":
            raise _not_found_path()
        resource_key = info.resource + (f"/{info.subresource}" if info.subresource else "")
        if cluster.faults.denies(call.user.name, info.verb, info.resource) or (
            info.subresource and cluster.faults.denies(call.user.name, info.verb, resource_key)
        ):
            raise _forbidden(call.user, info)
        if not rtype.stored:
            self._review(call, info, rtype)
            return
        if info.subresource:
            await self._subresource(call, info, rtype)
            return
        verb = info.verb
        if verb not in rtype.verbs:
            raise MethodNotAllowed(
                f"the server does not allow this method on the requested resource"
                f" ({verb} {rtype.group_resource})"
            )
        if not info.name and verb in ("update", "patch"):
            raise MethodNotAllowed(
                f"the server does not allow this method on the requested resource"
                f" ({verb} of a {rtype.resource} collection)"
            )
        if rtype.namespaced and not info.namespace and verb in ("create", "deletecollection"):
            raise MethodNotAllowed(
                f"{verb} of namespaced {rtype.resource} needs a namespace in the path"
            )
        handlers: dict[str, Callable[[_Call, RequestInfo, ResourceType], None]] = {
            "get": self._get,
            "list": self._list,
            "watch": self._watch,
            "create": self._create,
            "update": self._update,
            "patch": self._patch,
            "delete": self._delete,
            "deletecollection": self._delete_collection,
        }
        handler = handlers.get(verb)
        if handler is None:
            raise MethodNotAllowed(f"{call.method} is not supported")
        handler(call, info, rtype)

    def _representation(self, call: _Call) -> Representation:
        representation = choose_representation(call.header("accept"))
        if representation is None:
            raise NotAcceptable(
                "only the following media types are accepted: application/json,"
                " application/json;as=Table;v=v1;g=meta.k8s.io"
            )
        return representation

    def _renderer(
        self, call: _Call, rtype: ResourceType, representation: Representation
    ) -> Callable[[Object], Object]:
        if representation.as_kind == "Table":
            include = _last(call.query, "includeObject", "Metadata")
            return lambda obj: table_for(
                rtype, [obj], version=representation.version, include_object=include
            )
        if representation.as_kind == "PartialObjectMetadata":
            return lambda obj: partial_metadata(obj, representation.version)
        return lambda obj: obj

    def _send_object(self, call: _Call, rtype: ResourceType, obj: Object, code: int = 200) -> None:
        representation = self._representation(call)
        rendered = self._renderer(call, rtype, representation)(obj)
        self._send(call, rendered, code=code, content_type=representation.content_type)

    def _get(self, call: _Call, info: RequestInfo, rtype: ResourceType) -> None:
        obj = self.cluster.store.lookup(rtype, info.namespace, info.name)
        self._send_object(call, rtype, obj)

    def _selectors(self, call: _Call, rtype: ResourceType) -> tuple[Any, Any]:
        try:
            labels = parse_label_selector(_last(call.query, "labelSelector"))
            fields = parse_field_selector(_last(call.query, "fieldSelector"))
        except SelectorError as e:
            raise BadRequest(f"unable to parse requirement: {e}") from e
        allowed = ("metadata.name", "metadata.namespace", *rtype.selectable_fields)
        for requirement in fields:
            if requirement.field not in allowed:
                raise BadRequest(
                    f'"{requirement.field}" is not a known field selector: only'
                    f' "metadata.name", "metadata.namespace"'
                    + "".join(f', "{f}"' for f in rtype.selectable_fields)
                )
        return labels, fields

    def _list(self, call: _Call, info: RequestInfo, rtype: ResourceType) -> None:
        labels, fields = self._selectors(call, rtype)
        limit = _int_param(call.query, "limit") or 0
        page = self.cluster.store.list(
            rtype,
            info.namespace,
            labels=labels,
            fields=fields,
            limit=limit,
            continue_token=_last(call.query, "continue"),
        )
        list_meta: Object = {"resourceVersion": str(page.resource_version)}
        if page.continue_token:
            list_meta["continue"] = page.continue_token
            list_meta["remainingItemCount"] = page.remaining
        representation = self._representation(call)
        if representation.as_kind == "Table":
            include = _last(call.query, "includeObject", "Metadata")
            document = table_for(
                rtype,
                page.items,
                version=representation.version,
                include_object=include,
                list_meta=list_meta,
            )
        elif representation.as_kind == "PartialObjectMetadata":
            document = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": f"meta.k8s.io/{representation.version}",
                "metadata": list_meta,
                "items": [partial_metadata(o, representation.version) for o in page.items],
            }
        else:
            document = {
                "kind": f"{rtype.kind}List",
                "apiVersion": rtype.api_version,
                "metadata": list_meta,
                "items": page.items,
            }
        self._send(call, document, content_type=representation.content_type)

    def _watch(self, call: _Call, info: RequestInfo, rtype: ResourceType) -> None:
        labels, fields = self._selectors(call, rtype)
        if info.name:
            # Legacy /watch/<resource>/<name> paths watch one object.
            fields = (*fields, *parse_field_selector(f"metadata.name={info.name}"))
        timeout = _int_param(call.query, "timeoutSeconds")
        options = WatchOptions(
            namespace=info.namespace,
            labels=labels,
            fields=fields,
            resource_version=_last(call.query, "resourceVersion"),
            send_initial_events=_bool_param(call.query, "sendInitialEvents"),
            allow_bookmarks=bool(_bool_param(call.query, "allowWatchBookmarks")),
            # kube-apiserver reads 0 (and absence) as "its own default"; ours is forever.
            timeout_seconds=float(timeout) if timeout and timeout > 0 else None,
        )
        if options.send_initial_events and not options.allow_bookmarks:
            raise BadRequest("sendInitialEvents requires setting allowWatchBookmarks to true")
        representation = self._representation(call)
        stream = WatchStream(
            reactor=self.cluster.reactor,
            store=self.cluster.store,
            faults=self.cluster.faults,
            rtype=rtype,
            request=call.request,
            options=options,
            render_object=self._renderer(call, rtype, representation),
            bookmark_interval=self.cluster.bookmark_interval,
            on_close=self.cluster.watches.discard,
        )
        self.cluster.watches.add(stream)
        stream.start()

    def _create(self, call: _Call, info: RequestInfo, rtype: ResourceType) -> None:
        body = call.json_body()
        dry_run = _dry_run(call.query)
        obj = self.cluster.store.create(rtype, info.namespace, body, dry_run=dry_run)
        self._send_object(call, rtype, obj, code=201)

    def _update(self, call: _Call, info: RequestInfo, rtype: ResourceType, sub: str = "") -> None:
        body = call.json_body()
        obj = self.cluster.store.update(
            rtype, info.namespace, info.name, body, dry_run=_dry_run(call.query), subresource=sub
        )
        self._send_object(call, rtype, obj)

    def _patched(self, call: _Call, info: RequestInfo, rtype: ResourceType) -> Object:
        content_type = call.header("content-type").split(";")[0].strip().lower()
        current = self.cluster.store.lookup(rtype, info.namespace, info.name)
        patch = call.json_body() if content_type != "application/apply-patch+yaml" else None
        try:
            if content_type == "application/merge-patch+json":
                result = apply_merge_patch(current, patch)
            elif content_type == "application/strategic-merge-patch+json":
                result = apply_strategic_merge_patch(current, patch)
            elif content_type == "application/json-patch+json":
                result = apply_json_patch(current, patch)
            else:
                raise UnsupportedMediaType(
                    f"the body of the request was in an unknown format - accepted media types"
                    f" include: application/json-patch+json, application/merge-patch+json,"
                    f' application/strategic-merge-patch+json (got "{content_type}")'
                )
        except MalformedPatch as e:
            raise BadRequest(f"the patch is malformed: {e}") from e
        except PatchError as e:
            if content_type == "application/json-patch+json":
                # kube-apiserver: a JSON patch that does not apply is 422.
                raise UnprocessableEntity(f"the patch could not be applied: {e}") from e
            raise BadRequest(f"the patch could not be applied: {e}") from e
        if not isinstance(result, dict):
            raise BadRequest("the patched object is not a JSON object")
        return result

    def _patch(self, call: _Call, info: RequestInfo, rtype: ResourceType, sub: str = "") -> None:
        result = self._patched(call, info, rtype)
        obj = self.cluster.store.update(
            rtype,
            info.namespace,
            info.name,
            result,
            dry_run=_dry_run(call.query),
            subresource=sub,
        )
        self._send_object(call, rtype, obj)

    def _delete_options(self, call: _Call) -> Object:
        if not call.body.strip():
            return {}
        options = call.json_body()
        if not isinstance(options, dict):
            raise BadRequest("DeleteOptions must be a JSON object")
        return options

    def _delete(self, call: _Call, info: RequestInfo, rtype: ResourceType) -> None:
        options = self._delete_options(call)
        gone = self.cluster.store.delete(
            rtype,
            info.namespace,
            info.name,
            dry_run=_dry_run(call.query, options),
            preconditions=options.get("preconditions") or {},
        )
        if rtype.resource in ("pods", "namespaces") and rtype.group == "":
            self._send_object(call, rtype, gone)
            return
        self._send(
            call,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": info.name,
                    "group": rtype.group,
                    "kind": rtype.resource,
                    "uid": gone["metadata"].get("uid", ""),
                },
            },
        )

    def _delete_collection(self, call: _Call, info: RequestInfo, rtype: ResourceType) -> None:
        options = self._delete_options(call)
        labels, fields = self._selectors(call, rtype)
        dry_run = _dry_run(call.query, options)
        store = self.cluster.store
        page = store.list(rtype, info.namespace, labels=labels, fields=fields)
        deleted = []
        for obj in page.items:
            meta = obj["metadata"]
            deleted.append(
                store.delete(rtype, meta.get("namespace", ""), meta["name"], dry_run=dry_run)
            )
        self._send(
            call,
            {
                "kind": f"{rtype.kind}List",
                "apiVersion": rtype.api_version,
                "metadata": {"resourceVersion": str(store.revision)},
                "items": deleted,
            },
        )

    # -- subresources ------------------------------------------------------------------------

    async def _subresource(self, call: _Call, info: RequestInfo, rtype: ResourceType) -> None:
        sub = rtype.subresource(info.subresource)
        if sub is None or info.rest and info.subresource != "proxy":
            raise _not_found_path()
        if rtype.group == "" and rtype.resource == "pods" and sub.name in _STREAM_SUBRESOURCES:
            await self._pod_stream(call, info)
            return
        if sub.name == "status":
            if info.verb == "get":
                self._get(call, info, rtype)
            elif info.verb == "update":
                self._update(call, info, rtype, sub="status")
            elif info.verb == "patch":
                self._patch(call, info, rtype, sub="status")
            else:
                raise MethodNotAllowed(f"{call.method} is not allowed on {info.resource}/status")
            return
        raise MethodNotAllowed(
            f"{info.resource}/{info.subresource} is not implemented by the simulated cluster"
        )

    async def _pod_stream(self, call: _Call, info: RequestInfo) -> None:
        cluster = self.cluster
        rtype = cluster.store.types.resolve("pods")
        pod = cluster.store.lookup(rtype, info.namespace, info.name)
        upgrade = call.header("upgrade").lower()
        if upgrade == "websocket" and cluster.faults.refuse_websocket:
            raise Forbidden("websocket upgrades are refused by the simulated cluster (fault)")
        streams = cluster.pod_streams()
        if streams is None:
            raise _NotImplemented(
                f"pods/{info.subresource} is not available: the stream server is not installed"
            )
        result = streams.render(call.request, info.subresource, info.namespace, info.name, pod)
        if isinstance(result, Deferred) or hasattr(result, "__await__"):
            result = await result
        if isinstance(result, bytes) and not call.request.finished:
            call.request.write(result)
            call.request.finish()

    # -- review APIs -------------------------------------------------------------------------

    def _review(self, call: _Call, info: RequestInfo, rtype: ResourceType) -> None:
        if info.verb != "create" or info.name or info.subresource:
            raise MethodNotAllowed(
                f"the server does not allow this method on the requested resource"
                f" ({info.verb} {rtype.group_resource})"
            )
        cluster = self.cluster
        body = call.json_body()
        if rtype.resource == "tokenreviews":
            answer = hubapis.token_review(body, cluster.tokens)
            if cluster.record_requests:
                cluster.token_reviews.append(answer)
        elif rtype.resource == "subjectaccessreviews":
            answer = hubapis.access_review(body, cluster.sar_policy)
            if cluster.record_requests:
                cluster.access_reviews.append(answer)
        elif rtype.resource == "selfsubjectaccessreviews":
            answer = hubapis.self_access_review(body, call.user, cluster.sar_policy)
        elif rtype.resource == "selfsubjectreviews":
            answer = hubapis.self_subject_review(body, call.user)
        else:
            raise _not_found_path()
        self._send(call, answer, code=201)


class _NotImplemented(StatusError):
    code = 501
    reason = "NotImplemented"
