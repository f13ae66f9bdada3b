"""Fuzzing the registry: hostile Secret documents never cost the other clusters.

Seeded and reproducible: ``derandomize=True`` makes every run draw the same
examples; a failure prints the falsifying example and a ``@reproduce_failure``
blob to replay it.  Bounded: a fixed number of examples per property.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustergateway.registry.keys import credential_type_label
from clustergateway.registry.samples import cluster_secret
from clustergateway.registry.secrets_dir import ManifestError, parse_manifests
from clustergateway.registry.store import SecretRegistry

GROUP = "cluster.core.oam.dev"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(["YQ==", "YWJj=", "!!", "dG9rZW4====", "https://[::1", "ClusterProxy", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
b64 = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())


@st.composite
def hostile_secrets(draw: st.DrawFn) -> Any:
    """Secret-shaped documents with any part replaced by junk (and junk outright)."""
    label = credential_type_label(GROUP)
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": draw(st.one_of(st.text(min_size=1, max_size=12), values)),
            "labels": draw(
                st.one_of(
                    st.just({label: "ServiceAccountToken"}),
                    st.dictionaries(st.sampled_from([label, "x"]), values, max_size=3),
                    values,
                )
            ),
            "annotations": draw(st.one_of(st.dictionaries(st.text(max_size=30), values), values)),
            "resourceVersion": draw(values),
        },
        "data": draw(
            st.one_of(
                st.dictionaries(
                    st.sampled_from(
                        [
                            "endpoint",
                            "token",
                            "ca.crt",
                            "tls.crt",
                            "tls.key",
                            "exec",
                            "proxy-url",
                            "ca",
                            "tls-server-name",
                        ]
                    ),
                    st.one_of(b64, values),
                    max_size=6,
                ),
                values,
            )
        ),
        "stringData": draw(st.one_of(st.none(), st.dictionaries(st.text(max_size=10), values))),
    }
    return draw(st.one_of(st.just(secret), values))


@FUZZ
@given(st.lists(hostile_secrets(), max_size=6))
def test_hostile_secrets_in_a_full_list(junk: list[Any]) -> None:
    """A list holding any hostile documents still serves every good cluster."""
    registry = SecretRegistry(GROUP)
    good = [
        cluster_secret(f"good-cluster-{i}-zz", token="t", endpoint="https://10.0.0.1")
        for i in range(2)
    ]
    registry.replace_all([good[0], *junk, good[1]])
    names = {e.name for e in registry.entries()}
    assert {"good-cluster-0-zz", "good-cluster-1-zz"} <= names
    for entry in registry.entries():
        if entry.name.startswith("good-cluster-"):
            assert entry.gateway is not None, entry.error
    registry.gateways()
    registry.virtual_clusters()


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", 7]), hostile_secrets()
        ),
        max_size=6,
    )
)
def test_hostile_watch_events(events: list[tuple[Any, Any]]) -> None:
    """Watch events carrying hostile documents leave the good cluster served."""
    registry = SecretRegistry(GROUP)
    registry.replace_all([cluster_secret("good", token="t", endpoint="https://10.0.0.1")])
    for event_type, document in events:
        registry.apply(event_type, document)
    entry = registry.entry("good")
    assert entry is not None and entry.gateway is not None


@FUZZ
@given(st.one_of(st.text(max_size=300), values.map(json.dumps)), st.booleans())
def test_manifest_parser_answers_or_refuses(text: str, is_json: bool) -> None:
    """Any text is either Secrets or a ManifestError: nothing else escapes the parser."""
    try:
        secrets = parse_manifests(text, is_json=is_json)
    except ManifestError:
        return
    assert all(isinstance(s, dict) and s.get("kind") == "Secret" for s in secrets)
