"""What FSIM numbers mean on a paired test set: the score of simple stand-ins for a model's output.

``python -m research.fsim_calibration --data ../shared/data/cufs/test [--outputs EVAL_DIR]``

FSIM between a photo and its own sketch is already ≈0.70 on CUHK, and a sketch shifted by two pixels
scores ≈0.78, so a model's sketch FSIM only means something next to such anchors. For each test
pair this scores, against the ground-truth sketch (and photo):

- the input returned unchanged (the photo as its own sketch; FSIM is symmetric, so this is also the
  sketch as its own photo),
- the ground truth blurred (σ = 1, 2, 3 px): how much a smooth but exact image loses,
- the ground truth shifted 2 px sideways: how much a 1 % misalignment loses,
- with ``--outputs`` (a ``sketchstudio-eval --out`` folder): the model's outputs, and the ratio of
  their mean gradient magnitude to the ground truth's (below 1 = smoother than the drawing).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from sketchstudio.cliutil import positive_int, report_error
from sketchstudio.errors import DataError, SketchStudioError
from sketchstudio.imaging import load_image
from sketchstudio.metrics.fsim import fsim_gray
from sketchstudio.metrics.texture import gradient_energy
from trainer.data import scan_pairs

PROG = "python -m research.fsim_calibration"

Stand_in = Callable[[np.ndarray], np.ndarray]

#: name → ground truth → image scored against it
STAND_INS: dict[str, Stand_in] = {
    "truth blurred σ=1": lambda truth: cv2.GaussianBlur(truth, (0, 0), 1.0),
    "truth blurred σ=2": lambda truth: cv2.GaussianBlur(truth, (0, 0), 2.0),
    "truth blurred σ=3": lambda truth: cv2.GaussianBlur(truth, (0, 0), 3.0),
    "truth shifted 2 px": lambda truth: np.roll(truth, 2, axis=1),
}


def calibrate(data_dir: str | Path, outputs: str | Path | None = None,
              limit: int | None = None) -> dict[str, dict[str, float]]:
    """Mean FSIM of each stand-in (and of the model's outputs), per direction.

    Returns ``{row: {"sketch": FSIM vs true sketch, "photo": FSIM vs true photo}}``; with outputs, a
    ``"gradient ratio"`` row holds output/truth gradient energy per direction.
    """
    pairs = scan_pairs(data_dir).require_ok("Test")[:limit]
    out_dir = Path(outputs) if outputs else None
    if out_dir is not None:
        missing = [p.stem for p in pairs for sub in ("sketches", "photos")
                   if not (out_dir / sub / f"{p.stem}.png").is_file()]
        if missing:
            raise DataError(f"'{out_dir}' is not a complete sketchstudio-eval output folder: no "
                                    f"sketches/ or photos/ PNG for {len(missing)} test pair(s), e.g. "
                                    f"{missing[0]}. Run sketchstudio-eval --out {out_dir} first.")
    scores: dict[str, dict[str, list[float]]] = {}

    def add(row: str, direction: str, value: float) -> None:
        scores.setdefault(row, {}).setdefault(direction, []).append(value)

    for pair in pairs:
        photo, sketch = load_image(pair.photo), load_image(pair.sketch)
        floor = fsim_gray(photo, sketch)  # FSIM is symmetric: the same floor for both directions
        add("input unchanged", "sketch", floor)
        add("input unchanged", "photo", floor)
        for direction, truth, sub in (("sketch", sketch, "sketches"), ("photo", photo, "photos")):
            for name, make in STAND_INS.items():
                add(name, direction, fsim_gray(make(truth), truth))
            if out_dir is not None:
                ours = load_image(out_dir / sub / f"{pair.stem}.png")
                add("model output", direction, fsim_gray(ours, truth))
                add("gradient ratio", direction, gradient_energy(ours) / max(gradient_energy(truth), 1e-6))
    return {row: {d: statistics.fmean(v) for d, v in by_dir.items()} for row, by_dir in scores.items()}


def table(result: dict[str, dict[str, float]]) -> str:
    lines = [f"{'stand-in':22s}  {'sketch FSIM':>11s}  {'photo FSIM':>10s}", "-" * 47]
    for row, v in result.items():
        lines.append(f"{row:22s}  {v['sketch']:11.4f}  {v['photo']:10.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="paired test folder: photos/ + sketches/")
    p.add_argument("--outputs", help="a sketchstudio-eval --out folder to score alongside")
    p.add_argument("--limit", type=positive_int, help="only the first N pairs")
    args = p.parse_args(argv)
    try:
        print(table(calibrate(args.data, args.outputs, args.limit)))
    except SketchStudioError as exc:
        return report_error(PROG, exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
