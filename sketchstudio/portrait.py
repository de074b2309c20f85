"""Portrait mode: the student draws the face *and its surroundings*, mapped back onto the photo.

Why: a 200×250 crop pasted into a colour photo reads as a sticker, and the crop alone is smaller
than a phone thumbnail. The students are fully convolutional, so G can run on a wider canvas laid
out exactly like the template -- the face at the trained scale and position, the canvas extended
around it -- and draw head, shoulders and background in one style, without a seam.

Geometry. Template coordinates are the 200×250 CUFS crop's pixel-centre coordinates; the alignment
matrix ``M`` maps the original photo into them. A crop reaches the network resized to S×S, so one
template pixel is ``sx = S/200`` network pixels wide and ``sy = S/250`` high, and crop network pixel
``c = (t + 0.5)·s − 0.5``. The canvas is that crop grid extended by whole multiples of 4 pixels (the
students' total stride), so the face falls on exactly the pixels, and the internal grid, it has in
the plain crop.

Only real image content is drawn. The part of the photo a portrait shows (the region) never
extends past the photo: a head-and-shoulders box that runs off the image is cropped there, and
outside pixels of a rotated face's canvas are cut off when the drawing is mapped back. G sees the
photo mirrored there (context only, never shown), not edge-replicated pixels (which it draws as
long streaks) and not white paper (which it outlines with a pencil line along the photo's edge).

Normalisation. The students use InstanceNorm and squeeze-excitation, whose statistics are global:
tiles normalised on their own would each be drawn with a different contrast. So the statistics are
taken once -- from the whole canvas (downsampled when it is large) or from the aligned face crop --
and frozen while the canvas runs in overlapping tiles. A canvas that fits one tile runs in one
pass; with ``stats="canvas"`` that pass is exactly the plain network on the canvas.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from .errors import CancelledError, ConfigError
from .faces.alignment import _MIN_BILINEAR_SCALE
from .faces.geometry import TEMPLATE_SIZE, apply_affine, invert_affine, matrix_scale, to_3x3
from .imaging import grey_rgb
from .models.student import SqueezeExcite

log = logging.getLogger(__name__)

PORTRAIT_MODES = ("head", "full")
#: Head-and-shoulders box in template coordinates (x0, y0, x1, y1): twice the template each way,
#: the face where the template puts it, extended more below (shoulders) than above the hair.
HEAD_BOX: tuple[float, float, float, float] = (-100.0, -60.0, 300.0, 440.0)
#: Output pixels per template pixel: the face is drawn at twice the template's resolution.
DEFAULT_SCALE = 2.0
#: Network pixels per tile side (without the halo), and the halo of context around each tile.
#: Both are multiples of 4 so every tile keeps the students' stride grid.
DEFAULT_TILE, DEFAULT_HALO = 512, 96
#: Largest canvas the network is run on (network pixels); a "full" portrait of a tiny face in a
#: huge photo is limited to the part around the face that fits.
MAX_CANVAS_PIXELS = 16_000_000
#: Largest output image (pixels); beyond it the drawing is written at a lower resolution.
MAX_OUTPUT_PIXELS = 40_000_000
#: Side of the downsampled canvas the normalisation statistics are taken from (``stats="canvas"``).
STATS_SIDE = 768
PAPER = 255

Progress = Callable[[int, int], None]
Cancelled = Callable[[], bool]


@dataclass
class PortraitPlan:
    """Where the portrait lies in the photo and how the canvas maps onto it."""

    region: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the original, in pixels, x1/y1 exclusive
    out_size: tuple[int, int]  # (width, height) of the portrait
    out_scale: float  # portrait pixels per original pixel
    canvas_size: tuple[int, int]  # (width, height) in network pixels, multiples of 4
    canvas_matrix: np.ndarray  # 2×3, original -> canvas network pixels
    offset: tuple[int, int]  # where the S×S crop's network grid starts inside the canvas
    notes: list[str] = field(default_factory=list)


@dataclass
class Portrait:
    """A drawn portrait in the photo's own orientation, plus what it was made from."""

    image: np.ndarray  # RGB uint8, out_size
    plan: PortraitPlan
    canvas: np.ndarray  # what the network was fed (template orientation, network pixels)
    canvas_valid: np.ndarray  # bool (h, w): canvas pixels that come from the photo
    tiles: int
    stats: str
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
def _bbox(points: np.ndarray) -> tuple[float, float, float, float]:
    return (float(points[:, 0].min()), float(points[:, 1].min()),
            float(points[:, 0].max()), float(points[:, 1].max()))


