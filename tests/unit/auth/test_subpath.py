"""Request-info parsing of proxy targets: the verb the managed cluster would authorize (§14.11)."""

from __future__ import annotations

import pytest

from clustergateway.auth.subpath import RequestInfo, parse_request_info, target_request_info

R = RequestInfo

TABLE = [
    # (method, subpath, query, expected)
    (
        "GET",
        "/api/v1/namespaces/default/pods",
        "",
        R(True, "list", "/api/v1/namespaces/default/pods", "api", "", "v1", "default", "pods"),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/pods",
        "watch=true",
        R(True, "watch", "/api/v1/namespaces/default/pods", "api", "", "v1", "default", "pods"),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/pods",
        "watch=1&resourceVersion=5",
        R(True, "watch", "/api/v1/namespaces/default/pods", "api", "", "v1", "default", "pods"),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/pods",
        "watch=false",
        R(True, "list", "/api/v1/namespaces/default/pods", "api", "", "v1", "default", "pods"),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/pods",
        "watch=0",
        R(True, "list", "/api/v1/namespaces/default/pods", "api", "", "v1", "default", "pods"),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/pods/p1",
        "",
        R(
            True,
            "get",
            "/api/v1/namespaces/default/pods/p1",
            "api",
            "",
            "v1",
            "default",
            "pods",
            "",
            "p1",
        ),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/pods/p1",
        "watch=true",
        R(
            True,
            "get",
            "/api/v1/namespaces/default/pods/p1",
            "api",
            "",
            "v1",
            "default",
            "pods",
            "",
            "p1",
        ),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/pods",
        "watch=true&fieldSelector=metadata.name%3Dp1",
        R(
            True,
            "watch",
            "/api/v1/namespaces/default/pods",
            "api",
            "",
            "v1",
            "default",
            "pods",
            "",
            "p1",
        ),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/pods/p1/log",
        "follow=true",
        R(
            True,
            "get",
            "/api/v1/namespaces/default/pods/p1/log",
            "api",
            "",
            "v1",
            "default",
            "pods",
            "log",
            "p1",
        ),
    ),
    (
        "POST",
        "/api/v1/namespaces/default/pods/p1/exec",
        "command=ls",
        R(
            True,
            "create",
            "/api/v1/namespaces/default/pods/p1/exec",
            "api",
            "",
            "v1",
            "default",
            "pods",
            "exec",
            "p1",
        ),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/pods/p1/exec",
        "command=ls",
        R(
            True,
            "get",
            "/api/v1/namespaces/default/pods/p1/exec",
            "api",
            "",
            "v1",
            "default",
            "pods",
            "exec",
            "p1",
        ),
    ),
    (
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "",
        R(
            True,
            "create",
            "/api/v1/namespaces/default/configmaps",
            "api",
            "",
            "v1",
            "default",
            "configmaps",
        ),
    ),
    (
        "PUT",
        "/api/v1/namespaces/default/configmaps/c",
        "",
        R(
            True,
            "update",
            "/api/v1/namespaces/default/configmaps/c",
            "api",
            "",
            "v1",
            "default",
            "configmaps",
            "",
            "c",
        ),
    ),
    (
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        "",
        R(
            True,
            "patch",
            "/api/v1/namespaces/default/configmaps/c",
            "api",
            "",
            "v1",
            "default",
            "configmaps",
            "",
            "c",
        ),
    ),
    (
        "DELETE",
        "/api/v1/namespaces/default/configmaps/c",
        "",
        R(
            True,
            "delete",
            "/api/v1/namespaces/default/configmaps/c",
            "api",
            "",
            "v1",
            "default",
            "configmaps",
            "",
            "c",
        ),
    ),
    (
        "DELETE",
        "/api/v1/namespaces/default/configmaps",
        "labelSelector=a%3Db",
        R(
            True,
            "deletecollection",
            "/api/v1/namespaces/default/configmaps",
            "api",
            "",
            "v1",
            "default",
            "configmaps",
        ),
    ),
    (
        "HEAD",
        "/api/v1/namespaces",
        "",
        R(True, "list", "/api/v1/namespaces", "api", "", "v1", "", "namespaces"),
    ),
    # A namespace is a resource of its own; status/finalize are its subresources.
    (
        "GET",
        "/api/v1/namespaces/kube-system",
        "",
        R(
            True,
            "get",
            "/api/v1/namespaces/kube-system",
            "api",
            "",
            "v1",
            "kube-system",
            "namespaces",
            "",
            "kube-system",
        ),
    ),
    (
        "PUT",
        "/api/v1/namespaces/ns1/finalize",
        "",
        R(
            True,
            "update",
            "/api/v1/namespaces/ns1/finalize",
            "api",
            "",
            "v1",
            "ns1",
            "namespaces",
            "finalize",
            "ns1",
        ),
    ),
    # Named groups and cluster-scoped resources.
    (
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/d/scale",
        "",
        R(
            True,
            "get",
            "/apis/apps/v1/namespaces/default/deployments/d/scale",
            "apis",
            "apps",
            "v1",
            "default",
            "deployments",
            "scale",
            "d",
        ),
    ),
    (
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "watch=true",
        R(
            True,
            "watch",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "apis",
            "rbac.authorization.k8s.io",
            "v1",
            "",
            "clusterroles",
        ),
    ),
    (
        "GET",
        "/apis/apps/v1/deployments",
        "",
        R(True, "list", "/apis/apps/v1/deployments", "apis", "apps", "v1", "", "deployments"),
    ),
    # Legacy verb prefixes.
    (
        "GET",
        "/api/v1/watch/namespaces/default/pods",
        "",
        R(
            True,
            "watch",
            "/api/v1/watch/namespaces/default/pods",
            "api",
            "",
            "v1",
            "default",
            "pods",
        ),
    ),
    (
        "GET",
        "/api/v1/watch/namespaces/default/pods/p1",
        "",
        R(
            True,
            "watch",
            "/api/v1/watch/namespaces/default/pods/p1",
            "api",
            "",
            "v1",
            "default",
            "pods",
            "",
            "p1",
        ),
    ),
    (
        "GET",
        "/api/v1/proxy/namespaces/default/services/s/some/path",
        "",
        R(
            True,
            "proxy",
            "/api/v1/proxy/namespaces/default/services/s/some/path",
            "api",
            "",
            "v1",
            "default",
            "services",
            "",
            "s",
        ),
    ),
    # Non-resource paths: the lower-cased method.
    ("GET", "/healthz", "", R(False, "get", "/healthz")),
    ("GET", "/version", "", R(False, "get", "/version")),
    ("GET", "/api", "", R(False, "get", "/api")),
    ("GET", "/api/v1", "", R(False, "get", "/api/v1")),
    ("GET", "/apis/apps/v1", "", R(False, "get", "/apis/apps/v1")),
    ("POST", "/logs/foo", "", R(False, "post", "/logs/foo")),
    ("GET", "", "", R(False, "get", "/")),
]


