"""Writing health into the cluster Secret on the hub."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import pytest_twisted

from clustergateway import errors
from clustergateway.server.healthwriter import HubHealthWriter, health_patch


@attrs.define
class FakeHub:
    calls: list[tuple[str, Any]] = attrs.field(factory=list)
    error: errors.StatusError | None = None

    async def patch_json(self, path: str, body: Any) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        self.calls.append((path, body))
        return {}


def test_health_patch() -> None:
    """The Go annotations, as a merge patch that touches nothing else."""
    assert health_patch(False, "ConnectionTimeout") == {
        "metadata": {
            "annotations": {
                "status.cluster.core.oam.dev/healthy": "false",
                "status.cluster.core.oam.dev/healthy-reason": "ConnectionTimeout",
            }
        }
    }


@pytest_twisted.ensureDeferred
async def test_patches_the_secret_in_the_namespace() -> None:
    """One PATCH to the cluster's Secret in the secret namespace."""
    hub = FakeHub()
    await HubHealthWriter(hub, "vela-system", "cluster.core.oam.dev").write_health("c1", True, "")
    assert hub.calls == [("/api/v1/namespaces/vela-system/secrets/c1", health_patch(True, ""))]


@pytest.mark.parametrize(
    ("hub_error", "expected"),
    [
        (errors.NotFound('secrets "c1" not found'), errors.NotFound),
        (errors.Forbidden("cannot patch secrets"), errors.InternalError),
    ],
)
@pytest_twisted.ensureDeferred
async def test_hub_errors(hub_error: errors.StatusError, expected: type) -> None:
    """A vanished Secret is the cluster's 404; other hub refusals are the gateway's 500."""
    writer = HubHealthWriter(FakeHub(error=hub_error), "ns", "cluster.core.oam.dev")
    with pytest.raises(expected) as info:
        await writer.write_health("c1", True, "")
    if expected is errors.InternalError:
        assert "ns/c1" in info.value.message
