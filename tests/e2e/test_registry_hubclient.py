"""HubClient against the simulated hub: token and client-cert kubeconfigs, errors, watches."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import yaml
from twisted.internet.defer import CancelledError
from twisted.internet.task import deferLater

from clustergateway import errors
from clustergateway.certs import make_ca
from clustergateway.hubclient import HubClient
from clustergateway.testing import SimulatedCluster

pytestmark = pytest.mark.e2e

SECRETS = "/api/v1/namespaces/default/secrets"


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest_twisted.async_yield_fixture
async def clients(sim: SimulatedCluster, tmp_path: Path):
    """HubClients for ``sim`` by kind of kubeconfig; closed after the test."""
    made: list[HubClient] = []

    def make(user: str = "token", **kwargs: Any) -> HubClient:
        path = sim.write_kubeconfig(tmp_path / f"kc-{user}-{len(made)}", user=user)
        client = HubClient.from_kubeconfig(_reactor(), path, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


@pytest.mark.parametrize("user", ["token", "cert"])
@pytest_twisted.ensureDeferred
async def test_authenticated_get(sim: SimulatedCluster, clients, user: str) -> None:
    """Token and client-certificate kubeconfigs both authenticate as the admin; only the
    token one sends an Authorization header."""
    client = clients(user)
    listing = await client.get_json(SECRETS)
    assert listing["kind"] == "SecretList"
    request = sim.requests[-1]
    assert request.user is not None and request.user.name == "sim-admin"
    has_auth = any(k.lower() == "authorization" for k in request.headers)
    assert has_auth is (user == "token")


@pytest_twisted.ensureDeferred
async def test_write_verbs_and_errors(sim: SimulatedCluster, clients) -> None:
    """POST/PUT/PATCH/DELETE round trips; the hub's Status errors keep code and reason."""
    client = clients()
    created = await client.post_json(SECRETS, secret("s1", a="1"))
    assert created["metadata"]["name"] == "s1"
    with pytest.raises(errors.AlreadyExists):
        await client.post_json(SECRETS, secret("s1", a="1"))
    updated = await client.put_json(f"{SECRETS}/s1", {**created, "data": {"a": "Mg=="}})
    assert updated["data"] == {"a": "Mg=="}
    with pytest.raises(errors.Conflict):
        await client.put_json(f"{SECRETS}/s1", created)  # stale resourceVersion
    patched = await client.patch_json(f"{SECRETS}/s1", {"metadata": {"labels": {"x": "y"}}})
    assert patched["metadata"]["labels"] == {"x": "y"}
    await client.delete_json(f"{SECRETS}/s1")
    with pytest.raises(errors.NotFound) as missing:
        await client.get_json(f"{SECRETS}/s1")
    assert missing.value.message == 'secrets "s1" not found'


@pytest_twisted.ensureDeferred
async def test_token_review(sim: SimulatedCluster, clients) -> None:
    """The client carries the review APIs other parts use (TokenReview here)."""
    client = clients()
    review = await client.post_json(
        "/apis/authentication.k8s.io/v1/tokenreviews",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": sim.token},
        },
    )
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == "sim-admin"


@pytest_twisted.ensureDeferred
async def test_bad_token(sim: SimulatedCluster, tmp_path: Path) -> None:
    """A token the hub rejects is a 401 Unauthorized, and the token is in no message."""
    path = sim.write_kubeconfig(tmp_path / "kc")
    config = yaml.safe_load(path.read_text())
    config["users"][0]["user"]["token"] = "wrong-token-value"
    path.write_text(yaml.safe_dump(config))
    client = HubClient.from_kubeconfig(_reactor(), path)
    try:
        with pytest.raises(errors.Unauthorized) as info:
            await client.get_json(SECRETS)
        assert "wrong-token-value" not in info.value.message
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_watch_stream_and_cancel(sim: SimulatedCluster, clients) -> None:
    """A watch streams events as they happen and is cancelled cleanly."""
    client = clients()
    listing = await client.get_json(SECRETS)
    events: list[dict[str, Any]] = []
    watch = client.watch(
        SECRETS, {"resourceVersion": listing["metadata"]["resourceVersion"]}, events.append
    )
    sim.store.put({**secret("w1", a="1"), "metadata": {"name": "w1", "namespace": "default"}})
    sim.store.remove("secrets", "default", "w1")
    while len(events) < 2:
        await deferLater(_reactor(), 0.01)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w1"),
        ("DELETED", "w1"),
    ]
    watch.cancel()
    with pytest.raises(CancelledError):
        await watch
    await deferLater(_reactor(), 0.1)
    assert sim.store.watcher_count() == 0  # the hub saw the connection close


