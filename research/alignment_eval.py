"""Measure eye-detection accuracy on pre-aligned CUFS crops (and calibrate the eye offset).

CUFS crops have their eye centres at the template positions, so the detected eyes of every
image should land there. ``--calibrate`` fits :data:`~sketchstudio.faces.detect.EYE_CORRECTION`
on the *train* photos only (never on test); without it the current correction is evaluated.

    python -m research.alignment_eval /path/to/cufs [--calibrate] [--markdown docs/alignment_eval.md]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sketchstudio.errors import NoFaceFoundError
from sketchstudio.faces.detect import EYE_CORRECTION, correct_eyes, detect, eyes_from_landmarks
from sketchstudio.faces.geometry import TEMPLATE_EYES, Eyes
from sketchstudio.imaging import IMAGE_SUFFIXES, load_image

log = logging.getLogger(__name__)

T = np.asarray(TEMPLATE_EYES, dtype=np.float64)
TOLERANCE_PX = 3.0


@dataclass
class SetResult:
    name: str
    n: int
    found: int
    within: float  # share of images with both eyes within TOLERANCE_PX
    median_max: float  # median over images of the worse eye's error
    median_eye: float  # median over all eyes
    p95_max: float
    methods: dict[str, int]
    ms_per_image: float


def raw_detections(folder: Path, kind: str) -> tuple[list[Eyes | None], list[str], float]:
    """Uncorrected dlib eye centres (None where no face), methods, seconds per image."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    out: list[Eyes | None] = []
    methods: list[str] = []
    t0 = time.perf_counter()
    for f in files:
        try:
            d = detect(load_image(f), kind)
        except NoFaceFoundError:
            out.append(None)
            methods.append("none")
            continue
        methods.append(d.method)
        out.append(eyes_from_landmarks(d.landmarks) if d.landmarks is not None else d.eyes)
    return out, methods, (time.perf_counter() - t0) / max(1, len(files))


def offsets_in_eye_frame(raw: Eyes) -> np.ndarray:
    """Template eyes minus detected eyes, in units of (u = R − L, v = perp(u)) — scale-free."""
    (lx, ly), (rx, ry) = raw
    u = np.array([rx - lx, ry - ly])
    v = np.array([-u[1], u[0]])
    dd = float(u @ u)
    e = np.array(raw)
    return np.array([[(T[i] - e[i]) @ u / dd, (T[i] - e[i]) @ v / dd] for i in range(2)])


def calibrate(raw: list[Eyes | None]) -> tuple[tuple[float, float], tuple[float, float]]:
    offs = np.array([offsets_in_eye_frame(r) for r in raw if r is not None])
    m = offs.mean(axis=0)
    return ((round(float(m[0, 0]), 4), round(float(m[0, 1]), 4)),
            (round(float(m[1, 0]), 4), round(float(m[1, 1]), 4)))


def score(name: str, raw: list[Eyes | None], methods: list[str], sec: float,
          correction: tuple[tuple[float, float], tuple[float, float]] = EYE_CORRECTION) -> SetResult:
    errs = []
    for r, m in zip(raw, methods, strict=True):
        if r is None:
            continue
        e = np.array(correct_eyes(r, correction) if m.startswith("dlib") else r)
        errs.append(np.hypot(*(e - T).T))
    err = np.array(errs) if errs else np.zeros((0, 2))
    worst = err.max(axis=1) if len(err) else np.zeros(0)
    n = len(raw)
    return SetResult(
        name=name, n=n, found=len(err),
        within=float((worst <= TOLERANCE_PX).sum() / n) if n else 0.0,
        median_max=float(np.median(worst)) if len(worst) else float("nan"),
        median_eye=float(np.median(err)) if len(err) else float("nan"),
        p95_max=float(np.percentile(worst, 95)) if len(worst) else float("nan"),
        methods={m: methods.count(m) for m in sorted(set(methods))},
        ms_per_image=sec * 1000)


def table(rows: list[SetResult]) -> str:
    lines = ["| set | images | found | both eyes ≤ 3 px | median error (worse eye) | "
             "median error (per eye) | 95th pct (worse eye) | methods | ms/image |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        methods = ", ".join(f"{k} {v}" for k, v in r.methods.items())
        lines.append(f"| {r.name} | {r.n} | {r.found} | {r.within:.1%} | {r.median_max:.2f} px | "
                     f"{r.median_eye:.2f} px | {r.p95_max:.2f} px | {methods} | {r.ms_per_image:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.alignment_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cufs", help="CUFS folder with train/ and test/ (photos/ and sketches/ each)")
    p.add_argument("--calibrate", action="store_true",
                   help="fit the eye offset on train photos and evaluate with it")
    p.add_argument("--markdown", help="also write the tables to this file")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    root = Path(a.cufs)
    raw = {}
    for split in ("train", "test"):
        for kind in ("photo", "sketch"):
            raw[split, kind] = raw_detections(root / split / ("photos" if kind == "photo" else "sketches"), kind)
    correction = calibrate(raw["train", "photo"][0]) if a.calibrate else EYE_CORRECTION
    none = ((0.0, 0.0), (0.0, 0.0))
    rows_corr = [score(f"{s} {k}", *raw[s, k], correction) for s in ("test", "train")
                 for k in ("photo", "sketch")]
    rows_raw = [score(f"{s} {k}", *raw[s, k], none) for s in ("test", "train")
                for k in ("photo", "sketch")]
    out = (f"Eye correction (train photos): {correction}\n\nWith the correction:\n\n"
           f"{table(rows_corr)}\n\nWithout it (dlib eye-corner means as they are):\n\n{table(rows_raw)}\n")
    print(out)
    if a.markdown:
        Path(a.markdown).write_text(out, encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
