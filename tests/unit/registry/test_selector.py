"""Label selectors: the Kubernetes grammar and matching rules."""

from __future__ import annotations

import pytest

from clustergateway import errors
from clustergateway.registry.selector import LabelSelector, Requirement, parse_selector

LABELS = {"env": "prod", "tier": "web", "size": "3", "example.com/team": "a"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("env", True),
        ("!env", False),
        ("!missing", True),
        ("env=prod", True),
        ("env==prod", True),
        ("env=dev", False),
        ("env!=dev", True),
        ("missing!=x", True),
        ("env in (dev, prod)", True),
        ("env in (dev)", False),
        ("env notin (dev,test)", True),
        ("missing notin (x)", True),
        ("missing in (x)", False),
        ("size>2", True),
        ("size<2", False),
        ("env>2", False),
        ("example.com/team=a", True),
        ("env=prod,tier=web", True),
        ("env=prod,tier=db", False),
        ("  env = prod ,  tier  ", True),
        ("missing=", False),
        ("env in (prod,)", True),
    ],
)
def test_matches(text: str, matches: bool) -> None:
    """Every operator, with Kubernetes' rule that != and notin match absent keys."""
    assert parse_selector(text).matches(LABELS) is matches


def test_empty_value() -> None:
    """``key=`` matches a label whose value is empty."""
    assert parse_selector("k=").matches({"k": ""})


@pytest.mark.parametrize(
    "text",
    [
        "env=prod,",
        "=x",
        "env in prod",
        "env in ()",
        "env in (a b)",
        "env=a=b",
        "-bad-",
        "a>x",
        "env,,tier",
        "!",
    ],
)
def test_errors(text: str) -> None:
    """A malformed selector is a 400 BadRequest naming it."""
    with pytest.raises(errors.BadRequest, match="unable to parse requirement"):
        parse_selector(text)


def test_without_key() -> None:
    """``without_key`` drops every requirement on that key."""
    selector = parse_selector("a=1,b,!a")
    assert selector.without_key("a") == LabelSelector((Requirement("b", "exists"),))
    assert parse_selector(None).empty
