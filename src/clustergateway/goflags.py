"""A Go gateway's command line, rewritten into the form :class:`config.Options` parses.

The charts and the OCM addon-manager that install the Go ``cluster-gateway``
pass arguments the way Go's ``pflag`` reads them, and ``twisted.python.usage``
reads a few of them differently:

- a leading positional ``apiserver`` (the vela-core chart; the Go binary's
  cobra command ignores positional arguments) is dropped;
- booleans take ``--x``, ``--x=true`` or ``--x=false`` (any spelling of Go's
  ``strconv.ParseBool``); the last occurrence wins, as in ``pflag``;
- klog's verbosity as ``-v N``, ``-vN``, ``-v=N``, ``--v N`` or ``--v=N``;
- a flag of the generic Kubernetes apiserver (or of klog) that no install
  passes and this gateway does not implement is refused naming it and why,
  rather than with a bare "not recognized".

:func:`rewrite` is pure: arguments in, arguments out, :class:`GoFlagError`
(naming the flag) for what cannot be taken.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from clustergateway.registry.features import parse_go_bool

__all__ = ["GoFlagError", "UNIMPLEMENTED_FLAGS", "rewrite"]

#: Flags of the Go binary (generic apiserver options minus etcd, and klog's)
#: that no known install passes and that have no meaning here.
UNIMPLEMENTED_FLAGS: frozenset[str] = frozenset(
    {
        "add_dir_header",
        "admission-control-config-file",
        "alsologtostderr",
        "audit-log-batch-buffer-size",
        "audit-log-compress",
        "audit-log-format",
        "audit-log-maxage",
        "audit-log-maxbackup",
        "audit-log-maxsize",
        "audit-log-mode",
        "audit-policy-file",
        "audit-webhook-config-file",
        "audit-webhook-mode",
        "contention-profiling",
        "cors-allowed-origins",
        "debug-socket-path",
        "default-watch-cache-size",
        "delete-collection-workers",
        "disable-admission-plugins",
        "egress-selector-config-file",
        "enable-admission-plugins",
        "enable-garbage-collector",
        "enable-priority-and-fairness",
        "encryption-provider-config",
        "etcd-cafile",
        "etcd-certfile",
        "etcd-keyfile",
        "etcd-prefix",
        "etcd-servers",
        "external-hostname",
        "goaway-chance",
        "http2-max-streams-per-connection",
        "livez-grace-period",
        "log_backtrace_at",
        "log_dir",
        "log_file",
        "log_file_max_size",
        "logtostderr",
        "one_output",
        "permit-address-sharing",
        "permit-port-sharing",
        "profiling",
        "request-timeout",
        "shutdown-send-retry-after",
        "shutdown-watch-termination-grace-period",
        "skip_headers",
        "skip_log_headers",
        "stderrthreshold",
        "storage-backend",
        "storage-media-type",
        "strict-transport-security-directives",
        "tls-sni-cert-key",
        "tracing-config-file",
        "vmodule",
        "watch-cache",
        "watch-cache-sizes",
    }
)

#: The one positional argument a Go install passes: the binary's subcommand name.
_SUBCOMMAND = "apiserver"


class GoFlagError(ValueError):
    """An argument that cannot be taken; ``flag`` names it (without dashes), None
    for a positional argument."""

    def __init__(self, flag: str | None, reason: str) -> None:
        super().__init__(reason)
        self.flag = flag
        self.reason = reason


def rewrite(args: Sequence[str], boolean_flags: Collection[str]) -> list[str]:
    """``args`` as a Go install writes them → arguments for ``usage.Options``.

    ``boolean_flags``: the long names (no dashes) that take no value in
    ``usage.Options``.  Each one that ends up true is emitted once as
    ``--name``, after the others.
    """
    rest = list(args)
    if rest and rest[0] == _SUBCOMMAND:
        rest.pop(0)
    out: list[str] = []
    booleans: dict[str, bool] = {}
    index = 0
    while index < len(rest):
        arg = rest[index]
        index += 1
        if arg == "--":
            out.extend(rest[index - 1 :])
            break
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
            if name in UNIMPLEMENTED_FLAGS:
                raise GoFlagError(
                    name,
                    "a flag of the Go gateway's generic apiserver or logging that this "
                    "gateway does not implement",
                )
            if name in boolean_flags:
                booleans[name] = _go_bool(name, value) if has_value else True
                continue
            out.append(arg)
            if not has_value and index < len(rest):
                out.append(rest[index])  # ``--name value``: the value, verbatim
                index += 1
            continue
        if arg.startswith("-v"):
            # klog's shorthand: -v N, -vN, -v=N (twisted's getopt reads -v=N as "=N").
            value = arg[2:].removeprefix("=")
            if value:
                out.append(f"--v={value}")
            else:
                out.append("--v")
                if index < len(rest):
                    out.append(rest[index])
                    index += 1
            continue
        if arg.startswith("-") and len(arg) > 1:
            out.append(arg)
            continue
        raise GoFlagError(
            None,
            f"unexpected argument {arg!r}: the only positional argument taken is a "
            f"leading {_SUBCOMMAND!r} (the Go image's subcommand)",
        )
    out.extend(f"--{name}" for name, on in booleans.items() if on)
    return out


def _go_bool(name: str, value: str) -> bool:
    try:
        return parse_go_bool(value)
    except ValueError:
        raise GoFlagError(name, f"invalid boolean {value!r} (want true or false)") from None
