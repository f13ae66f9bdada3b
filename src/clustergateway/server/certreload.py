"""Serve a rotated certificate pair from the next connection on, without a restart.

cert-manager, the vela-core chart's certificate Job and the OCM addon-manager
rotate the serving pair by rewriting the files of a mounted Secret (the kubelet
swaps a symlinked directory, so the paths stay and their inodes change).  The
generic Kubernetes apiserver notices and serves the new pair to new
connections; so does :class:`ServingCertReloader`: every ``interval`` seconds a
``LoopingCall`` compares ``stat`` of both files (device, inode, size, mtime,
ctime) with the last look; on a change it reads them (two small files, on the
reactor thread), checks that they parse and match, and hands the new pair to
``on_change`` (``ServerTLS.set_serving``: new options for new handshakes; open
connections keep the context they were accepted with).

A pair that cannot be used (half-written, mismatched, unreadable) is logged
once per change naming the file and the reason, and the previous pair stays
served; the next change of either file is tried again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from clustergateway.server.listen import CertificateError, ServingCert, load_serving_cert

__all__ = ["ServingCertReloader", "files_signature"]

_Stat = tuple[int, int, int, int, int]
_Signature = tuple[_Stat | None, ...]


def files_signature(*paths: Path) -> _Signature:
    """What ``stat`` says about each path (None: cannot be stat'ed); equal when unchanged."""
    signature: list[_Stat | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            signature.append(None)
            continue
        signature.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(signature)


@attrs.define(eq=False)
class ServingCertReloader(Service):
    """Watches ``cert_path``/``key_path`` and passes a changed, usable pair to ``on_change``."""

    clock: Any
    cert_path: Path
    key_path: Path
    #: The pair being served now (what the files held when it was loaded).
    current: ServingCert
    on_change: Callable[[ServingCert], object]
    interval: float = 1.0
    #: The files' signature at the last look; taken when built, right after loading.
    seen: _Signature = attrs.field()
    _loop: LoopingCall | None = attrs.field(default=None, init=False)

    _log: ClassVar[Logger] = Logger()

    @seen.default
    def _now(self) -> _Signature:
        return files_signature(self.cert_path, self.key_path)

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def check(self) -> None:
        """One look: serve the files' pair if they changed and hold a usable, new pair."""
        signature = files_signature(self.cert_path, self.key_path)
        if signature == self.seen:
            return
        self.seen = signature
        try:
            pair = load_serving_cert(self.cert_path, self.key_path)
        except CertificateError as e:
            self._log.error(
                "The serving certificate files changed but cannot be served: {reason}; "
                "still serving the previous pair",
                reason=str(e),
            )
            return
        if (pair.chain_pem, pair.key_pem) == (self.current.chain_pem, self.current.key_pem):
            return
        try:
            self.on_change(pair)
        except ValueError as e:
            self._log.error(
                "The serving certificate in {path} cannot be served: {reason}; "
                "still serving the previous pair",
                path=str(self.cert_path),
                reason=str(e),
            )
            return
        self.current = pair
        self._log.info(
            "Serving the rotated certificate from {path} to new connections",
            path=str(self.cert_path),
        )
