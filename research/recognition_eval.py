"""Forensic matching evaluation on a paired test set: ``python -m research.recognition_eval``.

The protocol of docs/matching_eval.md: every test sketch queries the gallery of all test photos
(and every test photo the gallery of all test sketches); the truth is the item with the same
stem. Rank-1/5/10 rates are reported for each feature space and for

- ``sketch → photo (raw)``: the sketch compared with the photos as it is (``compare="raw"``);
- ``F(sketch) → photo``: the sketch translated to a photo first (``compare="translated"``);
- ``mean of both``: the mean of those two scores (``compare="both"``, the matcher's default);
- the same three for the reverse search (photo query, sketch gallery, G).

Translations go through the same code as the matcher (:func:`sketchstudio.match.prepare_face` +
``Translator``) and are cached as PNGs keyed by checkpoint hash and crop hash, because each forward
of the full model costs seconds on a CPU; re-running with the same checkpoint is then fast.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sketchstudio.cliutil import report_error
from sketchstudio.errors import ConfigError, NoFaceFoundError, SketchStudioError
from sketchstudio.fsutil import file_digest
from sketchstudio.imaging import load_image, save_image
from sketchstudio.match import prepare_face
from sketchstudio.match.spaces import DlibEmbedding, FeatureSpace, FusedFeatures, NLDAFeatures
from sketchstudio.metrics.recognition import cosine_scores, rank_k_rates

log = logging.getLogger(__name__)
KS = (1, 5, 10)
PROG = "python -m research.recognition_eval"


@dataclass
class TranslationCache:
    """translate(crop, direction) with outputs kept on disk under ``root/<ckpt>/<direction>``."""

    translator: object
    root: Path
    hits: int = 0
    misses: int = 0

    def __post_init__(self) -> None:
        self.key = file_digest(self.translator.model_path)[:16]

    def __call__(self, crop: np.ndarray, direction: str) -> np.ndarray:
        name = hashlib.sha1(np.ascontiguousarray(crop).tobytes()).hexdigest()[:20] + ".png"
        path = self.root / self.key / direction / name
        if path.is_file():
            self.hits += 1
            return load_image(path)
        self.misses += 1
        out = self.translator.translate(crop, direction).output
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(out, path)
        return out


def _crops(folder: Path, stems: list[str], kind: str, aligned: bool
           ) -> tuple[list[np.ndarray | None], list[str]]:
    crops, failed = [], []
    for s in stems:
        path = next(folder.glob(s + ".*"))
        try:
            crops.append(prepare_face(load_image(path), kind, aligned)[0])
        except NoFaceFoundError:
            crops.append(None)
            failed.append(path.name)
    return crops, failed


def _features(fs: FeatureSpace, crops: list[np.ndarray | None]) -> list[np.ndarray | None]:
    return [None if c is None else fs.extract(c) for c in crops]


def _rates(queries: list[list[np.ndarray | None]], gallery: list[np.ndarray | None]
           ) -> dict[int, float]:
    """Rank-k over all queries (score = mean cosine over the query feature lists, as in
    ``Matcher.scores``); a query or truth that could not be aligned counts as a miss."""
    g_ok = [i for i, f in enumerate(gallery) if f is not None]
    pos = {g: j for j, g in enumerate(g_ok)}
    q_ok = [i for i in range(len(queries[0]))
            if all(q[i] is not None for q in queries) and i in pos]
    if not q_ok:
        return dict.fromkeys(KS, 0.0)
    g = np.stack([gallery[i] for i in g_ok])
    scores = np.mean([cosine_scores(np.stack([q[i] for i in q_ok]), g) for q in queries], axis=0)
    r = rank_k_rates(scores, [pos[i] for i in q_ok], KS)
    return {k: v * len(q_ok) / len(queries[0]) for k, v in r.items()}


def evaluate(data: Path, translator, cache_root: Path, spaces: dict[str, FeatureSpace],
             aligned: bool = True) -> dict:
    photos = {p.stem for p in (data / "photos").iterdir()}
    stems = sorted(photos & {p.stem for p in (data / "sketches").iterdir()})
    sk, sk_fail = _crops(data / "sketches", stems, "sketch", aligned)
    ph, ph_fail = _crops(data / "photos", stems, "photo", aligned)
    tr = TranslationCache(translator, cache_root)
    t0 = time.perf_counter()
    f_sk = [None if c is None else tr(c, "sketch2photo") for c in sk]
    g_ph = [None if c is None else tr(c, "photo2sketch") for c in ph]
    log.info("translations: %d cached, %d computed in %.0f s", tr.hits, tr.misses,
             time.perf_counter() - t0)
    table = {}
    for name, fs in spaces.items():
        t0 = time.perf_counter()
        f = {k: _features(fs, v) for k, v in
             {"sk": sk, "ph": ph, "f_sk": f_sk, "g_ph": g_ph}.items()}
        table[name] = {
            "sketch → photo (raw)": _rates([f["sk"]], f["ph"]),
            "F(sketch) → photo": _rates([f["f_sk"]], f["ph"]),
            "mean of both → photo (default)": _rates([f["f_sk"], f["sk"]], f["ph"]),
            "photo → sketch (raw)": _rates([f["ph"]], f["sk"]),
            "G(photo) → sketch": _rates([f["g_ph"]], f["sk"]),
            "mean of both → sketch (default)": _rates([f["g_ph"], f["ph"]], f["sk"]),
        }
        log.info("%s: features in %.0f s", name, time.perf_counter() - t0)
    meta = translator.ckpt.meta
    return {"data": str(data), "n": len(stems), "aligned": aligned,
            "checkpoint": str(translator.model_path), "step": meta.step, "epoch": meta.epoch,
            "not_aligned": {"sketches": sk_fail, "photos": ph_fail},
            "features": {k: v.fingerprint for k, v in spaces.items()}, "rates": table}


def markdown(result: dict) -> str:
    lines = [f"CUHK test, {result['n']} identities, checkpoint step {result['step']} "
             f"({'aligned crops' if result['aligned'] else 'face detection on'})", "",
             "| features | query → gallery | rank-1 | rank-5 | rank-10 |",
             "| --- | --- | --- | --- | --- |"]
    for name, rows in result["rates"].items():
        for cond, r in rows.items():
            # keys are ints in memory and strings once read back from --json
            lines.append(f"| {name} | {cond} | " + " | ".join(f"{100 * r.get(k, r.get(str(k))):.0f} %" for k in KS)
                         + " |")
    return "\n".join(lines)


#: feature spaces the evaluation can score, each made from the ``--nlda`` path (None: shipped)
SPACE_MAKERS: dict[str, Callable[[str | None], FeatureSpace]] = {
    "fusion": FusedFeatures,  # the shipped weight (sketchstudio/assets/matching/fusion_cufs.json)
    "nlda": NLDAFeatures,
    "embed": lambda _nlda: DlibEmbedding(),
    "embed (grey)": lambda _nlda: DlibEmbedding(gray=True),
}
SPACES = tuple(SPACE_MAKERS)


def default_eval_cache() -> Path:
    """``eval-cache`` in the per-user cache folder (see :func:`sketchstudio.userdirs.user_cache_dir`)."""
    from sketchstudio.userdirs import user_cache_dir

    return user_cache_dir() / "eval-cache"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=PROG,
                                 description="Rank-k sketch↔photo matching rates on a test set.")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/cufs/test"))
    ap.add_argument("--model", default="runs/kt-cufs/checkpoint.safetensors")
    ap.add_argument("--cache", type=Path, default=None,
                    help="where translated test faces are kept between runs (default: "
                         "'eval-cache' in the per-user cache folder; a fixed /tmp path could be "
                         "pre-created or read by another user)")
    ap.add_argument("--nlda", help="NLDA projection .npz (default: the shipped one)")
    ap.add_argument("--detect", action="store_true",
                    help="align with face detection instead of trusting the crops")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--spaces", default=",".join(SPACES),
                    help=f"comma-separated feature spaces to score (default: {','.join(SPACES)})")
    ap.add_argument("--json", type=Path, help="also write the numbers as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    from sketchstudio.engine import Translator

    try:
        wanted = [s.strip() for s in args.spaces.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in SPACES]
        if unknown or not wanted:
            raise ConfigError(f"--spaces: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
                              f"choose from {', '.join(SPACES)}.")
        translator = Translator(args.model, device=args.device, precision="fp32")
        spaces = {s: SPACE_MAKERS[s](args.nlda) for s in wanted}
        result = evaluate(args.data, translator, args.cache or default_eval_cache(), spaces,
                          aligned=not args.detect)
    except SketchStudioError as exc:
        return report_error(PROG, exc)
    print(markdown(result))
    if result["not_aligned"]["sketches"] or result["not_aligned"]["photos"]:
        print(f"\nnot aligned (counted as misses): {result['not_aligned']}")
    if args.json:
        from sketchstudio.fsutil import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
