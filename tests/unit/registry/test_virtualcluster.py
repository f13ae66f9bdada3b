"""VirtualCluster derivation (spec §2.6) with quirk 17 fixed."""

from __future__ import annotations

from typing import Any

import pytest

from clustergateway import errors
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.selector import parse_selector
from clustergateway.registry.virtualcluster import (
    VirtualCluster,
    VirtualClusterError,
    get_virtual_cluster,
    list_virtual_clusters,
    local_cluster,
    virtual_cluster_from_managed_cluster,
    virtual_cluster_from_secret,
)

GROUP = "cluster.core.oam.dev"
CP = f"{GROUP}/control-plane"
ALIAS = f"{GROUP}/cluster-alias"


def managed(
    name: str,
    *,
    url: str | None = "https://mc:6443",
    accepted: bool = True,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"hubAcceptsClient": accepted}
    if url is not None:
        spec["managedClusterClientConfigs"] = [{"url": url, "caBundle": "eA=="}]
    meta: dict[str, Any] = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
    if timestamp:
        meta["creationTimestamp"] = timestamp
    return {
        "apiVersion": "cluster.open-cluster-management.io/v1",
        "kind": "ManagedCluster",
        "metadata": meta,
        "spec": spec,
    }


def test_local() -> None:
    """``local`` is the hub: control-plane true, accepted, endpoint ``-``, Internal."""
    assert local_cluster(GROUP) == VirtualCluster(
        name="local", labels={CP: "true"}, accepted=True, endpoint="-", credential_type="Internal"
    )


def test_from_secret() -> None:
    """Labels minus the group's keys plus control-plane false; alias; real endpoint."""
    secret = cluster_secret(
        "c1",
        token="t",
        endpoint="https://10.0.0.1:6443\n",
        endpoint_type="Const",
        labels={"env": "prod", f"{GROUP}/other": "x"},
        annotations={ALIAS: "Production"},
        creation_timestamp="2024-01-01T00:00:00Z",
    )
    assert virtual_cluster_from_secret(secret, group=GROUP) == VirtualCluster(
        name="c1",
        labels={"env": "prod", CP: "false"},
        alias="Production",
        accepted=True,
        endpoint="https://10.0.0.1:6443",
        credential_type="ServiceAccountToken",
        creation_timestamp="2024-01-01T00:00:00Z",
    )


def test_endpoint_is_real_not_label() -> None:
    """Quirk 17 fixed: the endpoint-type label does not replace the endpoint."""
    secret = cluster_secret("c1", token="t", endpoint="https://e:1", endpoint_type="ClusterProxy")
    assert virtual_cluster_from_secret(secret, group=GROUP).endpoint == "https://e:1"


def test_cluster_proxy_without_endpoint() -> None:
    """A ClusterProxy Secret needs no endpoint data; it shows ``-``."""
    secret = cluster_secret("c1", token="t", endpoint=None, endpoint_type="ClusterProxy")
    assert virtual_cluster_from_secret(secret, group=GROUP).endpoint == "-"


@pytest.mark.parametrize(
    ("kwargs", "cause"),
    [
        ({"endpoint": None}, 'missing data key "endpoint"'),
        ({"endpoint": ""}, 'missing data key "endpoint"'),
        ({"credential_type": None}, f'no label "{GROUP}/cluster-credential-type"'),
    ],
)
def test_invalid_secret(kwargs: dict[str, Any], cause: str) -> None:
    """A Secret without endpoint or credential type is invalid, each with its own message."""
    with pytest.raises(VirtualClusterError) as info:
        virtual_cluster_from_secret(cluster_secret("c1", token="t", **kwargs), group=GROUP)
    assert info.value.message == f"secret vela-system/c1 is not a valid cluster secret: {cause}"


def test_invalid_base64() -> None:
    """Undecodable data is invalid, not a crash."""
    secret = cluster_secret("c1", token="t")
    secret["data"]["endpoint"] = "%%%"
    with pytest.raises(VirtualClusterError, match="not valid base64"):
        virtual_cluster_from_secret(secret, group=GROUP)


def test_from_managed_cluster() -> None:
    """ManagedCluster: accepted from hubAcceptsClient, endpoint from its client config."""
    mc = managed(
        "m1",
        accepted=False,
        labels={"region": "eu"},
        annotations={ALIAS: "M"},
        timestamp="2024-02-02T00:00:00Z",
    )
    assert virtual_cluster_from_managed_cluster(mc, group=GROUP) == VirtualCluster(
        name="m1",
        labels={"region": "eu", CP: "false"},
        alias="M",
        accepted=False,
        endpoint="https://mc:6443",
        credential_type="ManagedCluster",
        creation_timestamp="2024-02-02T00:00:00Z",
    )


