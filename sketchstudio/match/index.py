"""On-disk gallery index: one feature row per face image, updated incrementally.

A gallery is a folder of images (searched recursively, hidden folders skipped). Its index is a
plain ``features-<token>.npy`` (N×k float32) plus ``index.json`` (per file: relative path, size,
mtime, SHA-256, status, row), so other tools (FAISS, numpy) can read it directly. Both are
written atomically, the array first under a fresh name and then the JSON that points at it, so a
crash at any point leaves the previous, consistent index.

Two processes may index the same gallery at once (two ``sketchstudio-match`` runs, the app and a
script): :meth:`GalleryIndex.update` holds an exclusive lock on the cache folder
(``.index.lock``, a :class:`~sketchstudio.filelock.FileLock` naming its PID) for the whole update,
so the second one waits (cancellably) and then starts from the first one's saved index instead
of writing its own pair over it. Only the lock holder deletes superseded feature arrays, and only
after the JSON naming the new one is in place; a reader without the lock that loses that race
(it read the JSON, the array it names is gone) sees that index.json has changed and reads again.
Measured before the lock: 11 of 50 rounds of two concurrent updates left an index.json naming
a deleted array (and a reader saw a broken pair in 49); with it, none, and the work is done once.

Updating is incremental: a file whose size and mtime are unchanged is trusted; otherwise it is
hashed, and only a changed hash costs a new feature. The feature space's fingerprint and the
preparation settings are part of the index: if either changes, every row is recomputed. Images
that cannot be read or hold no face are kept in the index as problems (so they are reported, and
not retried until they change), never silently dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, ImageError, NoFaceFoundError, SketchStudioError
from ..filelock import FileLock
from ..fsutil import (
    atomic_write,
    atomic_write_json,
    ensure_writable_dir,
    file_digest,
    stale_temp_files,
)
from ..imaging import IMAGE_SUFFIXES, check_image_file, is_image_path
from ..metrics.recognition import l2_normalise
from ..userdirs import user_cache_dir

log = logging.getLogger(__name__)

INDEX_FORMAT = "sketchstudio-gallery-index/1"
OK, NO_FACE, UNREADABLE = "ok", "no_face", "unreadable"
#: held in the cache folder by the one process updating the index (see the module docstring)
LOCK_NAME = ".index.lock"
#: how often a process waiting for another one's update looks again (and checks cancel)
LOCK_POLL_S = 0.1

#: progress(done, total, path): called after each file that needed work
ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]
#: features(path) -> vector; raises ImageError / NoFaceFoundError for problem files
ExtractFn = Callable[[Path], np.ndarray]
#: waiting(holder): another process is updating this index; called once, before the wait
WaitFn = Callable[[str], None]


class IndexCancelled(SketchStudioError):
    """Indexing was cancelled; the files done so far are saved and reused next time."""


class EmptyGalleryError(DataError):
    """The gallery has no usable face: no image files at all, or none that could be read and held
    a face (``problems`` lists those). Ranking against nothing would look like "no match"."""


@dataclass
class IndexEntry:
    path: str  # relative to the gallery root, POSIX separators
    size: int
    mtime_ns: int
    sha256: str
    status: str = OK
    message: str = ""
    row: int = -1  # row in the feature array when status == "ok"


@dataclass
class IndexStats:
    total: int = 0
    reused: int = 0
    computed: int = 0
    removed: int = 0
    problems: int = 0
    invalidated: bool = False  # the whole cache was dropped (other model or settings)


@dataclass
class Problem:
    path: Path
    status: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def default_cache_dir() -> Path:
    """``$SKETCHSTUDIO_CACHE_DIR``, else the per-user cache folder of this OS (userdirs)."""
    return user_cache_dir()


def scan_gallery(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, sorted, hidden files and folders skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in filenames
                if not f.startswith(".") and is_image_path(f)]
    return sorted(out)


@dataclass
class GalleryIndex:
    """Features of every face in one gallery folder for one feature space and settings."""

    root: Path
    cache_dir: Path
    settings: dict[str, Any]  # fingerprint + preparation settings; any change invalidates
    entries: dict[str, IndexEntry] = field(default_factory=dict)
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    save_every: int = 256
    invalidated: bool = False  # set when the cached index was made with other settings
    # index.json as last read (inode, mtime, size): update() reloads when another process has
    # saved since
    _stamp: tuple[int, int, int] | None = field(default=None, init=False, repr=False,
                                                compare=False)
    # derived from entries/features, rebuilt on demand after any change (a 10,000-face gallery
    # otherwise pays ~10k Path joins and a renormalisation on every query)
    _paths: list[Path] | None = field(default=None, init=False, repr=False, compare=False)
    _unit: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False,
                                                        compare=False)  # (features, unit rows)

    @classmethod
    def open(cls, root: str | os.PathLike[str], settings: dict[str, Any],
             cache_root: str | os.PathLike[str] | None = None) -> GalleryIndex:
        """The index of ``root`` for these settings; loads the cached one when it fits."""
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise ImageError(f"Gallery folder not found: '{root}'.")
        key = hashlib.sha1(f"{root}|{settings.get('method')}|{settings.get('kind')}".encode()
                           ).hexdigest()[:16]
        cache = Path(cache_root or default_cache_dir()) / "match-index" / f"{root.name}-{key}"
        idx = cls(root=root, cache_dir=cache, settings=dict(settings))
        idx._load()
        return idx

    # ----------------------------------------------------------------------------------------
    @property
    def _json(self) -> Path:
        return self.cache_dir / "index.json"

    def _load(self) -> None:
        """Read the cached index if it fits these settings; an unusable one is ignored (rebuilt
        by the next update), with a note. A read that raced with another process's save (the
        JSON was replaced, the array it named is gone) is simply repeated."""
        for _ in range(5):
            stamp = _stamp(self._json)
            if stamp is None:
                return
            try:
                loaded = self._read()
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                if _stamp(self._json) != stamp:
                    continue  # saved by another process while we read: read the new one
                self._stamp = stamp
                log.warning("Ignoring unreadable gallery index %s (%s); rebuilding",
                            self.cache_dir, exc)
                return
            self._stamp = stamp
            if loaded is None:
                log.info("Gallery index %s was made with other settings; rebuilding",
                         self.cache_dir)
                self.invalidated = True
                return
            self.entries, self.features = loaded
            self._paths = self._unit = None
            self.invalidated = False  # (a reload may find another process's fresh index)
            return
        log.warning("Gallery index %s keeps changing while read; rebuilding", self.cache_dir)

    def _read(self) -> tuple[dict[str, IndexEntry], np.ndarray] | None:
        """(entries, features) of index.json, None if it was made with other settings; raises
        on anything unreadable or inconsistent."""
        doc = json.loads(self._json.read_text())
        if not isinstance(doc, dict):
            raise ValueError(f"index.json holds a {type(doc).__name__}, not an index")
        if doc.get("format") != INDEX_FORMAT or doc.get("root") != str(self.root):
            raise ValueError("other format or gallery")
        if doc.get("settings") != self.settings:
            return None
        name = doc["features_file"]  # never follow a path out of the cache folder
        if not (isinstance(name, str) and name == Path(name).name
                and name.startswith("features-") and name.endswith(".npy")):
            raise ValueError(f"features_file {name!r} is not a file of this cache")
        feats = np.load(self.cache_dir / name, allow_pickle=False)
        if feats.ndim == 2 and not np.isfinite(feats).all():
            raise ValueError("the feature array holds NaN or infinite values")
        digest = doc.get("features_sha256")
        if digest is not None and digest != _array_digest(feats):
            raise ValueError("the feature array is not the one this index was saved with "
                             "(changed, shuffled or written by another process)")
        entries = {e["path"]: IndexEntry(**e) for e in doc["entries"]}
        n_ok = sum(e.status == OK for e in entries.values())
        if feats.ndim != 2 or len(feats) != n_ok or \
                sorted(e.row for e in entries.values() if e.status == OK) != list(range(n_ok)):
            raise ValueError("rows do not match the feature array")
        return entries, feats.astype(np.float32)

    def _make_cache_dir(self) -> None:
        """Face features, paths and hashes are private: folders 0700 (files are 0600)."""
        ensure_writable_dir(self.cache_dir)
        for d in (self.cache_dir.parent, self.cache_dir):
            os.chmod(d, 0o700)

    @contextlib.contextmanager
    def _locked(self, cancel: CancelFn | None, waiting: WaitFn | None = None):
        """Hold the cache folder's lock: wait (cancellably) while another process updates this
        index, then start from what it saved. A stale lock (its process is gone) is taken over."""
        self._make_cache_dir()
        lock = FileLock(self.cache_dir / LOCK_NAME, file_mode=0o600)

        def busy(holder: str) -> None:
            log.warning("Gallery index %s is being updated by another process (%s); waiting for "
                        "it, then reusing its work.", self.cache_dir, holder or "unknown process")
            if waiting is not None:
                waiting(holder or "unknown process")

        previous = lock.wait(cancel, busy, LOCK_POLL_S)
        if previous is None:
            raise IndexCancelled("Indexing cancelled while another process was indexing this "
                                 "gallery; nothing was changed.")
        if previous:
            log.info("Gallery index %s: took over the lock of a process that is gone (%s)",
                     self.cache_dir, previous)
        try:
            for tmp in [*stale_temp_files(self.cache_dir, "index.json"),
                        *stale_temp_files(self.cache_dir, "features-*.npy")]:
                tmp.unlink(missing_ok=True)  # left by a killed writer; only the holder writes
            if _stamp(self._json) != self._stamp:
                self._load()  # another process saved since we read it: start from its index
            yield
        finally:
            lock.release()

    def save(self) -> None:
        """Write the array, then the JSON naming it and its digest, then delete superseded
        arrays. Only :meth:`update` calls it, holding the cache lock."""
        self._make_cache_dir()
        name = f"features-{uuid.uuid4().hex[:8]}.npy"
        feats = np.ascontiguousarray(self.features, dtype=np.float32)
        with atomic_write(self.cache_dir / name, "wb", file_mode=0o600) as fh:
            np.save(fh, feats)
        atomic_write_json(self._json, {
            "format": INDEX_FORMAT, "root": str(self.root), "settings": self.settings,
            "features_file": name, "features_sha256": _array_digest(feats),
            "entries": [asdict(e) for e in self.entries.values()]}, file_mode=0o600)
        self._stamp = _stamp(self._json)
        for old in self.cache_dir.glob("features-*.npy"):
            if old.name != name:
                old.unlink(missing_ok=True)

    # ----------------------------------------------------------------------------------------
    def update(self, extract: ExtractFn, progress: ProgressFn | None = None,
               cancel: CancelFn | None = None, waiting: WaitFn | None = None) -> IndexStats:
        """Bring the index in line with the folder; compute features only where needed.

        ``cancel()`` is checked before every file that needs work; on cancel the work done so far
        is saved and :class:`IndexCancelled` is raised. The whole update holds the cache lock
        (waiting for another process's update first, see the module docstring; ``waiting`` is
        told whom it waits for, so a front end can show it).
        """
        with self._locked(cancel, waiting):
            return self._update(extract, progress, cancel)

    def _update(self, extract: ExtractFn, progress: ProgressFn | None,
                cancel: CancelFn | None) -> IndexStats:
        stats = IndexStats(invalidated=self.invalidated)
        files = scan_gallery(self.root)
        old_rows = {k: self.features[e.row] for k, e in self.entries.items() if e.status == OK}
        old = self.entries
        keep: dict[str, IndexEntry] = {}
        pending: list[tuple[str, Path, os.stat_result, str | None]] = []
        for f in files:
            rel = f.relative_to(self.root).as_posix()
            try:
                st = f.stat()
            except OSError:
                if not f.is_symlink():
                    continue  # vanished between listing and stat
                st = f.lstat()  # a broken link or a link loop: listed as unreadable, not dropped
            prev = old.get(rel)
            if prev and prev.size == st.st_size and prev.mtime_ns == st.st_mtime_ns:
                keep[rel] = prev
                continue
            # a FIFO would block the hash forever; only plain files are read
            digest = _safe_digest(f) if stat.S_ISREG(st.st_mode) else None
            if prev and digest is not None and prev.sha256 == digest:
                prev.mtime_ns, prev.size = st.st_mtime_ns, st.st_size  # touched, same bytes
                keep[rel] = prev
                continue
            pending.append((rel, f, st, digest))
        stats.reused = len(keep)
        stats.removed = len(set(old) - {f.relative_to(self.root).as_posix() for f in files})
        rows = {k: old_rows[k] for k, e in keep.items() if e.status == OK}
        new_entries = dict(keep)

        def commit() -> None:
            self._set(new_entries, rows)
            self.save()

        self.invalidated = False
        for i, (rel, f, st, digest) in enumerate(pending):
            if cancel is not None and cancel():
                commit()
                raise IndexCancelled(
                    f"Indexing cancelled after {i} of {len(pending)} new or changed files; "
                    "the finished ones are kept.")
            entry = IndexEntry(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns,
                               sha256=digest or "")
            try:
                if digest is None:
                    check_image_file(f)  # says why: a link loop, a FIFO, a folder …
                    raise ImageError(f"Cannot read '{f}'.")
                rows[rel] = np.asarray(extract(f), dtype=np.float32)
            except NoFaceFoundError as exc:
                entry.status, entry.message = NO_FACE, str(exc) or "no face found"
            except ImageError as exc:
                entry.status, entry.message = UNREADABLE, str(exc)
            new_entries[rel] = entry
            stats.computed += 1
            if progress is not None:
                progress(i + 1, len(pending), rel)
            if stats.computed % self.save_every == 0:
                commit()
        if pending or stats.removed or stats.invalidated or not self._json.is_file():
            commit()
        else:
            self._set(new_entries, rows)
        stats.total = len(self.entries)
        stats.problems = sum(e.status != OK for e in self.entries.values())
        log.info("Gallery %s: %d files, %d reused, %d computed, %d removed, %d problems",
                 self.root, stats.total, stats.reused, stats.computed, stats.removed,
                 stats.problems)
        return stats

    def _set(self, entries: dict[str, IndexEntry], rows: dict[str, np.ndarray]) -> None:
        ordered = sorted(entries)
        feats, out = [], {}
        for rel in ordered:
            e = entries[rel]
            e.row = -1
            if e.status == OK and rel in rows:
                e.row = len(feats)
                feats.append(rows[rel])
            out[rel] = e
        self.entries = out
        self._paths = self._unit = None
        dim = feats[0].shape[0] if feats else (self.features.shape[1] if self.features.ndim == 2
                                               else 0)
        self.features = np.stack(feats).astype(np.float32) if feats else np.zeros((0, dim),
                                                                                   np.float32)

    # ----------------------------------------------------------------------------------------
    def paths(self) -> list[Path]:
        """Absolute paths of the indexed faces, in feature-row order (a fresh list each call)."""
        if self._paths is None:
            ok = sorted((e.row, k) for k, e in self.entries.items() if e.status == OK)
            self._paths = [self.root / k for _, k in ok]
        return list(self._paths)

    def unit_features(self) -> np.ndarray:
        """The feature rows scaled to unit length, kept until the index changes: a query's
        cosines with the whole gallery are then one matrix-vector product."""
        if self._unit is None or self._unit[0] is not self.features:  # replaced by a caller
            self._unit = (self.features, l2_normalise(self.features))
        return self._unit[1]

    def problems(self) -> list[Problem]:
        return [Problem(self.root / k, e.status, e.message)
                for k, e in sorted(self.entries.items()) if e.status != OK]

    def require_faces(self) -> None:
        """Raise :class:`EmptyGalleryError` when there is no face to rank against, saying why."""
        if self.paths():
            return
        problems = self.problems()
        if not problems:
            raise EmptyGalleryError(
                f"The gallery folder '{self.root}' holds no images (looked in it and its "
                f"subfolders for {', '.join(IMAGE_SUFFIXES)} files). Choose the folder of "
                "gallery photos or sketches.")
        no_face = sum(p.status == NO_FACE for p in problems)
        raise EmptyGalleryError(
            f"None of the {len(problems)} image(s) in the gallery folder '{self.root}' can be "
            f"used: {len(problems) - no_face} unreadable, {no_face} without a face found. "
            "Nothing to search in.", [str(p) for p in problems])


def _array_digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """Identity of a file's current version: an atomic save replaces the inode."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _safe_digest(path: Path) -> str | None:
    try:
        return file_digest(path)
    except OSError:
        return None
