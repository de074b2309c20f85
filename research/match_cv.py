"""Held-out matching accuracy by identity-disjoint cross-validation: ``python -m research.match_cv``.

The shipped NLDA projection is fitted on all 268 CUFS training identities, so ranking those faces
says nothing about a face the matcher has never seen, and the 100 CUHK test people cover one of
the three subsets only. This tool splits the training identities into ``k`` folds (stratified by
subset: CUHK, AR, XM2VTS), and for each fold

1. fits whatever a feature space learns (NLDA; fusion weights) on the other ``k - 1`` folds only,
2. queries with the held-out fold's sketches a gallery of *all* training photos: the held-out
   people's photos plus every other fold's photos as distractors (the gallery size is reported;
   a bigger gallery is harder),
3. records the rank of each true photo, per subset, for every feature space and compare mode
   (``raw`` / ``translated`` / ``both``, as in :class:`sketchstudio.match.MatchConfig`).

Rank-k rates are reported as the mean and spread (sample standard deviation, min–max) over folds,
plus the pooled count (every identity is queried exactly once).

Feature spaces (``--spaces``):

- ``nlda``: grey pixels + null-space LDA (the matcher's default recipe: photo, sketch and 2
  jittered copies of each per identity), refitted per fold;
- ``nlda+F``: the same with F(sketch), the synthesised photo, as a third view of each identity;
- ``nlda+det``: the same with the app's own detected-and-aligned photo and sketch as extra views
  (alignment errors inside the within-class scatter; needs ``--align detect``);
- ``vgg-nlda``: NLDA on pooled relu3_1 features of the frozen VGG-19 teacher instead of pixels;
- ``embed``: dlib's face ResNet (nothing to fit);
- ``fusion``: ``w·cos(nlda) + (1 − w)·cos(embed)``, with ``w`` chosen by an inner
  cross-validation *inside the training folds* (never on the held-out fold). The same fused score
  is what :class:`sketchstudio.match.spaces.FusedFeatures` gives as one cosine.

Caveat written into every table: the translation model F was trained on all 268 training pairs,
so F(sketch) of a "held-out" training sketch comes from a network that has seen that very pair.
The ``translated`` and ``both`` rows are therefore optimistic upper bounds; ``raw`` rows are
honestly held out. Translations and embeddings are cached on disk (per checkpoint / model and
crop hash), so reruns cost seconds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sketchstudio.cliutil import report_error
from sketchstudio.errors import ConfigError, DataError, NoFaceFoundError, SketchStudioError
from sketchstudio.imaging import load_image
from sketchstudio.match import prepare_face
from sketchstudio.match.nlda import fit_nlda
from sketchstudio.match.spaces import PixelPrep
from sketchstudio.metrics.recognition import cosine_scores

log = logging.getLogger(__name__)
PROG = "python -m research.match_cv"
KS = (1, 5, 10)
SUBSETS = ("cuhk", "ar", "xm2vts")
MODES = ("raw", "translated", "both")
SPACES = ("nlda", "nlda+F", "nlda+det", "vgg-nlda", "embed", "fusion")
#: fusion weights tried by the inner cross-validation (weight of the NLDA cosine)
FUSION_GRID = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))
MISS = np.inf  # rank of a query whose face (or whose true photo) could not be aligned

#: fit(rows, idx) -> transform: ``rows`` is a list of (N, D) sample arrays (row i = identity i,
#: NaN rows = no sample), ``idx`` the identities to fit on; transform maps (M, D) -> (M, k)
Transform = Callable[[np.ndarray], np.ndarray]
FitFn = Callable[[Sequence[np.ndarray], np.ndarray], Transform]


# ---------------------------------------------------------------------------------------------
# identities and folds
@dataclass(frozen=True)
class Identity:
    stem: str
    subset: str
    photo: Path
    sketch: Path


def read_manifest(root: Path, split: str = "train") -> list[Identity]:
    """The identities of one split from ``root/MANIFEST.tsv`` (its subset column stratifies the
    folds), sorted by stem so folds do not depend on the file's row order."""
    manifest = root / "MANIFEST.tsv"
    if not manifest.is_file():
        raise DataError(f"'{manifest}' not found (the CUFS folder needs its MANIFEST.tsv).")
    with manifest.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == split]
    out = [Identity(r["stem"], r["subset"], root / r["photo"], root / r["sketch"]) for r in rows]
    missing = [i.stem for i in out if not (i.photo.is_file() and i.sketch.is_file())]
    if missing:
        raise DataError(f"{len(missing)} {split} pairs listed but missing, e.g. {missing[:3]}.")
    if len(out) < 10:
        raise DataError(f"'{manifest}' lists only {len(out)} {split} pairs.")
    return sorted(out, key=lambda i: i.stem)


