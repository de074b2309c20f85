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

# (teacher: "P" photo | "S" sketch, teacher tap, student tap) — j-th with j-th.
G_TEACHER_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("P", "relu1_1", "IC"), ("P", "relu2_1", "DC1"), ("P", "relu3_1", "DC2"),
    ("S", "relu3_1", "Block"), ("S", "relu2_1", "UC1"), ("S", "relu1_1", "UC2"),
)
F_TEACHER_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("P", "relu1_1", "UC2"), ("P", "relu2_1", "UC1"), ("P", "relu3_1", "Block"),
    ("S", "relu3_1", "DC2"), ("S", "relu2_1", "DC1"), ("S", "relu1_1", "IC"),
)
# (G tap, F tap)
STUDENT_PAIRS: tuple[tuple[str, str], ...] = (
    ("IC", "UC2"), ("DC1", "UC1"), ("DC2", "Block"), ("Block", "DC2"), ("UC1", "DC1"), ("UC2", "IC"),
)

Taps = dict[str, torch.Tensor]

TEACHER_CHANNELS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256}
_TAP_WIDTH = {"IC": 1, "DC1": 2, "DC2": 4, "Block": 4, "UC1": 2, "UC2": 1}  # × ngf


def make_adapters(pairs: tuple[tuple[str, str, str], ...], ngf: int) -> nn.ModuleDict:
    """1×1 conv "hint regressors" (FitNets) for student taps narrower/wider than the teacher's.

    With the paper's width (ngf=64) every tap already has the teacher's channel count and this
    is empty: the loss is exactly METHOD.md's. Other widths (a smaller, faster student) learn a
    projection to the teacher's channels; the adapters train with their student and are not
    needed for inference.
    """
    out = nn.ModuleDict()
    for _, t, s in pairs:
        c_s, c_t = _TAP_WIDTH[s] * ngf, TEACHER_CHANNELS[t]
        if c_s != c_t:
            conv = nn.Conv2d(c_s, c_t, 1, bias=False)
            nn.init.normal_(conv.weight, 0.0, (1.0 / c_s) ** 0.5)
            out[s] = conv
    return out


def feature_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a − b||² / (C·H·W), averaged over the batch; computed in float32."""
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return F.mse_loss(a.float(), b.float())


def tea_stu_loss(teacher_p: Taps, teacher_s: Taps, student: Taps,
                 pairs: tuple[tuple[str, str, str], ...],
                 adapters: Mapping[str, nn.Module] | None = None) -> torch.Tensor:
    """Σ_j ||φ_j − student_j||² / (C_j H_j W_j) over a pairing table (G's or F's)."""
    teachers = {"P": teacher_p, "S": teacher_s}
    adapters = adapters or {}

    def project(tap: str) -> torch.Tensor:
        return adapters[tap](student[tap]) if tap in adapters else student[tap]

    return sum(feature_mse(teachers[w][t], project(s)) for w, t, s in pairs)  # type: ignore[return-value]


def stu_stu_loss(taps_g: Taps, taps_f: Taps,
                 pairs: tuple[tuple[str, str], ...] = STUDENT_PAIRS) -> torch.Tensor:
    """Σ ||G_m(x) − F_n(y)||² / (C_m H_m W_m); detach the side that serves as a fixed target."""
    return sum(feature_mse(taps_g[g], taps_f[f]) for g, f in pairs)  # type: ignore[return-value]


def rec_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error (METHOD.md: a mean, not a sum, so it does not drown the rest)."""
    return F.mse_loss(output.float(), target.float())


@dataclass(frozen=True)
class LossWeights:
    tea: float = 1.0
    stu: float = 1.0
    rec: float = 1.0


def student_objective(out: torch.Tensor, target: torch.Tensor, taps: Taps, other_taps: Taps,
                      teacher_p: Taps, teacher_s: Taps, teacher_pairs: tuple[tuple[str, str, str], ...],
                      is_g: bool, w: LossWeights, adapters: Mapping[str, nn.Module] | None = None
                      ) -> tuple[torch.Tensor, dict[str, float]]:
    """The full objective of one student in its alternating step.

    ``other_taps`` are the other student's features, used as fixed targets (detached here).
    Terms with weight 0 are skipped entirely, so they contribute no gradient and no compute.
    """
    fixed = {k: v.detach() for k, v in other_taps.items()}
    parts: dict[str, torch.Tensor] = {}
    if w.tea:
        parts["tea"] = tea_stu_loss(teacher_p, teacher_s, taps, teacher_pairs, adapters)
    if w.stu:
        parts["stu"] = stu_stu_loss(taps, fixed) if is_g else stu_stu_loss(fixed, taps)
    if w.rec:
        parts["rec"] = rec_loss(out, target)
    weights = {"tea": w.tea, "stu": w.stu, "rec": w.rec}
    total = sum(weights[k] * v for k, v in parts.items())
    report = {k: float(v.detach()) for k, v in parts.items()}
    return total, report  # type: ignore[return-value]
