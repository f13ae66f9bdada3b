"""A Go gateway's command line rewritten for ``usage.Options`` (``clustergateway.goflags``)."""

from __future__ import annotations

import pytest

from clustergateway.goflags import GoFlagError, rewrite

BOOLEANS = {"ocm-integration", "standalone-debug-mode", "access-log"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # The vela-core chart's leading positional, the Go binary's subcommand.
        (["apiserver", "--secure-port=9443"], ["--secure-port=9443"]),
        # Booleans: bare, =true/=false in any strconv.ParseBool spelling, last one wins.
        (["--ocm-integration=true"], ["--ocm-integration"]),
        (["--ocm-integration=false"], []),
        (["--ocm-integration=1", "--access-log=F"], ["--ocm-integration"]),
        (["--ocm-integration", "--ocm-integration=false"], []),
        (["--ocm-integration=false", "--ocm-integration"], ["--ocm-integration"]),
        # A value given as the next argument is copied verbatim, even one that looks
        # like a subcommand or a flag.
        (["--secret-namespace", "apiserver"], ["--secret-namespace", "apiserver"]),
        (["--user-agent", "--access-log=true"], ["--user-agent", "--access-log=true"]),
        # klog's verbosity in each spelling pflag takes.
        (["-v", "4"], ["--v", "4"]),
        (["-v4"], ["--v=4"]),
        (["-v=4"], ["--v=4"]),
        (["--v=4"], ["--v=4"]),
        (["--v", "4"], ["--v", "4"]),
        # Values with commas and empty items pass through to their own parsers.
        (
            ["--feature-gates=HealthinessCheck=true,SecretCache=true,"],
            ["--feature-gates=HealthinessCheck=true,SecretCache=true,"],
        ),
        (["--", "x"], ["--", "x"]),
    ],
)
def test_rewrite(args: list[str], expected: list[str]) -> None:
    """Each Go spelling becomes the one ``usage.Options`` reads, meaning the same."""
    assert rewrite(args, BOOLEANS) == expected


def test_apiserver_only_as_the_first_argument() -> None:
    """``apiserver`` anywhere else, or any other positional, is refused saying what is taken."""
    with pytest.raises(GoFlagError, match="only positional argument taken is a leading") as info:
        rewrite(["--secure-port=1", "apiserver"], BOOLEANS)
    assert info.value.flag is None
    with pytest.raises(GoFlagError, match="unexpected argument 'serve'"):
        rewrite(["serve"], BOOLEANS)


@pytest.mark.parametrize("flag", ["etcd-servers", "profiling", "tls-sni-cert-key", "vmodule"])
def test_unimplemented_generic_flags_named(flag: str) -> None:
    """A generic apiserver or klog flag no install passes is refused naming it and why."""
    with pytest.raises(GoFlagError, match="does not implement") as info:
        rewrite([f"--{flag}=x"], BOOLEANS)
    assert info.value.flag == flag


def test_bad_boolean_named() -> None:
    """A boolean given a value Go would refuse names the flag and the value."""
    with pytest.raises(GoFlagError, match="invalid boolean 'yes'") as info:
        rewrite(["--standalone-debug-mode=yes"], BOOLEANS)
    assert info.value.flag == "standalone-debug-mode"
