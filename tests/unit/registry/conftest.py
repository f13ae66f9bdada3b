"""Shared values for the registry unit tests: a small PKI made once per session."""

from __future__ import annotations

import pytest

from clustergateway.certs import KeyPair, issue_cert, make_ca


@pytest.fixture(scope="session")
def pki() -> dict[str, KeyPair]:
    """A CA, a client cert signed by it, and an unrelated client cert (for mismatches)."""
    ca = make_ca("test-ca")
    return {
        "ca": ca,
        "client": issue_cert(ca, "gateway", client=True),
        "other": issue_cert(ca, "someone-else", client=True),
    }
