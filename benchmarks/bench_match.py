"""Forensic matching: gallery indexing throughput, re-index (cache) time and query latency.

Galleries are synthetic 200×250 JPEGs (tests.conftest.face_like) indexed with ``aligned=True``,
so the numbers measure the feature part (decode + features + cache I/O), not face detection.
Query latency is prepare (decode + features) + ranking with ``compare="raw"``; a real query adds
one F forward of the translation model (see bench_core, "G forward"). The dlib embedding is
measured on 100 photos only: its per-photo cost (the ResNet) does not depend on gallery size.
When ../shared holds CUFS, its 100 test photos are also indexed *with* face detection and
alignment (``aligned=False``), the cost a real mugshot folder pays on its first index.

:func:`run_gallery` is the gallery-scale entry (#22): 10,000 jittered synthetic faces indexed
with NLDA (throughput, re-index time, the index's size on disk, peak memory traced while
indexing and while querying) and the query latency at that size, plus the ranking time for
10,000 rows of the fused features' width (fusion's index itself is not built at that size here:
its dlib ResNet costs about 0.17 s per face on this CPU, measured on 100 faces above).
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

from sketchstudio.imaging import save_image
from sketchstudio.match import MatchConfig, Matcher
from sketchstudio.match.spaces import TEMPLATE_SIZE
from sketchstudio.metrics.recognition import l2_normalise


def _face(seed: int) -> np.ndarray:
    from tests.conftest import face_like

    return face_like(seed, *TEMPLATE_SIZE)


def _gallery(root: Path, n: int) -> Path:
    g = root / f"gallery{n}"
    g.mkdir()
    for i in range(n):
        save_image(_face(i), g / f"{i:05d}.jpg")
    return g


def _jittered_gallery(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` distinct synthetic faces, each also moved, turned and re-lit a little (as repeated
    mugshots of one kind would differ), written as JPEGs."""
    g = root / f"jittered{n}"
    g.mkdir()
    rng = np.random.default_rng(seed)
    w, h = TEMPLATE_SIZE
    for i in range(n):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-3, 3), rng.uniform(0.96, 1.04))
        m[:, 2] += rng.uniform(-2, 2, size=2)
        img = cv2.warpAffine(_face(i), m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        img = np.clip(img.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
        sub = g / f"{i // 1000:02d}"  # 1,000 per folder, as large mugshot folders are split
        sub.mkdir(exist_ok=True)
        save_image(img, sub / f"{i:05d}.jpg")
    return g


def run_gallery(n: int = 10_000, root: Path | None = None) -> list[dict]:
    """Index ``n`` jittered synthetic faces with NLDA and query them (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(root or tmp)
        t0 = time.perf_counter()
        gallery = _jittered_gallery(base, n)
        t_write = time.perf_counter() - t0
        query = base / "query.jpg"
        save_image(_face(n + 17), query)
        m = Matcher(MatchConfig(method="nlda", aligned=True, compare="raw",
                                cache_dir=str(base / "cache")))
        tracemalloc.start()
        t0 = time.perf_counter()
        idx, stats = m.index(gallery)
        t_index = time.perf_counter() - t0
        _, peak_index = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert stats.computed == n and len(idx.paths()) == n, stats
        t0 = time.perf_counter()
        _, again = m.index(gallery)
        t_reindex = time.perf_counter() - t0
        assert again.computed == 0
        m.match(query, idx)  # warm-up
        tracemalloc.start()
        reps = 10
        t0 = time.perf_counter()
        for _ in range(reps):
            res = m.match(query, idx)
        t_query = (time.perf_counter() - t0) / reps
        _, peak_query = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(res.matches) == m.config.top_k
        disk = sum(p.stat().st_size for p in idx.cache_dir.iterdir())
        # ranking at fusion's width (267 NLDA + 128 embedding dims), on random unit rows
        wide = np.random.default_rng(1).standard_normal((n, idx.features.shape[1] + 128))
        unit = l2_normalise(wide.astype(np.float32))  # what GalleryIndex.unit_features keeps
        qv = l2_normalise(wide[1].astype(np.float32))
        t0 = time.perf_counter()
        for _ in range(reps):
            np.argsort(-(unit @ qv), kind="stable")[:10]
        t_rank_wide = (time.perf_counter() - t0) / reps
    tag = f"{n:,} jittered synthetic faces"
    return [
        {"name": f"match index nlda, {tag}", "value": n / t_index, "unit": "photos/s",
         "seconds": round(t_index, 1), "write_jpegs_s": round(t_write, 1)},
        {"name": f"match index memory peak (traced), {tag}", "value": peak_index / 2**20,
         "unit": "MiB"},
        {"name": f"match index on disk, {tag}", "value": disk / 2**20, "unit": "MiB",
         "note": f"{idx.features.shape[1]} float32 per face + index.json"},
        {"name": f"match re-index unchanged, {tag}", "ms": t_reindex * 1e3},
        {"name": f"match query nlda, {tag}", "ms": t_query * 1e3,
         "note": "decode + features + rank, compare=raw", "memory_peak_MiB":
         round(peak_query / 2**20, 1)},
        {"name": f"match rank only, {n:,} rows of fusion width", "ms": t_rank_wide * 1e3},
    ]


CUFS_TEST_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cufs" / "test" / "photos"


def _rows(method: str, gallery: Path, n: int, cache: Path, query: Path, aligned: bool = True,
          what: str = "photos") -> list[dict]:
    m = Matcher(MatchConfig(method=method, aligned=aligned, compare="raw", cache_dir=str(cache)))
    t0 = time.perf_counter()
    idx, stats = m.index(gallery)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx, again = m.index(gallery)
    t_reindex = time.perf_counter() - t0
    assert stats.computed + stats.problems == n and again.computed == 0
    m.match(query, idx)  # warm-up
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        m.match(query, idx)
    t_query = (time.perf_counter() - t0) / reps
    tag = f"{method}, {n} {what}"
    return [
        {"name": f"match index {tag}", "value": n / t_index, "unit": "photos/s",
         "seconds": round(t_index, 2)},
        {"name": f"match re-index unchanged {tag}", "ms": t_reindex * 1e3},
        {"name": f"match query {tag}", "ms": t_query * 1e3,
         "note": ("aligned" if aligned else "detect + align") + ", compare=raw"},
    ]


def run() -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        query = root / "query.jpg"
        save_image(_face(10_001), query)
        galleries = {n: _gallery(root, n) for n in (100, 1000)}
        for n, g in galleries.items():
            rows += _rows("nlda", g, n, root / "cache", query)
        try:
            rows += _rows("embed", galleries[100], 100, root / "cache", query)
        except Exception as exc:  # noqa: BLE001 - dlib is optional
            rows.append({"name": "match embed", "value": "", "unit": "",
                         "note": f"skipped: {exc}"})
        if CUFS_TEST_PHOTOS.is_dir():
            real = sorted(CUFS_TEST_PHOTOS.iterdir())
            rows += _rows("nlda", CUFS_TEST_PHOTOS, len(real), root / "cache", real[0],
                          aligned=False, what="CUFS photos")
    return rows + run_gallery(10_000)


if __name__ == "__main__":
    for r in run():
        print(r)
