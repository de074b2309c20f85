"""Find the eye centres of the largest face: dlib first, then fallbacks, then a clear refusal.

Order of attempts (the first plausible face wins):

1. ``dlib`` — HOG frontal face detector on the image (upsample 0, then 1 for small faces) and the
   5-point landmark model; eye centre = mean of the eye's two corner points.
2. ``dlib-equalized`` — the same on a histogram-equalised grey copy, then on a blurred and
   equalised one: faint pencil sketches and line drawings have weak gradients, which
   equalising restores and blurring turns from thin lines into shading HOG can see.
3. ``haar`` — OpenCV's Haar eye cascades inside a face box (from OpenCV's face cascade, or a
   dlib box whose landmarks looked wrong).
4. :class:`~sketchstudio.errors.NoFaceFoundError`, whose message asks for the eye positions.

Precision: dlib returns landmarks as integer pixels. The predictor is therefore run on a chip
resampled so the face box is :data:`CHIP_FACE_WIDTH` pixels wide, which gives sub-pixel
positions for small faces and bounds the work for huge ones. The 5-point model's eye-corner
mean also sits systematically lower than the eye centres of the CUFS convention (by about 3.4 %
of the eye distance); :data:`EYE_CORRECTION` removes that bias. It was measured on the CUFS
*train* photos with ``python -m research.alignment_eval --calibrate`` and is expressed in
the frame of the detected eyes, so it holds at any scale and rotation (docs/alignment_eval.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from sketchstudio.errors import ConfigError, NoFaceFoundError
from sketchstudio.imaging import check_rgb, resize

from . import haar
from .geometry import Eyes, order_eyes
from .models import DlibModels, DlibUnavailable, get_dlib

log = logging.getLogger(__name__)

KINDS = ("photo", "sketch")
#: Detection runs on a copy whose longer side is at most this. dlib finds faces from ~80 px
#: wide, so at 800 px a face a tenth of a 2000×1500 photo's width is still found directly, and
#: the upsample-1 retry reaches faces half that size, for a sixth of the full-size HOG work.
#: Landmarks always use the full-resolution image.
DETECT_MAX_SIDE = 800
#: Face-box width of the chip the landmark model runs on (see the module docstring).
CHIP_FACE_WIDTH = 400
#: Per eye (left, right): (along, across) offsets in units of the detected eye vector u = R − L
#: and its perpendicular v (pointing down the face). Measured on CUFS train photos.
EYE_CORRECTION: tuple[tuple[float, float], tuple[float, float]] = ((0.0042, -0.0333), (0.0020, -0.0346))

Box = tuple[float, float, float, float]  # left, top, right, bottom in original pixels


@dataclass
class Detection:
    eyes: Eyes
    landmarks: np.ndarray | None
    n_faces: int
    method: str


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"Unknown image kind '{kind}'; use 'photo' or 'sketch'.")
    return kind


def correct_eyes(raw: Eyes, correction: tuple[tuple[float, float], tuple[float, float]]
                 = EYE_CORRECTION) -> Eyes:
    """Move dlib's eye-corner means to the CUFS eye centres (see the module docstring)."""
    (lx, ly), (rx, ry) = raw
    ux, uy = rx - lx, ry - ly
    vx, vy = -uy, ux
    (al, bl), (ar, br) = correction
    return ((lx + al * ux + bl * vx, ly + al * uy + bl * vy),
            (rx + ar * ux + br * vx, ry + ar * uy + br * vy))


def eyes_from_landmarks(pts: np.ndarray) -> Eyes:
    """Eye centres (left, right by image x) from the 5-point model: mean of each eye's corners."""
    a, b = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)
    return order_eyes(a, b)


def plausible(pts: np.ndarray, box: Box) -> bool:
    """Reject landmark sets that cannot be a frontal face (detector false positives).

    On CUFS the eye distance is 0.34-0.50 of dlib's box width and the nose tip lies 0.55-1.0 eye
    distances below the eye line; the bounds here are generous around those.
    """
    (lx, ly), (rx, ry) = eyes_from_landmarks(pts)
    d = math.hypot(rx - lx, ry - ly)
    bw = box[2] - box[0]
    if bw <= 0 or not (0.25 <= d / bw <= 0.7):
        return False
    ux, uy = (rx - lx) / d, (ry - ly) / d
    nx, ny = pts[4, 0] - (lx + rx) / 2, pts[4, 1] - (ly + ry) / 2
    drop = (nx * -uy + ny * ux) / d  # along v = perp(u), "down" the face
    side = abs(nx * ux + ny * uy) / d
    return 0.35 <= drop <= 1.4 and side <= 0.6


def _to_gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _variants(img: np.ndarray) -> Iterator[tuple[str, np.ndarray, tuple[int, ...]]]:
    """(method, image, upsample levels) to try, cheapest and most faithful first.

    Built lazily: most photos never need the second. The blurred copy is not upsampled: blur
    has already removed the detail a small face would need, so that would only cost time.
    """
    yield "dlib", img, (0, 1)
    gray = _to_gray(img)
    yield "dlib-equalized", cv2.equalizeHist(gray), (0, 1)
    sigma = 1.5 * max(1.0, max(gray.shape) / 800.0)
    yield "dlib-equalized", cv2.equalizeHist(cv2.GaussianBlur(gray, (0, 0), sigma)), (0,)


def _downscaled(img: np.ndarray) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    f = min(1.0, DETECT_MAX_SIDE / max(h, w))
    if f >= 1.0:
        return img, 1.0
    return resize(img, max(1, round(w * f)), max(1, round(h * f))), f


