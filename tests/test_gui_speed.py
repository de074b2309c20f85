"""The app stays responsive while it gets fast (issue 23): start-up warm-up and fast-path export
run off the UI thread with progress in the status bar, and a training job and the Translate view
split the cores instead of oversubscribing them.

How "never blocks the UI thread for more than 50 ms" is tested without being flaky on a loaded
2-core machine: a 5 ms QTimer heartbeat runs while a fake slow export (1.5 s of sleep, then the
real export of the tiny model, in a child process as in the app) runs. Two things are measured
between consecutive heartbeats:

- the UI thread's own CPU time (``time.thread_time``): what our code did on the UI thread. It does
  not grow when other processes take the cores, so it is held to the strict 50 ms;
- the wall-clock gap: it also counts the time the OS gave the cores to others (the stress loop,
  a training run), so it gets a loose bound (:data:`LOOSE_GAP_S`) that still catches an export
  run on the UI thread (the fake export alone sleeps 1.5 s there).

And the structural check that makes both meaningful: the export ran on a non-GUI thread.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QThread, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from sketchstudio.gui import context as gui_context  # noqa: E402
from sketchstudio.gui import main_window as gui_main  # noqa: E402
from sketchstudio.gui import workers as gui_workers  # noqa: E402
from sketchstudio.gui.main_window import MainWindow  # noqa: E402
from sketchstudio.gui.settings import Settings  # noqa: E402
from sketchstudio.gui.workers import PHOTO2SKETCH, TranslateRequest  # noqa: E402
from sketchstudio.runtime import fastpath  # noqa: E402
from sketchstudio.runtime.remote import RemoteRunner  # noqa: E402
from tests.conftest import face_like  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("collect_qt_garbage")]
WAIT = 60_000  # ms: a safety net on a loaded machine, never a speed requirement
EXPORT_WAIT_S = 600  # a child export starts a Python with torch: a minute on a busy machine
SLOW_EXPORT_S = 1.5
STRICT_UI_CPU_S = 0.050  # issue 23: the UI thread never blocks for more than 50 ms
LOOSE_GAP_S = 0.75  # wall clock, load-sensitive: < half the fake export's sleep
HAVE_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.delenv("SKETCHSTUDIO_MODEL", raising=False)
    monkeypatch.setattr(gui_context, "default_model_path", lambda: None)
    monkeypatch.setattr(gui_main, "default_model_path", lambda: None)
    monkeypatch.setattr(gui_workers, "load_faces", lambda: (None, "no alignment (test)"))
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    monkeypatch.setenv("SKETCHSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    settings = Settings.at(tmp_path / "settings.ini")
    settings.force_cpu = True
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    yield w
    tp = w.train_panel
    if tp.is_training:
        tp.cancel()
        qtbot.waitUntil(lambda: not tp.is_training, timeout=WAIT)


class Heartbeat:
    """A 5 ms QTimer on the UI thread recording wall and UI-thread CPU time at each tick."""

    def __init__(self) -> None:
        self.ticks: list[tuple[float, float]] = []
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        self.ticks.append((time.perf_counter(), time.thread_time()))

    def start(self) -> None:
        self._tick()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self._tick()

    def worst(self, t0: float, t1: float) -> tuple[float, float]:
        """(largest wall gap, largest UI-thread CPU time between two ticks) within [t0, t1]."""
        inside = [(w, c) for w, c in self.ticks if t0 <= w <= t1]
        pairs = list(zip(inside, inside[1:], strict=False))
        assert len(pairs) > 10, "the heartbeat hardly ran"
        return (max(b[0] - a[0] for a, b in pairs), max(b[1] - a[1] for a, b in pairs))


def _load(qtbot, w: MainWindow, model: Path) -> None:
    with qtbot.waitSignal(w.ctx.model_changed, timeout=WAIT) as blocker:
        w.ctx.load_model(str(model))
    assert blocker.args[0] is not None, "model failed to load"


def _translate(qtbot, w: MainWindow, img) -> object:
    seq = w.ctx.next_seq()
    w.translate_view._pending = seq
    with qtbot.waitSignal(w.ctx.translated, timeout=WAIT,
                          check_params_cb=lambda r: r.seq == seq) as blocker:
        w.ctx.translate(TranslateRequest(seq=seq, source=img, direction=PHOTO2SKETCH,
                                         align=False, name="t"))
    return blocker.args[0]


# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime/onnx not installed (pip install "
                    "'sketchstudio[fast]')")
def test_slow_export_at_start_keeps_the_ui_responsive(qtbot, window, tiny_model, monkeypatch):
    """Loading a model starts the fast-path export in the background at once; while the (fake,
    slow) export runs, the heartbeat never stalls, progress is in the status bar, a translation
    completes (torch), and once the export is done the next translation runs on it."""
    monkeypatch.setattr(fastpath, "MIN_GFLOP", 0.0)  # the tiny model is worth an export here
    monkeypatch.setenv(fastpath.ENV_MODE, "onnx-fp32")  # one path: short, deterministic
    export_threads: list[threading.Thread] = []
    started, finished = threading.Event(), threading.Event()
    # the export is held until the app has translated meanwhile: a fixed sleep alone let a slow
    # first translation (2 threads, full suite) finish after the export, failing 2 runs in ~7
    translated_meanwhile = threading.Event()
    marks: dict[str, float] = {}
    real_export = fastpath.export_fp32_isolated  # the app exports in a child process

    def slow_export(*args, **kw):
        export_threads.append(threading.current_thread())
        marks.setdefault("export_start", time.perf_counter())
        started.set()
        time.sleep(SLOW_EXPORT_S)  # a big model's export: seconds of work, off the UI thread
        translated_meanwhile.wait(EXPORT_WAIT_S)  # a translation blocked by the export times out
        try:
            return real_export(*args, **kw)
        finally:
            marks.setdefault("export_end", time.perf_counter())
            finished.set()

    monkeypatch.setattr(fastpath, "export_fp32_isolated", slow_export)
    shown: list[str] = []
    window.ctx.preparing.connect(shown.append)
    beat = Heartbeat()
    beat.start()
    with qtbot.waitSignal(window.ctx.engine_changed, timeout=EXPORT_WAIT_S * 1000) as decided:
        _load(qtbot, window, tiny_model)  # no translation asked for: the export starts anyway
        marks["loaded"] = time.perf_counter()
        qtbot.waitUntil(started.is_set, timeout=WAIT)
        # progress while it runs (the label follows through a queued signal, hence the wait)
        qtbot.waitUntil(lambda: "exporting" in window.prepare_label.text(), timeout=WAIT)
        try:
            during = _translate(qtbot, window, face_like(1))  # the app translates meanwhile
            marks["translated"] = time.perf_counter()
            assert not finished.is_set(), "the fake export should still be running"
        finally:
            translated_meanwhile.set()
        assert "ONNX" not in during.device_name
    t1 = time.perf_counter()
    beat.stop()

    assert export_threads and export_threads[0] is not threading.main_thread()
    assert QThread.currentThread() is QApplication.instance().thread()
    # from the export's start to the decision: the model load before it imports the engine's
    # C extensions in the compute thread (their initialisation holds the GIL too, but that is
    # start-up, not the export this test is about)
    wall_gap, ui_cpu = beat.worst(marks["export_start"], t1)
    print(f"export + measurement {t1 - marks['export_start']:.1f} s: largest heartbeat gap "
          f"{wall_gap * 1e3:.0f} ms wall, {ui_cpu * 1e3:.0f} ms UI-thread CPU")
    assert ui_cpu < STRICT_UI_CPU_S, f"the UI thread worked {ui_cpu * 1e3:.0f} ms without a break"
    assert wall_gap < LOOSE_GAP_S, f"the UI thread stalled {wall_gap * 1e3:.0f} ms"

    describe, note = decided.args
    assert "ONNX Runtime fp32" in describe and "forced" in note
    assert any("exporting" in s for s in shown) and any("Warming up" in s for s in shown)
    assert "Fast path" in window.prepare_label.text()
    assert "ONNX Runtime fp32" in window.device_label.text()
    after = _translate(qtbot, window, face_like(1))
    assert "ONNX Runtime fp32" in after.device_name
    # and it ran in a child process: the app never imports a runtime (its import and the model's
    # compilation hold the GIL: 60-132 ms UI stalls before runners moved out)
    runner = window.ctx.translator.fast.runner(PHOTO2SKETCH)
    assert isinstance(runner, RemoteRunner) and runner.alive
    assert after.output.shape == during.output.shape
    for st in window.ctx.translator.fast._states.values():  # F's export, queued after G's
        if st.future is not None:
            st.future.result(timeout=EXPORT_WAIT_S)


def test_model_load_never_imports_torch_on_the_ui_thread(qtbot, window, tiny_model, monkeypatch):
    """Asking for a model reads the thread budget on the UI thread; resolving its total imports
    torch (threads.default_total), which froze the window for 3.6 s at start-up before torch was
    loaded (benchmarks/bench_ui.py). The total is counted on the compute thread instead."""
    from sketchstudio import threads

    on_ui: list[bool] = []
    real = threads.default_total
    monkeypatch.setattr(threads, "default_total",
                        lambda: on_ui.append(threading.current_thread() is threading.main_thread())
                        or real())
    _load(qtbot, window, tiny_model)
    assert not any(on_ui)
    assert window.ctx.translator.threads is None  # all of torch's threads, no budget split


def test_no_garbage_collection_during_a_load_and_startup_objects_frozen_after(
        qtbot, window, tiny_model, monkeypatch):
    """A full collection over torch's ~330k objects holds the GIL for 0.2-0.9 s (a frozen window,
    benchmarks/bench_ui.py): none runs while the model loads, and afterwards the start-up
    objects are frozen out of the collector's sight, so later collections stay short."""
    import gc

    from sketchstudio.engine import Translator

    enabled_during: list[bool] = []
    real = Translator.__init__

    def spy(self, *a, **k):
        enabled_during.append(gc.isenabled())
        real(self, *a, **k)

    monkeypatch.setattr(Translator, "__init__", spy)
    assert gc.isenabled()
    _load(qtbot, window, tiny_model)
    assert enabled_during == [False]
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_warm_up_runs_at_load_off_the_ui_thread(qtbot, window, tiny_model, monkeypatch):
    """The model's first forward happens right after loading, in the compute thread, and the
    user's first translation reuses that warm Translator."""
    from sketchstudio.engine import Translator

    calls: list[tuple[bool, str]] = []
    real = Translator.translate

    def spy(self, img, direction, **kw):
        calls.append((threading.current_thread() is threading.main_thread(), direction))
        return real(self, img, direction, **kw)

    monkeypatch.setattr(Translator, "translate", spy)
    shown: list[str] = []
    window.ctx.preparing.connect(shown.append)
    _load(qtbot, window, tiny_model)
    qtbot.waitUntil(lambda: any("Model ready" in s for s in shown), timeout=WAIT)
    assert calls and not any(on_ui for on_ui, _ in calls)
    assert {d for _, d in calls} == set(window.ctx.translator.directions)
    tr = window.ctx.translator
    r = _translate(qtbot, window, face_like(2))
    assert r.translator is tr  # the warmed-up one, not a new load