def _corners(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x0, y1), (x1, y1)]


def portrait_region(matrix: np.ndarray, width: int, height: int, mode: str = "head"
                    ) -> tuple[int, int, int, int]:
    """The part of a ``width`` × ``height`` photo a portrait shows, clipped to the photo.

    "head": the axis-aligned box around :data:`HEAD_BOX` mapped into the photo; "full": the photo.
    """
    if mode not in PORTRAIT_MODES:
        raise ConfigError(f"Portrait mode must be one of {', '.join(PORTRAIT_MODES)}, got {mode!r}.")
    if mode == "full":
        return 0, 0, width, height
    inv = invert_affine(matrix)
    bx0, by0, bx1, by1 = _bbox(apply_affine(inv, _corners(*HEAD_BOX)))
    x0, y0 = max(0, math.floor(bx0 + 0.5)), max(0, math.floor(by0 + 0.5))
    x1, y1 = min(width, math.ceil(bx1 + 0.5)), min(height, math.ceil(by1 + 0.5))
    if x1 - x0 < 4 or y1 - y0 < 4:  # cannot happen for eyes inside the photo; keep a usable box
        x0, y0, x1, y1 = 0, 0, width, height
    return x0, y0, x1, y1


def _net_scale(image_size: int) -> tuple[float, float]:
    tw, th = TEMPLATE_SIZE
    return image_size / tw, image_size / th


def _canvas_for(matrix: np.ndarray, region: tuple[int, int, int, int], image_size: int
                ) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """(original -> canvas matrix, canvas size, crop-grid offset) for a canvas covering ``region``."""
    sx, sy = _net_scale(image_size)
    s = np.diag([sx, sy])
    crop_net = np.asarray(matrix, np.float64).reshape(2, 3).copy()
    crop_net = s @ crop_net
    crop_net[:, 2] += (0.5 * sx - 0.5, 0.5 * sy - 0.5)
    x0, y0, x1, y1 = region
    cx0, cy0, cx1, cy1 = _bbox(apply_affine(crop_net, _corners(x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5)))
    margin = 2.0  # for the interpolation back onto the photo
    ox = 4 * math.ceil((margin - cx0) / 4)
    oy = 4 * math.ceil((margin - cy0) / 4)
    cw = 4 * math.ceil((cx1 + ox + margin + 1) / 4)
    ch = 4 * math.ceil((cy1 + oy + margin + 1) / 4)
    cm = crop_net.copy()
    cm[:, 2] += (ox, oy)
    return cm, (int(cw), int(ch)), (int(ox), int(oy))


def plan_portrait(matrix: np.ndarray, width: int, height: int, image_size: int,
                  mode: str = "head", scale: float = DEFAULT_SCALE) -> PortraitPlan:
    """Lay out a portrait of the face aligned by ``matrix`` in a ``width`` × ``height`` photo.

    ``scale``: portrait pixels per template pixel (2 draws the face at twice the template's
    resolution; the network itself runs at the trained scale, the drawing is resampled).
    """
    if not (math.isfinite(scale) and 0.25 <= scale <= 8):
        raise ConfigError(f"Portrait scale must be between 0.25 and 8, got {scale}.")
    notes: list[str] = []
    region = portrait_region(matrix, width, height, mode)
    cm, (cw, ch), offset = _canvas_for(matrix, region, image_size)
    if cw * ch > MAX_CANVAS_PIXELS:
        # the whole photo at the face's trained scale is too big: keep the part around the face
        full_w, full_h = cw, ch
        f = math.sqrt(MAX_CANVAS_PIXELS / (cw * ch)) * 0.97
        x0, y0, x1, y1 = region
        cx, cy = apply_affine(invert_affine(matrix), [(100.0, 125.0)])[0]
        hw, hh = (x1 - x0) * f / 2, (y1 - y0) * f / 2
        region = (max(0, math.floor(cx - hw)), max(0, math.floor(cy - hh)),
                  min(width, math.ceil(cx + hw)), min(height, math.ceil(cy + hh)))
        cm, (cw, ch), offset = _canvas_for(matrix, region, image_size)
        notes.append(f"The whole photo at the face's drawing scale would be a {full_w}×{full_h} "
                     f"canvas; drew the {region[2] - region[0]}×{region[3] - region[1]} px part "
                     "around the face.")
    out_scale = scale * matrix_scale(matrix)
    rw, rh = region[2] - region[0], region[3] - region[1]
    if rw * rh * out_scale * out_scale > MAX_OUTPUT_PIXELS:
        out_scale = math.sqrt(MAX_OUTPUT_PIXELS / (rw * rh))
        notes.append(f"Written at {out_scale / matrix_scale(matrix):.2f}× the template's "
                     "resolution to stay under 40 megapixels.")
    out_size = (max(1, round(rw * out_scale)), max(1, round(rh * out_scale)))
    return PortraitPlan(region=region, out_size=out_size, out_scale=out_scale,
                        canvas_size=(cw, ch), canvas_matrix=cm, offset=offset, notes=notes)


