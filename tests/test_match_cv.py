"""Held-out matching evaluation (research/match_cv.py), the fused feature space, the 10k bench.

Tiny synthetic data only: the checks are that the cross-validation can never fit on a held-out
identity, that fusion weights depend on the training folds alone, and that what the evaluation
scores is what the matcher ranks by.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from research import match_cv
from research.match_cv import (
    LeakError,
    SpaceData,
    check_disjoint,
    cross_validate,
    fit_fusion_weight,
    make_folds,
    mode_scores,
    nlda_fit_fn,
    ranks,
    splits,
    summarise,
)
from sketchstudio.errors import ConfigError
from sketchstudio.match.spaces import (
    DEFAULT_FUSION_PATH,
    DEFAULT_METHOD,
    METHODS,
    FusedFeatures,
    read_fusion_weight,
)
from sketchstudio.metrics.recognition import cosine_scores

GROUPS = ["cuhk"] * 9 + ["ar"] * 7 + ["xm2vts"] * 8  # 24 identities


def _space(seed: int, n: int = len(GROUPS), dim: int = 16, noise: float = 0.3,
           name: str = "s") -> SpaceData:
    rng = np.random.default_rng(seed)
    photo = rng.standard_normal((n, dim))
    sketch = photo + noise * rng.standard_normal((n, dim))
    f_sketch = photo + noise / 2 * rng.standard_normal((n, dim))
    return SpaceData(name, photo=photo, sketch=sketch, f_sketch=f_sketch)


# ---------------------------------------------------------------------------------------------
def test_folds_partition_identities_and_spread_every_subset():
    folds = make_folds(GROUPS, 4, seed=3)
    every = np.concatenate(folds)
    assert sorted(every.tolist()) == list(range(len(GROUPS)))  # each identity exactly once
    g = np.asarray(GROUPS)
    for sub in set(GROUPS):
        per_fold = [int((g[f] == sub).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1, (sub, per_fold)
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert [f.tolist() for f in make_folds(GROUPS, 4, seed=3)] == [f.tolist() for f in folds]


def test_splits_fit_on_the_other_folds_and_reject_a_leak():
    folds = make_folds(GROUPS, 3)
    for sp in splits(folds):
        assert not set(sp.fit) & set(sp.held)
        assert sorted([*sp.fit, *sp.held]) == list(range(len(GROUPS)))
    leaky = [folds[0], np.concatenate([folds[1], folds[0][:1]]), folds[2]]
    with pytest.raises(LeakError):
        splits(leaky)
    with pytest.raises(LeakError):
        check_disjoint([1, 2, 3], [3, 4])
    with pytest.raises(LeakError):  # scoring refuses, too, whoever calls it
        mode_scores(_space(0), np.arange(5), np.arange(4, 8), np.arange(24), ["raw"])


class Memoriser:
    """A 'fit' that remembers every training sketch and maps it exactly onto its photo.

    On an identity it was fitted on it is perfect; on any other it is the identity map. So a CV
    that ever fitted on a held-out identity scores better with it than without it.
    """

    def __init__(self) -> None:
        self.fitted_on: list[set[int]] = []

    def __call__(self, rows, idx):
        photo, sketch = rows
        self.fitted_on.append(set(idx.tolist()))
        table = {sketch[i].tobytes(): photo[i] for i in idx}

        def transform(x):
            return np.stack([table.get(np.asarray(r, dtype=np.float64).tobytes(), r) for r in x])

        return transform


def test_cv_never_fits_on_a_held_out_identity():
    base = _space(1, noise=1.5)  # raw sketches match poorly: only leaked memory would help
    mem = Memoriser()
    learnt = SpaceData("mem", base.photo, base.sketch, None, [base.photo, base.sketch], mem)
    fixed = SpaceData("fixed", base.photo, base.sketch)
    res = cross_validate({"mem": learnt, "fixed": fixed}, GROUPS, k=4, modes=["raw"],
                         fusion=False)
    # memorising the fitting identities gives nothing on the held-out ones ...
    np.testing.assert_array_equal(res.ranks["mem"]["raw"], res.ranks["fixed"]["raw"])
    assert np.mean(res.ranks["fixed"]["raw"] <= 1) < 0.9
    # ... while fitting on the queried identities (a leak) would make every query rank 1
    everyone = np.arange(len(GROUPS))
    t = Memoriser()([base.photo, base.sketch], everyone)
    leaked = cosine_scores(t(base.sketch), base.photo)
    assert (ranks(leaked, everyone) == 1).all()
    for fold, fit in zip(res.folds, mem.fitted_on, strict=True):
        assert not fit & set(fold.tolist())
        assert len(fit) == len(GROUPS) - len(fold)


def test_nlda_fit_sees_only_the_identities_it_is_given():
    rng = np.random.default_rng(0)
    photo = rng.standard_normal((len(GROUPS), 80))
    sketch = photo + 0.2 * rng.standard_normal(photo.shape)
    idx = np.arange(12)
    t = nlda_fit_fn([photo, sketch], idx)
    # fitted identities collapse (photo == sketch in the null space); unseen ones do not
    seen = np.abs(t(photo[idx]) - t(sketch[idx])).max()
    unseen = np.abs(t(photo[12:]) - t(sketch[12:])).max()
    assert seen < 1e-3 < unseen


def test_ranks_count_ties_and_unaligned_faces_against_the_truth():
    s = np.array([[0.5, 0.5, 0.1], [0.2, np.nan, 0.9], [np.nan, np.nan, np.nan]])
    r = ranks(s, np.array([0, 1, 2]))
    assert r[0] == 2 and np.isinf(r[1]) and np.isinf(r[2])


# ---------------------------------------------------------------------------------------------
def _flipped_spaces() -> tuple[SpaceData, SpaceData, np.ndarray, np.ndarray]:
    """'a' is informative on the first 16 identities and noise on the last 8; 'b' the reverse."""
    n, dim = len(GROUPS), 16
    rng = np.random.default_rng(5)
    held = np.arange(16, n)
    fit = np.arange(16)
    spaces = []
    for good in (fit, held):
        photo = rng.standard_normal((n, dim))
        sketch = rng.standard_normal((n, dim)) * 3  # noise ...
        sketch[good] = photo[good] + 0.05 * rng.standard_normal((len(good), dim))  # ... or signal
        spaces.append(SpaceData("x", photo, sketch, photo + 0.0))
    return spaces[0], spaces[1], fit, held


def test_fusion_weight_comes_from_the_training_folds_only():
    a, b, fit, held = _flipped_spaces()
    g = np.asarray(GROUPS)
    w = fit_fusion_weight(a, b, fit, g, "raw", inner_k=4)
    assert w >= 0.8  # on the training identities 'a' is the informative space
    # whatever the held-out rows hold (here: garbage, or swapped spaces) the weight is the same
    rng = np.random.default_rng(9)
    for poison in (lambda x: rng.standard_normal(x.shape) * 50, lambda x: x[::-1].copy()):
        a2 = SpaceData("x", a.photo.copy(), a.sketch.copy(), a.f_sketch)
        b2 = SpaceData("x", b.photo.copy(), b.sketch.copy(), b.f_sketch)
        for sp in (a2, b2):
            sp.photo[held] = poison(sp.photo[held])
            sp.sketch[held] = poison(sp.sketch[held])
        assert fit_fusion_weight(a2, b2, fit, g, "raw", inner_k=4) == w
    # fitted on the held-out identities the choice would flip: the test above can fail
    assert fit_fusion_weight(a, b, held, g, "raw", inner_k=4) <= 0.2


def test_cross_validate_passes_only_training_identities_to_the_weight_fit(monkeypatch):
    seen: list[tuple[set[int], str]] = []
    real = match_cv.fit_fusion_weight

    def spy(nlda, embed, fit_idx, groups, mode, inner_k=4, seed=0):
        seen.append((set(fit_idx.tolist()), mode))
        return real(nlda, embed, fit_idx, groups, mode, inner_k, seed)

    monkeypatch.setattr(match_cv, "fit_fusion_weight", spy)
    spaces = {"nlda": _space(2), "embed": _space(3, noise=0.6)}
    res = cross_validate(spaces, GROUPS, k=3, modes=["raw", "both"])
    assert len(seen) == 3 * 2
    for (fit, _mode), fold in zip(seen[::2], res.folds, strict=True):
        assert not fit & set(fold.tolist())
    assert set(res.weights) == {"raw", "both"} and all(len(v) == 3 for v in res.weights.values())
    s = summarise(res, GROUPS)
    assert set(s) == {"nlda", "embed", "fusion"}
    cell = s["fusion"]["both"]["all"][1]
    assert cell["n"] == len(GROUPS) and 0 <= cell["min"] <= cell["mean"] <= cell["max"] <= 1


# ---------------------------------------------------------------------------------------------
class Fixed:
    """A feature space returning stored vectors per crop (keyed by its first pixel)."""

    def __init__(self, table: dict[int, np.ndarray], name: str) -> None:
        self.table, self.name, self.fingerprint = table, name, name

    def extract(self, crop: np.ndarray) -> np.ndarray:
        return self.table[int(crop[0, 0, 0])]


def test_fused_cosine_is_the_weighted_sum_the_evaluation_scores():
    rng = np.random.default_rng(4)
    n = 6
    va, vb = rng.standard_normal((n, 9)), rng.standard_normal((n, 5))
    crops = [np.full((250, 200, 3), i, np.uint8) for i in range(n)]
    w = 0.3
    f = FusedFeatures(weight=w, parts=(Fixed(dict(enumerate(va)), "a"),
                                       Fixed(dict(enumerate(vb)), "b")))
    feats = np.stack([f.extract(c) for c in crops])
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-6)
    expect = match_cv.fused(cosine_scores(va, va), cosine_scores(vb, vb), w)
    np.testing.assert_allclose(cosine_scores(feats, feats), expect, atol=1e-5)
    assert "0.3000" in f.fingerprint
    with pytest.raises(ConfigError):
        FusedFeatures(weight=1.5, parts=(f.nlda, f.embed))


def test_shipped_fusion_weight_is_readable_and_the_default(tmp_path):
    assert DEFAULT_METHOD == "fusion" and set(METHODS) == {"fusion", "nlda", "embed"}
    doc = json.loads(DEFAULT_FUSION_PATH.read_text())
    assert 0.0 <= read_fusion_weight() == doc["nlda_weight"] <= 1.0
    bad = tmp_path / "f.json"
    bad.write_text(json.dumps({"format": "other", "nlda_weight": 0.5}))
    with pytest.raises(ConfigError):
        read_fusion_weight(bad)
    bad.write_text(json.dumps({"format": "sketchstudio-fusion/1", "nlda_weight": 2}))
    with pytest.raises(ConfigError):
        read_fusion_weight(bad)


def test_gallery_scale_benchmark_runs(tmp_path):
    from benchmarks.bench_match import run_gallery

    rows = run_gallery(n=120, root=tmp_path)
    by = {r["name"].split(",")[0]: r for r in rows}
    assert by["match index nlda"]["value"] > 0 and by["match query nlda"]["ms"] > 0
    assert by["match index on disk"]["value"] > 0
    assert by["match index memory peak (traced)"]["value"] > 0
    assert all("120" in r["name"] for r in rows)


def test_default_matcher_indexes_and_ranks_with_the_fused_space(tmp_path):
    pytest.importorskip("dlib")
    from sketchstudio.imaging import save_image
    from sketchstudio.match import MatchConfig, Matcher
    from tests.conftest import face_like

    g = tmp_path / "g"
    g.mkdir()
    for i in range(4):
        save_image(face_like(i, 200, 250), g / f"p{i}.png")
    m = Matcher(MatchConfig(aligned=True, compare="raw", cache_dir=str(tmp_path / "c")))
    assert isinstance(m.features, FusedFeatures) and m.features.weight == read_fusion_weight()
    idx, stats = m.index(g)
    assert stats.computed == 4 and idx.features.shape[1] == m.features.nlda.projection.dim + 128
    np.testing.assert_allclose(np.linalg.norm(idx.features, axis=1), 1.0, atol=1e-5)
    res = m.match(g / "p2.png", idx)
    assert res.matches[0].path.name == "p2.png"
    assert res.matches[0].score == pytest.approx(1.0, abs=1e-4)
    assert m.index_settings()["features"].startswith("fusion:")
