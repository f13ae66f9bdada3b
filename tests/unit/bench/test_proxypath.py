"""``bench.proxypath`` measures a proxied GET that really went through the gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import proxypath


@pytest.mark.parametrize("web", [False, True])
def test_each_timed_request_is_answered_by_the_cluster(web: bool) -> None:
    # cpu_per_request refuses to time a gateway that does not answer 200; it
    # returns CPU per request, which is positive (no timing is asserted).
    assert proxypath.cpu_per_request(20, web=web) > 0


def test_the_cluster_answers_each_request_once_it_is_read(tmp_path: Path) -> None:
    protocol, client, _ = proxypath._caller(False, tmp_path)
    protocol.dataReceived(proxypath.REQUEST + proxypath.REQUEST)
    answers = client.value()
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert answers.count(b'"kind":"ConfigMap"') == 2


@pytest.mark.parametrize("engine", ["native", "python"])
@pytest.mark.parametrize("batch", [1, 32])
def test_http2_streams_are_answered_by_the_cluster(engine: str, batch: int) -> None:
    # h2_cpu_per_request refuses to time streams not all answered 200 (no timing asserted).
    assert proxypath.h2_cpu_per_request(64, batch, engine) > 0
