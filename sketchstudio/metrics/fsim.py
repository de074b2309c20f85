"""Grayscale FSIM (Zhang et al. 2011), the paper's metric, via piq.

Both images are converted to grey with the same luma weights as MATLAB's FeatureSIM.m
(0.299 R + 0.587 G + 0.114 B) and compared at the ground truth's size; piq applies the MATLAB
code's automatic downsampling (none for 200×250 CUFS images).
"""

from __future__ import annotations

import numpy as np
import piq
import torch

from ..imaging import check_rgb, resize

_LUMA = np.array([0.299, 0.587, 0.114])


def _gray(img: np.ndarray) -> torch.Tensor:
    g = check_rgb(img).astype(np.float64) @ _LUMA
    return torch.from_numpy(g).float()[None, None]


def fsim_gray(result: np.ndarray, truth: np.ndarray) -> float:
    """FSIM of ``result`` (resized to ``truth``'s size if needed) against ``truth``, in [0, 1]."""
    h, w = truth.shape[:2]
    if result.shape[:2] != (h, w):
        result = resize(check_rgb(result), w, h)
    return float(piq.fsim(_gray(result), _gray(truth), data_range=255.0, chromatic=False))
