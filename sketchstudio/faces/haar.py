"""Last automatic fallback: OpenCV's bundled Haar cascades (face, then two eyes inside it).

Used when dlib is not installed or finds no face (some line drawings). The cascades ship with
OpenCV 4's wheels (``cv2.data.haarcascades``); OpenCV 5 moved ``CascadeClassifier`` out of the
main package, so there :func:`available` says why this step is skipped instead of failing.
Eye boxes are much less precise than dlib's landmarks, hence the strict plausibility checks: a
wrong pair of "eyes" would give a silently garbage crop, which is worse than asking the user.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .geometry import Eyes, order_eyes

log = logging.getLogger(__name__)

FACE_CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADES = ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")

_lock = threading.Lock()
_loaded: dict[str, Any] = {}
_why_not: str | None = None


def _cascade_class() -> Any | None:
    cls = getattr(cv2, "CascadeClassifier", None)
    if cls is None:  # OpenCV 5 with contrib modules
        cls = getattr(getattr(cv2, "xobjdetect", None), "CascadeClassifier", None)
    return cls


def _cascade_dir() -> Path | None:
    data = getattr(cv2, "data", None)
    folder = getattr(data, "haarcascades", None)
    return Path(folder) if folder else None


def _load() -> dict[str, Any]:
    """Load the cascades once; remember the reason when they cannot be loaded."""
    global _why_not
    with _lock:
        if _loaded or _why_not is not None:
            return _loaded
        cls, folder = _cascade_class(), _cascade_dir()
        if cls is None:
            _why_not = f"OpenCV {cv2.__version__} has no Haar cascade support"
            return _loaded
        names = (FACE_CASCADE, *EYE_CASCADES)
        missing = [n for n in names if folder is None or not (folder / n).is_file()]
        if missing:
            _why_not = f"OpenCV {cv2.__version__} does not ship the Haar cascade files ({missing[0]})"
            return _loaded
        for n in names:
            c = cls(str(folder / n))
            if c.empty():
                _why_not = f"the Haar cascade {n} could not be read"
                _loaded.clear()
                return _loaded
            _loaded[n] = c
        return _loaded


def available() -> str:
    """'' when the Haar fallback works, else why not (shown in the no-face message)."""
    _load()
    return "" if _loaded else (_why_not or "Haar cascades unavailable")


def detect_faces(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal face boxes (x, y, w, h), largest first, on an equalised grey image."""
    c = _load().get(FACE_CASCADE)
    if c is None:
        return []
    min_side = max(24, min(gray.shape[:2]) // 10)
    with _lock:
        boxes = c.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    out = [tuple(int(v) for v in b) for b in (boxes if len(boxes) else [])]
    return sorted(out, key=lambda b: -b[2] * b[3])  # type: ignore[return-value]


def eyes_in_face(grays: Sequence[np.ndarray], box: tuple[int, int, int, int]) -> Eyes | None:
    """The two eye centres inside a face box, or None when no plausible pair is found.

    ``grays`` are versions of the same grey image to try in turn (plain, then equalised: the eye
    cascades miss many pencil-drawn eyes after equalisation, photos sometimes need it). Only the
    upper part of the box is searched, strict detections first, and the pair (one per half of the
    face) whose spacing and tilt look most like a frontal face is kept.
    """
    models = _load()
    x, y, w, h = box
    min_eye = max(8, w // 10)
    for gray in grays:
        top, bottom = max(0, y + int(0.15 * h)), max(0, y + int(0.60 * h))
        roi = gray[top:bottom, max(0, x):max(0, x + w)]
        if roi.size == 0:
            return None
        for min_neighbors in (3, 2):
            centres: list[tuple[float, float]] = []
            for name in EYE_CASCADES:
                c = models.get(name)
                if c is None:
                    continue
                with _lock:
                    found = c.detectMultiScale(roi, scaleFactor=1.05, minNeighbors=min_neighbors,
                                               minSize=(min_eye, min_eye), maxSize=(w // 2, w // 2))
                centres += [(max(0, x) + ex + ew / 2.0, top + ey + eh / 2.0)
                            for ex, ey, ew, eh in (found if len(found) else [])]
            pair = _best_pair(centres, x + w / 2.0, w)
            if pair is not None:
                return pair
    return None


def _best_pair(centres: list[tuple[float, float]], mid_x: float, face_w: float) -> Eyes | None:
    """One centre left of the face's middle, one right, 0.25-0.65 face widths apart, < 20° tilt."""
    best: tuple[float, Eyes] | None = None
    lefts = [c for c in centres if c[0] < mid_x]
    rights = [c for c in centres if c[0] >= mid_x]
    for a in lefts:
        for b in rights:
            d = math.hypot(b[0] - a[0], b[1] - a[1])
            tilt = abs(math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])))
            if not (0.25 * face_w <= d <= 0.65 * face_w) or tilt > 20:
                continue
            # prefer symmetric pairs at the typical spacing (0.42 face widths)
            cost = abs(d / face_w - 0.42) + abs((a[0] + b[0]) / 2 - mid_x) / face_w + tilt / 90
            if best is None or cost < best[0]:
                best = (cost, order_eyes(a, b))
    return None if best is None else best[1]
