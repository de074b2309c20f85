"""Alignment as a training-data transform, with an on-disk cache of aligned crops.

Detection costs ~10-100 ms per image; a custom set of a few thousand unaligned images would pay
that on every run. :class:`CachedAligner` stores each aligned crop as a PNG named by a hash of
the decoded pixels, the image kind and :data:`ALIGN_VERSION`, so a second run (or a resumed one)
reads crops instead of detecting, and a changed file or a changed aligner never hits a stale
entry. Pixels are hashed rather than file bytes because the transform only sees the decoded
image (after EXIF rotation): the key is what alignment actually consumed. Failures are cached as
small ``.noface`` text files, so an unalignable image fails fast with the same message.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from pathlib import Path

import numpy as np

from sketchstudio.errors import ImageError, NoFaceFoundError, OutputError
from sketchstudio.fsutil import atomic_write_bytes, ensure_writable_dir
from sketchstudio.imaging import load_image, save_image

from .alignment import align
from .detect import EYE_CORRECTION
from .geometry import TEMPLATE_SIZE

log = logging.getLogger(__name__)

#: Bump when detection or warping changes, so that old cached crops are not reused.
ALIGN_VERSION = f"1:{EYE_CORRECTION}"
#: Hidden cache folder created next to the training data.
DATA_CACHE_DIR = ".sketchstudio-cache/aligned"
#: Fallback inside the run folder when the data folder is read-only.
RUN_CACHE_DIR = "align-cache"


def align_for_training(img: np.ndarray, kind: str) -> np.ndarray:
    """The aligned 250×200 crop of ``img`` (PairedFolder transform); raises NoFaceFoundError."""
    return align(img, kind=kind).crop


def cache_key(img: np.ndarray, kind: str) -> str:
    h = hashlib.sha256()
    h.update(f"{ALIGN_VERSION}|{kind}|{img.shape}|{img.dtype}|".encode())
    h.update(np.ascontiguousarray(img).data)
    return h.hexdigest()


def choose_cache_dir(data_dir: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> Path:
    """Next to the data (shared by every run on it) if writable, else inside the run folder."""
    data = Path(data_dir)
    candidates = [Path(run_dir) / RUN_CACHE_DIR]
    if _writable_by_intent(data):
        candidates.insert(0, data / DATA_CACHE_DIR)
    for candidate in candidates:
        try:
            return ensure_writable_dir(candidate)
        except OutputError as exc:
            log.info("alignment cache not possible in %s: %s", candidate, exc)
    raise OutputError(f"Cannot create an alignment cache in '{data_dir}' or '{run_dir}'.")


def _writable_by_intent(folder: Path) -> bool:
    """False for folders marked read-only (no write bit at all), even when running as root.

    Root may write anywhere, but a data set whose folders are r-x for everyone was made
    read-only on purpose (a shared copy); the cache then goes to the run folder instead.
    """
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(stat.S_IMODE(mode) & 0o222) and os.access(folder, os.W_OK)


class CachedAligner:
    """``transform(img, kind)`` for PairedFolder that caches aligned crops in ``cache_dir``."""

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.cache_dir = ensure_writable_dir(cache_dir)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def _paths(self, key: str) -> tuple[Path, Path]:
        sub = self.cache_dir / key[:2]
        return sub / f"{key}.png", sub / f"{key}.noface"

    def __call__(self, img: np.ndarray, kind: str) -> np.ndarray:
        key = cache_key(img, kind)
        png, noface = self._paths(key)
        if noface.is_file():
            with self._lock:
                self.hits += 1
            raise NoFaceFoundError(noface.read_text(encoding="utf-8").strip())
        if png.is_file():
            try:
                crop = load_image(png)
            except ImageError as exc:  # a damaged cache entry: recompute it
                log.warning("ignoring broken alignment cache entry %s: %s", png, exc)
            else:
                if crop.shape[:2] == (TEMPLATE_SIZE[1], TEMPLATE_SIZE[0]):
                    with self._lock:
                        self.hits += 1
                    return crop
        with self._lock:
            self.misses += 1
        png.parent.mkdir(parents=True, exist_ok=True)
        try:
            crop = align_for_training(img, kind)
        except NoFaceFoundError as exc:
            atomic_write_bytes(noface, str(exc).encode("utf-8"))
            raise
        save_image(crop, png)
        return crop
