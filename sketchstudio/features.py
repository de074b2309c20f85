"""Feature maps -> pictures: channel grids, top-k channels, PCA-to-RGB and heat maps.

The feature-map view shows what knowledge was transferred: a student tap next to the teacher layer
it was trained to imitate. Everything here is pure array code (no Qt, no torch at import time), so
the GUI worker, notebooks and the tests share one implementation. Inputs are (C, h, w) feature maps
as numpy arrays or anything with ``.detach().cpu().numpy()`` (torch tensors); outputs are
``uint8`` images ready to display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .vocab import DIRECTION_INPUT

#: OpenCV colour maps by name; "inferno" reads well on both light and dark backgrounds.
COLORMAPS = {"inferno": cv2.COLORMAP_INFERNO, "viridis": cv2.COLORMAP_VIRIDIS,
             "magma": cv2.COLORMAP_MAGMA, "jet": cv2.COLORMAP_JET}


def as_array(fmap: Any) -> np.ndarray:
    """A (C, h, w) float32 array from a numpy array or a torch tensor (a leading batch of 1 is dropped)."""
    if hasattr(fmap, "detach"):
        fmap = fmap.detach().float().cpu().numpy()
    a = np.asarray(fmap, dtype=np.float32)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or min(a.shape) < 1:
        raise ValueError(f"expected a (C, h, w) feature map, got shape {a.shape}")
    return a


def channel_strength(fmap: Any) -> np.ndarray:
    """Mean activation per channel: after a ReLU this is how strongly each channel fires."""
    return as_array(fmap).mean(axis=(1, 2))


def top_channels(fmap: Any, k: int) -> np.ndarray:
    """Indices of the ``k`` most active channels, strongest first (ties broken by index)."""
    strength = channel_strength(fmap)
    k = max(0, min(int(k), strength.size))
    order = np.lexsort((np.arange(strength.size), -strength))  # stable: -strength, then index
    return order[:k]


def normalize01(a: np.ndarray, per_channel: bool = True, eps: float = 1e-8) -> np.ndarray:
    """Min-max scale to [0, 1], per channel (first axis) or globally; constant maps become 0."""
    a = np.asarray(a, dtype=np.float32)
    if per_channel and a.ndim == 3:
        lo = a.min(axis=(1, 2), keepdims=True)
        hi = a.max(axis=(1, 2), keepdims=True)
    else:
        lo, hi = a.min(), a.max()
    span = hi - lo
    return np.where(span > eps, (a - lo) / np.maximum(span, eps), 0.0).astype(np.float32)


def grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding ``n`` tiles."""
    if n <= 0:
        return 0, 0
    cols = cols or math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def channel_grid(fmap: Any, k: int = 16, cols: int | None = None, pad: int = 1,
                 channels: Sequence[int] | None = None, per_channel: bool = True,
                 pad_value: int = 255) -> tuple[np.ndarray, list[int]]:
    """Tile the ``k`` strongest channels (or the given ``channels``) into one grey image.

    Each tile is min-max scaled on its own by default, because channels differ in scale by orders of
    magnitude and one loud channel would otherwise turn the rest black. Returns the RGB ``uint8``
    grid (rows·h + (rows+1)·pad) × (cols·w + (cols+1)·pad) and the channel indices, in tile order.
    """
    a = as_array(fmap)
    idx = [int(c) for c in (channels if channels is not None else top_channels(a, k))]
    if not idx:
        raise ValueError("channel_grid needs at least one channel")
    _, h, w = a.shape
    rows, cols = grid_shape(len(idx), cols)
    tiles = (normalize01(a[idx], per_channel=per_channel) * 255).round().astype(np.uint8)
    out = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad), pad_value, np.uint8)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + h, x:x + w] = tile
    return np.repeat(out[:, :, None], 3, axis=2), idx