def _dlib_boxes(models: DlibModels, img: np.ndarray, upsample: int) -> list[Box]:
    """Face boxes in ``img``'s coordinates, largest first."""
    small, f = _downscaled(img)
    with models.lock:
        rects, scores, _ = models.detector.run(np.ascontiguousarray(small), upsample, 0.0)
    boxes = [(r.left() / f, r.top() / f, (r.right() + 1) / f, (r.bottom() + 1) / f) for r in rects]
    if boxes:
        log.debug("dlib (upsample %d): %d face(s), scores %s", upsample, len(boxes),
                  [round(float(s), 2) for s in scores])
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def _crop_padded(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    h, w = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    roi = img[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
    if any(pads):
        roi = cv2.copyMakeBorder(roi, *pads, borderType=cv2.BORDER_REPLICATE)
    return roi


def landmarks_in_box(models: DlibModels, img: np.ndarray, box: Box) -> np.ndarray:
    """5-point landmarks (5, 2) in ``img`` coordinates, sub-pixel via a rescaled chip."""
    import dlib

    left, top, right, bottom = box
    bw, bh = right - left, bottom - top
    x0, y0 = math.floor(left - 0.5 * bw), math.floor(top - 0.5 * bh)
    x1, y1 = math.ceil(right + 0.5 * bw), math.ceil(bottom + 0.5 * bh)
    k = CHIP_FACE_WIDTH / bw
    tw, th = max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k))
    kx, ky = tw / (x1 - x0), th / (y1 - y0)
    chip = np.ascontiguousarray(resize(_crop_padded(img, x0, y0, x1, y1), tw, th))

    def to_chip(v: float, origin: int, s: float) -> int:
        return round((v - origin) * s)

    rect = dlib.rectangle(to_chip(left, x0, kx), to_chip(top, y0, ky),
                          to_chip(right, x0, kx) - 1, to_chip(bottom, y0, ky) - 1)
    with models.lock:
        shape = models.predictor(chip, rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    # chip pixel centre c  <->  original coordinate (c + 0.5) / k - 0.5 + origin
    pts[:, 0] = (pts[:, 0] + 0.5) / kx - 0.5 + x0
    pts[:, 1] = (pts[:, 1] + 0.5) / ky - 0.5 + y0
    return pts


def _try_dlib(models: DlibModels, img: np.ndarray, rejected: list[Box]) -> Detection | None:
    for method, variant, levels in _variants(img):
        for upsample in levels:
            boxes = _dlib_boxes(models, variant, upsample)
            for box in boxes:
                pts = landmarks_in_box(models, variant, box)
                if plausible(pts, box):
                    eyes = correct_eyes(eyes_from_landmarks(pts))
                    return Detection(eyes, pts, len(boxes), method)
                rejected.append(box)
            if boxes:
                log.debug("%s: %d box(es) rejected as implausible", method, len(boxes))
    return None


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)


def _try_haar(img: np.ndarray, extra_boxes: list[Box]) -> Detection | None:
    why_not = haar.available()
    if why_not:
        log.debug("Haar fallback skipped: %s", why_not)
        return None
    small, f = _downscaled(img)
    plain = _to_gray(small)
    gray = cv2.equalizeHist(plain)
    boxes = haar.detect_faces(gray)
    boxes += [(round(b[0] * f), round(b[1] * f), round((b[2] - b[0]) * f), round((b[3] - b[1]) * f))
              for b in extra_boxes]
    for box in boxes:
        eyes = haar.eyes_in_face((plain, gray), box)
        if eyes is not None:
            (lx, ly), (rx, ry) = eyes
            scaled = order_eyes(((lx + 0.5) / f - 0.5, (ly + 0.5) / f - 0.5),
                                ((rx + 0.5) / f - 0.5, (ry + 0.5) / f - 0.5))
            return Detection(scaled, None, len(boxes), "haar")
    return None


def detect(image: np.ndarray, kind: str = "photo", landmarks_path: str | None = None) -> Detection:
    """Eyes of the largest plausible face; raises NoFaceFoundError (see the module docstring)."""
    img = check_rgb(image)
    check_kind(kind)
    rejected: list[Box] = []
    why_no_dlib = ""
    try:
        models = get_dlib(landmarks_path)
    except DlibUnavailable as exc:
        why_no_dlib = str(exc)
        _warn_once(f"Face detection without dlib: {exc}")
    else:
        found = _try_dlib(models, img, rejected)
        if found is not None:
            if found.method != "dlib":
                log.info("Face found only after equalising the image (%s)", found.method)
            return found
    found = _try_haar(img, rejected)
    if found is not None:
        log.info("Eyes found by the Haar cascade fallback")
        return found
    raise NoFaceFoundError(no_face_message(kind, why_no_dlib))


def no_face_message(kind: str, why_no_dlib: str = "") -> str:
    what = "sketch" if kind == "sketch" else "photo"
    msg = f"No face found in this {what}"
    if why_no_dlib:
        msg += f" (automatic detection needs dlib: {why_no_dlib}"
        why_no_haar = haar.available()
        msg += f"; the OpenCV fallback is unavailable too: {why_no_haar})" if why_no_haar else ")"
    return msg + (". Give the two eye positions (click the centres of both eyes), or turn "
                  "alignment off for a face crop that is already aligned.")


def detect_eyes(image: np.ndarray, kind: str = "photo", landmarks_path: str | None = None
                ) -> tuple[Eyes, np.ndarray | None, int, str]:
    """(eyes, landmarks or None, number of faces, method); raises NoFaceFoundError."""
    d = detect(image, kind, landmarks_path)
    return d.eyes, d.landmarks, d.n_faces, d.method
