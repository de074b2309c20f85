"""Find the lite companion of a model: its residual blocks narrowed and distilled (trainer.lite).

A lite student is a fast path like an int8 export: it is used only for the model it was made
from, and only where the tuner's parity check against that model's *fp32* output passes. That
link is checked by content, not by name: the companion's ``extra.lite_of`` must be the SHA-256
of the model file, so a retrained model next to an old companion never uses it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..checkpoint import Checkpoint, read_checkpoint
from ..errors import CheckpointError

log = logging.getLogger(__name__)

#: the companion file next to a model: ``kt-cufs.safetensors`` -> ``kt-cufs.lite.safetensors``
LITE_SUFFIX = ".lite.safetensors"


def lite_path_for(model: str | Path) -> Path:
    p = Path(model)
    return p.with_name(p.name.removesuffix(".safetensors") + LITE_SUFFIX)


#: answers per (model file, companion file, their sizes and times, direction): every Tuner asks
#: (one per tuning, and one per thread-count variant), and reading the companion checks all its
#: tensors, so a process reads each companion once while neither file changes
_FOUND: dict[tuple, Checkpoint | None] = {}
_FOUND_LOCK = threading.Lock()


def _stamp(p: Path) -> tuple[str, int, int]:
    st = p.stat()
    return str(p.resolve()), st.st_size, st.st_mtime_ns


def find_lite(ckpt: Checkpoint, direction: str) -> Checkpoint | None:
    """The lite companion of ``ckpt`` for ``direction``, or None (no file, made from another
    model, another image size, or without that direction), with the reason logged."""
    if ckpt.path is None or Path(ckpt.path).name.endswith(LITE_SUFFIX):
        return None
    path = lite_path_for(ckpt.path)
    try:
        key = (_stamp(Path(ckpt.path)), _stamp(path), direction)
    except OSError:  # no companion (or the model file is gone): nothing to remember
        return None
    with _FOUND_LOCK:
        if key in _FOUND:
            return _FOUND[key]
    found = _read_companion(ckpt, path, direction)
    with _FOUND_LOCK:
        _FOUND[key] = found
    return found


def _read_companion(ckpt: Checkpoint, path: Path, direction: str) -> Checkpoint | None:
    from .fastpath import file_sha256

    try:
        lite = read_checkpoint(path)
    except CheckpointError as exc:
        log.warning("ignoring the lite companion %s: %s", path.name, exc)
        return None
    parent = lite.meta.extra.get("lite_of") if isinstance(lite.meta.extra, dict) else None
    why = ("it was made from another model" if parent != file_sha256(ckpt.path) else
           "its image size differs" if lite.meta.image_size != ckpt.meta.image_size else
           f"it has no {direction} network" if direction not in lite.directions else "")
    if why:
        log.info("not using the lite companion %s: %s", path.name, why)
        return None
    return lite
