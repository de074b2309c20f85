"""Forensic matching: NLDA maths, gallery index cache, ranking, problem files, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sketchstudio.errors import ConfigError, NoFaceFoundError
from sketchstudio.imaging import save_image
from sketchstudio.match import MatchConfig, Matcher
from sketchstudio.match.index import NO_FACE, UNREADABLE, GalleryIndex, IndexCancelled
from sketchstudio.match.nlda import NLDAProjection, fit_nlda, within_between_ratio
from sketchstudio.match.spaces import TEMPLATE_SIZE, NLDAFeatures
from sketchstudio.metrics.recognition import cosine_scores, rank_k_rates, ranks_of_truth
from tests.conftest import face_like

W, H = TEMPLATE_SIZE


def face(seed: int, sketch: bool = False) -> np.ndarray:
    return face_like(seed, W, H, sketch=sketch)


class Counting:
    """Wraps a feature space and counts extractions (to prove the cache is used)."""

    def __init__(self, inner, fingerprint: str | None = None) -> None:
        self.inner, self.calls, self.name = inner, 0, inner.name
        self.fingerprint = fingerprint or inner.fingerprint

    def extract(self, crop: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.inner.extract(crop)


class EchoTranslator:
    """Stands in for the network: returns its input, records the direction asked for."""

    def __init__(self) -> None:
        self.directions: list[str] = []

    def translate(self, img, direction):
        self.directions.append(direction)
        return type("T", (), {"output": img})()


@pytest.fixture
def gallery(tmp_path) -> Path:
    g = tmp_path / "gallery"
    (g / "sub").mkdir(parents=True)
    for i in range(5):
        save_image(face(i), g / f"p{i}.png")
    save_image(face(5), g / "sub" / "p5.jpg")
    return g


def matcher(tmp_path, features=None, translator=None, **kw) -> Matcher:
    # NLDA unless a test asks otherwise: these tests are about the index and the ranking, and
    # the default fusion runs dlib's ResNet per face (tests/test_match_cv.py covers it)
    kw.setdefault("method", "nlda")
    cfg = MatchConfig(aligned=True, cache_dir=str(tmp_path / "cache"), **kw)
    return Matcher(cfg, features=features, translator=translator or EchoTranslator())


# ------------------------------------------------------------------------------------- NLDA
def synthetic_classes(n_classes=12, per_class=2, dim=60, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3
    offsets = rng.normal(size=(per_class, dim))  # a shared "modality" shift, like photo vs sketch
    x = np.concatenate([centres + offsets[j] + noise * rng.normal(size=centres.shape)
                        for j in range(per_class)])
    labels = np.tile(np.arange(n_classes), per_class)
    return x, labels, centres, offsets, rng


def test_nlda_collapses_training_classes_and_ranks_new_samples():
    x, labels, centres, offsets, rng = synthetic_classes()
    proj = fit_nlda(x, labels)
    assert proj.dim == 11  # C - 1
    feats = proj.transform(x)
    assert within_between_ratio(feats, labels) < 1e-8
    assert within_between_ratio(x, labels) > 0.01
    # new samples of the same people (other noise): modality 1 queries modality 0 gallery
    g = proj.transform(centres + offsets[0] + 0.3 * rng.normal(size=centres.shape))
    q = proj.transform(centres + offsets[1] + 0.3 * rng.normal(size=centres.shape))
    assert rank_k_rates(cosine_scores(q, g), range(12), (1,))[1] == 1.0


def test_nlda_save_load_roundtrip(tmp_path):
    x, labels, *_ = synthetic_classes()
    proj = fit_nlda(x, labels, info={"prep": {"note": "test"}})
    path = proj.save(tmp_path / "p.npz", dtype="float32")
    back = NLDAProjection.load(path)
    np.testing.assert_allclose(back.transform(x), proj.transform(x), rtol=1e-5, atol=1e-5)
    assert back.info["prep"] == {"note": "test"}
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(Exception, match="not a readable NLDA"):
        NLDAProjection.load(tmp_path / "bad.npz")


def test_nlda_rejects_too_few_samples():
    with pytest.raises(ConfigError):
        fit_nlda(np.zeros((3, 5)), [0, 1, 2])


def test_ranks_of_truth_counts_ties_against_truth():
    s = np.array([[0.9, 0.1, 0.9], [0.2, 0.8, 0.1]])
    assert ranks_of_truth(s, [0, 1]).tolist() == [2, 1]
    assert rank_k_rates(s, [0, 1], (1, 2)) == {1: 0.5, 2: 1.0}


def test_shipped_projection_loads():
    f = NLDAFeatures()
    assert f.projection.info["prep"] and f.projection.dim > 50
    assert f.extract(face(0)).shape == (f.projection.dim,)


# ---------------------------------------------------------------------------------- ranking
def test_identical_face_ranks_first_and_translation_direction(tmp_path, gallery):
    tr = EchoTranslator()
    m = matcher(tmp_path, translator=tr)
    idx, stats = m.index(gallery)
    assert stats.computed == 6 and stats.total == 6
    res = m.match(face(3), idx, top_k=0)
    assert res.matches[0].path == gallery / "p3.png"
    assert res.matches[0].score == pytest.approx(1.0, abs=1e-3)
    assert [x.score for x in res.matches] == sorted((x.score for x in res.matches), reverse=True)
    assert len(res.matches) == 6 and tr.directions == ["sketch2photo"]
    # the reverse search goes through G
    m2 = matcher(tmp_path, translator=tr, query_kind="photo")
    idx2, _ = m2.index(gallery)
    assert m2.match(face(5), idx2, top_k=2).matches[0].path == gallery / "sub" / "p5.jpg"
    assert tr.directions[-1] == "photo2sketch"


class InvertTranslator(EchoTranslator):
    def translate(self, img, direction):
        self.directions.append(direction)
        return type("T", (), {"output": 255 - img})()


def test_compare_modes_and_default_is_mean(tmp_path, gallery):
    scores = {}
    for mode in ("both", "translated", "raw"):
        tr = InvertTranslator()
        m = matcher(tmp_path, translator=tr, compare=mode)
        idx, _ = m.index(gallery)
        res = m.match(face(2), idx, top_k=0)
        scores[mode] = {h.path.name: h.score for h in res.matches}
        assert len(res.query.features) == (2 if mode == "both" else 1)
        assert tr.directions == ([] if mode == "raw" else ["sketch2photo"])
    assert max(scores["raw"], key=scores["raw"].get) == "p2.png"
    for name, both in scores["both"].items():
        assert both == pytest.approx((scores["raw"][name] + scores["translated"][name]) / 2,
                                     abs=1e-5)
    with pytest.raises(ConfigError):
        MatchConfig(compare="sideways")


def test_real_tiny_model_query(tmp_path, gallery, tiny_model):
    m = Matcher(MatchConfig(aligned=True, cache_dir=str(tmp_path / "c"), model=str(tiny_model),
                            device="cpu", top_k=3))
    idx, _ = m.index(gallery)
    res = m.match(face(1, sketch=True), idx)
    assert res.query.compared.shape == (H, W, 3) and len(res.matches) == 3


# ------------------------------------------------------------------------------------ cache
def test_cache_reused_and_invalidated(tmp_path, gallery):
    feats = Counting(NLDAFeatures())
    m = matcher(tmp_path, features=feats)
    idx, s1 = m.index(gallery)
    assert feats.calls == 6 and s1.computed == 6
    _, s2 = m.index(gallery)  # same process, fresh open from disk
    assert feats.calls == 6 and s2.reused == 6 and s2.computed == 0

    os.utime(gallery / "p1.png", ns=(1, 1))  # touched, same bytes: hashed, not recomputed
    _, s3 = m.index(gallery)
    assert feats.calls == 6 and s3.computed == 0

    save_image(face(99), gallery / "p2.png")  # content changed
    save_image(face(7), gallery / "new.png")  # added
    (gallery / "p4.png").unlink()  # removed
    idx, s4 = m.index(gallery)
    assert feats.calls == 8 and s4.computed == 2 and s4.removed == 1 and s4.total == 6
    assert Matcher.match(m, face(99), idx).matches[0].path == gallery / "p2.png"

    other = Counting(NLDAFeatures(), fingerprint="nlda:another-projection")
    _, s5 = matcher(tmp_path, features=other).index(gallery)
    assert s5.invalidated and other.calls == 6


def test_cache_files_are_plain_numpy_and_json(tmp_path, gallery):
    m = matcher(tmp_path)
    idx, _ = m.index(gallery)
    doc = json.loads((idx.cache_dir / "index.json").read_text())
    arr = np.load(idx.cache_dir / doc["features_file"])
    assert arr.shape == (6, m.features.projection.dim)
    assert {e["path"] for e in doc["entries"]} == {"p0.png", "p1.png", "p2.png", "p3.png",
                                                  "p4.png", "sub/p5.jpg"}
    assert all(len(e["sha256"]) == 64 for e in doc["entries"])
    assert len(list(idx.cache_dir.glob("features-*.npy"))) == 1


def test_cancel_keeps_finished_files_and_progress(tmp_path, gallery):
    feats = Counting(NLDAFeatures())
    m = matcher(tmp_path, features=feats)
    seen: list[tuple[int, int]] = []
    with pytest.raises(IndexCancelled):
        m.index(gallery, progress=lambda d, t, p: seen.append((d, t)), cancel=lambda: len(seen) >= 2)
    assert seen == [(1, 6), (2, 6)] and feats.calls == 2
    _, stats = m.index(gallery)
    assert stats.reused == 2 and stats.computed == 4 and feats.calls == 6


def test_problem_files_are_reported_and_the_rest_ranked(tmp_path, gallery, monkeypatch):
    (gallery / "notes.jpg").write_text("this is not an image")
    data = (gallery / "p0.png").read_bytes()
    (gallery / "truncated.png").write_bytes(data[: len(data) // 3])
    save_image(np.full((H, W, 3), 200, np.uint8), gallery / "blank.png")

    import sketchstudio.match.matcher as match_mod

    real = match_mod.prepare_face

    def fake_align(img, kind, aligned):  # a blank image has no face
        if img.std() == 0:
            raise NoFaceFoundError("No face found.")
        return real(img, kind, True)

    monkeypatch.setattr(match_mod, "prepare_face", fake_align)
    m = matcher(tmp_path)
    idx, stats = m.index(gallery)
    probs = {p.path.name: p.status for p in idx.problems()}
    assert probs == {"notes.jpg": UNREADABLE, "truncated.png": UNREADABLE, "blank.png": NO_FACE}
    assert stats.problems == 3 and len(idx.paths()) == 6
    assert m.match(face(4), idx).matches[0].path == gallery / "p4.png"
    # problems are remembered, not retried, until the file changes
    _, again = m.index(gallery)
    assert again.computed == 0 and again.problems == 3


def test_real_detector_reports_faceless_image(tmp_path):
    try:
        from sketchstudio.faces import align  # noqa: F401
    except ImportError:
        pytest.skip("sketchstudio.faces (face detection) is not available")
    g = tmp_path / "g"
    g.mkdir()
    save_image(np.full((300, 240, 3), 128, np.uint8), g / "blank.png")
    m = Matcher(MatchConfig(aligned=False, cache_dir=str(tmp_path / "c")),
                translator=EchoTranslator())
    idx, _ = m.index(g)
    assert [p.status for p in idx.problems()] == [NO_FACE]


def test_corrupt_index_is_rebuilt(tmp_path, gallery):
    m = matcher(tmp_path)
    idx, _ = m.index(gallery)
    (idx.cache_dir / "index.json").write_text("{broken")
    again = GalleryIndex.open(gallery, m.index_settings(), tmp_path / "cache")
    assert again.entries == {}
    _, stats = m.index(gallery)
    assert stats.computed == 6


# -------------------------------------------------------------------------------------- CLI
def test_cli_ranks_writes_json_and_lists_problems(tmp_path, gallery, tiny_model, capsys):
    from sketchstudio.match.cli import main

    (gallery / "bad.png").write_bytes(b"\x89PNG broken")
    q = tmp_path / "query.png"
    save_image(face(2, sketch=True), q)
    missing = tmp_path / "nope.png"
    out = tmp_path / "hits.json"
    rc = main(["--gallery", str(gallery), str(q), str(missing), "--top", "3", "--json", str(out),
               "--model", str(tiny_model), "--aligned", "--device", "cpu",
               "--cache-dir", str(tmp_path / "c")])
    text = capsys.readouterr().out
    assert rc == 1  # one query could not be read
    assert "bad.png" in text and "nope.png" in text
    hits = json.loads(out.read_text())
    assert list(hits[str(q)][0]) == ["path", "score"] and len(hits[str(q)]) == 3
    scores = [h["score"] for h in hits[str(q)]]
    assert scores == sorted(scores, reverse=True) and hits[str(missing)] == []


def test_cli_raw_compare_finds_identical(tmp_path, gallery, capsys):
    from sketchstudio.match.cli import main

    q = tmp_path / "q.png"
    save_image(face(4), q)
    out = tmp_path / "o.json"
    assert main(["--gallery", str(gallery), str(q), "--aligned", "--compare", "raw", "--top", "1",
                 "--json", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    assert json.loads(out.read_text())[str(q)][0]["path"] == str(gallery / "p4.png")


# --------------------------------------------------------------------------------- real data
@pytest.mark.shared
def test_cufs_raw_sketch_to_photo_nlda(cufs, tmp_path):
    """The shipped projection on CUHK test (not seen in fitting): raw cross-modal rank-1."""
    m = Matcher(MatchConfig(method="nlda", aligned=True, compare="raw", cache_dir=str(tmp_path)))
    idx, _ = m.index(cufs / "test" / "photos")
    sketches = sorted((cufs / "test" / "sketches").glob("*.jpg"))
    q = np.stack([m.prepare_query(p).feature for p in sketches])
    truth = [idx.paths().index(cufs / "test" / "photos" / p.name) for p in sketches]
    assert rank_k_rates(cosine_scores(q, idx.features), truth, (1,))[1] >= 0.95


# ------------------------------------------------------------------ NLDA fitting CLI / eval CLI
def _paired_folder(root: Path, n: int) -> Path:
    for sub, sketch in (("photos", False), ("sketches", True)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            save_image(face_like(i, 200, 250, sketch=sketch), root / sub / f"id{i}.png")
    return root


def test_jitter_is_small_deterministic_and_moves_pixels():
    from research.nlda_fit import jittered

    crop = face_like(3, 200, 250)
    a = jittered(crop, np.random.default_rng(1))
    b = jittered(crop, np.random.default_rng(1))
    c = jittered(crop, np.random.default_rng(2))
    assert a.shape == crop.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, crop)
    assert np.array_equal(jittered(crop, np.random.default_rng(1), (0.0, 0.0, 0.0)), crop)


def test_fit_with_jitter_adds_samples_and_records_it(tmp_path):
    from research.nlda_fit import fit_from_folders, main
    from sketchstudio.errors import DataError
    from sketchstudio.match.spaces import PixelPrep

    data = _paired_folder(tmp_path / "d", 5)
    plain = fit_from_folders(data)
    jit = fit_from_folders(data, jitter=2, seed=0)
    assert "jittered" not in plain.info["classes"] and "2 jittered copies" in jit.info["classes"]
    assert not np.allclose(plain.matrix, jit.matrix)
    again = fit_from_folders(data, jitter=2, seed=0)
    assert np.allclose(again.matrix, jit.matrix)
    tiny = PixelPrep(size=(6, 5))  # 30 pixels: 5 ids × 2 × (1 + 3) = 40 samples is too many
    with pytest.raises(DataError, match="less --jitter"):
        fit_from_folders(data, prep=tiny, jitter=3)
    assert main(["--data", str(data), "--jitter", "-1", "--out", str(tmp_path / "p.npz")]) == 2
    assert not (tmp_path / "p.npz").exists()


def test_recognition_eval_rejects_unknown_space(tmp_path, capsys):
    from research.recognition_eval import main

    rc = main(["--model", str(tmp_path / "none.safetensors"), "--data", str(tmp_path),
               "--spaces", "nlda,sift"])
    assert rc == 2
    assert "--spaces: unknown 'sift'" in capsys.readouterr().err


# ------------------------------------------------------------------ face detection (default path)
def _on_canvas(crop: np.ndarray, seed: int, ox: int, oy: int) -> np.ndarray:
    """``crop`` placed at (ox, oy) on a larger, noisy canvas: an unaligned snapshot."""
    canvas = np.random.default_rng(seed).integers(0, 256, size=(400, 330, 3), dtype=np.uint8)
    canvas[oy:oy + H, ox:ox + W] = crop
    return canvas


def test_default_detection_path_matches_the_detected_crop(tmp_path, monkeypatch):
    """aligned=False (the default): gallery and query faces are the aligner's crops, not the whole
    images. The stand-in aligner knows where each face was put."""
    import sketchstudio.faces as faces_mod

    where: dict[bytes, tuple[int, int]] = {}
    kinds: list[str] = []

    def fake_align(img, eyes=None, kind="photo"):
        kinds.append(kind)
        ox, oy = where[img.tobytes()]
        return type("A", (), {"crop": img[oy:oy + H, ox:ox + W].copy(), "n_faces": 1,
                              "method": "fake-detector"})()

    monkeypatch.setattr(faces_mod, "align", fake_align)
    g = tmp_path / "g"
    g.mkdir()
    for i in range(5):
        img = _on_canvas(face(i), seed=i, ox=10 + 20 * i, oy=100 - 20 * i)
        where[img.tobytes()] = (10 + 20 * i, 100 - 20 * i)
        save_image(img, g / f"p{i}.png")
    query = _on_canvas(face(3), seed=99, ox=120, oy=5)  # another place, another background
    where[query.tobytes()] = (120, 5)
    m = Matcher(MatchConfig(method="nlda", compare="raw", cache_dir=str(tmp_path / "c")),
                translator=EchoTranslator())
    assert m.config.aligned is False  # the default
    idx, _ = m.index(g)
    assert kinds == ["photo"] * 5  # gallery of photos
    res = m.match(query, idx, top_k=0)
    assert kinds[-1] == "sketch" and res.query.align_method == "fake-detector"
    assert np.array_equal(res.query.crop, face(3))
    assert res.matches[0].path == g / "p3.png"
    assert res.matches[0].score == pytest.approx(1.0, abs=1e-4)
    assert all(h.score < 0.99 for h in res.matches[1:])


# ------------------------------------------------------------------------ dlib embedding method
def test_cli_embed_method_uses_dlib_face_descriptors(tmp_path, gallery, capsys):
    pytest.importorskip("dlib")
    from sketchstudio.match.cli import main
    from sketchstudio.match.spaces import DlibEmbedding

    emb = DlibEmbedding()
    v = emb.extract(face(4))
    assert v.shape == (128,) and v.dtype == np.float32
    assert not np.allclose(v, emb.extract(face(1)))
    q = tmp_path / "q.png"
    save_image(face(4), q)
    out = tmp_path / "hits.json"
    cache = tmp_path / "c"
    assert main(["--gallery", str(gallery), str(q), "--method", "embed", "--aligned",
                 "--compare", "raw", "--top", "6", "--json", str(out),
                 "--cache-dir", str(cache)]) == 0
    hits = json.loads(out.read_text())[str(q)]
    assert hits[0]["path"] == str(gallery / "p4.png") and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 6 and all(h["score"] < 1 - 1e-4 for h in hits[1:])
    # the index holds dlib's 128-D descriptors, made with the embed fingerprint
    (doc_path,) = cache.rglob("index.json")
    doc = json.loads(doc_path.read_text())
    assert doc["settings"]["method"] == "embed"
    assert doc["settings"]["features"] == emb.fingerprint
    feats = np.load(doc_path.parent / doc["features_file"])
    assert feats.shape == (6, 128)
    row = next(i for i, e in enumerate(doc["entries"]) if e["path"] == "p1.png")
    np.testing.assert_allclose(feats[row], emb.extract(face(1)), atol=1e-6)
