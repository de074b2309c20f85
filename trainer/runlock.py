"""One training run per run folder, and no stale temp files in it.

Two ``sketchstudio-train`` processes writing into the same ``--out`` mixed one run's checkpoint
with the other's loss log and config. :func:`claim_run_folder` takes an exclusive lock on
``<out>/.sketchstudio-train.lock`` (a :class:`sketchstudio.filelock.FileLock`: an ``flock``, so the
kernel drops it when its process dies, however it dies, with the holder's PID, host and start time
in the file, so the refusal can say who holds it). A lock file left by a dead process is simply
taken over, with a note.

Holding the lock also makes it safe to delete the ``.<name>.<random>.tmp`` files that atomic writes
killed mid-way leave behind (33–77 MB each for a checkpoint): nobody else writes in the folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import weakref
from pathlib import Path

from sketchstudio.errors import ConfigError
from sketchstudio.filelock import FileLock, LockBusyError

log = logging.getLogger(__name__)

LOCK_NAME = ".sketchstudio-train.lock"
#: ``atomic_write``'s (and the older ``mkstemp``'s) temp names: ``.<name>.<8 chars>.tmp``
_TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
#: this process's locks by folder: a new Trainer on the same folder in the same process (a GUI
#: rerun, a resume in a test) replaces the earlier one instead of refusing itself
_HELD: dict[str, RunFolderLock] = {}


class RunFolderLock:
    """An exclusive lock on ``folder/LOCK_NAME`` for as long as it is held."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._lock = FileLock(self.path)

    @property
    def held(self) -> bool:
        return self._lock.held

    def acquire(self) -> str | None:
        """Take the lock or raise :class:`ConfigError` naming the run that holds it.

        Returns a note when a lock file of a process that is gone was taken over, else None.
        """
        try:
            previous = self._lock.acquire()
        except LockBusyError as exc:
            raise ConfigError(
                f"'{self.folder}' is in use by another training run ({exc.holder or 'unknown process'}). "
                "Wait for it to finish or stop it, or choose another output folder.") from None
        return (f"took over the lock of a run that is no longer running ({previous})"
                if previous else None)

    def release(self) -> None:
        """Drop the lock and its file (idempotent; also called when the owner is collected)."""
        self._lock.release()
        if _HELD.get(_key(self.folder)) is self:
            del _HELD[_key(self.folder)]


def _key(folder: Path) -> str:
    return os.path.normcase(os.path.realpath(folder))


def remove_stale_temps(folder: Path) -> list[tuple[Path, int]]:
    """Delete the temp files interrupted atomic writes left in ``folder`` (only while locked);
    returns each removed file with its size in bytes."""
    removed = []
    for p in Path(folder).iterdir():
        if _TEMP_RE.match(p.name) and p.is_file() and not p.is_symlink():
            with contextlib.suppress(OSError):
                size = p.stat().st_size
                p.unlink()
                removed.append((p, size))
    return removed


def claim_run_folder(owner: object, folder: str | os.PathLike[str]) -> RunFolderLock:
    """Lock ``folder`` for ``owner`` (a Trainer) and clean its stale temp files.

    The lock is released when ``owner`` is garbage-collected or the process ends, whichever comes
    first; an earlier lock of this same process on the folder is released first.
    """
    folder = Path(folder)
    earlier = _HELD.pop(_key(folder), None)
    if earlier is not None:
        earlier.release()
    lock = RunFolderLock(folder)
    note = lock.acquire()
    if note:
        log.warning("%s: %s", folder, note)
    if lock.held:
        _HELD[_key(folder)] = lock
        weakref.finalize(owner, lock.release)
    removed = remove_stale_temps(folder) if lock.held else []
    if removed:
        mb = sum(size for _, size in removed) / 1e6
        log.warning("%s: removed %d temp file(s) (%.1f MB) left by interrupted writes: %s", folder,
                    len(removed), mb, ", ".join(p.name for p, _ in removed[:3]))
    return lock
