"""Evaluate a model on a paired test set: outputs, FSIM both ways, metrics.json.

``photo_fsim`` = FSIM(F(sketch), photo); ``sketch_fsim`` = FSIM(G(photo), sketch); outputs are
resized back to each ground truth's size (200×250 for CUFS) before scoring, as in the paper.

``input_fsim`` is the floor to read both against: FSIM between a pair's photo and its sketch, i.e. the
score of a "model" that returns its input unchanged (FSIM compares grey levels and is symmetric, so it
is the same number for both directions). On CUHK test it is 0.697, which is why a sketch FSIM of 0.71
means G has barely learnt more than the photo's grey levels, however plausible its output looks.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sketchstudio.engine import PHOTO2SKETCH, SKETCH2PHOTO, Translator
from sketchstudio.fsutil import atomic_write_json, ensure_writable_dir
from sketchstudio.imaging import load_image, save_image
from sketchstudio.metrics.fsim import fsim_gray
from sketchstudio.metrics.texture import gradient_energy

from .data import Pair, scan_pairs

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    photo_fsim: float
    sketch_fsim: float
    n_pairs: int
    input_fsim: float = 0.0
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    model: str = ""
    step: int = 0

    @property
    def mean_fsim(self) -> float:
        """The one number checkpoints are chosen by: the mean of both directions."""
        return (self.photo_fsim + self.sketch_fsim) / 2

    def subsets(self) -> dict[str, dict[str, float]]:
        """Means per subset (the stem's prefix before '_': cuhk / ar / xm2vts in CUFS)."""
        groups: dict[str, list[dict[str, float]]] = {}
        for stem, v in self.per_image.items():
            groups.setdefault(subset_of(stem), []).append(v)
        return {name: {k: statistics.fmean(r[k] for r in rows) for k in rows[0]} | {"n": len(rows)}
                for name, rows in sorted(groups.items())}

    def as_dict(self) -> dict[str, object]:
        return {"photo_fsim": self.photo_fsim, "sketch_fsim": self.sketch_fsim,
                "input_fsim": self.input_fsim, "n_pairs": self.n_pairs, "model": self.model, "step": self.step,
                "subsets": self.subsets(), "per_image": self.per_image}

    def table(self) -> str:
        floor = f"{self.input_fsim:.4f}"
        rows = [("direction", "FSIM", "input as output", "paper (KT, CUFS)"),
                ("sketch→photo (photo_fsim)", f"{self.photo_fsim:.4f}", floor, "0.7851"),
                ("photo→sketch (sketch_fsim)", f"{self.sketch_fsim:.4f}", floor, "0.7373")]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines) + f"\n{self.n_pairs} pairs, model {self.model} (step {self.step})"


def subset_of(stem: str) -> str:
    """CUFS stems start with their source (``cuhk_f-005-01``, ``ar_003``, ``xm2vts_002``)."""
    return stem.split("_", 1)[0] if "_" in stem else "all"


def evaluate(model: str | Path | Translator, data_dir: str | Path | None,
             out_dir: str | Path | None = None, split: str | None = None, device: str = "auto",
             progress: Callable[[int, int], None] | None = None,
             pairs: list[Pair] | None = None) -> EvalResult:
    """Translate every pair both ways, score FSIM, optionally write outputs + metrics.json.

    ``pairs`` scores these pairs instead of scanning ``data_dir`` (the trainer's validation split).
    """
    if pairs is None:
        if data_dir is None:
            raise ValueError("evaluate needs data_dir or pairs")
        pairs = scan_pairs(data_dir, split).require_ok("Test")
    tr = model if isinstance(model, Translator) else Translator(model, device=device, precision="fp32")
    out = ensure_writable_dir(out_dir) if out_dir else None
    if out:
        ensure_writable_dir(out / "photos")
        ensure_writable_dir(out / "sketches")
    per: dict[str, dict[str, float]] = {}
    for i, pair in enumerate(pairs):
        photo, sketch = load_image(pair.photo), load_image(pair.sketch)
        fake_sketch = tr.translate(photo, PHOTO2SKETCH).output
        fake_photo = tr.translate(sketch, SKETCH2PHOTO).output
        per[pair.stem] = {"sketch_fsim": fsim_gray(fake_sketch, sketch),
                          "photo_fsim": fsim_gray(fake_photo, photo),
                          "input_fsim": fsim_gray(photo, sketch),
                          # stroke energy of G's sketch relative to the drawing (1 = as detailed)
                          "sketch_grad_ratio": gradient_energy(fake_sketch)
                          / max(gradient_energy(sketch), 1e-6)}
        if out:
            save_image(fake_sketch, out / "sketches" / f"{pair.stem}.png")
            save_image(fake_photo, out / "photos" / f"{pair.stem}.png")
        if progress:
            progress(i + 1, len(pairs))
    result = EvalResult(
        photo_fsim=statistics.fmean(v["photo_fsim"] for v in per.values()),
        sketch_fsim=statistics.fmean(v["sketch_fsim"] for v in per.values()),
        input_fsim=statistics.fmean(v["input_fsim"] for v in per.values()),
        n_pairs=len(per), per_image=per, model=str(tr.model_path), step=int(tr.ckpt.meta.step))
    if out:
        atomic_write_json(out / "metrics.json", result.as_dict())
    return result
