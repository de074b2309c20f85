"""Forensic matching: rank a gallery of mugshots against a sketch (or sketches against a photo).

A query sketch is aligned, translated into a photo by F (sketch→photo), and compared with every
aligned gallery photo in a feature space (NLDA on grey pixels, dlib's face embedding, or the
weighted sum of both cosines, the default). The
reverse, a photo query against a sketch gallery, goes through G (photo→sketch). Translating the
one query instead of the whole gallery keeps indexing cheap (no network per gallery face), so a
gallery of thousands indexes in seconds to minutes and is cached on disk (see :mod:`sketchstudio.match.index`).

By default (``compare="both"``) a gallery face's score is the mean of two cosines: with the
translated query and with the query as drawn. NLDA is fitted on photo/sketch pairs, so the raw
comparison is already strong; averaging it in keeps the ranking stable while the translation
model is still training or fails on an unusual drawing (docs/matching_eval.md has the numbers).

Front ends (CLI, GUI worker) drive :class:`Matcher`; nothing here imports Qt.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..imaging import load_image
from ..metrics.recognition import cosine_scores, l2_normalise
from ..vocab import PHOTO2SKETCH, SKETCH2PHOTO
from .index import CancelFn, GalleryIndex, IndexStats, Problem, ProgressFn, WaitFn
from .spaces import (
    DEFAULT_METHOD,
    METHODS,
    TEMPLATE_SIZE,
    FeatureSpace,
    as_template,
    make_feature_space,
)

log = logging.getLogger(__name__)

QUERY_KINDS = ("sketch", "photo")
#: what the gallery is compared with: the translated query, the raw query, or both (mean score)
COMPARE_MODES = ("both", "translated", "raw")
#: query kind -> (gallery kind, translation direction that turns the query into a gallery kind)
_PLAN = {"sketch": ("photo", SKETCH2PHOTO), "photo": ("sketch", PHOTO2SKETCH)}
#: bump when face preparation changes in a way that changes features
PREP_VERSION = 1


@dataclass
class MatchConfig:
    """Everything that decides what a match means; the CLI and the GUI fill one of these."""

    method: str = DEFAULT_METHOD  # "fusion" | "nlda" | "embed" (see match.spaces)
    query_kind: str = "sketch"  # "sketch" (gallery of photos) | "photo" (gallery of sketches)
    aligned: bool = False  # inputs are already 200×250 template crops: skip face detection
    compare: str = "both"  # "both" | "translated" | "raw" (see the module docstring)
    model: str | None = None  # translation checkpoint; None = the shipped default
    features_path: str | None = None  # NLDA .npz (fusion, nlda) / dlib model folder (embed)
    cache_dir: str | None = None  # gallery index cache; None = the user cache folder
    device: str = "auto"
    top_k: int = 10

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"Unknown matching method '{self.method}'; use "
                              f"{' or '.join(METHODS)}.")
        if self.query_kind not in QUERY_KINDS:
            raise ConfigError(f"Unknown query kind '{self.query_kind}'; use sketch or photo.")
        if self.compare not in COMPARE_MODES:
            raise ConfigError(f"Unknown compare mode '{self.compare}'; use "
                              f"{', '.join(COMPARE_MODES)}.")
        if self.top_k < 1:
            raise ConfigError(f"--top must be at least 1 (got {self.top_k}).")

    @property
    def gallery_kind(self) -> str:
        return _PLAN[self.query_kind][0]

    @property
    def direction(self) -> str:
        return _PLAN[self.query_kind][1]

    @property
    def translates(self) -> bool:
        return self.compare != "raw"


@dataclass
class Match:
    path: Path
    score: float  # cosine similarity in the feature space, higher = more alike


@dataclass
class QueryFace:
    """A prepared query: its aligned crop, its translation and their feature vectors."""

    source: str
    crop: np.ndarray  # aligned query (template size)
    translated: np.ndarray | None  # the crop translated into the gallery's kind (None: raw only)
    features: list[np.ndarray]  # compared with the gallery; the score is the mean cosine
    align_method: str = "given"

    @property
    def compared(self) -> np.ndarray:
        """The image shown as "what was compared": the translation if there is one."""
        return self.translated if self.translated is not None else self.crop

    @property
    def feature(self) -> np.ndarray:
        return self.features[0]


@dataclass
class QueryResult:
    query: QueryFace
    matches: list[Match] = field(default_factory=list)


def prepare_face(img: np.ndarray, kind: str, aligned: bool) -> tuple[np.ndarray, str]:
    """Aligned template crop of the face in ``img`` (raises NoFaceFoundError if there is none).

    ``aligned=True`` trusts the caller (CUFS-style crops) and only resizes to the template.
    """
    if aligned:
        return as_template(img), "given"
    from ..faces import align  # imported here: dlib loads only when detection is needed

    res = align(img, kind=kind)
    if getattr(res, "n_faces", 1) > 1:
        log.info("%d faces found; matching the one chosen by the aligner", res.n_faces)
    return as_template(res.crop), str(getattr(res, "method", "detected"))


class Matcher:
    """Index galleries and rank them against query faces, per :class:`MatchConfig`."""

    def __init__(self, config: MatchConfig | None = None,
                 features: FeatureSpace | None = None, translator=None) -> None:
        self.config = config or MatchConfig()
        self.features = features or make_feature_space(self.config.method,
                                                       self.config.features_path)
        self._translator = translator

    # ----------------------------------------------------------------------------------------
    @property
    def translator(self):
        """The translation model, loaded on first use (torch is not needed to index)."""
        if self._translator is None:
            from ..engine import Translator

            self._translator = Translator(self.config.model, device=self.config.device)
        return self._translator

    def index_settings(self) -> dict:
        """What the gallery features depend on. The translator is not in it: galleries are
        never translated, only queries are."""
        c = self.config
        return {"method": c.method, "kind": c.gallery_kind, "aligned": c.aligned,
                "features": self.features.fingerprint, "prep_version": PREP_VERSION,
                "template": list(TEMPLATE_SIZE)}

    def gallery_feature(self, path: Path) -> np.ndarray:
        crop, _ = prepare_face(load_image(path), self.config.gallery_kind, self.config.aligned)
        return self.features.extract(crop)

    def index(self, gallery: str | os.PathLike[str], progress: ProgressFn | None = None,
              cancel: CancelFn | None = None,
              waiting: WaitFn | None = None) -> tuple[GalleryIndex, IndexStats]:
        """Open the cached index of ``gallery`` and bring it up to date (``waiting``: see
        :meth:`GalleryIndex.update`)."""
        idx = GalleryIndex.open(gallery, self.index_settings(), self.config.cache_dir)
        stats = idx.update(self.gallery_feature, progress=progress, cancel=cancel, waiting=waiting)
        return idx, stats

    # ----------------------------------------------------------------------------------------
    def prepare_query(self, query: str | os.PathLike[str] | np.ndarray) -> QueryFace:
        """Load, align and (by default) translate a query; raises on unreadable or faceless."""
        c = self.config
        source = "<image>" if isinstance(query, np.ndarray) else str(query)
        img = query if isinstance(query, np.ndarray) else load_image(query)
        crop, method = prepare_face(img, c.query_kind, c.aligned)
        translated = self.translator.translate(crop, c.direction).output if c.translates else None
        feats = [] if translated is None else [self.features.extract(translated)]
        if c.compare != "translated":
            feats.append(self.features.extract(crop))
        return QueryFace(source=source, crop=crop, translated=translated, features=feats,
                         align_method=method)

    @staticmethod
    def scores(query: QueryFace, gallery: np.ndarray) -> np.ndarray:
        """(G,) mean cosine similarity of the query's feature vectors with each gallery row."""
        return np.mean([cosine_scores(f, gallery)[0] for f in query.features], axis=0)

    def rank(self, query: QueryFace, index: GalleryIndex, top_k: int | None = None) -> list[Match]:
        """Gallery faces best first; ``top_k=None`` uses the config, 0 returns all."""
        paths = index.paths()
        if not paths:
            return []
        unit = index.unit_features()  # cached: the same cosines as scores(), without renormalising
        scores = np.mean([unit @ l2_normalise(f) for f in query.features], axis=0)
        k = self.config.top_k if top_k is None else top_k
        order = np.argsort(-scores, kind="stable")
        if k:
            order = order[:k]
        return [Match(paths[i], float(scores[i])) for i in order]

    def match(self, query: str | os.PathLike[str] | np.ndarray, index: GalleryIndex,
              top_k: int | None = None) -> QueryResult:
        q = self.prepare_query(query)
        return QueryResult(query=q, matches=self.rank(q, index, top_k))


__all__ = ["MatchConfig", "Matcher", "Match", "QueryFace", "QueryResult", "Problem",
           "prepare_face", "QUERY_KINDS", "COMPARE_MODES"]
