"""The tiny command set that ``kubectl exec`` runs inside a simulated pod.

Exec, attach and ``kubectl cp`` need something to run in the container.  The
simulator has no container, so these few commands are modelled directly, each
as a small object driven by the stream layer (SPDY or WebSocket alike):

- output leaves through :class:`ProcessIO` (``stdout``, ``stderr``, ``exit``);
- input arrives through :meth:`Process.stdin` / :meth:`Process.stdin_closed`;
- terminal resizes through :meth:`Process.resize`; a departed client through
  :meth:`Process.terminate`.

Supported: ``echo [-n] ARGS``, ``cat [FILE...]`` (stdin to stdout until stdin
closes), ``true``, ``false``, ``sleep N``, ``hostname``, ``tty``, ``stty size``,
``ls [PATH...]``, ``tar`` (``x``/``c`` modes for ``kubectl cp``), and
``sh -c SCRIPT`` (also ``bash``, ``/bin/sh``) where SCRIPT is simple commands
joined by ``;``, ``&&`` or ``||`` plus the builtin ``exit [N]``.  Files live in a
per-pod in-memory :class:`PodFilesystem`.
"""

from __future__ import annotations

import io
import posixpath
import re
import shlex
import tarfile
from collections.abc import Callable
from typing import Any, Protocol

import attrs

__all__ = [
    "CommandNotFound",
    "CommandSet",
    "PodFilesystem",
    "Process",
    "CommandEnv",
    "ProcessIO",
    "TerminalSize",
    "onlcr",
]

#: The most a command buffers from stdin before giving up (``tar x`` reads all).
MAX_BUFFERED_STDIN = 64 * 1024 * 1024


class CommandNotFound(Exception):
    """The executable does not exist; the runtime reports it as an exec error."""

    def __init__(self, name: str):
        super().__init__(f'exec: "{name}": executable file not found in $PATH: unknown')
        self.name = name


@attrs.define
class TerminalSize:
    """A terminal's size as kubectl sends it (``{"Width": W, "Height": H}``)."""

    width: int = 80
    height: int = 24


@attrs.frozen
class ProcessIO:
    """Where a running command's output and exit status go."""

    stdout: Callable[[bytes], None]
    stderr: Callable[[bytes], None]
    exit: Callable[[int], None]


