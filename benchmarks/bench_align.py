"""Face alignment cost: dlib detection + landmarks, the warp, and paste-back, at two image sizes.

Test images are a CUFS photo scaled up and pasted onto a 640×480 (webcam-like, face ~200 px
wide) and a 2000×1500 (phone-like, face ~800 px wide) background; without ../shared/data/cufs
only the face-less worst case (every fallback tried) and the warp with manual eyes are timed.
Run directly for a table, or through ``python -m benchmarks align``.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

CUFS_PHOTO = (Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cufs" / "test"
              / "photos" / "cuhk_f-039-01.jpg")
SIZES = ((640, 480, 1.6), (2000, 1500, 4.0))  # width, height, face scale


def _ms(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _background(w: int, h: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([xx * 200 / w + 30, yy * 180 / h + 40, np.full_like(xx, 110)], -1)
    return bg.astype(np.uint8)


def _scene(face: np.ndarray | None, w: int, h: int, scale: float) -> tuple[np.ndarray, tuple]:
    img = _background(w, h)
    if face is None:
        eyes = ((w / 2 - 40, h / 2), (w / 2 + 40, h / 2))
        return img, eyes
    fw, fh = round(200 * scale), round(250 * scale)
    big = cv2.resize(face, (fw, fh), interpolation=cv2.INTER_CUBIC)
    x0, y0 = (w - fw) // 2, (h - fh) // 2
    img[y0:y0 + fh, x0:x0 + fw] = big
    eyes = ((x0 + 75 * scale, y0 + 125 * scale), (x0 + 125 * scale, y0 + 125 * scale))
    return img, eyes


def run() -> list[dict]:
    from sketchstudio.errors import NoFaceFoundError
    from sketchstudio.faces import align, detect_eyes, dlib_status, paste_back
    from sketchstudio.imaging import load_image

    rows: list[dict] = []
    t0 = time.perf_counter()
    why = dlib_status()
    if not why:
        rows.append({"name": "align: load dlib models (first use)",
                     "ms": (time.perf_counter() - t0) * 1000})
    face = load_image(CUFS_PHOTO) if CUFS_PHOTO.is_file() else None
    note = {"note": why} if why else {}
    for w, h, scale in SIZES:
        img, eyes = _scene(face, w, h, scale)
        tag = f"{w}x{h}"
        if face is not None and not why:
            reps = 10 if w < 1000 else 4
            rows.append({"name": f"align {tag}: detect + landmarks",
                         "ms": _ms(lambda img=img: detect_eyes(img), reps)})
            res = align(img)
            rows.append({"name": f"align {tag}: full align (detect + warp)",
                         "ms": _ms(lambda img=img: align(img), reps), "method": res.method})
            rows.append({"name": f"align {tag}: paste-back",
                         "ms": _ms(lambda img=img, r=res: paste_back(img, r.crop, r.matrix), 10)})
        rows.append({"name": f"align {tag}: warp only (manual eyes)",
                     "ms": _ms(lambda img=img, e=eyes: align(img, eyes=e), 20)})

        def no_face(img: np.ndarray) -> None:
            with contextlib.suppress(NoFaceFoundError):
                align(img)

        empty = _background(w, h)
        rows.append({"name": f"align {tag}: no face (every fallback)",
                     "ms": _ms(lambda e=empty: no_face(e), 2), **note})
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run():
        extra = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("name", "ms"))
        print(f"{row['name']:<48} {row['ms']:>9.1f} ms  {extra}")
