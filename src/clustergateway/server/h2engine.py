"""Which engine serves the listener's HTTP/2: libnghttp2 (native) or h2 (python).

The native engine (``fence.h2engine_ngh2``) is the default; it needs the ngh2
wheel built with libnghttp2's per-field header limit raised
(``scripts/ngh2-wheel.sh``), because a stock build fails the whole
connection, every stream on it, on one header field over 64 KiB, which the
pure-Python engine and Go's apiserver accept.  ``auto`` probes the installed
library once at start and keeps the pure-Python engine, with a warning that
says why, when it is not fit; ``native`` refuses to start instead.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger

from clustergateway.config import ConfigError

__all__ = ["choose"]

_log = Logger()


def choose(
    requested: str, header_list_size: int, probe: Callable[[int], str | None] | None = None
) -> str:
    """``native`` or ``python`` for ``--h2-engine=requested`` (``auto``/``native``/``python``).

    ``probe(header_list_size)`` says why libnghttp2 is not fit, or None
    (default: ``fence.h2engine_ngh2.unfit``).
    """
    if requested == "python":
        return "python"
    why = (probe or _probe)(header_list_size)
    if why is None:
        _log.info("HTTP/2 listener on libnghttp2 ({why})", why=_version())
        return "native"
    if requested == "native":
        raise ConfigError("h2-engine", f"native: {why}")
    _log.warn("HTTP/2 listener on the pure-Python engine: {why}", why=why)
    return "python"


def _probe(header_list_size: int) -> str | None:
    try:
        from clustergateway.fence.h2engine_ngh2 import unfit
    except ImportError as error:
        return f"ngh2 cannot be imported: {error}"
    return unfit(header_list_size)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ngh2 {version('ngh2')}"
    except PackageNotFoundError:
        return "ngh2, version unknown"