def make_folds(groups: Sequence[str], k: int, seed: int = 0) -> list[np.ndarray]:
    """Split identities 0..N-1 into ``k`` disjoint folds, each subset (``groups[i]``) dealt out
    evenly so every fold holds about the same share of CUHK, AR and XM2VTS people.

    Folds are over identities, never over images: a person's photo, sketch and any copies always
    fall into the same fold, which is what makes the held-out fold unseen.
    """
    groups = np.asarray(groups)
    if k < 2 or k > len(groups):
        raise ConfigError(f"--folds must be between 2 and {len(groups)}, got {k}.")
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for g in sorted(set(groups.tolist())):
        members = rng.permutation(np.flatnonzero(groups == g))
        for j, m in enumerate(members):
            folds[(j + offset) % k].append(int(m))
        offset += len(members)  # the next subset starts where this one stopped: sizes even out
    return [np.array(sorted(f), dtype=int) for f in folds]


class LeakError(SketchStudioError):
    """A held-out identity was about to be used for fitting."""


def check_disjoint(fit: Sequence[int], held: Sequence[int]) -> None:
    """Raise :class:`LeakError` if any held-out identity is among the fitting identities."""
    both = sorted(set(np.asarray(fit).tolist()) & set(np.asarray(held).tolist()))
    if both:
        raise LeakError(f"{len(both)} held-out identities are in the fitting set: {both[:5]}.")


@dataclass(frozen=True)
class Split:
    fold: int
    fit: np.ndarray
    held: np.ndarray


def splits(folds: Sequence[np.ndarray]) -> list[Split]:
    """One :class:`Split` per fold: fit on the union of the others, checked disjoint."""
    out = []
    for i, held in enumerate(folds):
        fit = np.concatenate([f for j, f in enumerate(folds) if j != i])
        check_disjoint(fit, held)
        out.append(Split(i, np.sort(fit), np.sort(held)))
    return out


# ---------------------------------------------------------------------------------------------
# feature spaces as arrays
@dataclass
class SpaceData:
    """One feature input for all N identities (row i = identity i; NaN rows = not aligned).

    ``fit_rows`` are the samples a learnt space is fitted on (photo, sketch, jittered copies,
    optional F(sketch) or detected crops); ``photo`` is what the gallery holds, ``sketch`` and
    ``f_sketch`` what the queries hold (raw and translated). ``fit`` is None for a fixed space.
    """

    name: str
    photo: np.ndarray
    sketch: np.ndarray
    f_sketch: np.ndarray | None = None
    fit_rows: list[np.ndarray] = field(default_factory=list)
    fit: FitFn | None = None


def nlda_fit_fn(rows: Sequence[np.ndarray], idx: np.ndarray) -> Transform:
    """Fit NLDA on the samples of identities ``idx`` only (each identity one class)."""
    x, labels = [], []
    for r in rows:
        sub = r[idx]
        ok = np.isfinite(sub).all(axis=1)
        x.append(sub[ok])
        labels.append(idx[ok])
    proj = fit_nlda(np.concatenate(x), np.concatenate(labels))
    return proj.transform


