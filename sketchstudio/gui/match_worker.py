"""The Match view's worker: indexes galleries and runs queries in its own QThread.

The UI thread only emits requests (queued into this thread) and receives signals; the Matcher,
the gallery index, decoding, alignment and the translation network all live here. Cancelling
indexing is a thread-safe flag the index checks before every file. ``sketchstudio.match`` is
imported in the slots, so opening the window does not pay for it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from sketchstudio.errors import SketchStudioError

from .workers import describe_exception

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchOptions:
    """What the user chose in the view; turned into a ``match.MatchConfig`` in the worker."""

    method: str = "nlda"
    query_kind: str = "sketch"
    aligned: bool = False
    compare: str = "both"  # "both" | "translated" | "raw" (see sketchstudio.match)
    top_k: int = 20


@dataclass
class IndexSummary:
    job: int
    gallery: str
    n_faces: int
    computed: int
    reused: int
    problems: list[str] = field(default_factory=list)


@dataclass
class MatchHit:
    path: str
    score: float
    crop: Any  # aligned gallery face (RGB uint8), or the image as it is if it cannot be aligned


@dataclass
class MatchResults:
    job: int
    query: str
    crop: Any  # aligned query
    compared: Any  # the translated query (or the crop itself with compare="raw")
    translated: bool
    hits: list[MatchHit] = field(default_factory=list)
    elapsed_ms: float = 0.0


class MatchWorker(QObject):
    progress = Signal(int, int, int, str)  # job, done, total, file
    index_waiting = Signal(int, str)  # job, who holds the gallery's index (another process)
    indexed = Signal(object)  # IndexSummary
    index_cancelled = Signal(int, str)  # job, message
    index_failed = Signal(int, str, str)  # job, message, detail
    results_ready = Signal(object)  # MatchResults
    query_failed = Signal(int, str, str)  # job, message, detail

    def __init__(self, cache_dir: str | None = None) -> None:
        super().__init__()
        self.cache_dir = cache_dir
        self._cancel = threading.Event()
        self._matcher: Any = None
        self._matcher_key: tuple | None = None
        self._index: Any = None
        self._index_key: tuple | None = None
        # (gallery, matcher key, message) of the last gallery found to hold no usable face, so a
        # query against it says that instead of "not indexed yet"
        self._empty: tuple[str, tuple | None, str] | None = None

    # --- called from the UI thread ----------------------------------------------------------
    def cancel(self) -> None:
        """Thread-safe: stop indexing before the next file."""
        self._cancel.set()

    def reset_cancel(self) -> None:
        """Thread-safe: called by the UI right before it queues a new indexing job."""
        self._cancel.clear()

    # --- worker thread ------------------------------------------------------------------------
    def _get_matcher(self, opts: MatchOptions, translator: Any):
        from sketchstudio.match import MatchConfig, Matcher

        key = (opts.method, opts.query_kind, opts.aligned, opts.compare, id(translator))
        if self._matcher is None or key != self._matcher_key:
            cfg = MatchConfig(method=opts.method, query_kind=opts.query_kind, aligned=opts.aligned,
                              compare=opts.compare, cache_dir=self.cache_dir,
                              top_k=opts.top_k)
            self._matcher = Matcher(cfg, translator=translator)
            self._matcher_key = key
            self._index, self._index_key = None, None
        self._matcher.config.top_k = opts.top_k
        return self._matcher

    @Slot(int, str, object, object)
    def index(self, job: int, gallery: str, opts: MatchOptions, translator: Any) -> None:
        from sketchstudio.match import IndexCancelled
        from sketchstudio.match.index import EmptyGalleryError

        self._empty = None
        try:
            m = self._get_matcher(opts, translator)
            idx, stats = m.index(gallery,
                                 progress=lambda d, t, p: self.progress.emit(job, d, t, p),
                                 cancel=self._cancel.is_set,
                                 waiting=lambda holder: self.index_waiting.emit(job, holder))
            idx.require_faces()
        except EmptyGalleryError as exc:  # the files it could not use go into the details
            self._index, self._index_key = None, None
            self._empty = (gallery, self._matcher_key, str(exc))
            self.index_failed.emit(job, str(exc), "\n".join(exc.problems))
            return
        except IndexCancelled as exc:
            self._index, self._index_key = None, None
            self.index_cancelled.emit(job, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - reported in the view; the app keeps working
            self._index, self._index_key = None, None
            self.index_failed.emit(job, *describe_exception(exc))
            return
        self._index, self._index_key = idx, (gallery, self._matcher_key)
        self.indexed.emit(IndexSummary(job=job, gallery=str(idx.root), n_faces=len(idx.paths()),
                                       computed=stats.computed, reused=stats.reused,
                                       problems=[str(p) for p in idx.problems()]))

    @Slot(int, object, str, object, object)
    def query(self, job: int, source: Any, gallery: str, opts: MatchOptions,
              translator: Any) -> None:
        import time

        t0 = time.perf_counter()
        try:
            m = self._get_matcher(opts, translator)
            if self._index is None and self._empty is not None and \
                    self._empty[:2] == (gallery, self._matcher_key):
                raise SketchStudioError(self._empty[2])
            if self._index is None or self._index_key != (gallery, self._matcher_key):
                raise SketchStudioError("The gallery is not indexed yet (or indexing was "
                                        "cancelled). Index it first.")
            if opts.compare != "raw" and translator is None:
                raise SketchStudioError("No model is loaded to translate the query. Load a "
                                        "model, or compare the query as drawn (“Compare: raw”).")
            res = m.match(source, self._index)
            hits = [MatchHit(str(h.path), h.score, self._gallery_crop(m, h.path))
                    for h in res.matches]
        except Exception as exc:  # noqa: BLE001 - reported in the view
            self.query_failed.emit(job, *describe_exception(exc))
            return
        self.results_ready.emit(MatchResults(
            job=job, query=res.query.source, crop=res.query.crop, compared=res.query.compared,
            translated=res.query.translated is not None, hits=hits,
            elapsed_ms=(time.perf_counter() - t0) * 1e3))

    @staticmethod
    def _gallery_crop(m: Any, path: Path) -> Any:
        from sketchstudio.imaging import load_image
        from sketchstudio.match import prepare_face

        img = load_image(path)
        try:
            return prepare_face(img, m.config.gallery_kind, m.config.aligned)[0]
        except SketchStudioError:  # it was aligned when indexed; a changed file shows as it is
            return img
