"""Fit the NLDA projection the matcher ships: ``python -m sketchstudio.metrics.nlda_fit``.

Classes are the training identities of a paired folder (``photos/`` + ``sketches/`` with equal
stems, e.g. ../shared/data/cufs/train). Each identity contributes its photo and its sketch as the
two samples of its class, so NLDA keeps the directions in which a person's photo and sketch
coincide. That choice does not depend on any translation model, so the shipped projection stays
valid while G and F keep training; ``--extra`` adds more samples per class (e.g. synthesised
photos named like the stems) for experiments. Images must be aligned 200×250 crops.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

import numpy as np

from ..errors import DataError, SketchStudioError
from ..imaging import is_image_path, load_image
from ..match_features import DEFAULT_NLDA_PATH, PixelPrep
from .recognition import NLDAConfig, NLDAProjection, fit_nlda

log = logging.getLogger(__name__)


def _by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"Folder not found: '{folder}'.")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and is_image_path(p)}


def fit_from_folders(data: Path, extra: list[Path] | None = None, prep: PixelPrep | None = None,
                     config: NLDAConfig | None = None) -> NLDAProjection:
    """Fit on every stem present in both ``data/photos`` and ``data/sketches``."""
    prep = prep or PixelPrep()
    photos, sketches = _by_stem(data / "photos"), _by_stem(data / "sketches")
    stems = sorted(set(photos) & set(sketches))
    if len(stems) < 3:
        raise DataError(f"'{data}' has only {len(stems)} photo/sketch pairs; NLDA needs more.")
    sources = [photos, sketches] + [_by_stem(e) for e in (extra or [])]
    rows, labels, digest = [], [], hashlib.sha256()
    for src in sources:
        for stem in stems:
            if stem in src:
                path = src[stem]
                rows.append(prep.vector(load_image(path)))
                labels.append(stem)
                digest.update(path.read_bytes())
    info = {"prep": prep.to_dict(), "classes": "photo + sketch of each training identity"
            + (f" + {len(extra)} extra folder(s)" if extra else ""),
            "data": f"{data.parent.name}/{data.name}", "data_sha256": digest.hexdigest(),
            "n_identities": len(stems)}
    return fit_nlda(np.stack(rows), labels, config, info=info)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sketchstudio.metrics.nlda_fit",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/cufs/train",
                    help="paired folder with photos/ and sketches/ (aligned 200×250)")
    ap.add_argument("--extra", action="append", type=Path, default=[],
                    help="folder of extra samples named by stem (repeatable)")
    ap.add_argument("--out", type=Path, default=DEFAULT_NLDA_PATH)
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        proj = fit_from_folders(Path(args.data), args.extra)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        proj.save(args.out, dtype=args.dtype)
    except SketchStudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {proj.dim} dims, "
          f"{proj.info['n_identities']} identities)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
