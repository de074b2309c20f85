"""Texture measures of synthesised images: stroke energy and transposed-convolution grids.

FSIM alone hides texture (a smooth grey average scores about as well as a drawing), so the model
card and the study runner also report how much pencil detail an output carries relative to the
drawing, and whether its power spectrum peaks at the decoder's stride-2/stride-4 frequencies, the
signature of the checkerboard pattern transposed convolutions paint.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np


def _grey(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return img.astype(np.float32)


def gradient_energy(img: np.ndarray) -> float:
    """Mean Sobel gradient magnitude of the grey image: pencil strokes raise it, smoothing lowers it."""
    g = _grey(img)
    return float(np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)).mean())


def mean_power_spectrum(images: Iterable[np.ndarray]) -> np.ndarray:
    """Mean |FFT|² of the mean-removed grey images (all of one size), DC at [0, 0]."""
    acc: np.ndarray | None = None
    n = 0
    for img in images:
        g = _grey(img)
        p = np.abs(np.fft.fft2(g - g.mean())) ** 2
        if acc is not None and p.shape != acc.shape:
            raise ValueError(f"images differ in size: {p.shape} vs {acc.shape}")
        acc = p if acc is None else acc + p
        n += 1
    if acc is None:
        raise ValueError("no images given")
    return acc / n


#: (period in y, period in x) of the grid frequencies checked: the diagonal ones only
GRID_PERIODS = ((2, 2), (4, 4), (2, 4), (4, 2))


def grid_peak_ratio(images: Iterable[np.ndarray]) -> float:
    """How far the mean power spectrum peaks at the transposed convolutions' grid frequencies.

    Two stride-2 transposed convolutions paint a pattern that repeats every 2 and 4 pixels in
    both directions at once (a checkerboard), which puts power at the *diagonal* frequencies
    (N/2, N/2), (N/4, N/4), (N/2, N/4) and (N/4, N/2). The axis-aligned ones, (0, N/2) and so on,
    are left out on purpose: the CUFS drawings themselves peak there (row/column artefacts of their
    scanning and JPEG coding: ratios of 5–30 measured on CUHK test sketches, against ≈ 1 on the
    diagonals), so they would flag the training data as much as the model.

    For each frequency the power there is divided by the median power of the 5×5 neighbourhood
    around it (itself excluded); the largest ratio is returned: ≈ 1 or less for drawings and
    natural images, ≫ 1 for a checkerboard. Feed outputs at the network's own resolution:
    resizing smears the spike.
    """
    p = mean_power_spectrum(images)
    h, w = p.shape
    worst = 0.0
    for fy, fx in GRID_PERIODS:
        cy, cx = h // fy, w // fx
        ys = [(cy + d) % h for d in range(-2, 3)]
        xs = [(cx + d) % w for d in range(-2, 3)]
        hood = [p[y, x] for y in ys for x in xs if (y, x) != (cy, cx) and (y, x) != (0, 0)]
        worst = max(worst, float(p[cy, cx] / max(np.median(hood), 1e-12)))
    return worst
