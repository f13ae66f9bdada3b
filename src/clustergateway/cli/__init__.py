"""Subcommands of ``cluster-gateway``: ``cluster-gateway NAME [args…]``.

The console script serves the gateway when its first argument is a flag; a
first argument that names a subcommand here runs that subcommand's ``main``
instead (``patch``, ``kubeconfig``, ``join``…).  The table maps each name to
``module:function`` so that a subcommand's imports are paid only when it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import NoReturn, cast

__all__ = ["SUBCOMMANDS", "main", "run_subcommand"]

#: name → ``"module:function"``; the function takes the arguments after the name.
SUBCOMMANDS: dict[str, str] = {
    "kubeconfig": "clustergateway.cli.kubeconfig:main",
    "join": "clustergateway.cli.join:join",
    "detach": "clustergateway.cli.join:detach",
    "patch": "clustergateway.cli.patch:main",
}


def run_subcommand(args: Sequence[str]) -> None:
    """Run the subcommand ``args[0]`` names, if it names one; return otherwise.

    A subcommand's ``main`` exits (``SystemExit``) with its status; one that
    returns is taken as success.
    """
    if not args or args[0] not in SUBCOMMANDS:
        return
    module_name, _, function_name = SUBCOMMANDS[args[0]].partition(":")
    module = importlib.import_module(module_name)
    entry = cast(Callable[[Sequence[str]], "int | None | NoReturn"], getattr(module, function_name))
    status = entry(list(args[1:]))
    raise SystemExit(status or 0)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``cluster-gateway`` console script: a subcommand, else the gateway itself.

    Subcommands are dispatched before the gateway's modules are imported, so
    ``cluster-gateway patch`` (a Job in the install) starts in a fraction of the
    time ``clustergateway.tap`` takes to import.
    """
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    run_subcommand(args)
    from clustergateway.tap import main as serve

    serve(args)
