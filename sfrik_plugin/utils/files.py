"""Where results go: checked before the work, never replaced without being asked, written whole.

- ``writable_dir``: the output folder exists (made if needed) and a file can be created in it,
  checked when the command starts rather than after hours of training;
- ``refuse_existing``: a command never replaces results already in place unless its user passed
  ``--overwrite`` (or chose a new name);
- ``atomic_write`` / ``atomic_path``: a file is written under a temporary name beside its target and
  renamed over it, so a reader (or a crash) never sees half a file;
- ``FolderLock``: one process at a time appends to a results folder; a second one is told who holds
  it (pid, host, command, since when).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


class OutputError(SystemExit):
    """An output location that cannot be used: the command stops before any work, with a message
    (printed by Python on exit, status 1) that names the flag and the fix."""


def _cannot_write_in(folder: Path) -> str | None:
    """Why no file can be created in `folder` (made if needed), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        return str(error.strerror or error)
    return None


def writable_dir(path: str | os.PathLike, flag: str, prog: str) -> Path:
    """Makes `path` (and its parents) and checks that a file can be created in it."""
    folder = Path(path)
    why = _cannot_write_in(folder)
    if why is not None:
        raise OutputError(
            f"{prog}: {flag} {str(folder)!r} is not a folder this process can write to ({why}); choose another {flag}"
        )
    return folder


def writable_file(path: str | os.PathLike, flag: str, prog: str) -> Path:
    """Checks that `path` can be written (its folder writable, the path not a folder)."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{prog}: {flag} {str(target)!r} is a folder; give a file name")
    why = _cannot_write_in(target.parent)
    if why is not None:
        raise OutputError(
            f"{prog}: {flag} {str(target)!r}: its folder {str(target.parent)!r} is not one this process can write to "
            f"({why}); choose another {flag}"
        )
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"{prog}: {flag} {str(target)!r} exists and is not writable; choose another {flag}")
    return target


def refuse_existing(
    paths: Iterable[str | os.PathLike], prog: str, where: str = "--out", flag: str = "--overwrite"
) -> None:
    """Stops if any of `paths` exists: results already there are not replaced without `flag`."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        raise OutputError(
            f"{prog}: {', '.join(existing)} already hold(s) results; pass {flag} to replace them, or choose "
            f"another {where}"
        )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` when the block ends without
    an error, removed otherwise."""
    target = Path(path)
    # the suffix kept last: writers that infer the format from it (matplotlib) see the target's
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.tmp-", suffix=target.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the mode open() would give, not mkstemp's private 0600
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """open(path, mode) that replaces `path` in one rename once the block ends, flushed to disk."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


class FolderLock:
    """An exclusive lock on a results folder (flock on <folder>/.lock, released when the process
    ends, however it ends). The lock file names its holder for the message a second process gets."""

    NAME = ".lock"

    def __init__(self, folder: str | os.PathLike, prog: str):
        self.path, self.prog = Path(folder) / self.NAME, prog
        self._file: IO[str] | None = None

    def acquire(self) -> FolderLock:
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise OutputError(
                f"{self.prog}: {self.path.parent} is in use by {holder}; wait for it to end, or use another --out"
            ) from None
        f.seek(0)
        f.truncate()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        f.write(f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)}), since {started}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.truncate(0)
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
