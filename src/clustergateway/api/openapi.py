"""OpenAPI v2 and v3 documents with real schemas for both kinds.

``kubectl explain clustergateway.spec.access`` finds the schema whose
``x-kubernetes-group-version-kind`` matches the kind discovery mapped the name
to, so every top-level kind carries that extension.  The hub's aggregator
downloads ``/openapi/v2`` and ``/openapi/v3`` about once a minute and merges
them into the cluster's own documents; the paths section lets it (and client
generators) see the operations.

One neutral description of the schemas is rendered twice: v2 refers to
``#/definitions/<name>``, v3 to ``#/components/schemas/<name>`` (wrapped in
``allOf`` when a description sits beside the reference, as kube-apiserver does).
Definition names follow the Kubernetes convention of a reversed Go package path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import attrs

from clustergateway.api.types import GroupVersion

__all__ = ["OpenAPIDocuments", "openapi_v2", "openapi_v3", "schema_definitions"]

TITLE = "Cluster Gateway"
DOC_VERSION = "1.0.0"

PKG = "com.github.oam-dev.cluster-gateway.pkg.apis.cluster.v1alpha1"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"

#: ref(name, description) -> a property schema pointing at definition ``name``.
RefFn = Callable[[str, str], dict[str, Any]]


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "type": "string", **extra}


def _gvk(group: str, version: str, kind: str) -> list[dict[str, str]]:
    return [{"group": group, "kind": kind, "version": version}]


def _type_meta(kind: str) -> dict[str, Any]:
    return {
        "apiVersion": _string(
            "APIVersion defines the versioned schema of this representation of an object."
        ),
        "kind": _string(f"Kind is a string value representing the REST resource ({kind})."),
    }


def _meta_definitions(ref: RefFn) -> dict[str, dict[str, Any]]:
    """The few ``meta/v1`` types our objects and operations refer to."""
    string_map = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
    return {
        f"{META}.Time": {
            "description": "Time is a wrapper around time.Time which supports correct "
            "marshaling to YAML and JSON (RFC 3339).",
            "type": "string",
            "format": "date-time",
        },
        f"{META}.ObjectMeta": {
            "description": "ObjectMeta is metadata that all persisted resources must have. "
            "ClusterGateway and VirtualCluster carry only name, creationTimestamp "
            "(and labels for VirtualCluster).",
            "type": "object",
            "properties": {
                "name": _string("Name of the cluster: the name of its Secret."),
                "creationTimestamp": ref(f"{META}.Time", "Creation time of the cluster's Secret."),
                "resourceVersion": _string(
                    "An opaque value that represents the internal version of this object; "
                    "set on objects of watch events."
                ),
                "labels": {"description": "Map of string keys and values.", **string_map},
                "annotations": {
                    "description": "Annotations is an unstructured key value map.",
                    **string_map,
                },
            },
        },
        f"{META}.ListMeta": {
            "description": "ListMeta describes metadata that synthetic resources must have.",
            "type": "object",
            "properties": {
                "resourceVersion": _string(
                    "The version of the list; a watch started from it sees every later change."
                ),
                "continue": _string("Not used: lists are never paginated."),
            },
        },
        f"{META}.Status": {
            "description": "Status is a return value for calls that don't return other objects.",
            "type": "object",
            "properties": {
                **_type_meta("Status"),
                "code": {"description": "Suggested HTTP return code.", "type": "integer"},
                "message": _string("A human-readable description of the status."),
                "reason": _string("A machine-readable description of the failure."),
                "status": _string('Status of the operation: "Success" or "Failure".'),
            },
        },
        f"{META}.WatchEvent": {
            "description": "Event represents a single event to a watched resource.",
            "type": "object",
            "required": ["type", "object"],
            "properties": {
                "type": _string("ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."),
                "object": {"description": "The object of the event.", "type": "object"},
            },
        },
    }


def schema_definitions(gv: GroupVersion, ref: RefFn) -> dict[str, dict[str, Any]]:
    """Every schema by definition name, with references built by ``ref``."""
    g, v = gv.group, gv.version
    defs: dict[str, dict[str, Any]] = _meta_definitions(ref)
    defs[f"{PKG}.ClusterGateway"] = {
        "description": "ClusterGateway is a managed cluster reachable through the gateway. "
        "It is converted on the fly from a Secret in the gateway's secret namespace; "
        "GET returns its credentials, so grant it to administrators only.",
        "type": "object",
        "required": ["spec"],
        "properties": {
            **_type_meta("ClusterGateway"),
            "metadata": ref(f"{META}.ObjectMeta", "Standard object metadata."),
            "spec": ref(f"{PKG}.ClusterGatewaySpec", "How the cluster is reached."),
            "status": ref(f"{PKG}.ClusterGatewayStatus", "The observed healthiness."),
        },
        "x-kubernetes-group-version-kind": _gvk(g, v, "ClusterGateway"),
    }
    defs[f"{PKG}.ClusterGatewayList"] = {
        "description": "ClusterGatewayList is a list of ClusterGateways.",
        "type": "object",
        "required": ["items"],
        "properties": {
            **_type_meta("ClusterGatewayList"),
            "metadata": ref(f"{META}.ListMeta", "Standard list metadata."),
            "items": {
                "type": "array",
                "items": ref(f"{PKG}.ClusterGateway", ""),
            },
        },
        "x-kubernetes-group-version-kind": _gvk(g, v, "ClusterGatewayList"),
    }
    defs[f"{PKG}.ClusterGatewaySpec"] = {
        "description": "ClusterGatewaySpec describes how the gateway reaches the cluster.",
        "type": "object",
        "required": ["provider", "access"],
        "properties": {
            "provider": _string("The cluster provider type (never set by the conversion)."),
            "access": ref(f"{PKG}.ClusterAccess", "The endpoint and credential of the cluster."),
        },
    }
    defs[f"{PKG}.ClusterAccess"] = {
        "description": "ClusterAccess is the endpoint and credential of a cluster.",
        "type": "object",
        "required": ["endpoint"],
        "properties": {
            "endpoint": ref(
                f"{PKG}.ClusterEndpoint",
                "Where the cluster's apiserver is: label "
                f"{g}/cluster-endpoint-type and data keys endpoint, ca.crt, proxy-url.",
            ),
            "credential": ref(
                f"{PKG}.ClusterAccessCredential",
                f"How the gateway authenticates: label {g}/cluster-credential-type "
                "and data keys token, tls.crt/tls.key or exec.",
            ),
        },
    }
    defs[f"{PKG}.ClusterEndpoint"] = {
        "description": "ClusterEndpoint is the address of a cluster's apiserver.",
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": _string(
                "Const (a fixed address) or ClusterProxy (through the konnectivity tunnel)."
            ),
            "const": ref(
                f"{PKG}.ClusterEndpointConst", "The fixed address; absent for ClusterProxy."
            ),
        },
    }
    defs[f"{PKG}.ClusterEndpointConst"] = {
        "description": "ClusterEndpointConst is a fixed apiserver address and its trust.",
        "type": "object",
        "required": ["address"],
        "properties": {
            "address": _string("The apiserver URL (Secret data key endpoint)."),
            "caBundle": _string(
                "PEM CA bundle that verifies the apiserver (Secret data key ca.crt or ca).",
                format="byte",
            ),
            "insecure": {
                "description": "True when the Secret has no CA: the apiserver certificate "
                "is not verified.",
                "type": "boolean",
            },
            "proxy-url": _string(
                "HTTP(S) or SOCKS5 proxy the gateway dials through (Secret data key proxy-url)."
            ),
        },
    }
    defs[f"{PKG}.ClusterAccessCredential"] = {
        "description": "ClusterAccessCredential is the identity the gateway uses at the cluster.",
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": _string("ServiceAccountToken, X509Certificate or Dynamic."),
            "serviceAccountToken": _string("Bearer token (Secret data key token)."),
            "x509": ref(f"{PKG}.X509", "Client certificate and key."),
        },
    }
    defs[f"{PKG}.X509"] = {
        "description": "X509 is a PEM client certificate and its private key.",
        "type": "object",
        "required": ["certificate", "privateKey"],
        "properties": {
            "certificate": _string("PEM client certificate (tls.crt).", format="byte"),
            "privateKey": _string("PEM private key (tls.key).", format="byte"),
        },
    }
    defs[f"{PKG}.ClusterGatewayStatus"] = {
        "description": "ClusterGatewayStatus is the healthiness recorded by a health prober.",
        "type": "object",
        "properties": {
            "healthy": {
                "description": "Whether the last probe succeeded.",
                "type": "boolean",
                "default": False,
            },
            "healthyReason": _string("Why the cluster is unhealthy."),
        },
    }
    defs[f"{PKG}.ClusterGatewayProxyOptions"] = {
        "description": "ClusterGatewayProxyOptions are the options of the proxy subresource.",
        "type": "object",
        "properties": {
            **_type_meta("ClusterGatewayProxyOptions"),
            "path": _string("Path is the URL path to use for the current proxy request."),
            "impersonate": {
                "description": "Impersonate the caller at the cluster.",
                "type": "boolean",
            },
        },
        "x-kubernetes-group-version-kind": _gvk(g, v, "ClusterGatewayProxyOptions"),
    }
    defs[f"{PKG}.VirtualCluster"] = {
        "description": "VirtualCluster is a cluster known to the hub, without credentials; "
        "the hub itself appears as the cluster named local.",
        "type": "object",
        "properties": {
            **_type_meta("VirtualCluster"),
            "metadata": ref(f"{META}.ObjectMeta", "Standard object metadata."),
            "spec": ref(f"{PKG}.VirtualClusterSpec", "What is known about the cluster."),
        },
        "x-kubernetes-group-version-kind": _gvk(g, v, "VirtualCluster"),
    }
    defs[f"{PKG}.VirtualClusterSpec"] = {
        "description": "VirtualClusterSpec describes a cluster without its credentials.",
        "type": "object",
        "properties": {
            "alias": _string(f"Human-friendly name (annotation {g}/cluster-alias)."),
            "accepted": {"description": "Whether the hub accepts the cluster.", "type": "boolean"},
            "endpoint": _string("The apiserver endpoint, or - for the hub itself."),
            "credential-type": _string(
                "ServiceAccountToken, X509Certificate, Dynamic, ManagedCluster or Internal."
            ),
        },
    }
    defs[f"{PKG}.VirtualClusterList"] = {
        "description": "VirtualClusterList is a list of VirtualClusters.",
        "type": "object",
        "required": ["items"],
        "properties": {
            **_type_meta("VirtualClusterList"),
            "metadata": ref(f"{META}.ListMeta", "Standard list metadata."),
            "items": {"type": "array", "items": ref(f"{PKG}.VirtualCluster", "")},
        },
        "x-kubernetes-group-version-kind": _gvk(g, v, "VirtualClusterList"),
    }
    return defs


# --- paths --------------------------------------------------------------------------------

_LIST_PARAMS = (
    ("labelSelector", "A selector to restrict the list of returned objects by their labels."),
    ("fieldSelector", "A selector on metadata.name."),
    ("resourceVersion", "Where a watch starts; lists always serve the latest state."),
    ("timeoutSeconds", "Timeout for the watch call."),
    ("watch", "Watch for changes to the described resources."),
    ("allowWatchBookmarks", "Request BOOKMARK events."),
)

_PROXY_METHODS = {
    "get": "get",
    "put": "update",
    "post": "create",
    "patch": "patch",
    "delete": "delete",
    "head": "get",
    "options": "get",
}


def _operation(
    op_id: str,
    action: str,
    kind: str,
    gv: GroupVersion,
    response_schema: dict[str, Any] | None,
    *,
    v3: bool,
    description: str,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "description": description,
        "operationId": op_id,
        "tags": [f"cluster{gv.version.capitalize()}"],
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": gv.group,
            "kind": kind,
            "version": gv.version,
        },
    }
    ok: dict[str, Any] = {"description": "OK"}
    if response_schema is not None:
        if v3:
            ok["content"] = {"application/json": {"schema": response_schema}}
        else:
            ok["schema"] = response_schema
    op["responses"] = {"200": ok, "401": {"description": "Unauthorized"}}
    return op


def _params(names: tuple[tuple[str, str], ...], *, v3: bool, where: str = "query") -> list[Any]:
    out = []
    for name, description in names:
        typ = "boolean" if name in ("watch", "allowWatchBookmarks") else "string"
        if name == "timeoutSeconds":
            typ = "integer"
        param: dict[str, Any] = {
            "name": name,
            "in": where,
            "description": description,
            "uniqueItems": True,
        }
        if where == "path":
            param["required"] = True
        if v3:
            param["schema"] = {"type": typ}
        else:
            param["type"] = typ
        out.append(param)
    return out


def _paths(gv: GroupVersion, ref_path: Callable[[str], str], *, v3: bool) -> dict[str, Any]:
    def schema(name: str) -> dict[str, Any]:
        return {"$ref": ref_path(name)}

    base = gv.path
    name_param = _params((("name", "name of the cluster"),), v3=v3, where="path")
    paths: dict[str, Any] = {}
    for resource, kind in (
        ("clustergateways", "ClusterGateway"),
        ("virtualclusters", "VirtualCluster"),
    ):
        paths[f"{base}/{resource}"] = {
            "get": _operation(
                f"list{kind}",
                "list",
                kind,
                gv,
                schema(f"{PKG}.{kind}List"),
                v3=v3,
                description=f"list or watch objects of kind {kind}",
            ),
            "parameters": _params(_LIST_PARAMS, v3=v3),
        }
        paths[f"{base}/{resource}/{{name}}"] = {
            "get": _operation(
                f"read{kind}",
                "get",
                kind,
                gv,
                schema(f"{PKG}.{kind}"),
                v3=v3,
                description=f"read the specified {kind}",
            ),
            "parameters": name_param,
        }
    health: dict[str, Any] = {"parameters": name_param}
    for method, action in (("get", "get"), ("put", "put"), ("patch", "patch")):
        health[method] = _operation(
            f"{method}ClusterGatewayHealth",
            action,
            "ClusterGateway",
            gv,
            schema(f"{PKG}.ClusterGateway"),
            v3=v3,
            description=f"{method} healthiness of the specified ClusterGateway",
        )
    paths[f"{base}/clustergateways/{{name}}/health"] = health
    for suffix, params in (
        ("proxy", name_param),
        (
            "proxy/{path}",
            name_param + _params((("path", "path to the resource"),), v3=v3, where="path"),
        ),
    ):
        item: dict[str, Any] = {"parameters": params}
        for method, verb in _PROXY_METHODS.items():
            item[method] = _operation(
                f"connect{method.capitalize()}ClusterGatewayProxy"
                + ("WithPath" if "{path}" in suffix else ""),
                "connect",
                "ClusterGatewayProxyOptions",
                gv,
                {"type": "string"},
                v3=v3,
                description=f"connect {method.upper()} requests to the cluster ({verb})",
            )
        paths[f"{base}/clustergateways/{{name}}/{suffix}"] = item
    return paths


def openapi_v2(gv: GroupVersion) -> dict[str, Any]:
    """The Swagger 2.0 document (``/openapi/v2``)."""

    def ref(name: str, description: str) -> dict[str, Any]:
        out: dict[str, Any] = {"$ref": f"#/definitions/{name}"}
        if description:
            out["description"] = description
        return out

    return {
        "swagger": "2.0",
        "info": {"title": TITLE, "version": DOC_VERSION},
        "paths": _paths(gv, lambda n: f"#/definitions/{n}", v3=False),
        "definitions": schema_definitions(gv, ref),
    }


def openapi_v3(gv: GroupVersion) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the group/version (``/openapi/v3/apis/<g>/<v>``)."""

    def ref(name: str, description: str) -> dict[str, Any]:
        target = {"$ref": f"#/components/schemas/{name}"}
        if not description:
            return target
        return {"description": description, "allOf": [target]}

    return {
        "openapi": "3.0.0",
        "info": {"title": TITLE, "version": DOC_VERSION},
        "paths": _paths(gv, lambda n: f"#/components/schemas/{n}", v3=True),
        "components": {"schemas": schema_definitions(gv, ref)},
    }


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _etag(body: bytes) -> bytes:
    return b'"' + hashlib.sha256(body).hexdigest().upper().encode() + b'"'


@attrs.frozen
class OpenAPIDocuments:
    """The encoded documents and their ETags, built once per group."""

    v2: bytes
    v2_etag: bytes
    v3_gv_path: str  # e.g. "apis/cluster.core.oam.dev/v1alpha1"
    v3: bytes
    v3_etag: bytes
    v3_index: bytes

    @classmethod
    def build(cls, gv: GroupVersion) -> OpenAPIDocuments:
        v2 = _encode(openapi_v2(gv))
        v3 = _encode(openapi_v3(gv))
        v3_etag = _etag(v3)
        gv_path = f"apis/{gv.group}/{gv.version}"
        index = {
            "paths": {
                gv_path: {
                    "serverRelativeURL": f"/openapi/v3/{gv_path}?hash={v3_etag.decode()[1:-1]}"
                }
            }
        }
        return cls(
            v2=v2,
            v2_etag=_etag(v2),
            v3_gv_path=gv_path,
            v3=v3,
            v3_etag=v3_etag,
            v3_index=_encode(index),
        )
