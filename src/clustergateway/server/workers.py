"""``--workers N``: N gateway processes serving one port (twisted-notes §6).

One CPython process uses one core.  With ``--workers N`` the process started
by the user (the *parent*) serves like any other worker and also starts N-1
*children* running the same command line; every process binds its own
listening socket with ``SO_REUSEPORT`` and the kernel spreads new connections
over them.  Chosen over one inherited socket because each process then has
its own accept queue (no thundering herd) and a child needs nothing from the
parent but its command line.

* Children are marked by the ``CLUSTERGATEWAY_WORKER`` environment variable
  (the parent's pid): they do not start children of their own, and they stop
  when the parent is gone (checked every second: ``os.getppid()`` changes).
* The parent restarts a child that exits (after a pause, so a child that
  cannot start does not spin), and on shutdown sends its children SIGTERM
  (SIGKILL after a grace period).
* Each process has its own pools, registry source and metrics (``/metrics``
  shows the worker that answered).

``--secure-port 0`` is refused with ``--workers`` > 1 (each process would get
a different port).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "WORKER_ENV",
    "ReusePortEndpoint",
    "WorkerSupervisor",
    "child_argv",
    "parent_of_worker",
    "watch_parent",
]

#: Set in a child's environment to the parent's pid.
WORKER_ENV = "CLUSTERGATEWAY_WORKER"


def parent_of_worker(environ: Mapping[str, str] | None = None) -> int | None:
    """The parent's pid when this process is a child worker, else None."""
    value = (os.environ if environ is None else environ).get(WORKER_ENV, "")
    return int(value) if value.isdigit() else None


@implementer(IStreamServerEndpoint)
@attrs.frozen
class ReusePortEndpoint:
    """A TCP listening endpoint whose socket has ``SO_REUSEPORT`` (Linux ≥ 3.9).

    Twisted has no option for it: bind the socket ourselves and hand it to
    ``adoptStreamPort`` (which dups the descriptor).
    """

    reactor: Any  # IReactorSocket
    port: int
    interface: str = ""
    backlog: int = 1024

    def listen(self, protocolFactory: Any) -> Deferred[IListeningPort]:  # noqa: N803
        family = socket.AF_INET6 if ":" in self.interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface, self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
            port = self.reactor.adoptStreamPort(sock.fileno(), family, protocolFactory)
        except OSError as e:
            return fail(CannotListenError(self.interface, self.port, e))
        finally:
            sock.close()
        return succeed(port)


class _Child(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        self.supervisor.child_ended(self, reason)
        self.ended.callback(None)


@attrs.define(eq=False)
class WorkerSupervisor:
    """Starts ``count`` children with ``argv`` and keeps them running until :meth:`stop`."""

    reactor: Any
    argv: Sequence[str]
    count: int
    restart_delay: float = 1.0
    kill_after: float = 10.0
    env: Mapping[str, str] = attrs.field(factory=lambda: dict(os.environ))
    _children: dict[int, tuple[_Child, Any]] = attrs.field(factory=dict, init=False)
    _stopping: bool = attrs.field(default=False, init=False)

    _log: ClassVar[Logger] = Logger()

    def start(self) -> None:
        """Start every child (call once the reactor runs)."""
        for index in range(1, self.count + 1):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        if self._stopping:
            return
        env = {**self.env, WORKER_ENV: str(os.getpid())}
        child = _Child(self, index)
        process = self.reactor.spawnProcess(
            child, self.argv[0], list(self.argv), env=env, childFDs={0: 0, 1: 1, 2: 2}
        )
        self._children[index] = (child, process)
        self._log.info("Started worker {index} (pid {pid})", index=index, pid=process.pid)

    def child_ended(self, child: _Child, reason: Failure) -> None:
        current = self._children.get(child.index)
        if current is not None and current[0] is child:
            del self._children[child.index]
        if self._stopping:
            return
        self._log.warn(
            "Worker {index} exited ({why}); restarting it in {delay:g}s",
            index=child.index,
            why=str(reason.value),
            delay=self.restart_delay,
        )
        self.reactor.callLater(self.restart_delay, self._spawn, child.index)

    def pids(self) -> list[int]:
        """The children's pids (for tests and logs)."""
        return [process.pid for _, process in self._children.values() if process.pid]

    def stop(self) -> Deferred[Any]:
        """SIGTERM every child; SIGKILL those still running after ``kill_after`` seconds."""
        self._stopping = True
        waits = []
        for child, process in list(self._children.values()):
            waits.append(child.ended)
            _signal(process, "TERM")
            timer = self.reactor.callLater(self.kill_after, _signal, process, "KILL")
            child.ended.addBoth(_cancel_timer, timer)
        return DeferredList(waits)


def _cancel_timer(result: object, timer: Any) -> object:
    if timer.active():
        timer.cancel()
    return result


def _signal(process: Any, name: str) -> None:
    try:
        process.signalProcess(name)
    except Exception:  # already gone
        pass


def watch_parent(reactor: Any, parent: int, interval: float = 1.0) -> LoopingCall:
    """Stop this (child) process's reactor once ``parent`` is no longer its parent."""

    def check() -> None:
        if os.getppid() != parent:
            Logger().warn("The parent gateway process {pid} is gone: stopping", pid=parent)
            call.stop()
            reactor.stop()

    call = LoopingCall(check)
    call.clock = reactor
    call.start(interval, now=False)
    return call


def child_argv(args: Sequence[str]) -> list[str]:
    """The command line of a child: this interpreter running the console entry point."""
    return [sys.executable, "-c", "from clustergateway.tap import main; main()", *args]
