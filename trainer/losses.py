"""Knowledge-transfer loss terms as small pure functions, and the pairing tables of METHOD.md.

Every term is a mean squared error normalised by the tensor size (||a − b||² / (C·H·W), averaged
over the batch), so each of the six feature pairs contributes on the same scale. L_rec is the mean
over pixels (METHOD.md's choice). Each function returns the weighted total and the unweighted
per-term values, so the trainer can report every term separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# The pairing tables and tap widths are model vocabulary (the GUI needs them without torch): they
# live in sketchstudio.vocab and are re-exported here, where the losses that use them are.
from sketchstudio.vocab import F_TEACHER_PAIRS as F_TEACHER_PAIRS
from sketchstudio.vocab import G_TEACHER_PAIRS as G_TEACHER_PAIRS
from sketchstudio.vocab import STUDENT_PAIRS as STUDENT_PAIRS
from sketchstudio.vocab import TAP_WIDTHS, TEACHER_CHANNELS

Taps = dict[str, torch.Tensor]


def make_adapters(pairs: tuple[tuple[str, str, str], ...], ngf: int,
                  every_tap: bool = False) -> nn.ModuleDict:
    """1×1 conv "hint regressors" (FitNets) for student taps narrower/wider than the teacher's.

    With the paper's width (ngf=64) every tap already has the teacher's channel count and this
    is empty: the loss is exactly METHOD.md's. Other widths (a smaller, faster student) learn a
    projection to the teacher's channels; the adapters train with their student and are not
    needed for inference.

    ``every_tap`` (``tap_compare: regressor``): a regressor with a bias on every tap, started at
    the identity where the widths agree, so it can learn the per-channel scale and offset that
    InstanceNorm+ReLU taps cannot take (the probe in issue 16: that alone halves the tap error).
    """
    out = nn.ModuleDict()
    for _, t, s in pairs:
        c_s, c_t = TAP_WIDTHS[s] * ngf, TEACHER_CHANNELS[t]
        if c_s != c_t or every_tap:
            conv = nn.Conv2d(c_s, c_t, 1, bias=every_tap)
            if c_s == c_t:
                with torch.no_grad():
                    conv.weight.copy_(torch.eye(c_s).view(c_s, c_s, 1, 1))
            else:
                nn.init.normal_(conv.weight, 0.0, (1.0 / c_s) ** 0.5)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            out[s] = conv
    return out


def feature_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a − b||² / (C·H·W), averaged over the batch; computed in float32."""
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return F.mse_loss(a.float(), b.float())


