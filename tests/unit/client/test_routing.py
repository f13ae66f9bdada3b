"""Where ``clustergateway.client``'s ApiClients send a request (no network: the URL they build)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client

from clustergateway.client import (
    NoClusterSelected,
    cluster,
    current_cluster,
    for_cluster,
    load_hub_configuration,
    proxy_path,
    routing_client,
)

HUB = "https://hub.example:6443"


@pytest.fixture
def hub() -> client.Configuration:
    configuration = client.Configuration()
    configuration.host = HUB
    return configuration


def url_of(api_client: client.ApiClient, path: str = "/api/v1/namespaces/{namespace}/pods") -> str:
    """The URL the generated API methods would request for ``path``."""
    _, url, *_ = api_client.param_serialize(
        "GET", path, path_params={"namespace": "default"}, query_params=[("watch", True)]
    )
    return str(url)


def test_for_cluster_prefixes_every_path(hub: client.Configuration) -> None:
    """A fixed-cluster client: hub server + proxy path + the request's path and query."""
    assert url_of(for_cluster("c1", hub)) == (
        HUB + "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy"
        "/api/v1/namespaces/default/pods?watch=true"
    )
    assert url_of(for_cluster("c1", hub, group="example.io")).startswith(
        HUB + "/apis/example.io/v1alpha1/clustergateways/c1/proxy/api/"
    )
    assert hub.host == HUB  # the caller's configuration is left alone


def test_routing_follows_the_innermost_block(hub: client.Configuration) -> None:
    """``with cluster()`` blocks nest; leaving one restores the outer choice."""
    routed = routing_client(hub)
    with cluster("a"):
        assert "/clustergateways/a/proxy/" in url_of(routed)
        with cluster("b"):
            assert current_cluster() == "b"
            assert "/clustergateways/b/proxy/" in url_of(routed)
        assert "/clustergateways/a/proxy/" in url_of(routed)
    assert current_cluster() is None


def test_strict_raises_fallback_goes_to_the_hub(hub: client.Configuration) -> None:
    """Outside a block: strict raises NoClusterSelected, fallback builds a hub URL;
    ``local`` is the hub in both modes."""
    with pytest.raises(NoClusterSelected, match="missing cluster name"):
        url_of(routing_client(hub))
    assert url_of(routing_client(hub, strict=False)) == (
        HUB + "/api/v1/namespaces/default/pods?watch=true"
    )
    with cluster("local"):
        assert url_of(routing_client(hub)) == HUB + "/api/v1/namespaces/default/pods?watch=true"


@pytest.mark.parametrize("name", ["", "UPPER", "a/b", "../x", "a b", "x" * 254])
def test_names_that_cannot_be_clusters_are_refused(name: str, hub: client.Configuration) -> None:
    """A name that is not a DNS-1123 subdomain never reaches a URL."""
    with pytest.raises(ValueError, match="invalid cluster name"):
        proxy_path(name)
    with pytest.raises(ValueError):
        for_cluster(name, hub)
    with pytest.raises(ValueError):
        with cluster(name):
            pass


def test_routing_survives_the_loaders_token_refresh(tmp_path: Path) -> None:
    """A kubeconfig token installs a refresh hook that rewrites ``Configuration.host`` on
    every request: the proxy prefix, added to the path, is still there."""
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "h", "cluster": {"server": HUB}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "h", "context": {"cluster": "h", "user": "u"}}],
                "current-context": "h",
            }
        )
    )
    hub = load_hub_configuration(kubeconfig)
    assert hub.refresh_api_key_hook is not None
    assert url_of(for_cluster("c1", hub)).startswith(
        HUB + "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy/api/v1/"
    )
