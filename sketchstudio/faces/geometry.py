"""The CUFS template and the 2-D geometry around it (similarity transforms, eye validation).

Everything here is plain numpy: no dlib, no OpenCV, so the GUI can map eye markers between the
original image and the crop without loading any model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sketchstudio.errors import EyePositionError
from sketchstudio.vocab import Eyes

#: Crop size of the CUFS convention (width, height).
TEMPLATE_SIZE: tuple[int, int] = (200, 250)
#: Where the (left, right) eye centres sit in the crop, in pixel-centre coordinates.
TEMPLATE_EYES: tuple[tuple[float, float], tuple[float, float]] = ((75.0, 125.0), (125.0, 125.0))
#: Manual eyes closer than this (pixels, in the original image) cannot define a face.
MIN_EYE_DISTANCE = 5.0



def order_eyes(a: Sequence[float], b: Sequence[float]) -> Eyes:
    """(left, right) by image x: the caller may click the eyes in any order."""
    pa, pb = (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))
    return (pa, pb) if (pa[0], pa[1]) <= (pb[0], pb[1]) else (pb, pa)


def validate_eyes(eyes: object, width: int, height: int) -> Eyes:
    """Check user-given eye points against an image of ``width`` × ``height``.

    User input (GUI clicks, CLI flags) arrives here, so every failure is an
    :class:`EyePositionError` with a sentence a user can act on, never a bare ValueError.
    """
    try:
        arr = np.asarray(eyes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        arr = None
        cause: Exception | None = exc
    else:
        cause = None
    if arr is None or arr.shape != (2, 2):
        raise EyePositionError(
            "Eye positions must be two points, ((x1, y1), (x2, y2)), in image pixels.") from cause
    pts = [(float(arr[0, 0]), float(arr[0, 1])), (float(arr[1, 0]), float(arr[1, 1]))]
    for x, y in pts:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise EyePositionError(f"Eye position ({x}, {y}) is not a number.")
        if not (-0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5):
            raise EyePositionError(
                f"Eye position ({x:.0f}, {y:.0f}) is outside the {width}×{height} image. "
                "Put both eye markers on the eyes.")
    dist = math.hypot(pts[1][0] - pts[0][0], pts[1][1] - pts[0][1])
    if dist < MIN_EYE_DISTANCE:
        raise EyePositionError(
            f"The two eye positions are only {dist:.1f} px apart (at least {MIN_EYE_DISTANCE:.0f} px "
            "needed). Put one marker on each eye.")
    return order_eyes(*pts)


def similarity_to_template(eyes: Eyes, template_eyes: Eyes = TEMPLATE_EYES) -> np.ndarray:
    """2×3 matrix (rotation, uniform scale, translation) taking ``eyes`` onto the template eyes.

    Two point pairs fix a similarity exactly; in complex numbers it is ``z' = a·z + b`` with
    ``a = (T_R − T_L) / (R − L)``, which is what is solved here.
    """
    (lx, ly), (rx, ry) = eyes
    (tlx, tly), (trx, try_) = template_eyes
    src = complex(rx - lx, ry - ly)
    if abs(src) < 1e-9:
        raise EyePositionError("The two eye positions coincide; cannot align the face.")
    a = complex(trx - tlx, try_ - tly) / src
    b = complex(tlx, tly) - a * complex(lx, ly)
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=np.float64)


def to_3x3(m: np.ndarray) -> np.ndarray:
    out = np.eye(3, dtype=np.float64)
    out[:2] = np.asarray(m, dtype=np.float64).reshape(2, 3)
    return out


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2×3 affine matrix (crop -> original for an alignment matrix)."""
    return np.linalg.inv(to_3x3(m))[:2]


def apply_affine(m: np.ndarray, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Map an (N, 2) array of points through a 2×3 matrix."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(m, dtype=np.float64).reshape(2, 3)
    return pts @ m[:, :2].T + m[:, 2]


def matrix_scale(m: np.ndarray) -> float:
    """Uniform scale factor of a similarity matrix (crop pixels per original pixel)."""
    m = np.asarray(m, dtype=np.float64)
    return float(math.sqrt(abs(np.linalg.det(m[:, :2]))))


def footprint(m: np.ndarray, size: tuple[int, int], bounds: tuple[int, int],
              margin: int = 2) -> tuple[int, int, int, int] | None:
    """Integer box (x0, y0, x1, y1) of the original image that a ``size`` crop covers.

    Clipped to ``bounds`` (width, height); None when the crop lies entirely outside. Used to warp
    only the pixels that matter, which keeps a 2000×1500 paste-back as cheap as a 640×480 one.
    """
    w, h = size
    corners = apply_affine(invert_affine(m), [(-0.5, -0.5), (w - 0.5, -0.5),
                                              (-0.5, h - 0.5), (w - 0.5, h - 0.5)])
    x0 = max(0, int(math.floor(corners[:, 0].min())) - margin)
    y0 = max(0, int(math.floor(corners[:, 1].min())) - margin)
    x1 = min(bounds[0], int(math.ceil(corners[:, 0].max())) + margin + 1)
    y1 = min(bounds[1], int(math.ceil(corners[:, 1].max())) + margin + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def translate(m: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``m`` applied to points given in a sub-image whose origin is (dx, dy) of the full image."""
    out = np.asarray(m, dtype=np.float64).reshape(2, 3).copy()
    out[:, 2] += out[:, :2] @ np.array([dx, dy])
    return out
