"""Extra-key escaping in header names, byte for byte as client-go and the apiserver."""

from __future__ import annotations

import pytest

from clustergateway.auth.headerkeys import escape_extra_key, unescape_extra_key

CASES = [
    # (key, escaped) — client-go headerKeyEscape outputs.
    ("scopes", "scopes"),
    ("authentication.kubernetes.io/credential-id", "authentication.kubernetes.io%2Fcredential-id"),
    ("example.org/foo bar", "example.org%2Ffoo%20bar"),
    ("100%", "100%25"),
    ("Mixed.Case_key~|", "Mixed.Case_key~|"),
    ("a:b;c", "a%3Ab%3Bc"),
    ("ü", "%C3%BC"),
]


@pytest.mark.parametrize(("key", "escaped"), CASES)
def test_escape(key: str, escaped: str) -> None:
    """Non-token bytes and '%' become upper-case %XX; token bytes stay as they are."""
    assert escape_extra_key(key) == escaped


@pytest.mark.parametrize(("key", "escaped"), CASES)
def test_round_trip(key: str, escaped: str) -> None:
    """What one side escapes, the other side decodes to the same key."""
    assert unescape_extra_key(escaped) == key


@pytest.mark.parametrize(
    ("received", "key"),
    [
        (
            "authentication.kubernetes.io%2fcredential-id",
            "authentication.kubernetes.io/credential-id",
        ),
        ("plain", "plain"),
        ("bad%zzescape", "bad%zzescape"),
        ("half%2", "half%2"),
        ("a+b", "a+b"),
    ],
)
def test_unescape(received: str, key: str) -> None:
    """Lower-case hex decodes; a malformed escape keeps the whole key as received."""
    assert unescape_extra_key(received) == key
