"""Atomic file writes: a crash or kill never leaves a half-written file behind.

Everything SketchStudio writes (images, checkpoints, JSON) goes through :func:`atomic_write`,
which writes to a temporary file in the destination folder and renames it into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputError


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and check that files can be created in it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create output folder '{p}': {exc.strerror or exc}") from exc
    if not p.is_dir():
        raise OutputError(f"Output path '{p}' exists and is not a folder.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file next to ``path``; on success fsync and rename it over ``path``."""
    dest = Path(path)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"Output folder '{parent}' does not exist.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"Cannot write to '{parent}': {exc.strerror or exc}") from exc
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give files the usual mode
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")