def build_canvas(original: np.ndarray, plan: PortraitPlan) -> tuple[np.ndarray, np.ndarray]:
    """(canvas, valid): the photo warped onto the canvas, and a mask of the canvas pixels whose
    centre lies inside the photo.

    Outside the photo the canvas mirrors it (``BORDER_REFLECT_101``: the edge pixel itself is
    not repeated). Those pixels are never shown -- the portrait stops at the photo's edge -- they
    only give G context. Edge replication made long streaks; white paper made G draw the photo's
    edge as a pencil line a few pixels inside the portrait's border; a mirror has neither.
    """
    h, w = original.shape[:2]
    m = np.asarray(plan.canvas_matrix, np.float64)
    src = original
    s = matrix_scale(m)
    if s < _MIN_BILINEAR_SCALE:  # shrink with an area filter first: bilinear alone would alias
        f = s / _MIN_BILINEAR_SCALE
        rw, rh = max(1, round(w * f)), max(1, round(h * f))
        src = cv2.resize(original, (rw, rh), interpolation=cv2.INTER_AREA)
        fx, fy = rw / w, rh / h
        m = m @ np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
    canvas = cv2.warpAffine(np.ascontiguousarray(src), m, plan.canvas_size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)
    cw, ch = plan.canvas_size
    inv = invert_affine(plan.canvas_matrix)
    ys, xs = np.mgrid[0:ch, 0:cw]
    px = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    py = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    valid = (px >= -0.5) & (px <= w - 0.5) & (py >= -0.5) & (py <= h - 0.5)
    return canvas, valid