def test_managed_cluster_without_client_config() -> None:
    """A ManagedCluster without client configs is invalid."""
    with pytest.raises(VirtualClusterError, match="managed cluster m1 has no client config"):
        virtual_cluster_from_managed_cluster(managed("m1", url=None), group=GROUP)


def test_list_order_and_merge() -> None:
    """local first, then newest first (ties by name, no timestamp last); a ManagedCluster
    named like a Secret is not listed twice; invalid objects are left out."""
    secrets = [
        cluster_secret("old", token="t", creation_timestamp="2023-01-01T00:00:00Z"),
        cluster_secret("new", token="t", creation_timestamp="2025-01-01T00:00:00Z"),
        cluster_secret("b-tie", token="t", creation_timestamp="2024-01-01T00:00:00Z"),
        cluster_secret("a-tie", token="t", creation_timestamp="2024-01-01T00:00:00Z"),
        cluster_secret("nostamp", token="t"),
        cluster_secret("broken", token="t", endpoint=None),
        cluster_secret("unlabelled", credential_type=None),
    ]
    mcs = [
        managed("new", url="https://other"),
        managed("mc", timestamp="2024-06-01T00:00:00Z"),
        managed("mc-broken", url=None),
    ]
    names = [vc.name for vc in list_virtual_clusters(secrets, mcs, group=GROUP)]
    assert names == ["local", "new", "mc", "a-tie", "b-tie", "old", "nostamp"]


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("", ["local", "c-prod", "c-dev", "m-prod"]),
        (f"{CP}=true", ["local"]),
        (f"{CP}=false", ["c-prod", "c-dev", "m-prod"]),
        ("env=prod", ["c-prod", "m-prod"]),
        (f"env=prod,{CP}!=true", ["c-prod", "m-prod"]),
        ("env notin (prod)", ["local", "c-dev"]),
        (f"!{GROUP}/cluster-credential-type", ["local", "m-prod"]),
    ],
)
def test_list_selector(selector: str, names: list[str]) -> None:
    """The selector applies to the computed labels (control-plane included), and,
    minus its control-plane requirements, to the object's own labels (as Go)."""
    secrets = [
        cluster_secret(
            "c-prod", token="t", labels={"env": "prod"}, creation_timestamp="2024-03-01T00:00:00Z"
        ),
        cluster_secret(
            "c-dev", token="t", labels={"env": "dev"}, creation_timestamp="2024-02-01T00:00:00Z"
        ),
    ]
    mcs = [managed("m-prod", labels={"env": "prod"}, timestamp="2024-01-01T00:00:00Z")]
    found = list_virtual_clusters(secrets, mcs, group=GROUP, selector=parse_selector(selector))
    assert [vc.name for vc in found] == names


def test_get_precedence() -> None:
    """GET: local; a valid Secret beats a ManagedCluster; an invalid Secret falls back."""
    secret = cluster_secret("c1", token="t", endpoint="https://s")
    mc = managed("c1", url="https://m")
    assert get_virtual_cluster("local", None, None, group=GROUP).name == "local"
    assert get_virtual_cluster("c1", secret, mc, group=GROUP).endpoint == "https://s"
    broken = cluster_secret("c1", token="t", endpoint=None)
    assert get_virtual_cluster("c1", broken, mc, group=GROUP).endpoint == "https://m"


def test_get_not_found() -> None:
    """No Secret (or only an unlabelled one) and no ManagedCluster → 404 NotFound."""
    with pytest.raises(errors.NotFound) as info:
        get_virtual_cluster("x", cluster_secret("x", credential_type=None), None, group=GROUP)
    assert info.value.message == 'virtualclusters.cluster.core.oam.dev "x" not found'


def test_get_errors() -> None:
    """Invalid objects → 503 carrying the reason; two reasons are aggregated."""
    broken = cluster_secret("c1", token="t", endpoint=None)
    with pytest.raises(errors.ServiceUnavailable) as one:
        get_virtual_cluster("c1", broken, None, group=GROUP)
    assert 'missing data key "endpoint"' in one.value.message
    with pytest.raises(errors.ServiceUnavailable) as two:
        get_virtual_cluster("c1", broken, managed("c1", url=None), group=GROUP)
    assert two.value.message == (
        'virtualclusters.cluster.core.oam.dev "c1": [secret vela-system/c1 is not a valid '
        'cluster secret: missing data key "endpoint", managed cluster c1 has no client config]'
    )


def test_custom_group() -> None:
    """Label keys follow the API group."""
    secret = cluster_secret("c1", token="t", group="example.io", labels={"example.io/x": "1"})
    vc = virtual_cluster_from_secret(secret, group="example.io")
    assert vc.labels == {"example.io/control-plane": "false"}
    assert local_cluster("example.io").labels == {"example.io/control-plane": "true"}
