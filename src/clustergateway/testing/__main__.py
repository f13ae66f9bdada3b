"""Run a simulated cluster by hand: ``python -m clustergateway.testing``.

    python -m clustergateway.testing --listen 127.0.0.1:6443 --token TOKEN --cert-dir DIR \\
        [--kubeconfig PATH] [--kubeconfig-user token|cert] [--name sim]

Writes its PKI into DIR, serves HTTPS, prints one ready line to stdout and
stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["main", "parse_listen"]


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) into ``(host, port)``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, got {value!r}")
    number = int(port)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"--listen port out of range: {number}")
    return host.strip("[]"), number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clustergateway.testing",
        description="A simulated Kubernetes apiserver for tests, benchmarks and demos.",
    )
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 6443),
        help="HOST:PORT to serve HTTPS on (default 127.0.0.1:6443; port 0 = any)",
    )
    parser.add_argument(
        "--token",
        default="sim-token",
        help="bearer token accepted as user sim-admin (system:masters)",
    )
    parser.add_argument(
        "--cert-dir",
        type=Path,
        required=True,
        help="directory for ca.crt, tls.crt/key, client-ca.crt, client.crt/key ...",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="also write a kubeconfig pointing at this cluster",
    )
    parser.add_argument(
        "--kubeconfig-user",
        choices=("token", "cert"),
        default="token",
        help="credential the written kubeconfig uses (default token)",
    )
    parser.add_argument("--name", default="sim", help="cluster name (certificates, kubeconfig)")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds added before every response (a slow cluster; default 0)",
    )
    parser.add_argument("--verbose", action="store_true", help="log to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from clustergateway.testing.server import SimulatedCluster

    if options.verbose:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    host, port = options.listen
    try:
        cluster = SimulatedCluster.create(
            options.cert_dir, options.token, reactor, name=options.name
        )
    except OSError as e:
        print(f"--cert-dir {options.cert_dir}: {e.strerror or e}", file=sys.stderr)
        return 2
    # Nobody reads the request log of a standalone process; do not let it grow.
    cluster.record_requests = False
    cluster.faults.latency = options.latency
    exit_code = [0]

    async def start() -> None:
        await cluster.start(port=port, interface=host)
        if options.kubeconfig is not None:
            cluster.write_kubeconfig(options.kubeconfig, user=options.kubeconfig_user)
        print(f"simulated cluster ready on {cluster.url}", flush=True)

    def failed(failure: Any) -> None:
        print(f"--listen {host}:{port}: {failure.getErrorMessage()}", file=sys.stderr)
        exit_code[0] = 1
        reactor.stop()

    async def shutdown() -> None:
        await cluster.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(start()).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", lambda: ensureDeferred(shutdown()))
    reactor.run()
    return exit_code[0]


if __name__ == "__main__":
    sys.exit(main())