# --- frozen normalisation ----------------------------------------------------------------------
def _norm_modules(net: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, m in net.named_modules():
        if isinstance(m, nn.InstanceNorm2d | SqueezeExcite):
            yield name, m


def collect_norm_stats(net: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Run ``net`` on ``x`` and keep every InstanceNorm's (mean, 1/std) and every SE gate."""
    stats: dict[str, Any] = {}
    hooks = []
    for name, m in _norm_modules(net):
        if isinstance(m, nn.InstanceNorm2d):
            if m.affine or m.track_running_stats:
                raise ConfigError("Portrait mode supports plain InstanceNorm students only.")

            def pre(mod: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
                v = args[0].float()
                mean = v.mean(dim=(2, 3), keepdim=True)
                var = v.var(dim=(2, 3), keepdim=True, unbiased=False)
                stats[name] = (mean, torch.rsqrt(var + mod.eps))
            hooks.append(m.register_forward_pre_hook(pre))
        else:
            def post(mod: nn.Module, args: Any, out: torch.Tensor, name: str = name) -> None:
                stats[name] = out.detach().float()
            hooks.append(m.fc.register_forward_hook(post))
    try:
        net(x)
    finally:
        for h in hooks:
            h.remove()
    return stats


@contextlib.contextmanager
def frozen_norms(net: nn.Module, stats: dict[str, Any]) -> Iterator[None]:
    """Within the block, ``net`` normalises with ``stats`` instead of each input's own."""
    patched: list[nn.Module] = []
    try:
        for name, m in _norm_modules(net):
            if isinstance(m, nn.InstanceNorm2d):
                mean, rstd = stats[name]
                m.forward = (lambda x, mean=mean, rstd=rstd:  # type: ignore[method-assign]
                             ((x.float() - mean.to(x.device)) * rstd.to(x.device)).to(x.dtype))
            else:
                gate = stats[name]
                m.forward = lambda x, gate=gate: x * gate.to(x.device, x.dtype)  # type: ignore[method-assign]
            patched.append(m)
        yield
    finally:
        for m in patched:
            del m.forward


def _ramp(n: int, lo_halo: int, hi_halo: int) -> np.ndarray:
    """Blend weights along one tile axis: 1 in the core, 0 in the outer half of each halo (pure
    context: those outputs saw the tile's padded edge), a linear ramp across the inner half."""
    w = np.ones(n, np.float32)
    for halo, side in ((lo_halo, 0), (hi_halo, 1)):
        if not halo:
            continue
        band = max(1, halo // 2)
        ramp = np.concatenate([np.zeros(halo - band, np.float32),
                               (np.arange(band, dtype=np.float32) + 0.5) / band])
        if side == 0:
            w[:halo] = ramp
        else:
            w[n - halo:] = ramp[::-1]
    return w


def tile_boxes(width: int, height: int, tile: int, halo: int
               ) -> list[tuple[int, int, int, int, int, int, int, int]]:
    """Tiles covering a canvas: (x0, y0, x1, y1) of the network input (core plus halo, clipped)
    and the halo widths (left, top, right, bottom) actually present."""
    if tile % 4 or halo % 4 or tile <= 0 or halo < 0:
        raise ConfigError("Tile and halo sizes must be positive multiples of 4.")
    boxes = []
    for cy in range(0, height, tile):
        for cx in range(0, width, tile):
            ex, ey = min(cx + tile, width), min(cy + tile, height)
            x0, y0 = max(0, cx - halo), max(0, cy - halo)
            x1, y1 = min(width, ex + halo), min(height, ey + halo)
            boxes.append((x0, y0, x1, y1, cx - x0, cy - y0, x1 - ex, y1 - ey))
    return boxes


def run_tiled(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
              tile: int = DEFAULT_TILE, halo: int = DEFAULT_HALO,
              progress: Progress | None = None, cancelled: Cancelled | None = None
              ) -> tuple[np.ndarray, int]:
    """``forward`` over ``x`` (1, 3, H, W) in overlapping tiles, blended across the halos.

    Returns (output (H, W, 3) float32 in [-1, 1], number of tiles). Memory is one tile's
    activations plus two canvas-sized float arrays, whatever the canvas size. ``cancelled`` is
    asked before each tile; a True raises :class:`CancelledError`.
    """
    _, _, h, w = x.shape
    if h <= tile + 2 * halo and w <= tile + 2 * halo:
        boxes = [(0, 0, w, h, 0, 0, 0, 0)]
    else:
        boxes = tile_boxes(w, h, tile, halo)
    acc = np.zeros((h, w, 3), np.float32)
    wsum = np.zeros((h, w, 1), np.float32)
    for i, (x0, y0, x1, y1, hl, ht, hr, hb) in enumerate(boxes):
        if cancelled is not None and cancelled():
            raise CancelledError("Portrait cancelled.")
        if progress is not None:
            progress(i, len(boxes))
        y = forward(x[:, :, y0:y1, x0:x1])
        out = y[0].float().clamp(-1, 1).permute(1, 2, 0).cpu().numpy()
        wt = _ramp(y1 - y0, ht, hb)[:, None, None] * _ramp(x1 - x0, hl, hr)[None, :, None]
        acc[y0:y1, x0:x1] += out * wt
        wsum[y0:y1, x0:x1] += wt
    if progress is not None:
        progress(len(boxes), len(boxes))
    return acc / np.maximum(wsum, 1e-6), len(boxes)


# --- finish ------------------------------------------------------------------------------------
def paper_levels(img: np.ndarray, percentile: float = 70.0, floor: int = 150) -> np.ndarray:
    """Levels for a drawing: the ``percentile`` tone (paper: most of a sketch is paper) becomes
    white, darker tones are stretched linearly below it, so the background reads as paper, not
    grey. A drawing too dark to have paper (white point under ``floor``) is left as it is."""
    grey = img[..., 0] if img.ndim == 3 else img
    wp = float(np.percentile(grey, percentile))
    if wp < floor or wp >= 254.5:
        return img
    lut = np.clip(np.arange(256, dtype=np.float32) * (255.0 / wp), 0, 255).round().astype(np.uint8)
    return lut[img]


def _to_uint8(y: np.ndarray) -> np.ndarray:
    return ((np.clip(y, -1, 1) + 1.0) * 127.5).round().astype(np.uint8)


def _output_to_canvas(plan: PortraitPlan) -> np.ndarray:
    """2×3 matrix from portrait pixels to canvas network pixels."""
    x0, y0 = plan.region[:2]
    s = plan.out_scale
    to_orig = np.array([[1 / s, 0, x0 - 0.5 + 0.5 / s], [0, 1 / s, y0 - 0.5 + 0.5 / s], [0, 0, 1]])
    return (to_3x3(plan.canvas_matrix) @ to_orig)[:2]


def _stats_input(canvas: torch.Tensor) -> torch.Tensor:
    """The canvas, downsampled (aspect kept, multiples of 4) when it is larger than STATS_SIDE."""
    _, _, h, w = canvas.shape
    f = min(1.0, STATS_SIDE / max(h, w))
    if f >= 1.0:
        return canvas
    nh, nw = max(4, 4 * round(h * f / 4)), max(4, 4 * round(w * f / 4))
    return torch.nn.functional.interpolate(canvas, size=(nh, nw), mode="area")


def render_portrait(original: np.ndarray, matrix: np.ndarray, translator: Any, direction: str, *,
                    mode: str = "head", scale: float = DEFAULT_SCALE, grey: bool = True,
                    paper: bool = True, stats: str = "canvas",
                    face_input: torch.Tensor | None = None, tile: int | None = None,
                    halo: int | None = None, progress: Progress | None = None,
                    cancelled: Cancelled | None = None) -> Portrait:
    """Draw a portrait of the face aligned by ``matrix`` (original -> template) in ``original``.

    ``stats``: "canvas" normalises as the network would on the whole canvas (downsampled for the
    statistics when it is large); "face" uses the aligned crop's statistics (``face_input``, the
    crop's (1, 3, S, S) network input), i.e. the face exactly as trained and the rest relative to
    it. ``grey`` / ``paper`` (photo→sketch only): pencil grey and :func:`paper_levels`.
    ``tile`` / ``halo``: network pixels (multiples of 4; None: :data:`DEFAULT_TILE`,
    :data:`DEFAULT_HALO`).
    """
    from .imaging import array_to_tensor

    if stats not in ("canvas", "face"):
        raise ConfigError(f"Portrait statistics must be 'canvas' or 'face', got {stats!r}.")
    h, w = original.shape[:2]
    plan = plan_portrait(matrix, w, h, translator.image_size, mode, scale)
    canvas, valid = build_canvas(original, plan)
    x = array_to_tensor(canvas).unsqueeze(0)
    if stats == "face":
        if face_input is None:
            raise ConfigError("Portrait statistics 'face' need the aligned crop's network input.")
        stats_x = face_input
    else:
        stats_x = _stats_input(x)
    def collect() -> dict[str, Any]:
        return collect_norm_stats(translator.net(direction), stats_x.to(translator.device))

    frozen = translator.run(collect)

    def forward(t: torch.Tensor) -> torch.Tensor:
        def fn() -> torch.Tensor:
            net = translator.net(direction)
            with frozen_norms(net, frozen):
                return net(t.to(translator.device)).float().cpu()
        return translator.run(fn)

    y, n_tiles = run_tiled(forward, x, tile=DEFAULT_TILE if tile is None else tile,
                           halo=DEFAULT_HALO if halo is None else halo, progress=progress,
                           cancelled=cancelled)
    drawn = _to_uint8(y)
    out = cv2.warpAffine(drawn, _output_to_canvas(plan), plan.out_size,
                         flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(PAPER, PAPER, PAPER))
    if direction == "photo2sketch":
        if grey:
            out = grey_rgb(out)
        if paper:
            out = paper_levels(out)
    log.debug("portrait %s: region %s, canvas %s, %d tile(s), output %s", mode, plan.region,
              plan.canvas_size, n_tiles, plan.out_size)
    return Portrait(image=out, plan=plan, canvas=canvas, canvas_valid=valid, tiles=n_tiles,
                    stats=stats, notes=list(plan.notes))
