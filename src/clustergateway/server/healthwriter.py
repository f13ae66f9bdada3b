"""Recording a cluster's healthiness on the hub: the write side of ``clustergateways/health``.

As the Go gateway: ``PUT``/``PATCH …/clustergateways/<c>/health`` stores
``status.healthy`` and ``status.healthyReason`` as the Secret's annotations
``status.cluster.core.oam.dev/healthy`` and ``…/healthy-reason`` (read back
when the ``HealthinessCheck`` gate is on).  One merge patch on the Secret, so
nothing else in it is touched.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from clustergateway import errors
from clustergateway.registry.keys import HEALTHY_ANNOTATION, HEALTHY_REASON_ANNOTATION

__all__ = ["HubHealthWriter", "health_patch"]


class _PatchClient(Protocol):
    async def patch_json(self, path: str, body: Any) -> dict[str, Any]: ...


def health_patch(healthy: bool, reason: str) -> dict[str, Any]:
    """The merge patch that records ``healthy``/``reason`` in a Secret's annotations."""
    return {
        "metadata": {
            "annotations": {
                HEALTHY_ANNOTATION: "true" if healthy else "false",
                HEALTHY_REASON_ANNOTATION: reason,
            }
        }
    }


@attrs.frozen
class HubHealthWriter:
    """Patches the cluster Secret in ``namespace`` through the hub client."""

    client: _PatchClient
    namespace: str
    group: str

    async def write_health(self, name: str, healthy: bool, reason: str) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/secrets/{name}"
        try:
            await self.client.patch_json(path, health_patch(healthy, reason))
        except errors.NotFound:
            raise errors.NotFound.for_object(
                "clustergateways", self.group, name, "ClusterGateway"
            ) from None
        except errors.StatusError as e:
            raise errors.InternalError(
                f"cannot record the health of cluster {name} in secret "
                f"{self.namespace}/{name} on the hub: {e.message}"
            ) from None
