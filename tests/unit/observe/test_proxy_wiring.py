"""The proxy records every request through GatewayMetrics, with the code the caller got."""

from __future__ import annotations

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from clustergateway.auth.user import UserInfo
from clustergateway.observe.labels import UNKNOWN_CLUSTER
from clustergateway.observe.metrics import GatewayMetrics
from clustergateway.proxy.resource import ClusterProxy
from clustergateway.registry.model import ClusterGateway, CredentialSpec, EndpointSpec
from tests.unit.observe.fakes import FakeRegistry

BODY = b'{"kind":"PodList","items":[]}'


class _Cluster(Resource):
    """The upstream: a pod list, or a 500 for paths that say so."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        if b"fail" in request.path:
            request.setResponseCode(500)
            return b'{"kind":"Status","code":500}'
        return BODY


class _Gateway(Resource):
    """``/<cluster>/<subpath>`` straight into ``ClusterProxy.render``."""

    isLeaf = True

    def __init__(self, proxy: ClusterProxy) -> None:
        super().__init__()
        self.proxy = proxy

    def render(self, request: Request) -> bytes | int:
        _, name, rest = request.path.split(b"/", 2)
        return self.proxy.render(request, name.decode(), b"/" + rest, UserInfo("alice"))


def _samples(metrics: GatewayMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


# Agent's response transport has no abortConnection here; the bodies are small and complete.
@pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")
@pytest_twisted.ensureDeferred
async def test_proxy_records_codes_labels_bytes_and_inflight() -> None:
    """Proxied 200 and relayed 500, a 404 for an unknown cluster and a 5xx for an unreachable
    one are each counted once, with the caller's code; nothing stays in flight."""
    from twisted.internet import reactor

    upstream = reactor.listenTCP(0, Site(_Cluster()), interface="127.0.0.1")
    registry = FakeRegistry()
    for name, port in (("c1", upstream.getHost().port), ("down", 1)):
        registry.put(
            ClusterGateway(
                name=name,
                endpoint=EndpointSpec(address=f"http://127.0.0.1:{port}"),
                credential=CredentialSpec(type="ServiceAccountToken", token="t0ken-value"),
            )
        )
    metrics = GatewayMetrics.build(registry, process_metrics=False)
    proxy = ClusterProxy.build(reactor, registry)
    proxy.metrics = metrics
    gateway = reactor.listenTCP(0, Site(_Gateway(proxy)), interface="127.0.0.1")
    base = f"http://127.0.0.1:{gateway.getHost().port}"
    agent = Agent(reactor)
    codes = {}
    try:
        for path in (
            "/c1/api/v1/namespaces/default/pods",
            "/c1/api/v1/namespaces/default/configmaps/fail",
            "/ghost/api/v1/pods",
            "/down/api/v1/namespaces/default/pods/p",
        ):
            response = await agent.request(b"GET", (base + path).encode())
            await readBody(response)
            codes[path] = response.code
        # The metrics are recorded when Twisted finishes the request: let it run once.
        done: Deferred[None] = Deferred()
        reactor.callLater(0, done.callback, None)
        await done
    finally:
        await proxy.close()
        await gateway.stopListening()
        await upstream.stopListening()

    down_code = codes["/down/api/v1/namespaces/default/pods/p"]
    assert codes["/c1/api/v1/namespaces/default/pods"] == 200
    assert codes["/c1/api/v1/namespaces/default/configmaps/fail"] == 500
    assert codes["/ghost/api/v1/pods"] == 404
    assert down_code in (502, 503)
    assert _samples(metrics, "ocm_proxy_proxied_requests_by_cluster_total") == {
        (("cluster", "c1"), ("code", "200")): 1,
        (("cluster", "c1"), ("code", "500")): 1,
        (("cluster", UNKNOWN_CLUSTER), ("code", "404")): 1,
        (("cluster", "down"), ("code", str(down_code))): 1,
    }
    assert _samples(metrics, "ocm_proxy_proxied_resource_requests_by_resource_total") == {
        (("code", "200"), ("resource", "pods"), ("verb", "list")): 1,
        (("code", "500"), ("resource", "configmaps"), ("verb", "get")): 1,
        (("code", "404"), ("resource", "pods"), ("verb", "list")): 1,
        (("code", str(down_code)), ("resource", "pods"), ("verb", "get")): 1,
    }
    inflight = _samples(metrics, "ocm_proxy_inflight_requests")
    assert set(inflight.values()) == {0}
    received = _samples(metrics, "ocm_proxy_upstream_received_bytes_total")
    assert received[(("cluster", "c1"),)] >= len(BODY)