def pca_components(fmap: Any, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Project every pixel's C-vector on the first ``n`` principal axes.

    Returns (components (n, h, w), explained-variance ratios (n,)). With fewer than ``n`` channels
    the missing components are zeros. Signs are fixed so that each axis correlates positively with
    the mean activation, which keeps colours stable between similar images.
    """
    a = as_array(fmap)
    c, h, w = a.shape
    x = a.reshape(c, -1).T.astype(np.float64)  # (pixels, C)
    x = x - x.mean(axis=0, keepdims=True)
    comps = np.zeros((n, h * w), np.float64)
    ratios = np.zeros(n, np.float64)
    total = float((x ** 2).sum())
    if total > 0 and x.shape[0] > 1:
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        m = min(n, vt.shape[0])
        proj = x @ vt[:m].T  # (pixels, m)
        mean_act = a.reshape(c, -1).mean(axis=0)
        for i in range(m):
            if np.dot(proj[:, i], mean_act - mean_act.mean()) < 0:
                proj[:, i] = -proj[:, i]
        comps[:m] = proj.T
        ratios[:m] = (s[:m] ** 2) / total
    return comps.reshape(n, h, w).astype(np.float32), ratios.astype(np.float32)


def pca_rgb(fmap: Any) -> np.ndarray:
    """The first three principal components as R, G, B: one picture of all channels at once."""
    comps, _ = pca_components(fmap, 3)
    rgb = normalize01(comps, per_channel=True)
    return np.ascontiguousarray((rgb.transpose(1, 2, 0) * 255).round().astype(np.uint8))


def heat_map(fmap: Any, colormap: str = "inferno") -> np.ndarray:
    """Mean absolute activation over channels, colour-mapped: where the layer is busy."""
    a = as_array(fmap)
    energy = normalize01(np.abs(a).mean(axis=0), per_channel=False)
    u8 = (energy * 255).round().astype(np.uint8)
    bgr = cv2.applyColorMap(u8, COLORMAPS[colormap])
    return np.ascontiguousarray(bgr[:, :, ::-1])


def overlay(base: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a heat map over an RGB image (the heat map is resized to the image)."""
    h, w = base.shape[:2]
    heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    mixed = (1 - alpha) * base.astype(np.float32) + alpha * heat.astype(np.float32)
    return mixed.clip(0, 255).round().astype(np.uint8)


def teacher_counterpart(pairs: Sequence[tuple[str, str, str]], student_tap: str) -> tuple[str, str]:
    """(teacher side "P" | "S", teacher tap) that ``student_tap`` was trained against.

    ``pairs`` is a pairing table of (side, teacher tap, student tap) rows, e.g. the trainer's
    ``G_TEACHER_PAIRS`` or ``F_TEACHER_PAIRS`` (METHOD.md).
    """
    for side, teacher_tap, tap in pairs:
        if tap == student_tap:
            return side, teacher_tap
    raise KeyError(f"student tap '{student_tap}' is not in the pairing table")


def teacher_input_role(side: str, direction: str) -> str:
    """Which image the teacher of ``side`` sees for a single input translated in ``direction``.

    Teacher-P sees the photo and Teacher-S the sketch. For one input there is only one real image:
    the input feeds its own side's teacher, the model's output stands in for the other side.
    Returns "input" or "output".
    """
    if side not in ("P", "S"):
        raise ValueError(f"teacher side must be 'P' or 'S', got {side!r}")
    input_side = "P" if DIRECTION_INPUT[direction] == "photo" else "S"
    return "input" if side == input_side else "output"


def shrink(fmap: Any, max_side: int = 64) -> np.ndarray:
    """Average-pool a (C, h, w) map by a whole factor so that its longer side is ≤ ``max_side``.

    Live previews during training ship many maps per preview; full-resolution taps (64 × 256²
    floats each) would cost megabytes for tiles that are shown a few dozen pixels wide.
    """
    a = as_array(fmap)
    c, h, w = a.shape
    f = max(1, math.ceil(max(h, w) / max_side))
    if f == 1:
        return a
    hh, ww = h // f, w // f
    return a[:, :hh * f, :ww * f].reshape(c, hh, f, ww, f).mean(axis=(2, 4))


@dataclass
class TapPair:
    """A student tap and the teacher tap it is trained to imitate, as display-ready grids."""

    network: str  # "G" | "F"
    layer: str  # student tap: IC … UC2
    teacher_side: str  # "P" (fed the photo) | "S" (fed the sketch)
    teacher_tap: str  # relu1_1 | relu2_1 | relu3_1
    student: np.ndarray  # RGB uint8 channel grid
    teacher: np.ndarray
    student_shape: tuple[int, int, int]  # (C, h, w) before shrinking
    teacher_shape: tuple[int, int, int]


def transfer_pairs(network: str, student_taps: Mapping[str, Any], teacher_taps: Mapping[str, Mapping[str, Any]],
                   pairs: Sequence[tuple[str, str, str]], k: int = 9, max_side: int = 64) -> list[TapPair]:
    """Grids of every (student tap, teacher tap) pair of one network's pairing table.

    ``teacher_taps`` maps the side ("P", "S") to that teacher's taps on the real photo / sketch,
    as in training. Each grid holds the ``k`` strongest channels of its own map.
    """
    out = []
    for side, ttap, layer in pairs:
        s, t = as_array(student_taps[layer]), as_array(teacher_taps[side][ttap])
        out.append(TapPair(network, layer, side, ttap,
                           channel_grid(shrink(s, max_side), k)[0], channel_grid(shrink(t, max_side), k)[0],
                           tuple(s.shape), tuple(t.shape)))
    return out
