"""Atomic file writes: a crash, a kill or a full disk never leaves a half-written file behind.

Everything SketchStudio writes (images, checkpoints, JSON) goes through :func:`atomic_write`,
which writes to a temporary file in the destination folder and renames it into place. A write
that runs out of space raises :class:`~sketchstudio.errors.DiskFullError` (how much was needed,
how much is free, on which file system) instead of a bare ``OSError``, and the file that was
there before is left untouched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import DiskFullError, OutputError

#: errnos that mean "the file system (or the user's quota) is full"
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
#: temp files are ``.<name>.<random>.tmp`` next to their destination; :func:`stale_temp_files`
#: finds the ones a killed process left behind
TEMP_SUFFIX = ".tmp"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is the OS saying the disk (or quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


def _mount_point(path: Path) -> Path:
    """The mount point holding ``path`` (what a user can look up in ``df``)."""
    p = path.resolve()
    try:
        dev = p.stat().st_dev
        while p.parent != p and p.parent.stat().st_dev == dev:
            p = p.parent
    except OSError:
        pass
    return p


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


def disk_full_error(folder: str | os.PathLike[str], needed: int | None,
                    what: str | None = None) -> DiskFullError:
    """A :class:`DiskFullError` whose message says where, how much is needed and how much is free."""
    folder = Path(folder)
    parts = [f"{_mb(needed)} needed"] if needed else []
    with contextlib.suppress(OSError):
        parts.append(f"{_mb(shutil.disk_usage(folder).free)} free")
    detail = f": {', '.join(parts)}" if parts else ""
    target = f" (writing '{what}')" if what else ""
    return DiskFullError(f"No space left on {_mount_point(folder)}{target}{detail}. Free some space "
                         "there or choose another output folder; nothing was half-written.")


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and check that files can be created in it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(next((q for q in p.parents if q.exists()), Path(".")), None,
                                  str(p)) from exc
        raise OutputError(f"Cannot create output folder '{p}': {exc.strerror or exc}") from exc
    if not p.is_dir():
        raise OutputError(f"Output path '{p}' exists and is not a folder.")
    try:
        fd, probe = _create_temp(p, "write-test", 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(p, None) from exc
        raise OutputError(f"Output folder '{p}' is not writable: {exc.strerror or exc}") from exc
    return p


@contextlib.contextmanager
def output_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """:func:`ensure_writable_dir` for one job's outputs. A folder made for the job and still empty
    when the job ends (normally or by an error) is removed again, so a job that wrote nothing
    leaves no trace; a folder that was there before is always kept."""
    made = not Path(path).exists()
    p = ensure_writable_dir(path)
    try:
        yield p
    finally:
        if made:
            with contextlib.suppress(OSError):  # not empty: the job wrote something, keep it
                p.rmdir()


def _create_temp(parent: Path, name: str, file_mode: int) -> tuple[int, Path]:
    """Create ``parent/.<name>.<random>.tmp`` exclusively with ``file_mode``.

    ``os.open`` applies the process umask itself, so the file gets the usual permissions without
    reading (and briefly changing) the process-wide umask, which raced with other threads.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = parent / f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            return os.open(tmp, flags, file_mode), tmp
        except FileExistsError:
            continue
    raise OutputError(f"Cannot create a temporary file in '{parent}'.")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", file_mode: int = 0o666,
                 size_hint: int | None = None) -> Iterator[IO[Any]]:
    """Open a temp file next to ``path``; on success fsync and rename it over ``path``.

    ``file_mode`` is the permission the file is created with, before the umask (0o600 for private
    data such as the match index). ``size_hint`` (bytes) goes into the message when the disk is full.
    """
    dest = Path(path)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"Output folder '{parent}' does not exist.")
    try:
        fd, tmp = _create_temp(parent, dest.name, file_mode)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(parent, size_hint, str(dest)) from exc
        raise OutputError(f"Cannot write to '{parent}': {exc.strerror or exc}") from exc
    written = 0
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            written = fh.tell()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        if is_disk_full(exc) and not written:
            with contextlib.suppress(OSError):
                written = tmp.stat().st_size
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_disk_full(exc):
            raise disk_full_error(parent, size_hint or written or None, str(dest)) from exc
        if isinstance(exc, OSError) and exc.errno is not None:  # EACCES, EROFS, EIO …: say so
            raise OutputError(f"Cannot write '{dest}': {exc.strerror or exc}") from exc
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, file_mode: int = 0o666) -> None:
    with atomic_write(path, "wb", file_mode=file_mode, size_hint=len(data)) as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, file_mode: int = 0o666) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    with atomic_write(path, "w", file_mode=file_mode, size_hint=len(text.encode())) as fh:
        fh.write(text)


def stale_temp_files(folder: str | os.PathLike[str], name: str) -> list[Path]:
    """Temp files of :func:`atomic_write` for ``folder/name`` (``.<name>.*.tmp``).

    Only a process that owns ``folder`` (e.g. a training run holding its run-folder lock) may
    delete them: another writer's temp file looks the same while it is being written.
    """
    return sorted(p for p in Path(folder).glob(f".{name}.*{TEMP_SUFFIX}") if p.is_file())


def file_digest(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk``-byte blocks so a large model or gallery image
    never sits in memory whole (cache keys: gallery index entries, projection and checkpoint
    fingerprints)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
