"""An in-memory stand-in for :class:`~clustergateway.hubclient.HubClient` over an ObjectStore.

Unit tests of code that talks to the hub (the addon-manager's installer, prober
and lease elector) drive it against the same :class:`ObjectStore` the simulated
cluster serves, with no sockets and no reactor: ``get_json``/``post_json``/
``put_json``/``delete_json`` resolve the path to a stored kind and raise the
same ``StatusError`` subclasses the real client raises for the hub's answers.
``calls`` records every request, so a test can assert that a second pass wrote
nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import attrs

from clustergateway import errors
from clustergateway.testing.kinds import ResourceType
from clustergateway.testing.store import ObjectStore

__all__ = ["StoreHubClient"]


@attrs.define(eq=False)
class StoreHubClient:
    """``HubClient``'s JSON methods, answered from ``store`` in memory."""

    store: ObjectStore
    #: ``(method, path)`` of every request, in order.
    calls: list[tuple[str, str]] = attrs.field(factory=list)
    #: Paths that answer 404 as if their API group were not served.
    missing_groups: set[str] = attrs.field(factory=set)

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "GET"]

    def _resolve(self, path: str) -> tuple[ResourceType, str, str, str]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts[:1] == ["api"]:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.NotFound(f"the server could not find the requested resource ({path})")
        namespace = ""
        if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise errors.NotFound(f"the server could not find the requested resource ({path})")
        rtype = self.store.types.find(group, version, rest[0])
        if rtype is None or f"{group}/{version}" in self.missing_groups:
            raise errors.NotFound(f"the server could not find the requested resource ({path})")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        return rtype, namespace, name, sub

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append(("GET", path))
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["apis"] and len(parts) == 3:
            if f"{parts[1]}/{parts[2]}" in self.missing_groups or not any(
                t.group == parts[1] and t.version == parts[2] for t in self.store.types
            ):
                raise errors.NotFound(f"the server could not find the requested resource ({path})")
            return {"kind": "APIResourceList", "groupVersion": f"{parts[1]}/{parts[2]}"}
        rtype, namespace, name, _ = self._resolve(path)
        if name:
            return copy.deepcopy(self.store.lookup(rtype, namespace, name))
        page = self.store.list(rtype, namespace)
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": {"resourceVersion": str(page.resource_version)},
            "items": copy.deepcopy(page.items),
        }

    async def post_json(
        self, path: str, body: Any, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        self.calls.append(("POST", path))
        rtype, namespace, _, _ = self._resolve(path)
        return copy.deepcopy(self.store.create(rtype, namespace, copy.deepcopy(body)))

    async def put_json(
        self, path: str, body: Any, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        self.calls.append(("PUT", path))
        rtype, namespace, name, sub = self._resolve(path)
        stored = self.store.update(rtype, namespace, name, copy.deepcopy(body), subresource=sub)
        return copy.deepcopy(stored)

    async def delete_json(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        self.calls.append(("DELETE", path))
        rtype, namespace, name, _ = self._resolve(path)
        return copy.deepcopy(self.store.delete(rtype, namespace, name))
