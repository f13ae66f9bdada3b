"""Shared pytest configuration.

Fixtures live in ``tests/fixtures/<area>.py``, one module per area, and are
registered here.  Do not import the Twisted reactor at module level in any
conftest or fixture module (pytest-twisted installs it; twisted-notes §8).

The suite runs on the gateway's own reactor (``fence.reactor.LeanEPollReactor``,
an ``EPollReactor``, so pytest-twisted's default-reactor check accepts it):
installed here, before pytest-twisted installs one, so in-process gateways
write and dispatch exactly as the ``cluster-gateway`` process does.
"""

import pytest

pytest_plugins = [
    "tests.fixtures.tools",
    "tests.fixtures.simulator",
    "tests.fixtures.gateway",
    "tests.fixtures.proxy",
    "tests.fixtures.auth",
    "tests.fixtures.egress",
    "tests.fixtures.clients",
    "tests.fixtures.konnectivity",
]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    import sys

    if "twisted.internet.reactor" not in sys.modules:
        from clustergateway.fence.reactor import install

        install()
