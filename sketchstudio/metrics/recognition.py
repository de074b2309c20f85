"""Rank-k retrieval metrics: cosine scores, the rank of the true match, CMC rates.

How well a feature space recognises people is measured the same way for any space (NLDA,
dlib's embedding, …), so the metrics live here and the feature spaces in
:mod:`sketchstudio.match`, which imports these (never the other way round). Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def l2_normalise(f: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    f = np.asarray(f, dtype=np.float32)
    return f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), eps)


def cosine_scores(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(Q, k) × (G, k) -> (Q, G) cosine similarities; higher is more alike."""
    return l2_normalise(np.atleast_2d(queries)) @ l2_normalise(np.atleast_2d(gallery)).T


def ranks_of_truth(scores: np.ndarray, truth: Sequence[int]) -> np.ndarray:
    """1-based rank of the true gallery item for every query (ties count against the truth)."""
    scores = np.asarray(scores)
    t = np.asarray(truth)
    true_scores = scores[np.arange(len(t)), t]
    return (scores >= true_scores[:, None]).sum(axis=1)


def rank_k_rates(scores: np.ndarray, truth: Sequence[int],
                 ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Cumulative match characteristic at ``ks``: share of queries whose truth is in the top k."""
    r = ranks_of_truth(scores, truth)
    return {k: float((r <= k).mean()) for k in ks}
