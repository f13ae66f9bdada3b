"""Fuzzing the front door: random bytes in every part of a request, over HTTP/1.1 and HTTP/2.

Every request family the gateway serves (proxied reads and writes, upgrades,
the API's own resources, discovery, probes, metrics) is sent with random
bytes spliced into its method, path, query, header names and values, and
body.  Whatever comes back must not be the gateway's own 500, and nothing
may be logged as an unhandled error; the process must go on serving.  The
clusters behind it are the echo upstream (which never answers 500) and one
that refuses connections, so every 5xx the gateway could legitimately give is
a 502/503.

Seeded and bounded: ``FUZZ_SEED`` (default 20261207) drives one
``random.Random``; a failure names the seed and the case, and
``FUZZ_SEED=<seed> pytest tests/fuzz/test_fuzz_listener.py`` replays it.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, globalLogPublisher

from clustergateway.certs import issue_cert, make_ca
from clustergateway.registry.samples import cluster_secret
from clustergateway.testing.hostile import (
    h2_cases,
    h2_status,
    http1_cases,
    http1_head,
    proxy_targets,
)
from tests.fixtures.gateway import PROXY_PATH, wait_until
from tests.fixtures.proxy import ProxiedCluster
from tests.unit.proxy.upstream import Upstream

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("FUZZ_SEED", "20261207"))
HTTP1_CASES = 1200
HTTP2_CASES = 400

ECHO = PROXY_PATH.format(cluster="echo")
TARGETS = proxy_targets(ECHO, PROXY_PATH.format(cluster="down"), PROXY_PATH.format(cluster="nope"))


def drive(port: int, ca: str, seed: int) -> list[str]:
    """Send every case (8 at a time); the cases answered with a 500, described."""
    rng = random.Random(seed)
    requests = list(http1_cases(rng, TARGETS, HTTP1_CASES))
    streams = list(h2_cases(rng, TARGETS, HTTP2_CASES))
    bad = []
    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(lambda r: http1_head(port, ca, r), requests)
        for index, (request, answer) in enumerate(zip(requests, answers, strict=True)):
            if answer[:12] in (b"HTTP/1.1 500", b"HTTP/1.0 500"):
                bad.append(f"seed {seed} HTTP/1.1 case {index}: {request[:200]!r} -> {answer!r}")
        statuses = pool.map(lambda h: h2_status(port, ca, h), streams)
        for index, (headers, status) in enumerate(zip(streams, statuses, strict=True)):
            if status == b"500":
                bad.append(f"seed {seed} HTTP/2 case {index}: {headers!r}")
    return bad


@pytest_twisted.async_yield_fixture
async def fuzz_target(proxied: ProxiedCluster) -> AsyncIterator[ProxiedCluster]:
    """The gateway with the echo upstream as ``echo`` and a refusing cluster as ``down``."""
    from twisted.internet import reactor

    ca = make_ca("fuzz-ca")
    upstream = Upstream(reactor, issue_cert(ca, "echo", hosts=("127.0.0.1",), server=True))
    upstream.echo_upgrades = True
    upstream.start()
    registry = proxied.gateway.registry
    echo = cluster_secret("echo", endpoint=upstream.url, token="t", ca=ca.cert_pem)
    registry.apply("ADDED", echo)
    registry.apply("ADDED", cluster_secret("down", endpoint="https://127.0.0.1:1", token="t"))
    await wait_until(lambda: registry.entry("down") is not None)
    yield proxied
    await upstream.stop()


@pytest_twisted.ensureDeferred
async def test_random_requests_never_get_the_gateways_own_500(fuzz_target: ProxiedCluster) -> None:
    """Hundreds of mangled requests over HTTP/1.1 and HTTP/2: no 500, nothing logged as an
    unhandled error, and the gateway serves a normal request afterwards."""
    errors: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None or event.get("log_level") == LogLevel.critical:
            errors.append(event)

    port, ca = fuzz_target.gateway.port, str(fuzz_target.gateway.ca_path)
    globalLogPublisher.addObserver(observer)
    try:
        bad = await deferToThread(drive, port, ca, SEED)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert bad == [], "\n".join(bad)
    unhandled = [f"{e.get('log_format')}: {e.get('log_failure')}" for e in errors]
    assert unhandled == [], f"seed {SEED}: " + "\n".join(unhandled)
    request = f"GET {ECHO}/api/v1/namespaces HTTP/1.1\r\nHost: g\r\n\r\n".encode()
    answer = await deferToThread(http1_head, port, ca, request)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
