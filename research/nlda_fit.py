"""Fit the NLDA projection the matcher ships: ``python -m research.nlda_fit``.

Classes are the training identities of a paired folder (``photos/`` + ``sketches/`` with equal
stems, e.g. ../shared/data/cufs/train). Each identity contributes its photo and its sketch as the
two samples of its class, so NLDA keeps the directions in which a person's photo and sketch
coincide. That choice does not depend on any translation model, so the shipped projection stays
valid while G and F keep training; ``--extra`` adds more samples per class (e.g. synthesised
photos named like the stems) for experiments. Images must be aligned 200×250 crops.

``--jitter K`` adds K copies of every training crop under small random similarity transforms, of
the size of the face aligner's errors (docs/alignment_eval.md: median 1.2–1.7 px per eye, 97 %
within 3 px). As extra samples of the same class they put alignment noise into the within-class
scatter, so the null space NLDA projects onto ignores it; crops the matcher aligns itself (by
detection, not the dataset's hand alignment) then match better. K stays small: with N samples of
C classes the null space keeps C-1 dimensions only while N stays below the pixel count.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from sketchstudio.cliutil import report_error
from sketchstudio.errors import DataError, SketchStudioError
from sketchstudio.faces.geometry import TEMPLATE_EYES
from sketchstudio.imaging import is_image_path, load_image
from sketchstudio.match.nlda import NLDAConfig, NLDAProjection, fit_nlda
from sketchstudio.match.spaces import DEFAULT_NLDA_PATH, PixelPrep

log = logging.getLogger(__name__)
PROG = "python -m research.nlda_fit"


def _by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"Folder not found: '{folder}'.")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and is_image_path(p)}


#: alignment noise: shift (px), rotation (degrees) and relative scale, each uniform in ±value
JITTER = (2.0, 2.5, 0.04)


def jittered(crop: np.ndarray, rng: np.random.Generator, amount: tuple[float, float, float] = JITTER
             ) -> np.ndarray:
    """The crop moved, turned and scaled a little about the eyes' midpoint, as a re-alignment
    with slightly wrong eye centres would (borders replicated)."""
    shift, rot, scale = amount
    (lx, ly), (rx, ry) = TEMPLATE_EYES
    centre = ((lx + rx) / 2, (ly + ry) / 2)
    m = cv2.getRotationMatrix2D(centre, rng.uniform(-rot, rot), 1.0 + rng.uniform(-scale, scale))
    m[:, 2] += rng.uniform(-shift, shift, size=2)
    h, w = crop.shape[:2]
    return cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def fit_from_folders(data: Path, extra: list[Path] | None = None, prep: PixelPrep | None = None,
                     config: NLDAConfig | None = None, jitter: int = 0, seed: int = 0) -> NLDAProjection:
    """Fit on every stem present in both ``data/photos`` and ``data/sketches`` (plus ``jitter``
    perturbed copies of each of those crops, deterministic for a ``seed``)."""
    prep = prep or PixelPrep()
    photos, sketches = _by_stem(data / "photos"), _by_stem(data / "sketches")
    stems = sorted(set(photos) & set(sketches))
    if len(stems) < 3:
        raise DataError(f"'{data}' has only {len(stems)} photo/sketch pairs; NLDA needs more.")
    # (folder, jittered copies per crop): only the dataset's own photos and sketches are jittered
    sources = [(photos, jitter), (sketches, jitter)] + [(_by_stem(e), 0) for e in (extra or [])]
    rng = np.random.default_rng(seed)
    rows, labels, digest = [], [], hashlib.sha256()
    for src, n_copies in sources:
        for stem in stems:
            if stem in src:
                path = src[stem]
                crop = load_image(path)
                copies = [crop] + [jittered(crop, rng) for _ in range(n_copies)]
                rows += [prep.vector(c) for c in copies]
                labels += [stem] * len(copies)
                digest.update(path.read_bytes())
    if len(rows) >= prep.dim:
        raise DataError(f"{len(rows)} samples for {prep.dim} pixels: the null space would shrink "
                        "below the number of classes; use less --jitter.")
    info = {"prep": prep.to_dict(), "classes": "photo + sketch of each training identity"
            + (f" + {len(extra)} extra folder(s)" if extra else "")
            + (f", {jitter} jittered copies of each (±{JITTER[0]:g} px, ±{JITTER[1]:g}°, "
               f"±{JITTER[2] * 100:g} % scale, seed {seed})" if jitter else ""),
            "data": f"{data.parent.name}/{data.name}", "data_sha256": digest.hexdigest(),
            "n_identities": len(stems)}
    return fit_nlda(np.stack(rows), labels, config, info=info)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=PROG,
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/cufs/train",
                    help="paired folder with photos/ and sketches/ (aligned 200×250)")
    ap.add_argument("--extra", action="append", type=Path, default=[],
                    help="folder of extra samples named by stem (repeatable)")
    ap.add_argument("--out", type=Path, default=DEFAULT_NLDA_PATH)
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    ap.add_argument("--jitter", type=int, default=0, metavar="K",
                    help="add K randomly re-aligned copies of each training crop (robustness to "
                         "the aligner's errors)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        if args.jitter < 0:
            raise DataError(f"--jitter must be 0 or more, got {args.jitter}.")
        proj = fit_from_folders(Path(args.data), args.extra, jitter=args.jitter, seed=args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        proj.save(args.out, dtype=args.dtype)
    except SketchStudioError as exc:
        return report_error(PROG, exc)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {proj.dim} dims, "
          f"{proj.info['n_identities']} identities)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
