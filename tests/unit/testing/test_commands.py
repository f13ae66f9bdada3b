"""The simulated pod's command set, driven without any network."""

from __future__ import annotations

import io
import tarfile

import pytest
from twisted.internet.task import Clock

from clustergateway.testing.commands import (
    CommandEnv,
    CommandNotFound,
    CommandSet,
    PodFilesystem,
    ProcessIO,
    TerminalSize,
    onlcr,
)


class Run:
    """One process with captured output."""

    def __init__(self, argv, *, tty=False, fs=None, clock=None):
        self.clock = clock or Clock()
        self.out = bytearray()
        self.err = bytearray()
        self.codes: list[int] = []
        self.env = CommandEnv(self.clock, fs or PodFilesystem(), hostname="demo", tty=tty)
        self.process = CommandSet().spawn(
            list(argv), ProcessIO(self.out.extend, self.err.extend, self.codes.append), self.env
        )
        self.process.start()

    @property
    def code(self) -> int | None:
        assert len(self.codes) <= 1, "exit reported twice"
        return self.codes[0] if self.codes else None


@pytest.mark.parametrize(
    ("argv", "out", "err", "code"),
    [
        (["echo", "hi", "there"], b"hi there\n", b"", 0),
        (["echo", "-n", "x"], b"x", b"", 0),
        (["/bin/echo"], b"\n", b"", 0),
        (["true"], b"", b"", 0),
        (["false"], b"", b"", 1),
        (["hostname"], b"demo\n", b"", 0),
        (["tty"], b"not a tty\n", b"", 1),
        (["sh", "-c", "exit 3"], b"", b"", 3),
        (["sh", "-c", "exit 300"], b"", b"", 44),
        (["sh", "-c", "echo a; echo b"], b"a\nb\n", b"", 0),
        (["sh", "-c", "false && echo no || echo yes"], b"yes\n", b"", 0),
        (["sh", "-c", "true && exit 5; echo never"], b"", b"", 5),
        (["sh", "-c", "nope"], b"", b"sh: 1: nope: not found\n", 127),
        (["bash", "-c", "echo 'quoted words'"], b"quoted words\n", b"", 0),
        (["sh", "-c", "echo 'unclosed"], b"", b"sh: 1: Syntax error: No closing quotation\n", 2),
        (["sh"], b"", b"sh: only 'sh -c SCRIPT' is supported by the simulated pod\n", 2),
        (["stty", "size"], b"", b"stty: 'standard input': Inappropriate ioctl for device\n", 1),
        (["cat", "/missing"], b"", b"cat: /missing: No such file or directory\n", 1),
        (["sleep", "x"], b"", b"sleep: invalid time interval\n", 1),
    ],
)
def test_commands_that_end_at_once(argv, out, err, code):
    """Each command's output and exit status, as a shell in a container would give them."""
    run = Run(argv)
    assert (bytes(run.out), bytes(run.err), run.code) == (out, err, code)


def test_unknown_executable_is_refused_like_the_runtime():
    """An executable that does not exist cannot be spawned (kubelet reports an exec error)."""
    with pytest.raises(CommandNotFound, match='exec: "nope": executable file not found'):
        Run(["nope"])


def test_cat_copies_stdin_until_it_closes():
    """cat echoes every chunk at once and exits 0 when stdin closes."""
    run = Run(["cat"])
    run.process.stdin(b"one ")
    assert bytes(run.out) == b"one "
    run.process.stdin(b"two")
    assert run.code is None
    run.process.stdin_closed()
    assert (bytes(run.out), run.code) == (b"one two", 0)


def test_shell_runs_cat_then_continues():
    """sh -c 'cat; exit 4': the script waits for cat, then goes on."""
    run = Run(["sh", "-c", "cat; echo done; exit 4"])
    run.process.stdin(b"in\n")
    assert run.code is None
    run.process.stdin_closed()
    assert (bytes(run.out), run.code) == (b"in\ndone\n", 4)


def test_sleep_ends_on_the_clock_and_terminate_cancels():
    """sleep exits after its time; a terminated sleep leaves no timer behind."""
    run = Run(["sleep", "2"])
    run.clock.advance(1.9)
    assert run.code is None
    run.clock.advance(0.2)
    assert run.code == 0
    other = Run(["sh", "-c", "sleep 5; echo late"])
    other.process.terminate()
    assert other.clock.getDelayedCalls() == []
    assert bytes(other.out) == b"" and other.code is None


def test_stty_size_follows_resizes_in_tty_mode():
    """With a terminal, stty size prints rows and columns of the latest resize."""
    first = Run(["stty", "size"], tty=True)
    assert bytes(first.out) == b"24 80\n"
    run = Run(["sh", "-c", "cat; stty size"], tty=True)
    run.process.resize(TerminalSize(width=132, height=43))
    run.process.stdin_closed()
    assert bytes(run.out) == b"43 132\n"
    assert Run(["tty"], tty=True).out == b"/dev/pts/0\n"


def test_onlcr_turns_newlines_into_crlf_once():
    """Terminal output: LF becomes CR LF, an existing CR LF stays one."""
    assert onlcr(b"a\nb\r\nc") == b"a\r\nb\r\nc"


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_tar_extract_then_create_round_trips():
    """kubectl cp: `tar -xmf - -C /tmp` stores files; `tar cf - /tmp/x` gives them back."""
    fs = PodFilesystem()
    run = Run(["tar", "-xmf", "-", "-C", "/tmp"], fs=fs)
    archive = _tar({"x/a.txt": b"alpha", "b.txt": b"beta"})
    run.process.stdin(archive[:100])
    run.process.stdin(archive[100:])
    run.process.stdin_closed()
    assert run.code == 0, bytes(run.err)
    assert fs.files == {"/tmp/x/a.txt": b"alpha", "/tmp/b.txt": b"beta"}
    assert Run(["ls", "/tmp"], fs=fs).out == b"b.txt\nx\n"
    out = Run(["tar", "cf", "-", "/tmp/x"], fs=fs).out
    with tarfile.open(fileobj=io.BytesIO(bytes(out))) as archive:
        names = {m.name: m for m in archive.getmembers()}
        assert set(names) == {"tmp/x", "tmp/x/a.txt"}
        assert archive.extractfile(names["tmp/x/a.txt"]).read() == b"alpha"


def test_tar_never_writes_outside_the_target_directory():
    """Members with ../ cannot escape -C DIR."""
    fs = PodFilesystem()
    run = Run(["tar", "xf", "-", "-C", "/tmp"], fs=fs)
    run.process.stdin(_tar({"../../etc/passwd": b"evil", "ok": b"fine"}))
    run.process.stdin_closed()
    assert fs.files == {"/tmp/ok": b"fine"}


def test_tar_rejects_garbage_and_missing_paths():
    """A broken archive or a missing path is tar's error exit 2, not an exception."""
    run = Run(["tar", "xf", "-"])
    run.process.stdin(b"not a tar archive at all" * 40)
    run.process.stdin_closed()
    assert run.code == 2
    missing = Run(["tar", "cf", "-", "/nope"])
    assert missing.code == 2 and b"Cannot stat" in missing.err
    assert Run(["tar"]).code == 2
