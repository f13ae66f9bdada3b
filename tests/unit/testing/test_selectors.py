"""Label and field selector parsing and matching (clustergateway.testing.selectors)."""

from __future__ import annotations

import pytest

from clustergateway.testing.selectors import (
    SelectorError,
    field_value,
    matches_fields,
    matches_labels,
    parse_field_selector,
    parse_label_selector,
)


def _obj(labels=None, **fields):
    return {"metadata": {"name": "n", "namespace": "ns", "labels": labels or {}}, **fields}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a in (b, c)", {"a": "c"}, True),
        ("a in (b,c)", {"a": "d"}, False),
        ("a notin (b,c)", {}, True),
        ("a notin (b,c)", {"a": "b"}, False),
        ("a", {"a": ""}, True),
        ("a", {}, False),
        ("!a", {}, True),
        ("!a", {"a": "x"}, False),
        ("a=b,c in (d),!e", {"a": "b", "c": "d"}, True),
        ("a=b,c in (d),!e", {"a": "b", "c": "d", "e": "1"}, False),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "4"}, False),
        ("n>3", {"n": "x"}, False),
        ("app.kubernetes.io/name=web", {"app.kubernetes.io/name": "web"}, True),
        ("a=", {"a": ""}, True),
    ],
)
def test_label_selector_matches(selector, labels, expected):
    """Each operator behaves like kube-apiserver's label selector."""
    assert matches_labels(parse_label_selector(selector), _obj(labels)) is expected


@pytest.mark.parametrize(
    "selector", ["a in (", "a in ()", "=b", "a=b c", "a b", "a=(x", "Bad Key=1", "n>x", "a=b,,c=d"]
)
def test_bad_label_selectors(selector):
    """Syntax errors raise SelectorError instead of matching something."""
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


@pytest.mark.parametrize(
    ("selector", "obj", "expected"),
    [
        ("metadata.name=n", _obj(), True),
        ("metadata.name==n", _obj(), True),
        ("metadata.name!=n", _obj(), False),
        ("metadata.namespace=ns,metadata.name=n", _obj(), True),
        ("status.phase=Running", _obj(status={"phase": "Running"}), True),
        ("status.phase=Running", _obj(), False),
        ("spec.nodeName=", _obj(), True),
        ("spec.flag=true", _obj(spec={"flag": True}), True),
    ],
)
def test_field_selector_matches(selector, obj, expected):
    """Field selectors compare the string value at a dotted path; absent means empty."""
    assert matches_fields(parse_field_selector(selector), obj) is expected


@pytest.mark.parametrize("selector", ["metadata.name", "=x"])
def test_bad_field_selectors(selector):
    """A field requirement needs a field and an operator."""
    with pytest.raises(SelectorError):
        parse_field_selector(selector)


def test_field_value_paths():
    """field_value walks maps only and stringifies scalars."""
    obj = {"a": {"b": 3, "c": None, "d": [1]}}
    assert field_value(obj, "a.b") == "3"
    assert field_value(obj, "a.c") is None
    assert field_value(obj, "a.d.0") is None
    assert field_value(obj, "x") is None