def standardise(a: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each channel of each sample to zero mean and unit variance over its spatial positions."""
    a = a.float()
    mean = a.mean(dim=(2, 3), keepdim=True)
    var = a.var(dim=(2, 3), keepdim=True, unbiased=False)
    return (a - mean) / torch.sqrt(var + eps)


def feature_distance(a: torch.Tensor, b: torch.Tensor, mode: str = "mse") -> torch.Tensor:
    """How far tap ``a`` is from target ``b`` (TrainConfig.tap_compare / stu_compare):

    - ``mse`` (and ``regressor``, whose projection happened before): ||a − b||² / (C·H·W);
    - ``standardised``: the same on per-channel standardised taps, i.e. 2·(1 − Pearson
      correlation) per channel averaged: where a channel fires, not how strongly;
    - ``cosine``: 1 − cos(a[:, :, i, j], b[:, :, i, j]) averaged over positions: the direction of
      each position's channel vector, not its length.
    """
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if mode in ("mse", "regressor"):
        return feature_mse(a, b)
    if mode == "standardised":
        return F.mse_loss(standardise(a), standardise(b))
    if mode == "cosine":
        return (1.0 - F.cosine_similarity(a.float(), b.float(), dim=1, eps=1e-6)).mean()
    raise ValueError(f"unknown feature comparison {mode!r}")


def tea_stu_loss(teacher_p: Taps, teacher_s: Taps, student: Taps,
                 pairs: tuple[tuple[str, str, str], ...],
                 adapters: Mapping[str, nn.Module] | None = None, mode: str = "mse") -> torch.Tensor:
    """Σ_j d(φ_j, student_j) over a pairing table (G's or F's); d is the literal
    ||φ_j − student_j||² / (C_j H_j W_j) unless ``mode`` says otherwise (:func:`feature_distance`)."""
    teachers = {"P": teacher_p, "S": teacher_s}
    adapters = adapters or {}

    def project(tap: str) -> torch.Tensor:
        return adapters[tap](student[tap]) if tap in adapters else student[tap]

    return sum(feature_distance(project(s), teachers[w][t], mode)  # type: ignore[return-value]
               for w, t, s in pairs)


def stu_stu_loss(taps_g: Taps, taps_f: Taps,
                 pairs: tuple[tuple[str, str], ...] = STUDENT_PAIRS, mode: str = "mse") -> torch.Tensor:
    """Σ d(G_m(x), F_n(y)), by default ||G_m(x) − F_n(y)||² / (C_m H_m W_m); detach the side that
    serves as a fixed target."""
    return sum(feature_distance(taps_g[g], taps_f[f], mode)  # type: ignore[return-value]
               for g, f in pairs)


def rec_loss(output: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Mean squared (``l2``, METHOD.md: a mean, not a sum, so it does not drown the rest) or mean
    absolute (``l1``, pix2pix's: a median-like fit that blurs less) pixel error."""
    if kind == "l1":
        return F.l1_loss(output.float(), target.float())
    if kind == "l2":
        return F.mse_loss(output.float(), target.float())
    raise ValueError(f"unknown reconstruction loss {kind!r}")


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrix F·Fᵀ / (C·H·W) of an (N, C, H, W) feature map (Gatys et al.'s texture statistic)."""
    n, c, h, w = f.shape
    flat = f.float().reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(out_feats: Taps, target_feats: Taps) -> torch.Tensor:
    """Σ over teacher taps of the mean squared difference of the Gram matrices."""
    return sum(F.mse_loss(gram(out_feats[t]), gram(target_feats[t]))  # type: ignore[return-value]
               for t in target_feats)


def perceptual_loss(out_feats: Taps, target_feats: Taps) -> torch.Tensor:
    """Σ over teacher taps of ||φ(output) − φ(target)||² / (C·H·W) (Johnson et al.)."""
    return sum(feature_mse(out_feats[t], target_feats[t])  # type: ignore[return-value]
               for t in target_feats)


@dataclass(frozen=True)
class LossWeights:
    """Weights and formulas of one student's objective (from TrainConfig; defaults = METHOD.md)."""

    tea: float = 1.0
    stu: float = 1.0
    rec: float = 1.0
    style: float = 0.0
    perceptual: float = 0.0
    tap_compare: str = "mse"
    stu_compare: str = "mse"
    rec_loss: str = "l2"

    @property
    def needs_output_features(self) -> bool:
        """Whether the teacher must see the student's output (with autograd)."""
        return bool(self.style or self.perceptual)


def student_objective(out: torch.Tensor, target: torch.Tensor, taps: Taps, other_taps: Taps,
                      teacher_p: Taps, teacher_s: Taps, teacher_pairs: tuple[tuple[str, str, str], ...],
                      is_g: bool, w: LossWeights, adapters: Mapping[str, nn.Module] | None = None,
                      out_feats: Taps | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`student_terms` with each term as a Python number (one host transfer per term)."""
    total, parts = student_terms(out, target, taps, other_taps, teacher_p, teacher_s, teacher_pairs,
                                 is_g, w, adapters, out_feats)
    return total, {k: float(v) for k, v in parts.items()}


def student_terms(out: torch.Tensor, target: torch.Tensor, taps: Taps, other_taps: Taps,
                  teacher_p: Taps, teacher_s: Taps, teacher_pairs: tuple[tuple[str, str, str], ...],
                  is_g: bool, w: LossWeights, adapters: Mapping[str, nn.Module] | None = None,
                  out_feats: Taps | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The full objective of one student in its alternating step, and its unweighted terms as
    detached 0-d tensors: the trainer reads all of a step's terms in one host transfer.

    ``other_taps`` are the other student's features, used as fixed targets (detached here).
    ``out_feats``: the teacher's taps of ``out`` with autograd (needed when ``w.style`` or
    ``w.perceptual`` is on); the target's are the teacher's taps of the real image (S for G's
    sketch, P for F's photo). Terms with weight 0 are skipped entirely, so they contribute no
    gradient and no compute.
    """
    fixed = {k: v.detach() for k, v in other_taps.items()}
    parts: dict[str, torch.Tensor] = {}
    if w.tea:
        parts["tea"] = tea_stu_loss(teacher_p, teacher_s, taps, teacher_pairs, adapters, w.tap_compare)
    if w.stu:
        parts["stu"] = (stu_stu_loss(taps, fixed, mode=w.stu_compare) if is_g
                        else stu_stu_loss(fixed, taps, mode=w.stu_compare))
    if w.rec:
        parts["rec"] = rec_loss(out, target, w.rec_loss)
    if w.needs_output_features:
        if out_feats is None:
            raise ValueError("style/perceptual terms need the teacher's features of the output")
        target_feats = teacher_s if is_g else teacher_p
        if w.style:
            parts["style"] = style_loss(out_feats, target_feats)
        if w.perceptual:
            parts["perc"] = perceptual_loss(out_feats, target_feats)
    weights = {"tea": w.tea, "stu": w.stu, "rec": w.rec, "style": w.style, "perc": w.perceptual}
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: v.detach() for k, v in parts.items()}  # type: ignore[return-value]
