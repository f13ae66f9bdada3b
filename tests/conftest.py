"""Shared pytest configuration.

Fixtures live in ``tests/fixtures/<area>.py``, one module per area, and are
registered here.  Do not import the Twisted reactor at module level in any
conftest or fixture module (pytest-twisted installs it; twisted-notes §8).
"""

pytest_plugins = [
    "tests.fixtures.tools",
    "tests.fixtures.simulator",
    "tests.fixtures.gateway",
    "tests.fixtures.proxy",
    "tests.fixtures.auth",
    "tests.fixtures.egress",
]
