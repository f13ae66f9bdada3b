"""``server.workers``: the SO_REUSEPORT endpoint and the worker marker (the processes
themselves are exercised end to end in ``tests/e2e/test_workers.py``)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol

from clustergateway.server.workers import WORKER_ENV, ReusePortEndpoint, parent_of_worker


def reactor() -> Any:
    from twisted.internet import reactor as r

    return r


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, None), ({WORKER_ENV: "1234"}, 1234), ({WORKER_ENV: ""}, None), ({WORKER_ENV: "x"}, None)],
)
def test_parent_of_worker(environ: dict[str, str], expected: int | None) -> None:
    """Only a pid in ``CLUSTERGATEWAY_WORKER`` marks a child worker."""
    assert parent_of_worker(environ) == expected


@pytest_twisted.ensureDeferred
async def test_two_endpoints_bind_one_port() -> None:
    """Two listeners with SO_REUSEPORT share a port (as two worker processes do); a plain
    socket on that port is still refused."""
    factory = Factory.forProtocol(Protocol)
    first = await ReusePortEndpoint(reactor(), 0, "127.0.0.1").listen(factory)
    port = first.getHost().port
    second = await ReusePortEndpoint(reactor(), port, "127.0.0.1").listen(factory)
    try:
        assert second.getHost().port == port
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        await first.stopListening()
        await second.stopListening()


@pytest_twisted.ensureDeferred
async def test_bind_failure_is_cannot_listen() -> None:
    """An address that cannot be bound fails the listen with CannotListenError."""
    with pytest.raises(CannotListenError):
        await ReusePortEndpoint(reactor(), 0, "192.0.2.1").listen(Factory.forProtocol(Protocol))
