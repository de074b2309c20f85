"""Warp a face to the CUFS template: eyes at (75,125) and (125,125) of a 200×250 crop.

The networks were trained on CUFS crops, so any photo or sketch must reach them in that geometry.
:func:`align` finds the eyes (or takes the user's), builds the similarity transform and warps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from sketchstudio.imaging import check_rgb

from .detect import check_kind, detect
from .geometry import (
    TEMPLATE_SIZE,
    Eyes,
    footprint,
    matrix_scale,
    similarity_to_template,
    translate,
    validate_eyes,
)

log = logging.getLogger(__name__)

#: Below this scale the warp pre-shrinks with an area filter; bilinear sampling alone would alias
#: (a 2000 px face squeezed into 200 px would pick every tenth pixel).
_MIN_BILINEAR_SCALE = 0.67
PAPER_WHITE = (255, 255, 255)


@dataclass
class AlignResult:
    """An aligned face and how to get back to the original image."""

    crop: np.ndarray  # 250×200×3 uint8 RGB
    matrix: np.ndarray  # 2×3 float64, original -> crop coordinates
    eyes: Eyes  # (left, right) eye centres in original coordinates, left = smaller x
    landmarks: np.ndarray | None  # (5, 2) in original coordinates; None for manual / haar
    n_faces: int  # faces found (0 for manual eyes)
    method: str  # "dlib", "dlib-equalized", "haar", "manual"


def warp_to_template(img: np.ndarray, matrix: np.ndarray, kind: str = "photo",
                     size: tuple[int, int] = TEMPLATE_SIZE) -> np.ndarray:
    """Apply an original -> crop matrix; only the covered part of the image is touched.

    Outside the image, photos repeat their edge pixels (no black wedges for the network to
    translate) and sketches get white paper.
    """
    h, w = img.shape[:2]
    box = footprint(matrix, size, (w, h))
    if kind == "sketch":
        border, value = cv2.BORDER_CONSTANT, PAPER_WHITE
    else:
        border, value = cv2.BORDER_REPLICATE, (0, 0, 0)
    if box is None:  # the template lies wholly outside the image (cannot happen for valid eyes)
        return np.full((size[1], size[0], 3), value, dtype=np.uint8)
    x0, y0, x1, y1 = box
    roi = img[y0:y1, x0:x1]
    m = translate(matrix, x0, y0)
    s = matrix_scale(m)
    if s < _MIN_BILINEAR_SCALE:
        f = s / _MIN_BILINEAR_SCALE
        rw, rh = max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))
        fx, fy = rw / roi.shape[1], rh / roi.shape[0]
        roi = cv2.resize(roi, (rw, rh), interpolation=cv2.INTER_AREA)
        # small pixel c <-> roi coordinate (c + 0.5) / f - 0.5
        pre = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
        m = m @ pre
    return cv2.warpAffine(np.ascontiguousarray(roi), m, size, flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=value)


def align(image: np.ndarray, eyes: object = None, kind: str = "photo",
          landmarks_path: str | None = None) -> AlignResult:
    """Align the largest face of ``image`` (or the face at the given ``eyes``) to the template.

    ``eyes`` = ((x1, y1), (x2, y2)) in image pixels, in any order, skips detection (the GUI's
    click/drag correction). Raises NoFaceFoundError when no face is found, EyePositionError for
    unusable manual eyes, ImageError for a non-image array.
    """
    img = check_rgb(image)
    check_kind(kind)
    if eyes is not None:
        found_eyes = validate_eyes(eyes, img.shape[1], img.shape[0])
        landmarks, n_faces, method = None, 0, "manual"
    else:
        d = detect(img, kind, landmarks_path)
        found_eyes, landmarks, n_faces, method = d.eyes, d.landmarks, d.n_faces, d.method
    matrix = similarity_to_template(found_eyes)
    crop = warp_to_template(img, matrix, kind)
    log.debug("aligned by %s: eyes %s, scale %.3f", method, found_eyes, matrix_scale(matrix))
    return AlignResult(crop=crop, matrix=matrix, eyes=found_eyes, landmarks=landmarks,
                       n_faces=n_faces, method=method)
