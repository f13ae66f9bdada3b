"""Feature gates: ``--feature-gates`` parsing as Kubernetes' featuregate does it."""

from __future__ import annotations

import pytest

from clustergateway.registry.features import FeatureGateError, FeatureGates, parse_go_bool


def test_defaults() -> None:
    """Alpha gates default off, Beta gates on (as in Go)."""
    assert FeatureGates().as_dict() == {
        "HealthinessCheck": False,
        "SecretCache": True,
        "ClientIdentityPenetration": False,
        "OCMClusterCache": True,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", FeatureGates()),
        ("HealthinessCheck=true", FeatureGates(healthiness_check=True)),
        (
            "HealthinessCheck=true,SecretCache=false,",
            FeatureGates(healthiness_check=True, secret_cache=False),
        ),
        (
            " ClientIdentityPenetration = True , OCMClusterCache=0 ",
            FeatureGates(client_identity_penetration=True, ocm_cluster_cache=False),
        ),
        ("HealthinessCheck=true,HealthinessCheck=false", FeatureGates()),
        (",,", FeatureGates()),
    ],
)
def test_parse(text: str, expected: FeatureGates) -> None:
    """Items apply left to right; spaces and empty items (a trailing comma) are fine."""
    assert FeatureGates.parse(text) == expected


def test_parse_on_base() -> None:
    """A second ``--feature-gates`` applies on top of the first."""
    first = FeatureGates.parse("HealthinessCheck=true")
    assert FeatureGates.parse("SecretCache=false", first) == FeatureGates(
        healthiness_check=True, secret_cache=False
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Bogus=true", "unrecognized feature gate: Bogus"),
        ("HealthinessCheck", "missing bool value for feature gate HealthinessCheck"),
        ("HealthinessCheck=yes", "invalid value of feature gate HealthinessCheck=yes"),
        ("healthinesscheck=true", "unrecognized feature gate: healthinesscheck"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    """An unknown gate or a bad value is an error naming it."""
    with pytest.raises(FeatureGateError, match=message):
        FeatureGates.parse(text)


def test_enabled() -> None:
    """Gates can be asked by their Go name."""
    gates = FeatureGates(client_identity_penetration=True)
    assert gates.enabled("ClientIdentityPenetration") is True
    assert gates.enabled("HealthinessCheck") is False
    with pytest.raises(KeyError):
        gates.enabled("Nope")


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_bool_true(text: str) -> None:
    """Exactly Go's true spellings."""
    assert parse_go_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_go_bool_false(text: str) -> None:
    """Exactly Go's false spellings."""
    assert parse_go_bool(text) is False


@pytest.mark.parametrize("text", ["", "yes", "on", "tRUE", " true"])
def test_go_bool_invalid(text: str) -> None:
    """Anything else is rejected."""
    with pytest.raises(ValueError):
        parse_go_bool(text)


def test_command_line_accepts_generic_kubernetes_gates() -> None:
    """The Go command line's generic apiserver gates are accepted and handed back (for one
    warning line); ours still apply, and a trailing comma is fine."""
    gates, ignored = FeatureGates.parse_command_line(
        "APIPriorityAndFairness=false,ClientIdentityPenetration=true,AllAlpha=false,"
    )
    assert gates == FeatureGates(client_identity_penetration=True)
    assert ignored == ("APIPriorityAndFairness=false", "AllAlpha=false")
    assert FeatureGates.parse_command_line("HealthinessCheck=true,SecretCache=true,") == (
        FeatureGates(healthiness_check=True, secret_cache=True),
        (),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Bogus=true", "unrecognized feature gate: Bogus"),
        ("APIPriorityAndFairness=maybe", "invalid value of feature gate APIPriorityAndFairness"),
        ("APIPriorityAndFairness", "missing bool value for feature gate APIPriorityAndFairness"),
    ],
)
def test_command_line_still_refuses_unknown_gates(text: str, message: str) -> None:
    """A name that is neither ours nor Kubernetes', or a generic gate without a boolean,
    stops the start as before."""
    with pytest.raises(FeatureGateError, match=message):
        FeatureGates.parse_command_line(text)


def test_parse_alone_knows_only_our_gates() -> None:
    """``parse`` (used for programmatic settings) does not take generic gates."""
    with pytest.raises(FeatureGateError, match="unrecognized feature gate: APIPriorityAndFairness"):
        FeatureGates.parse("APIPriorityAndFairness=false")
