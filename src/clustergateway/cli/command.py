"""What the client subcommands share: one-line errors, the hub's answers, writing files.

A subcommand raises :class:`CommandError` with a message that names the cause
and never a credential; :func:`run` prints it as ``cluster-gateway NAME:
message`` on stderr and returns exit status 1.  :func:`hub_error` turns what the
``kubernetes`` client raised into such a message: the hub's ``Status`` message
(never the request, whose headers carry the token) or why the hub could not
be reached.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CommandError", "hub_error", "run", "write_private_file"]


class CommandError(Exception):
    """A failure to report in one line; nothing has been written."""


def hub_error(error: Exception, doing: str) -> CommandError:
    """``CommandError("<doing>: <why>")`` for an exception of the ``kubernetes`` client."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(error, ApiException):
        message = ""
        try:
            status: Any = json.loads(error.body or "")
            if isinstance(status, dict):
                message = str(status.get("message") or "")
        except (TypeError, ValueError):
            pass
        answer = f"{error.status} {error.reason}".strip() + (f": {message}" if message else "")
        return CommandError(f"{doing}: the hub answered {answer}")
    if isinstance(error, HTTPError):
        reason = getattr(error, "reason", None) or error
        return CommandError(f"{doing}: cannot reach the hub: {type(reason).__name__}: {reason}")
    return CommandError(f"{doing}: {type(error).__name__}: {error}")


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only, atomically (no partial file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run(name: str, body: Callable[[], None]) -> int:
    """Run ``body``; report a :class:`CommandError` as one line on stderr, status 1."""
    try:
        body()
    except CommandError as e:
        print(f"cluster-gateway {name}: {e}", file=sys.stderr)
        return 1
    return 0
