"""``fence.twistd``: ``run_app`` runs twistd's own application runner."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.scripts import twistd

from clustergateway.fence.twistd import run_app


def test_run_app_runs_the_platform_runner_with_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner twistd would use is built with the config and run, nothing after."""
    ran: list[Any] = []

    class Runner:
        def __init__(self, config: Any) -> None:
            self.config = config

        def run(self) -> None:
            ran.append(self.config)

    monkeypatch.setattr(twistd, "_SomeApplicationRunner", Runner)
    run_app({"a": 1})
    assert ran == [{"a": 1}]
