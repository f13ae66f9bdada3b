"""Running twistd's application runner without its exit by signal.

``twistd.runApp`` ends by re-sending the process the signal that stopped it,
so the exit status would say "killed by SIGTERM" even after a clean drain
(``tap.GatewayService.stopService``); like kube-apiserver, the gateway exits
0 instead.  Doing so needs the runner class ``runApp`` uses, which twistd
names ``_SomeApplicationRunner`` (its platform's runner) and does not export.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_app"]


def run_app(config: Any) -> None:
    """``twistd.runApp(config)`` without its last step (see module)."""
    from twisted.scripts import twistd

    runner: Any = twistd._SomeApplicationRunner  # type: ignore[attr-defined]
    runner(config).run()
