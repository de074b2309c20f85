"""Paste a translated 200×250 crop back into the full original image.

A casual user wants a sketch of *their photo*, not of a 200×250 crop: the network's output is
warped through the inverse of the alignment transform and blended in with a feathered mask, so
the crop's edges do not show as a hard rectangle.
"""

from __future__ import annotations

import cv2
import numpy as np

from sketchstudio.imaging import check_rgb

from .geometry import TEMPLATE_SIZE, footprint, to_3x3, translate


def feather_mask(width: int, height: int, feather: float) -> np.ndarray:
    """Float mask (h, w): 1 inside, falling smoothly to 0 over ``feather`` pixels at the edges."""
    if feather <= 0:
        return np.ones((height, width), np.float32)
    xs = np.minimum(np.arange(width) + 0.5, width - 0.5 - np.arange(width))
    ys = np.minimum(np.arange(height) + 0.5, height - 0.5 - np.arange(height))
    d = np.minimum(ys[:, None], xs[None, :]).astype(np.float32)
    t = np.clip(d / float(feather), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)  # smoothstep: no visible kink where the ramp starts


def _crop_matrix(matrix: np.ndarray, crop_w: int, crop_h: int) -> np.ndarray:
    """Alignment matrix re-targeted at a crop of another size (e.g. a 256² network output)."""
    tw, th = TEMPLATE_SIZE
    if (crop_w, crop_h) == (tw, th):
        return np.asarray(matrix, np.float64).reshape(2, 3)
    sx, sy = crop_w / tw, crop_h / th
    scale = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    return (scale @ to_3x3(matrix))[:2]


def paste_back(original: np.ndarray, crop_result: np.ndarray, matrix: np.ndarray,
               feather: int = 12) -> np.ndarray:
    """``original`` with ``crop_result`` warped back in; same size as ``original``.

    ``matrix`` is the alignment's original -> crop transform (AlignResult.matrix). A crop of
    another size than 200×250 is taken to cover the same template area. ``feather`` is the width
    of the soft edge in crop pixels (so it scales with the face); 0 gives a hard edge.
    """
    orig = check_rgb(original)
    crop = check_rgb(crop_result)
    ch, cw = crop.shape[:2]
    m = _crop_matrix(matrix, cw, ch)
    h, w = orig.shape[:2]
    out = orig.copy()
    box = footprint(m, (cw, ch), (w, h))
    if box is None:
        return out
    x0, y0, x1, y1 = box
    mr = translate(m, x0, y0)  # roi pixel -> crop pixel; WARP_INVERSE_MAP samples crop there
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(np.ascontiguousarray(crop), mr, size, flags=flags,
                            borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(feather_mask(cw, ch, feather), mr, size, flags=flags,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    out[y0:y1, x0:x1] = cv2.blendLinear(warped, out[y0:y1, x0:x1], alpha, 1.0 - alpha)
    return out


def paste_mask(original_shape: tuple[int, ...], matrix: np.ndarray, feather: int = 12,
               crop_size: tuple[int, int] = TEMPLATE_SIZE) -> np.ndarray:
    """The blending weights paste_back uses, as an (H, W) float32 array (for tests and the GUI)."""
    h, w = original_shape[:2]
    cw, ch = crop_size
    m = _crop_matrix(matrix, cw, ch)
    return cv2.warpAffine(feather_mask(cw, ch, feather), m, (w, h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
