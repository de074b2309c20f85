"""Forensic matching: gallery indexing throughput, re-index (cache) time and query latency.

Galleries are synthetic 200×250 JPEGs (tests.conftest.face_like) indexed with ``aligned=True``,
so the numbers measure the feature part (decode + features + cache I/O), not face detection.
Query latency is prepare (decode + features) + ranking with ``compare="raw"``; a real query adds
one F forward of the translation model (see bench_core, "G forward"). The dlib embedding is
measured on 100 photos only: its per-photo cost (the ResNet) does not depend on gallery size.
When ../shared holds CUFS, its 100 test photos are also indexed *with* face detection and
alignment (``aligned=False``), the cost a real mugshot folder pays on its first index.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from sketchstudio.imaging import save_image
from sketchstudio.match import MatchConfig, Matcher
from sketchstudio.match.spaces import TEMPLATE_SIZE


def _face(seed: int) -> np.ndarray:
    from tests.conftest import face_like

    return face_like(seed, *TEMPLATE_SIZE)


def _gallery(root: Path, n: int) -> Path:
    g = root / f"gallery{n}"
    g.mkdir()
    for i in range(n):
        save_image(_face(i), g / f"{i:05d}.jpg")
    return g


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
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