def test_warm_up_gives_way_to_a_queued_translation(qtbot, window, tiny_model, monkeypatch):
    """An image given with the model (command line, a drop during the load) is translated first:
    the warm-up would only delay it."""
    from sketchstudio.engine import Translator

    blanks: list[bool] = []
    real = Translator.translate

    def spy(self, img, direction, **kw):
        blanks.append(bool((img == 128).all()))  # the warm-up's grey image
        return real(self, img, direction, **kw)

    monkeypatch.setattr(Translator, "translate", spy)
    window.ctx.load_model(str(tiny_model))
    seq = window.ctx.next_seq()  # queued behind the load, as SelfTest and `sketchstudio IMAGE` do
    window.translate_view._pending = seq
    with qtbot.waitSignal(window.ctx.translated, timeout=WAIT):
        window.ctx.translate(TranslateRequest(seq=seq, source=face_like(3), direction=PHOTO2SKETCH,
                                              align=False, name="t"))
    assert blanks and not any(blanks)


# ------------------------------------------------------------------------------------------------
def test_training_and_translation_split_the_threads(qtbot, window, tiny_model, tmp_path,
                                                    monkeypatch):
    """While a training job runs in the app (in-process, a QThread), its thread uses total-1
    intra-op threads and translations 1; afterwards translations get all of them back. Measured
    where the work runs: torch.get_num_threads() inside the training thread and inside G's
    forward on the compute thread (per-thread counts with the OpenMP backend)."""
    from sketchstudio.threads import per_thread_counts

    if not per_thread_counts():
        pytest.skip("this torch build has one shared thread pool: nothing to split")
    import torch

    import trainer.loop

    running, release = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    class FakeTrainer:
        def __init__(self, config, on_event=None, control=None, resume=False, **kw):
            self.control = control

        def run(self):
            x = torch.randn(1, 8, 64, 64)
            torch.nn.functional.conv2d(x, torch.randn(8, 8, 3, 3))  # a real parallel op
            seen["train"] = torch.get_num_threads()
            running.set()
            while not release.wait(0.02) and not self.control.cancelled:
                pass
            seen["train_end"] = torch.get_num_threads()
            return None

    monkeypatch.setattr(trainer.loop, "Trainer", FakeTrainer)
    tp = window.train_panel
    monkeypatch.setattr(type(tp), "config", lambda self: SimpleNamespace(
        data_dir=str(tmp_path), out_dir=str(tmp_path / "run"), teacher_path=None))
    window.ctx.thread_budget.total_request = 4  # a 4-core machine: 3 + 1
    _load(qtbot, window, tiny_model)
    tr = window.ctx.translator

    def forward_threads() -> int:
        got: list[int] = []
        h = tr.net(PHOTO2SKETCH).register_forward_pre_hook(
            lambda m, a: got.append(torch.get_num_threads()))
        try:
            _translate(qtbot, window, face_like(3))
        finally:
            h.remove()
        return got[-1]

    assert forward_threads() == 4
    assert tp.start()
    qtbot.waitUntil(running.is_set, timeout=WAIT)
    assert seen["train"] == 3
    assert forward_threads() == 1  # translation keeps to one thread while training runs
    assert seen.get("train_end") is None
    release.set()
    qtbot.waitUntil(lambda: not tp.is_training, timeout=WAIT)
    assert seen["train_end"] == 3  # the compute thread's changes never reached the train thread
    assert forward_threads() == 4  # restored
