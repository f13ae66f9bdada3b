"""The console script's subcommand table (clustergateway.cli)."""

from __future__ import annotations

import pytest

from clustergateway import cli


def test_flags_are_not_a_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first argument that is a flag returns to the gateway's own start."""
    monkeypatch.setitem(cli.SUBCOMMANDS, "echo", "builtins:print")
    cli.run_subcommand(["--secure-port", "9443"])
    cli.run_subcommand([])


def test_a_named_subcommand_runs_and_exits_with_its_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``cluster-gateway NAME args`` calls NAME's function with the rest and exits."""
    seen: list[list[str]] = []
    monkeypatch.setitem(cli.SUBCOMMANDS, "probe", f"{__name__}:_record")
    monkeypatch.setattr(f"{__name__}._SEEN", seen)
    with pytest.raises(SystemExit) as exited:
        cli.run_subcommand(["probe", "a", "--b"])
    assert exited.value.code == 3
    assert seen == [["a", "--b"]]


_SEEN: list[list[str]] = []


def _record(args: list[str]) -> int:
    _SEEN.append(args)
    return 3


def test_a_subcommand_starts_without_importing_the_gateway() -> None:
    """``cluster-gateway kubeconfig --help`` never imports ``clustergateway.tap`` (and
    with it Twisted's web stack): install Jobs run subcommands."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from clustergateway.cli import main\n"
        "try:\n"
        "    main(['kubeconfig', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('clustergateway.tap' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr
