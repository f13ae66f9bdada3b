"""PATCH bodies: RFC 7386 merge patch and RFC 6902 JSON patch."""

from __future__ import annotations

import pytest

from clustergateway import errors
from clustergateway.api.patch import apply_json_patch, apply_merge_patch

DOC = {"status": {"healthy": False, "healthyReason": "x"}, "spec": {"a": [1, 2]}}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"status": {"healthy": True}}, {"healthy": True, "healthyReason": "x"}),
        ({"status": {"healthyReason": None}}, {"healthy": False}),
        ({"status": "gone"}, "gone"),
    ],
)
def test_merge_patch(patch: dict[str, object], expected: object) -> None:
    """Maps merge, null deletes, scalars replace; the input is not modified."""
    assert apply_merge_patch(DOC, patch)["status"] == expected
    assert DOC["status"] == {"healthy": False, "healthyReason": "x"}


@pytest.mark.parametrize(
    ("ops", "path", "expected"),
    [
        ([{"op": "replace", "path": "/status/healthy", "value": True}], "healthy", True),
        ([{"op": "add", "path": "/status/new", "value": 1}], "new", 1),
        ([{"op": "remove", "path": "/status/healthyReason"}], "healthyReason", None),
        (
            [{"op": "move", "from": "/status/healthyReason", "path": "/status/moved"}],
            "moved",
            "x",
        ),
        ([{"op": "copy", "from": "/status/healthy", "path": "/status/c"}], "c", False),
        (
            [
                {"op": "test", "path": "/status/healthy", "value": False},
                {"op": "replace", "path": "/status/healthy", "value": True},
            ],
            "healthy",
            True,
        ),
    ],
)
def test_json_patch(ops: list[dict[str, object]], path: str, expected: object) -> None:
    """Every RFC 6902 operation on a copy of the document."""
    assert apply_json_patch(DOC, ops)["status"].get(path) == expected
    assert DOC["status"]["healthy"] is False


def test_json_patch_arrays_and_escapes() -> None:
    """Array indices, "-" append and ~1 escapes in pointers."""
    out = apply_json_patch(DOC, [{"op": "add", "path": "/spec/a/-", "value": 3}])
    assert out["spec"]["a"] == [1, 2, 3]
    out = apply_json_patch(DOC, [{"op": "replace", "path": "/spec/a/0", "value": 9}])
    assert out["spec"]["a"] == [9, 2]
    out = apply_json_patch({}, [{"op": "add", "path": "/a~1b", "value": 1}])
    assert out == {"a/b": 1}


@pytest.mark.parametrize(
    ("ops", "error"),
    [
        ({"op": "add"}, errors.BadRequest),
        ([{"op": "replace", "path": "/nope/x", "value": 1}], errors.UnprocessableEntity),
        ([{"op": "test", "path": "/status/healthy", "value": True}], errors.UnprocessableEntity),
        ([{"op": "frobnicate", "path": "/"}], errors.UnprocessableEntity),
        ([{"op": "add", "path": "/x"}], errors.UnprocessableEntity),
        (["not an object"], errors.BadRequest),
    ],
)
def test_json_patch_errors(ops: object, error: type[errors.StatusError]) -> None:
    """Malformed patches are 400, inapplicable ones 422."""
    with pytest.raises(error):
        apply_json_patch(DOC, ops)
