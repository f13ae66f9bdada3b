"""No credential reaches metrics or logs, whatever the recording code is handed."""

from __future__ import annotations

import io
from typing import Any

from twisted.logger import Logger, LogLevel
from twisted.web.http_headers import Headers
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from clustergateway.auth.user import UserInfo
from clustergateway.observe.logs import AccessLog, gateway_observer
from clustergateway.observe.metrics import GatewayMetrics, MetricsResource
from tests.unit.observe.fakes import (
    CREDENTIAL_MARKERS,
    FAKE_CERT_PEM,
    FAKE_KEY_PEM,
    FAKE_PASSWORD,
    FAKE_RAW_TOKEN,
    FAKE_TOKEN,
    FakeRegistry,
    gateway,
    labels_for,
)


def record_everything(metrics: GatewayMetrics, log: Logger, access: AccessLog) -> None:
    """Every recording call, with the fake credentials in every input a mistake could use."""
    # Metrics: credentials passed where names and paths go.
    for cluster in ("c1", FAKE_RAW_TOKEN, FAKE_TOKEN):
        recorder = metrics.cluster(cluster)
        recorder.inflight(+1)
        recorder.upstream_connected(0.001, 0.002, reused=False)
        recorder.first_byte(0.01)
        recorder.bytes(10, 20)
        recorder.upgrade_open(+1)
        recorder.exec_credential(ok=False)
        recorder.request_finished(
            *labels_for("GET", f"/api/v1/namespaces/{FAKE_RAW_TOKEN}/secrets/{FAKE_TOKEN}"),
            200,
            0.1,
        )
        recorder.request_finished(
            *labels_for("GET", f"/apis/{FAKE_TOKEN}/v1/{FAKE_RAW_TOKEN}", f"token={FAKE_TOKEN}"),
            403,
            0.1,
        )
        recorder.request_finished(FAKE_RAW_TOKEN, FAKE_PASSWORD, 200, 0.1)
    metrics.access_review(True, 0.01)
    metrics.registry_synced(at=1.0)

    # Logs: credentials as fields, in headers, in objects, in formats, in failures.
    log.info("dial with token {token}", token=FAKE_RAW_TOKEN)
    log.info("bearer {bearerToken}", bearerToken=FAKE_RAW_TOKEN)
    log.info("auth {hdr}", hdr=f"Bearer {FAKE_RAW_TOKEN}")
    log.info("got {headers}", headers=Headers({b"Authorization": [FAKE_RAW_TOKEN.encode()]}))
    log.info("raw headers {h}", h={b"authorization": [FAKE_RAW_TOKEN.encode()]})
    log.info("cluster {gw}", gw=gateway("c1"))
    log.info("credential {c}", c=gateway("c1").credential)
    log.info(
        "secret {secret} changed: {obj}",
        secret="vela-system/c1",
        obj={"metadata": {"name": "c1"}, "data": {"token": FAKE_TOKEN, "ca.crt": FAKE_CERT_PEM}},
    )
    log.info("loaded key {what}", what=FAKE_KEY_PEM)
    log.info("loaded cert {pem}", pem=FAKE_CERT_PEM.encode())
    log.info("exec plugin {exec_config}", exec_config={"env": [{"value": FAKE_PASSWORD}]})
    log.info("kubeconfig:\n{kc}", kc=f"users:\n- user:\n    password: {FAKE_PASSWORD}\n")
    log.warn(f"careless f-string with {FAKE_TOKEN}")
    log.debug("url {url}", url=f"https://c1/api?access_token={FAKE_RAW_TOKEN}")
    log.info("user {user}", user=UserInfo("alice", ("devs",)))
    try:
        raise RuntimeError(f"upstream said: Authorization: Bearer {FAKE_RAW_TOKEN}")
    except RuntimeError:
        log.failure("request to {cluster} failed", cluster="c1")

    # Access log: a token in the query, both on a finished request and an upgrade.
    request = Request(DummyChannel())
    request.method = b"GET"
    request.uri = f"/proxy/api/v1/pods?watch=1&access_token={FAKE_RAW_TOKEN}".encode()
    access.note(request, started=access.clock() - 0.5, user="alice", cluster="c1")
    request.setResponseCode(200)
    access.log_request(request)
    upgrade = Request(DummyChannel())
    upgrade.method = b"POST"
    upgrade.uri = f"/proxy/api/v1/namespaces/n/pods/p/exec?token={FAKE_TOKEN}".encode()
    access.log_request(upgrade, code=101, sent_bytes=10)


def scrape(metrics: GatewayMetrics, accept: bytes | None = None) -> str:
    request = DummyRequest([])
    if accept:
        request.requestHeaders.setRawHeaders(b"accept", [accept])
    return MetricsResource(metrics).render(request).decode()


def test_no_credential_in_metrics_or_logs() -> None:
    """Grep all metrics (both formats) and all log output (JSON and text) for the credentials."""
    registry = FakeRegistry()
    registry.add("c1")
    registry.add("broken", valid=False)
    outputs: dict[str, str] = {}
    for json_lines in (True, False):
        out = io.StringIO()
        observer = gateway_observer(out, json_lines=json_lines, level=LogLevel.debug)
        metrics = GatewayMetrics.build(registry, process_metrics=False)
        access = AccessLog(enabled=True, log=Logger(namespace="access", observer=observer))
        record_everything(metrics, Logger(namespace="test", observer=observer), access)
        outputs[f"logs json={json_lines}"] = out.getvalue()
        outputs["metrics text"] = scrape(metrics)
        outputs["metrics openmetrics"] = scrape(metrics, b"application/openmetrics-text")

    logs = outputs["logs json=True"]
    # The run did log: every event is there, with its non-secret parts.
    assert logs.count("\n") == 18
    assert "vela-system/c1" in logs and "request to c1 failed" in logs
    assert "RuntimeError" in logs and "alice" in logs and "watch=1" in logs
    assert "ocm_proxy_proxied_requests_by_cluster_total" in outputs["metrics text"]

    leaks: list[Any] = [
        (where, marker)
        for where, text in outputs.items()
        for marker in CREDENTIAL_MARKERS
        if marker in text
    ]
    assert leaks == []
