"""Shared pieces for the addon-manager's unit tests: an in-memory hub and a sync runner."""

from __future__ import annotations

import datetime
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from clustergateway.testing.kinds import DEFAULT_TYPES
from clustergateway.testing.memoryhub import StoreHubClient
from clustergateway.testing.store import ObjectStore

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits on I/O (an in-memory hub) and return its result."""
    results: list[Any] = []
    Deferred.fromCoroutine(coroutine).addBoth(results.append)
    assert results, "the coroutine waited on something an in-memory test never fires"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]  # type: ignore[no-any-return]


@pytest.fixture
def hub() -> StoreHubClient:
    store = ObjectStore(DEFAULT_TYPES)
    store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
    return StoreHubClient(store)


class FakeTime:
    """A settable clock for certificate ages."""

    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now
