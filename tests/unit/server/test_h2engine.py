"""Which HTTP/2 engine the listener gets (``server.h2engine``), and why."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.logger import globalLogPublisher

from clustergateway.config import ConfigError
from clustergateway.fence.h2engine_ngh2 import unfit
from clustergateway.server.h2engine import choose

LIST_SIZE = 1024 * 1024 + 64 * 1024


def fit(size: int) -> None:
    return None


def stock(size: int) -> str:
    return "libnghttp2 refuses a 262144-byte header field"


@pytest.fixture
def logged() -> Any:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_the_installed_libnghttp2_takes_a_long_header_field() -> None:
    """`make venv` installs the ngh2 wheel built with the per-field limit raised: the
    probe passes on it (that the probe fails a library that drops the request:
    ``tests/unit/fence/test_h2engine_ngh2``)."""
    assert unfit(LIST_SIZE) is None


def test_auto_takes_the_native_engine_when_it_is_fit(logged: Any) -> None:
    assert choose("auto", LIST_SIZE, fit) == "native"
    assert choose("auto", LIST_SIZE) == "native"  # the real probe, on the installed library
    said = [str(e.get("log_format", "")).format(**e) for e in logged]
    assert any("HTTP/2 listener on libnghttp2 (ngh2 0.3.0+nv16m)" in line for line in said)


def test_auto_keeps_the_python_engine_and_says_why(logged: Any) -> None:
    assert choose("auto", LIST_SIZE, stock) == "python"
    (warning,) = [e for e in logged if "pure-Python engine" in e.get("log_format", "")]
    assert "refuses a 262144-byte header field" in warning["log_format"].format(**warning)


def test_native_refuses_to_start_on_an_unfit_library() -> None:
    with pytest.raises(ConfigError, match="native: libnghttp2 refuses"):
        choose("native", LIST_SIZE, stock)
    assert choose("native", LIST_SIZE, fit) == "native"


def test_python_is_taken_without_probing() -> None:
    def probe(size: int) -> str | None:
        raise AssertionError("probed")

    assert choose("python", LIST_SIZE, probe) == "python"
