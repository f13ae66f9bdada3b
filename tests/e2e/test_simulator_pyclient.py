"""The simulated cluster as the official ``kubernetes`` Python client sees it.

The client blocks, so every call runs in a thread (``deferToThread``) while the
reactor in the test's thread serves the cluster.
"""

from __future__ import annotations

import kubernetes.client
import kubernetes.watch
import pytest
import pytest_twisted
from kubernetes.client.rest import ApiException
from twisted.internet.threads import deferToThread

from tests.fixtures.simulator import kube_api_client


def _cm(name: str, labels: dict[str, str] | None = None, data: dict[str, str] | None = None):
    return kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(name=name, labels=labels),
        data=data or {"k": name},
    )


@pytest.fixture
def core(sim):
    """A CoreV1Api on the admin token."""
    client = kube_api_client(sim)
    yield kubernetes.client.CoreV1Api(client)
    client.close()


@pytest_twisted.ensureDeferred
async def test_crud(core, sim):
    """Create, read, replace, patch and delete a ConfigMap; versions only go up."""
    created = await deferToThread(core.create_namespaced_config_map, "default", _cm("a"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    read = await deferToThread(core.read_namespaced_config_map, "a", "default")
    assert read.data == {"k": "a"}

    read.data = {"k": "replaced"}
    replaced = await deferToThread(core.replace_namespaced_config_map, "a", "default", read)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    read.data = {"k": "stale"}
    with pytest.raises(ApiException) as conflict:
        await deferToThread(core.replace_namespaced_config_map, "a", "default", read)
    assert conflict.value.status == 409

    patched = await deferToThread(
        core.patch_namespaced_config_map, "a", "default", {"data": {"extra": "1"}}
    )
    assert patched.data == {"k": "replaced", "extra": "1"}

    await deferToThread(core.delete_namespaced_config_map, "a", "default")
    with pytest.raises(ApiException) as missing:
        await deferToThread(core.read_namespaced_config_map, "a", "default")
    assert missing.value.status == 404
    assert sim.store.get("configmaps", "default", "a") is None


@pytest_twisted.ensureDeferred
async def test_list_with_label_selector_and_pages(core):
    """labelSelector filters; limit/continue pages through everything exactly once."""
    for i in range(7):
        labels = {"tier": "web" if i % 2 else "db", "idx": str(i)}
        await deferToThread(core.create_namespaced_config_map, "default", _cm(f"c{i}", labels))

    web = await deferToThread(core.list_namespaced_config_map, "default", label_selector="tier=web")
    assert sorted(i.metadata.name for i in web.items) == ["c1", "c3", "c5"]
    chosen = await deferToThread(
        core.list_namespaced_config_map, "default", label_selector="idx in (0,6),tier!=web"
    )
    assert sorted(i.metadata.name for i in chosen.items) == ["c0", "c6"]

    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = await deferToThread(
            core.list_namespaced_config_map, "default", limit=3, _continue=token
        )
        pages += 1
        names += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(names)
    assert pages == 3
    assert names == [f"c{i}" for i in range(7)]


@pytest_twisted.ensureDeferred
async def test_watch_sees_changes(core, sim):
    """kubernetes.watch.Watch receives ADDED, MODIFIED and DELETED from a resourceVersion."""
    start = await deferToThread(core.list_namespaced_config_map, "default")

    def collect() -> list[tuple[str, str]]:
        watch = kubernetes.watch.Watch()
        seen = []
        for event in watch.stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=start.metadata.resource_version,
            timeout_seconds=20,
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 3:
                watch.stop()
        return seen

    watching = deferToThread(collect)
    sim.store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}})
    sim.store.put(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "data": {"a": "b"}}
    )
    sim.store.delete("configmaps", "default", "w")
    assert await watching == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


