"""Forensic matching: rank a gallery of mugshots against a sketch (or sketches against a photo).

``matcher`` (what a match means and the ranking), ``spaces`` (feature spaces: NLDA on grey pixels,
dlib's face embedding), ``nlda`` (fitting and applying the null-space LDA projection), ``index``
(the incremental on-disk gallery index) and ``cli`` (``sketchstudio-match``). Front ends (the CLI,
the GUI's match worker) use the names below; nothing here imports Qt, and torch is loaded only
when a query is translated.
"""

from __future__ import annotations

from .index import GalleryIndex, IndexCancelled, IndexStats, Problem
from .matcher import (
    COMPARE_MODES,
    QUERY_KINDS,
    Match,
    MatchConfig,
    Matcher,
    QueryFace,
    QueryResult,
    prepare_face,
)
from .spaces import DEFAULT_METHOD, METHODS, FeatureSpace, make_feature_space

__all__ = [
    "COMPARE_MODES", "DEFAULT_METHOD", "METHODS", "QUERY_KINDS", "FeatureSpace", "GalleryIndex",
    "IndexCancelled", "IndexStats", "Match", "MatchConfig", "Matcher", "Problem", "QueryFace",
    "QueryResult", "make_feature_space", "prepare_face",
]
