"""The values of TrainConfig's choice options, importable without torch (the GUI's Train form).

How a student tap is compared with its target (a teacher tap, or the other student's tap):

- ``mse``: the literal ||a − b||² / (C·H·W) of METHOD.md;
- ``standardised``: MSE after standardising every channel of both over its spatial positions
  (compares where features fire, not how strongly: InstanceNorm+ReLU taps cannot take the
  teacher's per-image channel scale, which left the literal term a floor);
- ``cosine``: 1 − cosine similarity of the channel vectors at each position, averaged;
- ``regressor``: a learnable 1×1 conv on every student tap (FitNets hints), then MSE.

``lr_schedule``: ``constant`` (the paper's), or ``linear``: constant for the first half of the run,
then linear decay to 0 over the second half (pix2pix / CycleGAN).
"""

from __future__ import annotations

from sketchstudio.vocab import UPSAMPLE_MODES

TEACHER_NORMS = ("channel_mean", "none")
TAP_COMPARES = ("mse", "standardised", "cosine", "regressor")
STU_COMPARES = tuple(c for c in TAP_COMPARES if c != "regressor")
REC_LOSSES = ("l2", "l1")
LR_SCHEDULES = ("constant", "linear")

__all__ = ["LR_SCHEDULES", "REC_LOSSES", "STU_COMPARES", "TAP_COMPARES", "TEACHER_NORMS",
           "UPSAMPLE_MODES"]
