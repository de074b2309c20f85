"""AppContext: what every view shares — settings, the loaded model, the compute thread, messages.

Views receive the context in their constructor (a view factory is ``Callable[[AppContext],
QWidget]``), so adding a view needs no change to the others. The context owns one long-lived
"compute" QThread holding the :class:`TranslateWorker` and the :class:`FeatureWorker`; both share
the Translator, so interactive requests run one at a time instead of fighting over two cores.
"""

from __future__ import annotations

import gc
import logging
from itertools import count
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Signal

from sketchstudio.resources import default_model_path
from sketchstudio.threads import ThreadBudget

from .settings import Settings
from .workers import (
    FeatureRequest,
    FeatureWorker,
    ModelInfo,
    TranslateRequest,
    TranslateResult,
    TranslateWorker,
    start_worker,
)

log = logging.getLogger(__name__)

#: whether the start-up objects were frozen out of the garbage collector's sight (once a process)
_frozen = False


class AppContext(QObject):
    """Shared state and the UI side of the compute workers (all methods run in the UI thread)."""

    #: a model was loaded (ModelInfo) or there is none (None: empty state)
    model_changed = Signal(object)
    #: a model load started ("Loading kt-cufs.safetensors…")
    model_loading = Signal(str)
    #: a finished translation, for every view that shows something about it
    translated = Signal(object)
    #: level ("info" | "warning" | "error"), text, detail
    message = Signal(str, str, str)
    #: a view asks to be shown (e.g. "Translate" after loading a trained model)
    show_view = Signal(str)
    #: the engine moved to another device mid-session (CUDA failure → CPU): name, note
    device_changed = Signal(str, str)
    #: start-up work in the background (warm-up, fast-path export), for the status bar
    preparing = Signal(str)
    #: a fast path was decided: the engine's description (device label), the decision's note
    engine_changed = Signal(str, str)

    # private: queued into the compute thread
    _load = Signal(str, str, str, bool)
    _translate = Signal(object)
    _features = Signal(object)
    _teacher = Signal(str)

    def __init__(self, settings: Settings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings or Settings()
        self.model: ModelInfo | None = None
        #: the engine.Translator, an opaque handle here: only workers call it
        self.translator: Any = None
        self.last_result: TranslateResult | None = None
        self.loading = False
        #: the collector was turned off for a load (see _pause_gc)
        self._gc_paused = False
        self._seq = count(1)
        #: intra-op threads split between a running training job and translation
        self.thread_budget = ThreadBudget()
        self.translate_worker = TranslateWorker()
        self.feature_worker = FeatureWorker()
        self.thread = start_worker(self.translate_worker, "compute")
        self.feature_worker.moveToThread(self.thread)
        self._load.connect(self.translate_worker.load_model)
        self._translate.connect(self.translate_worker.translate)
        self._features.connect(self.feature_worker.compute)
        self._teacher.connect(self.translate_worker.set_teacher)
        self.translate_worker.model_loaded.connect(self._on_model_loaded)
        self.translate_worker.model_failed.connect(self._on_model_failed)
        self.translate_worker.result_ready.connect(self._on_result)
        self.translate_worker.preparing.connect(self.preparing)
        self.translate_worker.prepared.connect(self._on_prepared)
        app = QCoreApplication.instance()
        if app is not None:  # never leave a running QThread behind (Qt aborts on that)
            app.aboutToQuit.connect(self.shutdown)

    # --- model --------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the last used model, else the shipped default, else announce the empty state."""
        last = self.settings.model_path
        from pathlib import Path

        if last and Path(last).exists():
            self.load_model(last)
        elif default_model_path() is not None:
            self.load_model(None)
        else:
            self.model_changed.emit(None)

    def load_model(self, path: str | None) -> None:
        """Load a checkpoint (None = the shipped default) in the compute thread."""
        is_default = path is None
        if is_default and default_model_path() is None:
            self.notify("warning", "No default model is installed yet. Open a checkpoint "
                        "(Model ▸ Open model…) or train one in the Train tab.")
            return
        name = "the default model" if is_default else str(path)
        self.loading = True
        # not translate_threads: resolving the total imports torch, here on the UI thread (a
        # 3.6 s frozen window at start-up, measured by benchmarks/bench_ui.py); None = every
        # thread, counted on the compute thread
        self.translate_worker.threads = self.thread_budget.translate_request
        self._pause_gc()
        self.model_loading.emit(f"Loading {name}…")
        self._load.emit(str(path or ""), self.settings.device, self.settings.teacher_path, is_default)

    def reload_model(self) -> None:
        """Load the current model again (after the device setting changed)."""
        if self.model is not None:
            self.load_model(None if self.model.is_default else self.model.path)

    def set_teacher_path(self, path: str) -> None:
        self.settings.teacher_path = path
        self._teacher.emit(path)

    def _pause_gc(self) -> None:
        """No cyclic garbage collection while a model loads. The load imports torch and builds the
        nets (~330k Python objects), and a full collection walks all of them holding the GIL:
        0.2-0.9 s each on 2 busy cores, three during the first load, a frozen window whichever
        thread runs it (measured by benchmarks/bench_ui.py). Turned back on when the load ends."""
        if gc.isenabled():
            gc.disable()
            self._gc_paused = True

    def _resume_gc(self, loaded: bool) -> None:
        """After the first successful load, freeze what exists (gc.freeze: torch's and Qt's
        modules, the window, the nets) so that later full collections only walk newer objects
        (milliseconds instead of 0.2-0.9 s of GIL). Once a process: what it pins stays pinned,
        at worst the first model's nets after a switch to another model."""
        global _frozen
        if loaded and not _frozen:
            gc.freeze()
            _frozen = True
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    def _on_model_loaded(self, info: ModelInfo, translator: Any) -> None:
        self._resume_gc(loaded=True)
        self.loading = False
        self.model, self.translator = info, translator
        if not info.is_default:
            self.settings.model_path = info.path
            self.settings.add_recent("models", info.path)
        else:
            self.settings.model_path = ""
        self.model_changed.emit(info)
        if info.fallback_note:
            self.notify("warning", info.fallback_note)

    def _on_prepared(self, describe: str, note: str) -> None:
        if self.model is not None:
            self.model.device_name = describe
        self.engine_changed.emit(describe, note)

    # --- thread budget ------------------------------------------------------------------------
    def training_started(self) -> int:
        """A training job starts in this process: translation drops to one thread; returns the
        training thread's count (see :mod:`sketchstudio.threads`)."""
        n = self.thread_budget.training_started()
        self._apply_budget()
        return n

    def training_stopped(self) -> None:
        """The training job ended: translation gets every thread back."""
        self.thread_budget.training_stopped()
        self._apply_budget()

    def _apply_budget(self) -> None:
        n = self.thread_budget.translate_threads
        self.translate_worker.threads = n  # for a model loaded later
        if self.translator is not None:
            self.translator.set_threads(n)  # applied by the next call, in the compute thread

    def _on_model_failed(self, message: str, detail: str) -> None:
        self._resume_gc(loaded=False)
        self.loading = False
        self.notify("error", f"Could not load the model: {message}", detail)
        if self.model is None:
            self.model_changed.emit(None)

    # --- work ---------------------------------------------------------------------------------
    def next_seq(self) -> int:
        return next(self._seq)

    def translate(self, req: TranslateRequest) -> None:
        self.translate_worker.latest_seq = req.seq  # makes older queued requests obsolete
        self._translate.emit(req)

    def compute_features(self, req: FeatureRequest) -> None:
        self.feature_worker.latest_seq = req.seq
        self._features.emit(req)

    def _on_result(self, res: TranslateResult) -> None:
        if res.seq < self.translate_worker.latest_seq:
            return
        self.last_result = res
        note = getattr(res.translator, "fallback_note", None)
        if self.model is not None and note and note != self.model.fallback_note:
            # a CUDA failure during this translation: the engine now runs on the CPU
            self.model.fallback_note, self.model.device_name = note, res.device_name
            self.device_changed.emit(res.device_name, note)
            self.notify("warning", note)
        self.translated.emit(res)

    # --- messages -----------------------------------------------------------------------------
    def notify(self, level: str, text: str, detail: str = "") -> None:
        self.message.emit(level, text, detail)

    def shutdown(self) -> None:
        """Stop the compute thread (waits for a running translation to finish)."""
        self._resume_gc(loaded=False)
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait()
