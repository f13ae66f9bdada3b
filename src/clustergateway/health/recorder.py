"""Where the prober records a cluster's health: the hub Secret, or memory.

:class:`HubHealthRecorder` writes the ``status.cluster.core.oam.dev/healthy``
and ``…/healthy-reason`` annotations with the resourceVersion the registry
holds as a precondition, so several gateway replicas probing one hub never
fight: the first write of a transition wins, the others get 409, re-read the
Secret, find the verdict already there and stop.  Each replica writes at most
once per transition (a write that loses a race is not retried blindly).

:class:`MemoryHealthRecorder` is for a registry without a hub
(``--secrets-dir``): the verdict is kept in the registry in place of the
annotations, which a directory of manifests cannot take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import attrs
from twisted.logger import Logger

from clustergateway import errors
from clustergateway.registry.convert import recorded_health
from clustergateway.registry.model import RegistryEntry
from clustergateway.server.healthwriter import health_patch

__all__ = ["HealthRecorder", "HubHealthRecorder", "MemoryHealthRecorder", "RecordingRegistry"]


class RecordingRegistry(Protocol):
    """The registry as the recorders use it (``SecretRegistry`` provides it)."""

    def entry(self, name: str) -> RegistryEntry | None: ...

    def recorded_health(self, name: str) -> tuple[bool, str] | None: ...

    def record_health(self, name: str, healthy: bool, reason: str) -> None: ...


class HealthRecorder(Protocol):
    """Records a verdict where the registry reads health from."""

    def recorded(self, name: str) -> tuple[bool, str] | None:
        """The verdict on record for ``name`` (None: unknown cluster)."""

    async def record(self, name: str, healthy: bool, reason: str) -> bool:
        """Record the verdict unless it is already there; True if this wrote it."""


class _HubClient(Protocol):
    async def get_json(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]: ...

    async def patch_json(self, path: str, body: Any) -> dict[str, Any]: ...


@attrs.define
class MemoryHealthRecorder:
    """Keeps verdicts in the registry (no hub to write to)."""

    registry: RecordingRegistry

    def recorded(self, name: str) -> tuple[bool, str] | None:
        return self.registry.recorded_health(name)

    async def record(self, name: str, healthy: bool, reason: str) -> bool:
        current = self.registry.recorded_health(name)
        if current is None or current[0] == healthy:
            return False
        self.registry.record_health(name, healthy, reason)
        return True


def _annotations(secret: Mapping[str, Any]) -> dict[str, str]:
    meta = secret.get("metadata")
    value = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(value, Mapping):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _resource_version(secret: Mapping[str, Any]) -> str | None:
    meta = secret.get("metadata")
    value = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) and value else None


@attrs.define
class HubHealthRecorder:
    """Writes verdicts into the cluster Secrets of ``namespace`` on the hub."""

    client: _HubClient
    namespace: str
    registry: RecordingRegistry
    #: Writes made (for tests and the log), and conflicts met.
    writes: int = attrs.field(default=0, init=False)
    conflicts: int = attrs.field(default=0, init=False)

    _log: ClassVar[Logger] = Logger()
    _ATTEMPTS: ClassVar[int] = 3

    def recorded(self, name: str) -> tuple[bool, str] | None:
        return self.registry.recorded_health(name)

    async def record(self, name: str, healthy: bool, reason: str) -> bool:
        entry = self.registry.entry(name)
        if entry is None:
            return False
        secret: Mapping[str, Any] = entry.secret
        path = f"/api/v1/namespaces/{self.namespace}/secrets/{name}"
        for _ in range(self._ATTEMPTS):
            if recorded_health(_annotations(secret))[0] == healthy:
                return False  # already there (another replica, or our own earlier write)
            patch = health_patch(healthy, reason)
            version = _resource_version(secret)
            if version is not None:
                patch["metadata"]["resourceVersion"] = version
            try:
                await self.client.patch_json(path, patch)
            except errors.Conflict:
                self.conflicts += 1
                try:
                    secret = await self.client.get_json(path)
                except errors.NotFound:
                    return False
                continue
            except errors.NotFound:
                return False
            self.writes += 1
            self._log.info(
                "Recorded cluster {cluster} as {state}: {reason}",
                cluster=name,
                state="healthy" if healthy else "unhealthy",
                reason=reason or "-",
            )
            return True
        return False