def _cos(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Cosines with NaN rows (unaligned faces) kept as NaN."""
    out = np.full((len(q), len(g)), np.nan, dtype=np.float64)
    qi, gi = np.isfinite(q).all(axis=1), np.isfinite(g).all(axis=1)
    if qi.any() and gi.any():
        out[np.ix_(qi, gi)] = cosine_scores(q[qi], g[gi])
    return out


def mode_scores(space: SpaceData, fit_idx: np.ndarray, query_idx: np.ndarray,
                gallery_idx: np.ndarray, modes: Sequence[str]) -> dict[str, np.ndarray]:
    """(Q, G) scores per compare mode, with anything learnt fitted on ``fit_idx`` only."""
    check_disjoint(fit_idx, query_idx)
    transform = space.fit(space.fit_rows, fit_idx) if space.fit is not None else (lambda a: a)

    def feats(a: np.ndarray) -> np.ndarray:
        out = np.full((len(a), 0), np.nan)
        ok = np.isfinite(a).all(axis=1)
        if ok.any():
            f = np.asarray(transform(a[ok]), dtype=np.float64)
            out = np.full((len(a), f.shape[1]), np.nan)
            out[ok] = f
        return out

    g = feats(space.photo[gallery_idx])
    raw = _cos(feats(space.sketch[query_idx]), g)
    out: dict[str, np.ndarray] = {}
    if "raw" in modes:
        out["raw"] = raw
    if ("translated" in modes or "both" in modes) and space.f_sketch is not None:
        tr = _cos(feats(space.f_sketch[query_idx]), g)
        if "translated" in modes:
            out["translated"] = tr
        if "both" in modes:
            out["both"] = (tr + raw) / 2
    return out


def ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of each query's true gallery item (ties count against the truth); ``MISS``
    where the query or its true photo could not be aligned (NaN)."""
    t = scores[np.arange(len(truth)), truth]
    filled = np.where(np.isnan(scores), -np.inf, scores)
    r = (filled >= t[:, None]).sum(axis=1).astype(float)
    r[np.isnan(t)] = MISS
    return r


# ---------------------------------------------------------------------------------------------
# fusion
def fused(s_nlda: np.ndarray, s_embed: np.ndarray, w: float) -> np.ndarray:
    """The fused score; equals the cosine of the concatenated, weighted unit features
    (``FusedFeatures``), so the evaluation measures exactly what the matcher would rank by."""
    return w * s_nlda + (1.0 - w) * s_embed


def fit_fusion_weight(nlda: SpaceData, embed: SpaceData, fit_idx: np.ndarray, groups: np.ndarray,
                      mode: str, inner_k: int = 4, seed: int = 0,
                      grid: Sequence[float] = FUSION_GRID) -> float:
    """Choose the NLDA weight by an inner cross-validation over ``fit_idx`` only.

    The training identities are split again; NLDA is fitted on the inner training part and the
    inner held-out sketches query the photos of all of ``fit_idx``. The weight with the most
    rank-1 hits wins; ties (common: many weights find the same people) go to the largest mean
    margin between the true photo's score and the best other one, so the choice is the most
    confident of the equally good weights rather than an arbitrary end of the range. Nothing of
    the outer held-out fold (its photos, sketches or identities) is looked at.
    """
    inner = make_folds(groups[fit_idx], min(inner_k, len(fit_idx)), seed)
    sn, se, truth = [], [], []
    for sp in splits(inner):
        f, h = fit_idx[sp.fit], fit_idx[sp.held]
        a = mode_scores(nlda, f, h, fit_idx, [mode])
        b = mode_scores(embed, f, h, fit_idx, [mode])
        if mode not in a or mode not in b:
            raise ConfigError(f"fusion: mode '{mode}' needs translated queries in both spaces.")
        sn.append(a[mode])
        se.append(b[mode])
        truth.append(np.searchsorted(fit_idx, h))
    best: tuple[float, float] | None = None
    w_best = 1.0
    for w in grid:
        hits, margins = 0.0, []
        for x, y, t in zip(sn, se, truth, strict=True):
            s = fused(x, y, w)
            hits += float((ranks(s, t) <= 1).sum())
            true = s[np.arange(len(t)), t]
            other = np.where(np.isnan(s), -np.inf, s)
            other[np.arange(len(t)), t] = -np.inf
            m = true - other.max(axis=1)
            margins.append(np.where(np.isfinite(m), m, -1.0))  # unaligned: a fixed worst margin
        key = (hits, float(np.mean(np.concatenate(margins))))
        if best is None or key > best:
            best, w_best = key, float(w)
    return w_best


# ---------------------------------------------------------------------------------------------
@dataclass
class CVResult:
    """Ranks of every held-out query: ``ranks[space][mode]`` is (N,) over identities."""

    n: int
    folds: list[np.ndarray]
    gallery_sizes: list[int]
    ranks: dict[str, dict[str, np.ndarray]]
    fold_of: np.ndarray
    weights: dict[str, list[float]] = field(default_factory=dict)  # fusion: mode -> per fold


def cross_validate(spaces: dict[str, SpaceData], groups: Sequence[str], k: int = 5, seed: int = 0,
                   modes: Sequence[str] = MODES, fusion: bool = True,
                   fusion_pair: tuple[str, str] = ("nlda", "embed"), inner_k: int = 4
                   ) -> CVResult:
    """Identity-disjoint k-fold CV of every space (and the NLDA + embedding fusion)."""
    groups = np.asarray(groups)
    n = len(groups)
    folds = make_folds(groups, k, seed)
    gallery = np.arange(n)  # every training photo: the held-out fold's and the distractors
    res: dict[str, dict[str, np.ndarray]] = {}
    weights: dict[str, list[float]] = {}
    fold_of = np.zeros(n, dtype=int)
    sizes = []
    names = list(spaces) + (["fusion"] if fusion else [])
    for name in names:
        res[name] = {}
    for sp in splits(folds):
        t0 = time.perf_counter()
        fold_of[sp.held] = sp.fold
        truth = sp.held  # gallery = all identities in order, so position = identity index
        ref = next(iter(spaces.values()))
        sizes.append(int(np.isfinite(ref.photo).all(axis=1).sum()))
        per_space: dict[str, dict[str, np.ndarray]] = {}
        for name, space in spaces.items():
            per_space[name] = mode_scores(space, sp.fit, sp.held, gallery, modes)
        if fusion:
            a, b = fusion_pair
            per_space["fusion"] = {}
            for m in modes:
                if m not in per_space[a] or m not in per_space[b]:
                    continue
                w = fit_fusion_weight(spaces[a], spaces[b], sp.fit, groups, m, inner_k, seed)
                weights.setdefault(m, []).append(w)
                per_space["fusion"][m] = fused(per_space[a][m], per_space[b][m], w)
        for name, by_mode in per_space.items():
            for m, s in by_mode.items():
                res[name].setdefault(m, np.full(n, np.nan))[sp.held] = ranks(s, truth)
        log.info("fold %d/%d: fit %d, held out %d, gallery %d (%.0f s)%s", sp.fold + 1, k,
                 len(sp.fit), len(sp.held), sizes[-1], time.perf_counter() - t0,
                 f", fusion w {({m: v[-1] for m, v in weights.items()})}" if weights else "")
    return CVResult(n=n, folds=folds, gallery_sizes=sizes, ranks=res, fold_of=fold_of,
                    weights=weights)


def summarise(result: CVResult, groups: Sequence[str]) -> dict:
    """Per space, mode and subset (and 'all'): rank-k mean, sd and min/max over folds, and the
    pooled hits (each identity queried once)."""
    groups = np.asarray(groups)
    out: dict = {}
    for name, by_mode in result.ranks.items():
        for m, r in by_mode.items():
            row = {}
            for sub in [*[s for s in SUBSETS if s in set(groups.tolist())], "all"]:
                sel = np.ones(len(r), bool) if sub == "all" else groups == sub
                cell = {}
                for k in KS:
                    per_fold = [float((r[sel & (result.fold_of == f)] <= k).mean())
                                for f in range(len(result.folds))
                                if (sel & (result.fold_of == f)).any()]
                    cell[k] = {"mean": float(np.mean(per_fold)),
                               "sd": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0,
                               "min": float(np.min(per_fold)), "max": float(np.max(per_fold)),
                               "hits": int((r[sel] <= k).sum()), "n": int(sel.sum())}
                row[sub] = cell
            out.setdefault(name, {})[m] = row
    return out


def markdown(summary: dict, result: CVResult, title: str) -> str:
    subs = list(next(iter(next(iter(summary.values())).values())))
    lines = [f"### {title}", "",
             f"{len(result.folds)} identity-disjoint folds of {result.n} training identities "
             f"(held-out fold sizes {', '.join(str(len(f)) for f in result.folds)}); every "
             f"held-out sketch queries a gallery of {min(result.gallery_sizes)}–"
             f"{max(result.gallery_sizes)} photos (its fold's people + all other folds' as "
             "distractors). Cells: rank-1 / rank-5 / rank-10, mean over folds in % (± sd of "
             "rank-1 over folds); pooled rank-1 hits in brackets.", "",
             "| space | compare | " + " | ".join(subs) + " |",
             "| --- | --- | " + " | ".join("---" for _ in subs) + " |"]
    for name, by_mode in summary.items():
        for m, row in by_mode.items():
            cells = []
            for s in subs:
                c = row[s]
                cells.append(" / ".join(f"{100 * c[k]['mean']:.1f}" for k in KS)
                             + f" (± {100 * c[1]['sd']:.1f}) [{c[1]['hits']}/{c[1]['n']}]")
            lines.append(f"| {name} | {m} | " + " | ".join(cells) + " |")
    if result.weights:
        lines += ["", "Fusion weight of NLDA per fold (fitted inside the training folds): "
                  + "; ".join(f"{m}: {', '.join(f'{w:.2f}' for w in ws)}"
                              for m, ws in result.weights.items())]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# loading the real data (crops, translations, features), with disk caches
class VectorCache:
    """feature vectors keyed by crop hash, one .npz per feature fingerprint (reruns are cheap)."""

    def __init__(self, root: Path, key: str) -> None:
        self.path = root / f"vectors-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
        self.data: dict[str, np.ndarray] = {}
        if self.path.is_file():
            with np.load(self.path) as z:
                self.data = {k: z[k] for k in z.files}
        self.dirty = False

    def get(self, crop: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        h = hashlib.sha1(np.ascontiguousarray(crop).tobytes()).hexdigest()[:20]
        if h not in self.data:
            self.data[h] = np.asarray(fn(crop), dtype=np.float32)
            self.dirty = True
        return self.data[h]

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, **self.data)
            tmp.replace(self.path)
            self.dirty = False


def _align_all(paths: list[Path], kind: str, detect: bool) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for p in paths:
        try:
            out.append(prepare_face(load_image(p), kind, aligned=not detect)[0])
        except NoFaceFoundError:
            log.warning("no face aligned in %s", p.name)
            out.append(None)
    return out


def _stack(vectors: list[np.ndarray | None]) -> np.ndarray:
    dim = next(v.shape[0] for v in vectors if v is not None)
    return np.stack([np.full(dim, np.nan, np.float32) if v is None else v for v in vectors])


class VGGPooled:
    """Pooled relu3_1 of the frozen VGG-19 teacher on the grey face box: a texture-robust input
    for NLDA (photo and pencil strokes share VGG's edge/blob responses more than raw grey)."""

    BOX = (25, 45, 175, 245)
    POOL = (10, 8)

    def __init__(self, teacher_path: str | None) -> None:
        import torch

        from sketchstudio.models.teacher import load_teacher

        self.torch = torch
        self.teacher = load_teacher(teacher_path, allow_download=False)
        self.fingerprint = f"vgg-relu3_1-pool{self.POOL}-box{self.BOX}"

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        torch = self.torch
        from sketchstudio.imaging import to_gray

        x0, y0, x1, y1 = self.BOX
        g = to_gray(crop)[y0:y1, x0:x1].astype(np.float32) / 127.5 - 1.0
        x = torch.from_numpy(np.repeat(g[None, None], 3, axis=1))
        with torch.no_grad():
            f = self.teacher.forward_raw(x)["relu3_1"]
            f = torch.nn.functional.adaptive_avg_pool2d(f, self.POOL).flatten()
        v = torch.sqrt(f).numpy()  # ReLU outputs: the square root tames a few huge responses
        return (v - v.mean()) / (v.std() + 1e-6)


@dataclass
class Loaded:
    identities: list[Identity]
    spaces: dict[str, SpaceData]
    not_aligned: dict[str, list[str]]


def load_spaces(root: Path, wanted: Sequence[str], model: str | None, detect: bool,
                cache_root: Path, jitter: int = 2, seed: int = 0, modes: Sequence[str] = MODES,
                teacher: str | None = None) -> Loaded:
    """Crops (given or detected), F translations, and the input vectors of every wanted space."""
    from research.nlda_fit import jittered

    ids = read_manifest(root)
    t0 = time.perf_counter()
    given_ph = _align_all([i.photo for i in ids], "photo", False)
    given_sk = _align_all([i.sketch for i in ids], "sketch", False)
    ph = _align_all([i.photo for i in ids], "photo", True) if detect else given_ph
    sk = _align_all([i.sketch for i in ids], "sketch", True) if detect else given_sk
    log.info("crops (%s) in %.0f s", "detected" if detect else "given", time.perf_counter() - t0)
    not_aligned = {"photos": [i.stem for i, c in zip(ids, ph, strict=True) if c is None],
                   "sketches": [i.stem for i, c in zip(ids, sk, strict=True) if c is None]}

    f_sk: list[np.ndarray | None] | None = None
    f_given: list[np.ndarray | None] | None = None
    if any(m != "raw" for m in modes) or "nlda+F" in wanted:
        from research.recognition_eval import TranslationCache
        from sketchstudio.engine import Translator

        tr = TranslationCache(Translator(model, device="cpu", precision="fp32", fast="off"),
                              cache_root)
        t0 = time.perf_counter()
        f_sk = [None if c is None else tr(c, "sketch2photo") for c in sk]
        if "nlda+F" in wanted:  # the extra fitting view: F of the sets' own sketch crops
            f_given = f_sk if not detect else [None if c is None else tr(c, "sketch2photo")
                                               for c in given_sk]
        log.info("F(sketch): %d cached, %d computed in %.0f s", tr.hits, tr.misses,
                 time.perf_counter() - t0)
    rng = np.random.default_rng(seed)
    jit_ph = [[jittered(c, rng) for _ in range(jitter)] for c in given_ph]
    jit_sk = [[jittered(c, rng) for _ in range(jitter)] for c in given_sk]

    def vecs(fn: Callable[[np.ndarray], np.ndarray], crops: list[np.ndarray | None] | None
             ) -> np.ndarray | None:
        return None if crops is None else _stack([None if c is None else fn(c) for c in crops])

    def learnt(name: str, fn: Callable[[np.ndarray], np.ndarray], extra: list[np.ndarray]
               ) -> SpaceData:
        rows = [vecs(fn, given_ph), vecs(fn, given_sk)]
        rows += [vecs(fn, [j[i] for j in jit_ph]) for i in range(jitter)]
        rows += [vecs(fn, [j[i] for j in jit_sk]) for i in range(jitter)]
        return SpaceData(name, photo=vecs(fn, ph), sketch=vecs(fn, sk), f_sketch=vecs(fn, f_sk),
                         fit_rows=[r for r in rows if r is not None] + extra, fit=nlda_fit_fn)

    spaces: dict[str, SpaceData] = {}
    prep = PixelPrep()
    if {"nlda", "nlda+F", "nlda+det", "fusion"} & set(wanted):
        base = learnt("nlda", prep.vector, [])
        spaces["nlda"] = base
        if "nlda+F" in wanted:
            extra = vecs(prep.vector, f_given)
            spaces["nlda+F"] = SpaceData("nlda+F", base.photo, base.sketch, base.f_sketch,
                                         base.fit_rows + [extra], nlda_fit_fn)
        if "nlda+det" in wanted:
            if not detect:
                raise ConfigError("nlda+det adds detected crops to the fit: use --align detect.")
            spaces["nlda+det"] = SpaceData("nlda+det", base.photo, base.sketch, base.f_sketch,
                                           base.fit_rows + [base.photo, base.sketch], nlda_fit_fn)
    if "vgg-nlda" in wanted:
        vgg = VGGPooled(teacher)
        cache = VectorCache(cache_root, vgg.fingerprint)
        t0 = time.perf_counter()
        spaces["vgg-nlda"] = learnt("vgg-nlda", lambda c: cache.get(c, vgg), [])
        cache.save()
        log.info("VGG features in %.0f s", time.perf_counter() - t0)
    if {"embed", "fusion"} & set(wanted):
        from sketchstudio.match.spaces import DlibEmbedding

        emb = DlibEmbedding()
        cache = VectorCache(cache_root, emb.fingerprint)
        t0 = time.perf_counter()

        def fn(c: np.ndarray) -> np.ndarray:
            return cache.get(c, emb.extract)

        spaces["embed"] = SpaceData("embed", vecs(fn, ph), vecs(fn, sk), vecs(fn, f_sk))
        cache.save()
        log.info("embeddings in %.0f s", time.perf_counter() - t0)
    order = [s for s in SPACES if s in spaces]
    return Loaded(ids, {s: spaces[s] for s in order}, not_aligned)


def _write_fusion(args: argparse.Namespace, data: Loaded, groups: list[str]) -> int:
    """Fit the shipped fusion weight: the same inner cross-validation the CV runs per fold, here
    over all training identities (nothing of the CUHK test set is used)."""
    from sketchstudio.fsutil import atomic_write_json
    from sketchstudio.match.spaces import FUSION_FORMAT

    g = np.asarray(groups)
    w = fit_fusion_weight(data.spaces["nlda"], data.spaces["embed"], np.arange(len(g)), g,
                          args.fusion_mode, inner_k=args.folds, seed=args.seed)
    atomic_write_json(args.fit_fusion, {
        "format": FUSION_FORMAT, "nlda_weight": w,
        "fitted": (f"{PROG} --fit-fusion: inner {args.folds}-fold identity-disjoint CV over the "
                   f"{len(g)} CUFS training identities, compare={args.fusion_mode}, "
                   f"align={args.align}, jitter {args.jitter}, seed {args.seed}; the weight "
                   "with most rank-1 hits, ties to the largest mean margin (grid 0.05)"),
        "grid": list(FUSION_GRID)})
    print(f"wrote {args.fit_fusion}: NLDA weight {w:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/cufs"),
                    help="CUFS root with MANIFEST.tsv (its train split is cross-validated)")
    ap.add_argument("--model", default=None, help="translation checkpoint (default: shipped)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--align", choices=("given", "detect"), default="given",
                    help="given: the sets' own aligned crops; detect: the app's detection")
    ap.add_argument("--spaces", default="nlda,embed,fusion",
                    help=f"comma-separated, from {', '.join(SPACES)}")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--jitter", type=int, default=2, help="jittered copies per crop in NLDA fits")
    ap.add_argument("--teacher", default=None, help="VGG-19 file for vgg-nlda")
    ap.add_argument("--cache", type=Path, default=None,
                    help="translations and features (default: eval-cache in the user cache)")
    ap.add_argument("--fit-fusion", type=Path, metavar="OUT",
                    help="instead of evaluating, choose the fusion weight on all training "
                         "identities (inner CV with --folds folds, mode --fusion-mode) and write "
                         "the matcher's fusion file, e.g. sketchstudio/assets/matching/"
                         "fusion_cufs.json")
    ap.add_argument("--fusion-mode", choices=MODES, default="both")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(message)s")
    try:
        wanted = [s.strip() for s in args.spaces.split(",") if s.strip()]
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        bad = [s for s in wanted if s not in SPACES] + [m for m in modes if m not in MODES]
        if bad or not wanted or not modes:
            raise ConfigError(f"unknown or empty --spaces/--modes: {bad}; spaces {SPACES}, "
                              f"modes {MODES}.")
        from research.recognition_eval import default_eval_cache

        cache = args.cache or default_eval_cache()
        data = load_spaces(args.data, wanted, args.model, args.align == "detect", cache,
                           jitter=args.jitter, seed=args.seed, modes=modes, teacher=args.teacher)
        spaces = {k: v for k, v in data.spaces.items() if k in wanted or k == "nlda" and
                  "fusion" in wanted}
        if "fusion" in wanted:
            spaces.setdefault("embed", data.spaces["embed"])
        groups = [i.subset for i in data.identities]
        if args.fit_fusion:
            return _write_fusion(args, data, groups)
        t0 = time.perf_counter()
        result = cross_validate(spaces, groups, args.folds, args.seed, modes,
                                fusion="fusion" in wanted)
        log.info("cross-validation in %.0f s", time.perf_counter() - t0)
    except SketchStudioError as exc:
        return report_error(PROG, exc)
    summary = summarise(result, groups)
    title = (f"{'Sets’ own aligned crops' if args.align == 'given' else 'Face detection as the app does it'}"
             f", seed {args.seed}")
    md = markdown(summary, result, title)
    if any(data.not_aligned.values()):
        md += f"\n\nNot aligned (counted as misses): {data.not_aligned}"
    print(md)
    if args.markdown:
        args.markdown.write_text(md + "\n")
    if args.json:
        from sketchstudio.fsutil import atomic_write_json

        atomic_write_json(args.json, {
            "align": args.align, "folds": [f.tolist() for f in result.folds],
            "stems": [i.stem for i in data.identities], "gallery_sizes": result.gallery_sizes,
            "weights": result.weights, "not_aligned": data.not_aligned,
            "summary": json.loads(json.dumps(summary)),
            "ranks": {s: {m: [None if not np.isfinite(x) else int(x) for x in r]
                          for m, r in by.items()} for s, by in result.ranks.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
