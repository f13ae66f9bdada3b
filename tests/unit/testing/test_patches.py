"""The three patch formats (clustergateway.testing.patches)."""

from __future__ import annotations

import pytest

from clustergateway.testing.patches import (
    MalformedPatch,
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": 1}, {"a": None}, {}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"y": None, "z": 3}}, {"a": {"x": 1, "z": 3}}),
        ({"l": [1, 2]}, {"l": [3]}, {"l": [3]}),
        ({"a": 1}, [1], [1]),
        ("scalar", {"a": 1}, {"a": 1}),
    ],
)
def test_merge_patch(target, patch, expected):
    """RFC 7386 examples: maps merge, null deletes, the rest replaces."""
    assert apply_merge_patch(target, patch) == expected


def test_merge_patch_does_not_mutate():
    """Inputs stay untouched (the store shares stored dicts with readers)."""
    target = {"a": {"b": 1}}
    apply_merge_patch(target, {"a": {"b": 2}})
    assert target == {"a": {"b": 1}}


def test_strategic_merges_named_lists():
    """Lists of objects with a name merge by name; directives delete and replace."""
    pod = {
        "spec": {
            "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
            "volumes": [{"name": "v"}],
            "args": ["x"],
        }
    }
    patch = {
        "spec": {
            "containers": [{"name": "b", "image": "2"}, {"name": "c", "image": "3"}],
            "volumes": [{"name": "v", "$patch": "delete"}],
            "args": ["y"],
        }
    }
    assert apply_strategic_merge_patch(pod, patch) == {
        "spec": {
            "containers": [
                {"name": "a", "image": "1"},
                {"name": "b", "image": "2"},
                {"name": "c", "image": "3"},
            ],
            "volumes": [],
            "args": ["y"],
        }
    }


def test_strategic_map_directives():
    """$patch: replace swaps a whole map; $patch: delete removes it; null deletes keys."""
    cm = {"data": {"a": "1", "b": "2"}, "metadata": {"labels": {"x": "y"}}}
    replaced = apply_strategic_merge_patch(cm, {"data": {"$patch": "replace", "c": "3"}})
    assert replaced["data"] == {"c": "3"}
    deleted = apply_strategic_merge_patch(cm, {"metadata": {"labels": {"$patch": "delete"}}})
    assert deleted["metadata"] == {}
    nulled = apply_strategic_merge_patch(cm, {"data": {"a": None}})
    assert nulled["data"] == {"b": "2"}


def test_strategic_list_replace_directive():
    """A $patch: replace element makes the list replace instead of merge."""
    target = {"c": [{"name": "a"}, {"name": "b"}]}
    patch = {"c": [{"name": "z"}, {"$patch": "replace"}]}
    assert apply_strategic_merge_patch(target, patch) == {"c": [{"name": "z"}]}


def test_json_patch_operations():
    """add, remove, replace, move, copy and test per RFC 6902."""
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "replace", "path": "/c", "value": "y"},
        {"op": "copy", "from": "/c", "path": "/d"},
        {"op": "move", "from": "/d", "path": "/e"},
        {"op": "remove", "path": "/a/b/1"},
        {"op": "test", "path": "/e", "value": "y"},
        {"op": "add", "path": "/f~1g", "value": 1},
    ]
    assert apply_json_patch(doc, ops) == {"a": {"b": [0, 2, 3]}, "c": "y", "e": "y", "f/g": 1}
    assert doc == {"a": {"b": [1, 2]}, "c": "x"}


@pytest.mark.parametrize(
    ("ops", "error"),
    [
        ({"op": "add"}, MalformedPatch),
        ([{"path": "/a"}], MalformedPatch),
        ([{"op": "frobnicate", "path": "/a"}], MalformedPatch),
        ([{"op": "add", "path": "/a"}], MalformedPatch),
        ([{"op": "remove", "path": "/missing"}], PatchError),
        ([{"op": "test", "path": "/a", "value": 2}], PatchError),
        ([{"op": "add", "path": "/l/9", "value": 1}], PatchError),
        ([{"op": "add", "path": "a", "value": 1}], PatchError),
    ],
)
def test_json_patch_errors(ops, error):
    """Malformed documents and failing operations raise, never half-apply."""
    with pytest.raises(error):
        apply_json_patch({"a": 1, "l": []}, ops)