@pytest.mark.parametrize(("method", "subpath", "query", "expected"), TABLE)
def test_target_request_info(method: str, subpath: str, query: str, expected: RequestInfo) -> None:
    """Each target parses to the attributes kube-apiserver would authorize."""
    assert target_request_info(method, subpath, query) == expected


def test_watch_with_empty_value_is_a_watch() -> None:
    """Go's bool decoding treats `watch=` (empty) as true."""
    assert target_request_info("GET", "/api/v1/pods", "watch=").verb == "watch"


def test_field_selector_with_other_operator_pins_no_name() -> None:
    """Only an equality on metadata.name names the object."""
    info = target_request_info("GET", "/api/v1/pods", "fieldSelector=metadata.name%21%3Dp1")
    assert (info.verb, info.name) == ("list", "")


def test_unknown_method_has_empty_verb() -> None:
    """A method without a Kubernetes verb gets '' (the hub refuses it)."""
    assert parse_request_info("OPTIONS", "/api/v1/pods/x", {}).verb == ""


def test_gateway_own_proxy_path() -> None:
    """The gateway's own proxy URL parses as clustergateways/proxy with the cluster as name."""
    info = parse_request_info(
        "GET", "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy/api/v1/pods", {}
    )
    assert (info.api_group, info.resource, info.subresource, info.name, info.verb) == (
        "cluster.core.oam.dev",
        "clustergateways",
        "proxy",
        "c1",
        "get",
    )


def test_subpath_is_percent_decoded_like_go_url_path() -> None:
    """The raw sub-path is decoded before parsing, as kube-apiserver sees URL.Path."""
    info = target_request_info("GET", "/api/v1/namespaces/a%2Fb/pods/p%20q", "")
    assert (info.namespace, info.resource, info.name) == ("a", "b", "pods")
    info = target_request_info("GET", "/api/v1/namespaces/d/pods/p%20q", "")
    assert info.name == "p q"
