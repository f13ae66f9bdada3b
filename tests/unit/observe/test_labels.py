"""Bounded label values: the tables of ``clustergateway.observe.labels``."""

from __future__ import annotations

import pytest

from clustergateway.auth.subpath import target_request_info
from clustergateway.observe.labels import (
    OTHER,
    RESOURCE_LABELS,
    UNKNOWN_CLUSTER,
    VERBS,
    cluster_label,
    code_label,
    request_labels,
    resource_label,
    verb_label,
)


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        # core group, namespaced collection and object
        ("GET", "/api/v1/namespaces/default/pods", "", ("pods", "list")),
        ("GET", "/api/v1/namespaces/default/pods/web-0", "", ("pods", "get")),
        ("HEAD", "/api/v1/namespaces/default/pods/web-0", "", ("pods", "get")),
        ("GET", "/api/v1/pods", "limit=500", ("pods", "list")),
        ("GET", "/api/v1/pods", "watch=true&resourceVersion=1", ("pods", "watch")),
        ("GET", "/api/v1/pods", "watch=1", ("pods", "watch")),
        ("GET", "/api/v1/pods", "watch=false", ("pods", "list")),
        ("GET", "/api/v1/pods", "watch=0", ("pods", "list")),
        ("GET", "/api/v1/pods", "allowWatchBookmarks=true", ("pods", "list")),
        ("GET", "/api/v1/watch/namespaces/x/pods", "", ("pods", "watch")),
        ("POST", "/api/v1/namespaces/x/configmaps", "", ("configmaps", "create")),
        ("PUT", "/api/v1/namespaces/x/configmaps/c", "", ("configmaps", "update")),
        ("PATCH", "/api/v1/namespaces/x/configmaps/c", "", ("configmaps", "patch")),
        ("DELETE", "/api/v1/namespaces/x/configmaps/c", "", ("configmaps", "delete")),
        ("DELETE", "/api/v1/namespaces/x/configmaps", "", ("configmaps", "deletecollection")),
        # subresources fold into the resource; connecters say "connect"
        ("GET", "/api/v1/namespaces/x/pods/y/log", "follow=true", ("pods", "get")),
        ("PUT", "/api/v1/namespaces/x/pods/y/status", "", ("pods", "update")),
        ("POST", "/api/v1/namespaces/x/pods/y/exec", "command=ls", ("pods", "connect")),
        ("GET", "/api/v1/namespaces/x/pods/y/exec", "command=ls", ("pods", "connect")),
        ("POST", "/api/v1/namespaces/x/pods/y/attach", "", ("pods", "connect")),
        ("POST", "/api/v1/namespaces/x/pods/y/portforward", "", ("pods", "connect")),
        ("GET", "/api/v1/namespaces/x/services/s/proxy/metrics", "", ("services", "connect")),
        ("GET", "/api/v1/nodes/n1/proxy/stats", "", ("nodes", "connect")),
        ("POST", "/api/v1/namespaces/x/pods/y/eviction", "", ("pods", "create")),
        # namespaces themselves and their own subresources
        ("GET", "/api/v1/namespaces", "", ("namespaces", "list")),
        ("GET", "/api/v1/namespaces/x", "", ("namespaces", "get")),
        ("PUT", "/api/v1/namespaces/x/finalize", "", ("namespaces", "update")),
        ("PUT", "/api/v1/namespaces/x/status", "", ("namespaces", "update")),
        # named groups
        ("GET", "/apis/apps/v1/namespaces/x/deployments", "", ("deployments", "list")),
        ("PATCH", "/apis/apps/v1/namespaces/x/deployments/d/scale", "", ("deployments", "patch")),
        ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "", ("clusterroles", "list")),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "",
            (
                "selfsubjectaccessreviews",
                "create",
            ),
        ),
        ("GET", "/apis/metrics.k8s.io/v1beta1/nodes", "", ("nodes", "list")),
        # custom resources, unknown groups and resources fold into <other>
        ("GET", "/apis/example.com/v1/namespaces/x/widgets", "", (OTHER, "list")),
        ("GET", "/apis/example.com/v1/pods", "", (OTHER, "list")),
        ("GET", "/api/v1/namespaces/x/widgets/w", "", (OTHER, "get")),
        ("GET", "/apis/apps/v1/namespaces/x/" + "a" * 300, "", (OTHER, "list")),
        # the legacy proxy verb prefix
        ("GET", "/api/v1/proxy/namespaces/x/services/s", "", ("services", "proxy")),
        # non-resource paths: empty resource, lower-cased method (as in Go/Kubernetes)
        ("GET", "/healthz", "", ("", "get")),
        ("GET", "/version", "", ("", "get")),
        ("GET", "/", "", ("", "get")),
        ("GET", "", "", ("", "get")),
        ("GET", "/api", "", ("", "get")),
        ("GET", "/api/v1", "", ("", "get")),
        ("GET", "/apis/apps/v1", "", ("", "get")),
        ("HEAD", "/openapi/v2", "", ("", "head")),
        ("POST", "/logs", "", ("", "post")),
        ("OPTIONS", "/apis", "", ("", "options")),
        # methods outside the known set
        ("BREW", "/healthz", "", ("", OTHER)),
        ("BREW", "/api/v1/pods", "", ("pods", OTHER)),
        ("get", "/api/v1/pods", "", ("pods", "list")),
        # malformed resource paths
        ("GET", "/api/v1/watch", "", ("", "get")),
        ("GET", "/api/v1//pods", "", (OTHER, "get")),
    ],
)
def test_request_labels(method: str, path: str, query: str, expected: tuple[str, str]) -> None:
    """Target resource and verb follow Kubernetes' RequestInfo, folded into bounded sets."""
    resource, verb = request_labels(target_request_info(method, path, query))
    assert (resource, verb) == expected
    assert resource in RESOURCE_LABELS
    assert verb in VERBS


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (200, "200"),
        (101, "101"),
        (404, "404"),
        (599, "599"),
        (99, OTHER),
        (600, OTHER),
        (0, OTHER),
        (-1, OTHER),
    ],
)
def test_code_label(code: int, expected: str) -> None:
    """Codes are decimal strings, only within 100..599."""
    assert code_label(code) == expected


def test_cluster_label_folds_unknown_names() -> None:
    """Only names the registry knows keep their own label; empty names never ask."""
    known = {"c1", "c2"}
    asked: list[str] = []

    def is_known(name: str) -> bool:
        asked.append(name)
        return name in known

    assert cluster_label("c1", is_known) == "c1"
    assert cluster_label("nope", is_known) == UNKNOWN_CLUSTER
    assert cluster_label("", is_known) == UNKNOWN_CLUSTER
    assert asked == ["c1", "nope"]


@pytest.mark.parametrize(
    ("value", "fold", "expected"),
    [
        ("pods", resource_label, "pods"),
        ("", resource_label, ""),
        ("widgets", resource_label, OTHER),
        ("watch", verb_label, "watch"),
        ("WATCH", verb_label, OTHER),
        ("steal", verb_label, OTHER),
    ],
)
def test_fold_helpers(value: str, fold: object, expected: str) -> None:
    """Already-parsed values outside the known sets fold into <other>."""
    assert fold(value) == expected  # type: ignore[operator]
