"""The h2load summary the bench's HTTP/2 rows are read from."""

from __future__ import annotations

import pytest
from bench.h2load import parse_output

SUMMARY = """\
progress: 100% done

finished in 151.24ms, 330.61 req/s, 2.60MB/s
requests: 50 total, 50 started, 50 done, 48 succeeded, 1 failed, 1 errored, 0 timeout
status codes: 48 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 403.37KB (413054) total, 5.96KB (6100) headers (space savings 0.00%)
                     min         max         mean         sd        +/- sd
time for request:     1.58ms      9.27ms      5.86ms      2.19ms    66.00%
time for connect:       37us        54us        45us        11us   100.00%
"""


def test_summary_is_read() -> None:
    parsed = parse_output(SUMMARY)
    assert parsed is not None
    assert parsed["requests"] == 48 and parsed["failed"] == 2
    assert parsed["duration_s"] == pytest.approx(0.15124)
    assert parsed["rps"] == pytest.approx(330.61)
    assert parsed["mean_latency_us"] == pytest.approx(5860.0)


def test_seconds_and_microseconds() -> None:
    text = SUMMARY.replace("151.24ms", "6.00s").replace(
        "1.58ms      9.27ms      5.86ms", "180us      900us      312.5us"
    )
    parsed = parse_output(text)
    assert parsed is not None
    assert parsed["duration_s"] == pytest.approx(6.0)
    assert parsed["mean_latency_us"] == pytest.approx(312.5)


def test_no_summary_is_none() -> None:
    assert parse_output("connect: Connection refused\n") is None


def test_streams_per_connection_reach_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """``streams`` becomes ``-m``: 4 connections × 32 streams is ``-c4 -m32``."""
    import bench.h2load as module

    seen: list[list[str]] = []

    class Done(Exception):
        pass

    def popen(argv: list[str], **_: object) -> None:
        seen.append(argv)
        raise Done

    monkeypatch.setattr(module.shutil, "which", lambda _: "/usr/bin/h2load")
    monkeypatch.setattr(module.subprocess, "Popen", popen)
    with pytest.raises(Done):
        module.run_h2load("https://x/", connections=4, streams=32, duration=1, cores="1")
    assert seen[0][3:6] == ["/usr/bin/h2load", "-c4", "-m32"]
