"""Exclusive file locks that say who holds them: one writer per run folder or gallery cache.

Two processes writing the same files (two ``sketchstudio-train`` into one ``--out``, two
``sketchstudio-match`` indexing one gallery) mixed one's files with the other's. A
:class:`FileLock` is an ``flock`` on a small lock file, so the kernel drops it when its process
dies, however it dies; the holder writes its PID, host and start time into the file so a refusal
(or a wait) can name it. A lock file whose process is gone is not locked and is simply taken over,
and the caller is told whose it was (the "stale lock" case).

The lock is advisory and local: on Windows (no ``fcntl``) and on file systems without ``flock``
(some network mounts) :meth:`FileLock.acquire` logs a warning and the caller runs unlocked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from .errors import SketchStudioError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; nothing is locked there
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


class LockBusyError(SketchStudioError):
    """Another live process holds the lock; ``holder`` is what it wrote into the lock file."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"'{path}' is locked by another process ({holder or 'unknown process'}).")
        self.path, self.holder = path, holder


class FileLock:
    """An exclusive ``flock`` on ``path`` for as long as it is held (not re-entrant)."""

    def __init__(self, path: str | os.PathLike[str], file_mode: int = 0o644) -> None:
        self.path = Path(path)
        self.file_mode = file_mode
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> str:
        """Take the lock now or raise :class:`LockBusyError`.

        Returns what a dead holder had written into the lock file ("" for a fresh lock), so the
        caller can say that it took over a stale lock.
        """
        if fcntl is None:  # pragma: no cover
            return ""
        for _ in range(5):  # the holder may unlink the file between our open and our flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self.file_mode)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise LockBusyError(self.path, holder) from None
            except OSError:  # a file system without flock: run unlocked, as on Windows
                os.close(fd)
                log.warning("Cannot lock '%s'; make sure no other process writes there.", self.path)
                return ""
            if _same_inode(fd, self.path):
                break
            os.close(fd)
        else:  # pragma: no cover - someone keeps replacing the file
            raise SketchStudioError(f"Cannot lock '{self.path}': it keeps changing.")
        previous = _read(fd)
        with contextlib.suppress(OSError):  # the flock is the lock; the name is a courtesy that a
            os.ftruncate(fd, 0)  # full disk may refuse (the caller's own write then says so)
            os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}, since "
                          f"{datetime.now(UTC).isoformat(timespec='seconds')}\n".encode(), 0)
        self._fd = fd
        return previous

    def wait(self, cancel: Callable[[], bool] | None = None,
             on_busy: Callable[[str], None] | None = None, poll_s: float = 0.1) -> str | None:
        """Take the lock, waiting while another process holds it.

        ``on_busy(holder)`` is called once when the wait starts (to tell the user whom we wait
        for); ``cancel()`` is checked every ``poll_s`` seconds and, when true, the wait ends
        without the lock and None is returned. Otherwise returns what :meth:`acquire` returns.
        """
        told = False
        while True:
            try:
                return self.acquire()
            except LockBusyError as exc:
                if not told and on_busy is not None:
                    on_busy(exc.holder)
                told = True
            if cancel is not None and cancel():
                return None
            time.sleep(poll_s)

    def release(self) -> None:
        """Drop the lock and remove its file (idempotent). The file goes first, while still
        locked, so a process that opened it in between sees a different inode and retries."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_inode(fd, self.path):
                self.path.unlink()
        os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 500, 0).decode("utf-8", "replace").strip()
    return ""


def _same_inode(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), path.stat()
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
