"""Table and PartialObjectMetadata forms (clustergateway.testing.tables)."""

from __future__ import annotations

import datetime

import pytest

from clustergateway.testing.kinds import DEFAULT_TYPES
from clustergateway.testing.tables import human_duration, partial_metadata, table_for

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-0.5, "0s"),
        (0, "0s"),
        (119, "119s"),
        (130, "2m10s"),
        (180, "3m"),
        (3600, "60m"),
        (4 * 3600 + 60, "4h1m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds, text):
    """Ages print like kubectl's duration.HumanDuration."""
    assert human_duration(seconds) == text


def _created(seconds_ago: int) -> str:
    return (NOW - datetime.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_pod_table():
    """Pods get Ready/Status/Restarts/Age plus priority-1 wide columns."""
    pod = {
        "metadata": {"name": "p", "creationTimestamp": _created(65)},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "containerStatuses": [{"ready": True, "restartCount": 2}, {"ready": False}],
        },
    }
    table = table_for(DEFAULT_TYPES.resolve("pods"), [pod], now=NOW)
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert all(c["priority"] == 1 for c in table["columnDefinitions"][5:])
    assert table["rows"][0]["cells"] == [
        "p",
        "1/2",
        "Running",
        2,
        "65s",
        "10.0.0.1",
        "n1",
        "<none>",
        "<none>",
    ]
    assert table["rows"][0]["object"] == partial_metadata(pod)


@pytest.mark.parametrize(
    ("resource", "obj", "cells"),
    [
        ("namespaces", {"status": {"phase": "Active"}}, ["Active"]),
        ("configmaps", {"data": {"a": "1"}, "binaryData": {"b": ""}}, [2]),
        ("secrets", {"type": "Opaque", "data": {"a": ""}}, ["Opaque", 1]),
        (
            "managedclusters",
            {
                "spec": {
                    "hubAcceptsClient": True,
                    "managedClusterClientConfigs": [{"url": "https://c"}],
                },
                "status": {
                    "conditions": [{"type": "ManagedClusterConditionAvailable", "status": "True"}]
                },
            },
            [True, "https://c", "", "True"],
        ),
    ],
)
def test_kind_specific_columns(resource, obj, cells):
    """Each kind's printer columns sit between Name and Age."""
    obj = {"metadata": {"name": "x", "creationTimestamp": _created(5)}, **obj}
    table = table_for(DEFAULT_TYPES.resolve(resource), [obj], now=NOW, include_object="None")
    assert table["rows"] == [{"cells": ["x", *cells, "5s"]}]


def test_include_object_and_list_meta():
    """includeObject=Object embeds the object; list metadata is carried over."""
    obj = {"metadata": {"name": "x"}}
    table = table_for(
        DEFAULT_TYPES.resolve("configmaps"),
        [obj],
        include_object="Object",
        list_meta={"resourceVersion": "7"},
        version="v1beta1",
    )
    assert table["apiVersion"] == "meta.k8s.io/v1beta1"
    assert table["metadata"] == {"resourceVersion": "7"}
    assert table["rows"][0]["object"] is obj
    assert table["rows"][0]["cells"][-1] == "<unknown>"