def onlcr(data: bytes) -> bytes:
    """What a terminal does to output: LF becomes CR LF."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@attrs.define
class PodFilesystem:
    """The files of one simulated container: absolute path -> content."""

    files: dict[str, bytes] = attrs.field(factory=dict)
    directories: set[str] = attrs.field(factory=lambda: {"/", "/tmp"})

    @staticmethod
    def normalize(path: str, cwd: str = "/") -> str:
        """An absolute, normalised path."""
        return posixpath.normpath(posixpath.join(cwd, path)) if path else cwd

    def write(self, path: str, data: bytes) -> None:
        """Create or replace a file (and its parent directories)."""
        path = self.normalize(path)
        self.files[path] = data
        self.make_dirs(posixpath.dirname(path))

    def make_dirs(self, path: str) -> None:
        """``mkdir -p``."""
        path = self.normalize(path)
        while path not in self.directories:
            self.directories.add(path)
            path = posixpath.dirname(path)

    def is_dir(self, path: str) -> bool:
        return self.normalize(path) in self.directories

    def walk(self, path: str) -> list[str]:
        """Every file and directory at or under ``path``, sorted."""
        path = self.normalize(path)
        prefix = path.rstrip("/") + "/"
        found = [p for p in self.directories if p == path or p.startswith(prefix)]
        found += [p for p in self.files if p == path or p.startswith(prefix)]
        return sorted(found)

    def list_dir(self, path: str) -> list[str]:
        """Names directly inside directory ``path``."""
        path = self.normalize(path)
        names = {
            posixpath.basename(p)
            for p in list(self.files) + list(self.directories)
            if p != path and posixpath.dirname(p) == path
        }
        return sorted(names)


class Process(Protocol):
    """What the stream layer drives."""

    def start(self) -> None: ...
    def stdin(self, data: bytes) -> None: ...
    def stdin_closed(self) -> None: ...
    def resize(self, size: TerminalSize) -> None: ...
    def terminate(self) -> None: ...


@attrs.define
class _Base:
    """Common plumbing: exit exactly once, ignore input by default."""

    io: ProcessIO
    args: list[str]
    env: CommandEnv
    exited: bool = False

    def start(self) -> None:
        raise NotImplementedError

    def stdin(self, data: bytes) -> None:
        return None

    def stdin_closed(self) -> None:
        return None

    def resize(self, size: TerminalSize) -> None:
        self.env.size.width, self.env.size.height = size.width, size.height

    def terminate(self) -> None:
        self.exited = True

    def out(self, text: str | bytes) -> None:
        if not self.exited:
            self.io.stdout(text.encode() if isinstance(text, str) else text)

    def err(self, text: str) -> None:
        if not self.exited:
            self.io.stderr(text.encode())

    def finish(self, code: int) -> None:
        if not self.exited:
            self.exited = True
            self.io.exit(code)


@attrs.define
class CommandEnv:
    """What commands may look at: the pod, its files, the terminal, the clock."""

    reactor: Any  # IReactorTime
    filesystem: PodFilesystem
    hostname: str = "pod"
    tty: bool = False
    size: TerminalSize = attrs.field(factory=TerminalSize)


@attrs.define
class _Echo(_Base):
    def start(self) -> None:
        args = self.args[1:]
        newline = True
        if args[:1] == ["-n"]:
            newline, args = False, args[1:]
        self.out(" ".join(args) + ("\n" if newline else ""))
        self.finish(0)


@attrs.define
class _Constant(_Base):
    def start(self) -> None:
        self.finish(0 if posixpath.basename(self.args[0]) == "true" else 1)


@attrs.define
class _Hostname(_Base):
    def start(self) -> None:
        self.out(self.env.hostname + "\n")
        self.finish(0)


@attrs.define
class _Tty(_Base):
    def start(self) -> None:
        if self.env.tty:
            self.out("/dev/pts/0\n")
            self.finish(0)
        else:
            self.out("not a tty\n")
            self.finish(1)


@attrs.define
class _Stty(_Base):
    def start(self) -> None:
        if not self.env.tty:
            self.err("stty: 'standard input': Inappropriate ioctl for device\n")
            self.finish(1)
        elif self.args[1:] == ["size"]:
            self.out(f"{self.env.size.height} {self.env.size.width}\n")
            self.finish(0)
        else:
            self.out(
                f"speed 38400 baud; rows {self.env.size.height}; columns {self.env.size.width};\n"
            )
            self.finish(0)


@attrs.define
class _Sleep(_Base):
    timer: Any = None  # IDelayedCall

    def start(self) -> None:
        try:
            seconds = float(self.args[1])
            if seconds < 0:
                raise ValueError(seconds)
        except (IndexError, ValueError):
            self.err("sleep: invalid time interval\n")
            self.finish(1)
            return
        self.timer = self.env.reactor.callLater(seconds, self.finish, 0)

    def terminate(self) -> None:
        super().terminate()
        if self.timer is not None and self.timer.active():
            self.timer.cancel()


@attrs.define
class _Cat(_Base):
    def start(self) -> None:
        files = self.args[1:]
        if not files or files == ["-"]:
            return  # copy stdin until it closes
        status = 0
        for name in files:
            path = PodFilesystem.normalize(name)
            if path in self.env.filesystem.files:
                self.out(self.env.filesystem.files[path])
            elif self.env.filesystem.is_dir(path):
                self.err(f"cat: {name}: Is a directory\n")
                status = 1
            else:
                self.err(f"cat: {name}: No such file or directory\n")
                status = 1
        self.finish(status)

    def stdin(self, data: bytes) -> None:
        self.out(data)

    def stdin_closed(self) -> None:
        self.finish(0)


@attrs.define
class _Ls(_Base):
    def start(self) -> None:
        fs = self.env.filesystem
        status = 0
        for name in self.args[1:] or ["/"]:
            path = fs.normalize(name)
            if fs.is_dir(path):
                for entry in fs.list_dir(path):
                    self.out(entry + "\n")
            elif path in fs.files:
                self.out(name + "\n")
            else:
                self.err(f"ls: cannot access '{name}': No such file or directory\n")
                status = 2
        self.finish(status)


@attrs.define
class _Tar(_Base):
    """``tar x`` from stdin (kubectl cp to a pod) and ``tar c`` to stdout (from it)."""

    mode: str = ""
    directory: str = "/"
    paths: list[str] = attrs.field(factory=list)
    received: bytearray = attrs.field(factory=bytearray)

    def start(self) -> None:
        args = self.args[1:]
        letters = ""
        if args and not args[0].startswith("-") and args[0] not in ("-",):
            letters, args = args[0], args[1:]
        rest: list[str] = []
        index = 0
        while index < len(args):
            arg = args[index]
            if arg == "-C" and index + 1 < len(args):
                self.directory = args[index + 1]
                index += 2
                continue
            if arg.startswith("-") and len(arg) > 1 and not arg.startswith("--"):
                letters += arg[1:]
            elif not arg.startswith("--"):
                rest.append(arg)
            index += 1
        if "f" in letters and rest[:1] == ["-"]:
            rest = rest[1:]
        if "x" in letters:
            self.mode = "x"
        elif "c" in letters:
            self.mode = "c"
            self.paths = rest
            self._create()
        else:
            self.err("tar: You must specify one of the '-Acdtrux' options\n")
            self.finish(2)

    def stdin(self, data: bytes) -> None:
        if self.mode != "x" or self.exited:
            return
        if len(self.received) + len(data) > MAX_BUFFERED_STDIN:
            self.err("tar: archive too large for the simulated pod\n")
            self.finish(2)
            return
        self.received += data

    def stdin_closed(self) -> None:
        if self.mode == "x":
            self._extract()

    def _extract(self) -> None:
        fs = self.env.filesystem
        base = fs.normalize(self.directory)
        try:
            with tarfile.open(fileobj=io.BytesIO(bytes(self.received)), mode="r:*") as archive:
                for member in archive.getmembers():
                    target = fs.normalize(member.name.lstrip("/"), base)
                    if not (target == base or target.startswith(base.rstrip("/") + "/")):
                        continue  # never outside the target directory
                    if member.isdir():
                        fs.make_dirs(target)
                    elif member.isfile():
                        extracted = archive.extractfile(member)
                        fs.write(target, extracted.read() if extracted else b"")
        except (tarfile.TarError, EOFError, OSError) as exc:
            self.err(f"tar: {exc}\n")
            self.finish(2)
            return
        self.finish(0)

    def _create(self) -> None:
        fs = self.env.filesystem
        base = fs.normalize(self.directory)
        buffer = io.BytesIO()
        status = 0
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
            for name in self.paths:
                root = fs.normalize(name, base)
                entries = fs.walk(root)
                if not entries:
                    self.err(f"tar: {name}: Cannot stat: No such file or directory\n")
                    status = 2
                    continue
                for path in entries:
                    arcname = posixpath.relpath(path, base).lstrip("/")
                    info = tarfile.TarInfo(arcname)
                    info.mtime = 0
                    if path in fs.files:
                        data = fs.files[path]
                        info.size, info.mode = len(data), 0o644
                        archive.addfile(info, io.BytesIO(data))
                    else:
                        info.type, info.mode = tarfile.DIRTYPE, 0o755
                        archive.addfile(info)
        self.out(buffer.getvalue())
        self.finish(status)


_BUILTINS: dict[str, type[_Base]] = {
    "echo": _Echo,
    "cat": _Cat,
    "true": _Constant,
    "false": _Constant,
    "sleep": _Sleep,
    "hostname": _Hostname,
    "tty": _Tty,
    "stty": _Stty,
    "ls": _Ls,
    "tar": _Tar,
}
_SHELLS = {"sh", "bash", "ash", "dash"}
_SEPARATORS = re.compile(r"(&&|\|\||;|\n)")


@attrs.define
class _Shell(_Base):
    """``sh -c SCRIPT``: simple commands joined by ``;``, ``&&``, ``||``, and ``exit``."""

    steps: list[tuple[str, str]] = attrs.field(factory=list)
    current: Any = None
    status: int = 0
    starting: bool = False

    def start(self) -> None:
        args = self.args[1:]
        if len(args) < 2 or args[0] != "-c":
            self.err("sh: only 'sh -c SCRIPT' is supported by the simulated pod\n")
            self.finish(2)
            return
        pieces = _SEPARATORS.split(args[1])
        joiner = ";"
        for piece in pieces:
            if piece in ("&&", "||", ";", "\n"):
                joiner = piece if piece != "\n" else ";"
            elif piece.strip():
                self.steps.append((joiner, piece.strip()))
        self._next()

    def _next(self) -> None:
        while self.steps and not self.exited:
            joiner, text = self.steps.pop(0)
            if (joiner == "&&" and self.status != 0) or (joiner == "||" and self.status == 0):
                continue
            try:
                argv = shlex.split(text)
            except ValueError as exc:
                self.err(f"sh: 1: Syntax error: {exc}\n")
                self.finish(2)
                return
            if not argv:
                continue
            if argv[0] == "exit":
                try:
                    code = int(argv[1]) if len(argv) > 1 else self.status
                except ValueError:
                    self.err(f"sh: 1: exit: Illegal number: {argv[1]}\n")
                    code = 2
                self.finish(code & 0xFF)
                return
            command = _BUILTINS.get(posixpath.basename(argv[0]))
            if command is None:
                self.err(f"sh: 1: {argv[0]}: not found\n")
                self.status = 127
                continue
            child_io = ProcessIO(self.io.stdout, self.io.stderr, self._child_exited)
            self.current = command(child_io, argv, self.env)
            self.starting = True
            self.current.start()
            self.starting = False
            if self.current is not None:
                return  # still running: _child_exited continues the script
        if not self.exited and self.current is None:
            self.finish(self.status)

    def _child_exited(self, code: int) -> None:
        self.status = code
        self.current = None
        if not self.starting:
            self._next()

    def stdin(self, data: bytes) -> None:
        if self.current is not None:
            self.current.stdin(data)

    def stdin_closed(self) -> None:
        if self.current is not None:
            self.current.stdin_closed()

    def terminate(self) -> None:
        if self.current is not None:
            self.current.terminate()
        super().terminate()


@attrs.define
class CommandSet:
    """Builds the process for an exec request's ``command`` arguments."""

    def spawn(self, argv: list[str], process_io: ProcessIO, env: CommandEnv) -> Process:
        """A process for ``argv``, not yet started; :class:`CommandNotFound` if unknown."""
        if not argv:
            raise CommandNotFound("")
        name = posixpath.basename(argv[0])
        if name in _SHELLS:
            return _Shell(process_io, list(argv), env)
        command = _BUILTINS.get(name)
        if command is None:
            raise CommandNotFound(argv[0])
        return command(process_io, list(argv), env)