@pytest_twisted.ensureDeferred
async def test_watch_clean_end(sim: SimulatedCluster, clients) -> None:
    """A watch the hub ends (timeoutSeconds) fires the Deferred with None."""
    client = clients()
    result = await client.watch(SECRETS, {"timeoutSeconds": 1}, lambda event: None)
    assert result is None


@pytest_twisted.ensureDeferred
async def test_watch_error_reply(sim: SimulatedCluster, clients) -> None:
    """A watch the hub refuses fails with its Status."""
    client = clients()
    with pytest.raises(errors.NotFound):
        await client.watch("/apis/nope.example/v1/things", {}, lambda event: None)


@pytest_twisted.ensureDeferred
async def test_watch_broken_by_hub_stop(sim: SimulatedCluster, clients) -> None:
    """A hub that goes away mid-watch fails the watch with BadGateway."""
    client = clients()
    watch = client.watch(SECRETS, {}, lambda event: None)
    await deferLater(_reactor(), 0.2)
    await sim.stop()
    with pytest.raises(errors.BadGateway, match="watch stream broken"):
        await watch


@pytest_twisted.ensureDeferred
async def test_handler_error_ends_watch(sim: SimulatedCluster, clients) -> None:
    """An on_event that raises ends the stream with that error."""
    client = clients()

    def refuse(event: dict[str, Any]) -> None:
        raise errors.Gone("relist please")

    watch = client.watch(SECRETS, {}, refuse)
    await deferLater(_reactor(), 0.1)
    sim.store.put({**secret("h1", a="1"), "metadata": {"name": "h1", "namespace": "default"}})
    with pytest.raises(errors.Gone):
        await watch


@pytest_twisted.ensureDeferred
async def test_hub_down(sim: SimulatedCluster, clients) -> None:
    """A hub that does not listen is ServiceUnavailable naming the server."""
    client = clients()
    await sim.stop()
    with pytest.raises(errors.ServiceUnavailable) as info:
        await client.get_json(SECRETS)
    assert sim.url in info.value.message and "unreachable" in info.value.message


@pytest_twisted.ensureDeferred
async def test_slow_hub_times_out(sim: SimulatedCluster, clients) -> None:
    """A hub slower than the request timeout is a GatewayTimeout."""
    client = clients(request_timeout=0.3)
    sim.faults.latency = 2.0
    with pytest.raises(errors.GatewayTimeout, match="within 0.3s"):
        await client.get_json(SECRETS)


@pytest_twisted.ensureDeferred
async def test_wrong_ca(sim: SimulatedCluster, tmp_path: Path) -> None:
    """A hub whose certificate the configured CA does not sign is a BadGateway (TLS)."""
    path = sim.write_kubeconfig(tmp_path / "kc")
    config = yaml.safe_load(path.read_text())
    other = make_ca("someone-else")
    config["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
        other.cert_pem
    ).decode()
    path.write_text(yaml.safe_dump(config))
    client = HubClient.from_kubeconfig(_reactor(), path)
    try:
        with pytest.raises(errors.BadGateway, match="TLS|certificate"):
            await client.get_json(SECRETS)
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_insecure_kubeconfig(sim: SimulatedCluster, tmp_path: Path) -> None:
    """``insecure-skip-tls-verify`` without a CA reaches the hub."""
    path = sim.write_kubeconfig(tmp_path / "kc")
    config = yaml.safe_load(path.read_text())
    cluster = config["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["insecure-skip-tls-verify"] = True
    path.write_text(yaml.safe_dump(config))
    client = HubClient.from_kubeconfig(_reactor(), path)
    try:
        assert (await client.get_json(SECRETS))["kind"] == "SecretList"
    finally:
        await client.close()