@pytest_twisted.ensureDeferred
async def test_watch_from_compacted_version_is_gone(core, sim):
    """A resourceVersion older than the history window ends the watch with 410 Gone."""
    sim.store.history_size = 3
    first = await deferToThread(core.create_namespaced_config_map, "default", _cm("g0"))
    for i in range(1, 6):
        await deferToThread(core.create_namespaced_config_map, "default", _cm(f"g{i}"))

    def watch_old():
        watch = kubernetes.watch.Watch()
        return list(
            watch.stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=first.metadata.resource_version,
                timeout_seconds=10,
            )
        )

    with pytest.raises(ApiException) as gone:
        await deferToThread(watch_old)
    assert gone.value.status == 410


@pytest_twisted.ensureDeferred
async def test_dry_run_stores_nothing(core, sim):
    """dryRun=All answers like a real write but stores and emits nothing."""
    before = sim.store.revision
    answer = await deferToThread(
        core.create_namespaced_config_map, "default", _cm("dry"), dry_run="All"
    )
    assert answer.metadata.name == "dry"
    assert sim.store.get("configmaps", "default", "dry") is None
    await deferToThread(core.create_namespaced_config_map, "default", _cm("wet"))
    await deferToThread(core.delete_namespaced_config_map, "wet", "default", dry_run="All")
    assert sim.store.get("configmaps", "default", "wet") is not None
    assert sim.store.revision == before + 1


@pytest_twisted.ensureDeferred
async def test_client_certificate_user(sim):
    """A certificate from the client CA authenticates as CN with O as groups."""
    pair = sim.issue_client_cert("carol", ["team-a"])
    cert = sim.cert_dir / "carol.crt"
    key = sim.cert_dir / "carol.key"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    client = kube_api_client(sim, user="cert", cert=(cert, key))
    try:
        api = kubernetes.client.CoreV1Api(client)
        await deferToThread(api.list_namespace)
    finally:
        client.close()
    user = sim.requests[-1].user
    assert user.name == "carol"
    assert set(user.groups) == {"team-a", "system:authenticated"}


@pytest_twisted.ensureDeferred
async def test_token_and_access_reviews(sim):
    """TokenReview authenticates registered tokens; SubjectAccessReview applies the policy."""
    from clustergateway.auth.user import UserInfo

    sim.add_token("alice-token", UserInfo("alice", ("dev",)))
    sim.faults.deny.add(("alice", "delete", "secrets"))
    client = kube_api_client(sim)
    try:
        authn = kubernetes.client.AuthenticationV1Api(client)
        authz = kubernetes.client.AuthorizationV1Api(client)
        good = await deferToThread(
            authn.create_token_review,
            kubernetes.client.V1TokenReview(
                spec=kubernetes.client.V1TokenReviewSpec(token="alice-token")
            ),
        )
        bad = await deferToThread(
            authn.create_token_review,
            kubernetes.client.V1TokenReview(spec=kubernetes.client.V1TokenReviewSpec(token="nope")),
        )

        def review(verb: str):
            return authz.create_subject_access_review(
                kubernetes.client.V1SubjectAccessReview(
                    spec=kubernetes.client.V1SubjectAccessReviewSpec(
                        user="alice",
                        groups=["dev"],
                        resource_attributes=kubernetes.client.V1ResourceAttributes(
                            namespace="vela-system", verb=verb, resource="secrets"
                        ),
                    )
                )
            )

        allowed = await deferToThread(review, "get")
        denied = await deferToThread(review, "delete")
    finally:
        client.close()
    assert good.status.authenticated is True
    assert good.status.user.username == "alice"
    assert set(good.status.user.groups) == {"dev", "system:authenticated"}
    assert bad.status.authenticated is False
    assert allowed.status.allowed is True
    assert denied.status.allowed is False
    assert len(sim.token_reviews) == 2
    assert len(sim.access_reviews) == 2

    sim.sar_policy = lambda spec: (False, "closed for the test")
    client = kube_api_client(sim)
    try:
        authz = kubernetes.client.AuthorizationV1Api(client)
        closed = await deferToThread(review, "get")
    finally:
        client.close()
    assert closed.status.allowed is False
    assert closed.status.reason == "closed for the test"
