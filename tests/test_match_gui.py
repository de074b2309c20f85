"""The Match view driven by pytest-qt (offscreen) with the tiny model and drawn faces."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QThread  # noqa: E402

from sketchstudio.gui import context as gui_context  # noqa: E402
from sketchstudio.gui import main_window as gui_main  # noqa: E402
from sketchstudio.gui.context import AppContext  # noqa: E402
from sketchstudio.gui.match_view import MatchView  # noqa: E402
from sketchstudio.gui.settings import Settings  # noqa: E402
from sketchstudio.imaging import save_image  # noqa: E402
from sketchstudio.match import Matcher  # noqa: E402
from tests.conftest import face_like  # noqa: E402
from tests.test_gui import drop  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("collect_qt_garbage")]
WAIT = 90_000  # ms: the waits are event-driven, so this only bounds a hang; 20 s timed out
# loading a tiny model while the 2 cores ran ~7 runnable threads (tools/stress_tests.sh)


@pytest.fixture
def view(qtbot, tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("SKETCHSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    settings = Settings.at(tmp_path / "settings.ini")
    settings.force_cpu = True
    ctx = AppContext(settings)
    with qtbot.waitSignal(ctx.model_changed, timeout=WAIT) as blocker:
        ctx.load_model(str(tiny_model))
    assert blocker.args[0] is not None
    v = MatchView(ctx)
    qtbot.addWidget(v)
    v.aligned_check.setChecked(True)
    v.show()
    yield v
    v.shutdown()
    ctx.shutdown()


@pytest.fixture
def gallery(tmp_path):
    g = tmp_path / "gallery"
    g.mkdir()
    for i in range(6):
        save_image(face_like(i, 200, 250), g / f"p{i}.png")
    (g / "broken.jpg").write_text("not an image")
    return g


def test_drop_gallery_and_sketch_ranks_and_compares(qtbot, view, gallery, tmp_path):
    w = view._ensure_worker()
    assert w.thread() is view._thread and view._thread is not QThread.currentThread()
    with qtbot.waitSignal(view.gallery_ready, timeout=WAIT) as b:
        drop(view, gallery)  # a folder becomes the gallery
    summary = b.args[0]
    assert summary.n_faces == 6 and len(summary.problems) == 1 and "broken.jpg" in summary.problems[0]

    q = tmp_path / "query.png"
    save_image(face_like(3, 200, 250, sketch=True), q)
    with qtbot.waitSignal(view.results_shown, timeout=WAIT):
        drop(view, q)
    r = view.results
    assert view.result_list.count() == len(r.hits) == 6
    scores = [h.score for h in r.hits]
    assert scores == sorted(scores, reverse=True)
    assert r.translated and r.compared.shape == (250, 200, 3)
    assert view.query_pane.has_image() and view.compared_pane.has_image()
    view.result_list.setCurrentRow(2)
    assert view.gallery_pane.has_image() and r.hits[2].path.endswith(".png")
    assert r.hits[2].path.split("/")[-1] in view.gallery_pane.caption.text()


def test_identical_face_first_without_translation(qtbot, view, gallery):
    view.compare_combo.setCurrentIndex(view.compare_combo.findData("raw"))
    view._ensure_worker()
    with qtbot.waitSignal(view.gallery_ready, timeout=WAIT):
        view.set_gallery(gallery)
    with qtbot.waitSignal(view.results_shown, timeout=WAIT):
        view.set_query(gallery / "p4.png")
    assert view.results.hits[0].path.endswith("p4.png")
    assert view.results.hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_cancel_indexing(qtbot, view, tmp_path, monkeypatch):
    g = tmp_path / "big"
    g.mkdir()
    for i in range(12):
        save_image(face_like(i, 200, 250), g / f"f{i:02d}.png")
    gate = threading.Event()  # the worker's first file waits here until the cancel is made
    real = Matcher.gallery_feature

    def gated(self, path):
        assert gate.wait(WAIT / 1000)
        return real(self, path)

    monkeypatch.setattr(Matcher, "gallery_feature", gated)
    view._ensure_worker()
    with qtbot.waitSignal(view.index_stopped, timeout=WAIT) as b:
        view.set_gallery(g)
        view.cancel_index()
        gate.set()
    # the worker stops at its next check: before the first file, or right after it
    assert re.fullmatch(r"Indexing cancelled after [01] of 12 new or changed files; "
                        r"the finished ones are kept\.", b.args[0])
    done = int(b.args[0].split()[3])
    assert not view.indexing and not view.cancel_button.isEnabled()
    # the next run indexes normally and reuses what was finished
    with qtbot.waitSignal(view.gallery_ready, timeout=WAIT) as b:
        view.start_index()
    assert b.args[0].n_faces == 12
    assert (b.args[0].reused, b.args[0].computed) == (done, 12 - done)


def test_gui_tests_collect_qt_garbage(request):
    """Every test here runs with the shared GC fixture (see conftest.collect_qt_garbage)."""
    assert "collect_qt_garbage" in request.fixturenames


def test_progress_is_reported(qtbot, view, gallery):
    seen: list[tuple[int, int]] = []
    w = view._ensure_worker()
    w.progress.connect(lambda job, d, t, name: seen.append((d, t)))
    with qtbot.waitSignal(view.gallery_ready, timeout=WAIT):
        view.set_gallery(gallery)
    qtbot.waitUntil(lambda: len(seen) == 7, timeout=WAIT)
    assert seen[-1] == (7, 7)


def test_main_window_has_match_tab(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(gui_context, "default_model_path", lambda: None)
    monkeypatch.setattr(gui_main, "default_model_path", lambda: None)
    w = gui_main.MainWindow(Settings.at(tmp_path / "s.ini"))
    qtbot.addWidget(w)
    assert isinstance(w.views.get("Match"), MatchView)
    assert w.tabs.indexOf(w.views["Match"]) >= 0


def test_query_before_gallery_says_what_to_do(view, tmp_path):
    q = tmp_path / "q.png"
    save_image(np.full((250, 200, 3), 255, np.uint8), q)
    view.set_query(q)
    assert "gallery" in view.status.text().lower()


def test_unaligned_gallery_and_query_are_matched_by_their_detected_faces(qtbot, view, tmp_path,
                                                                         monkeypatch):
    """'Already aligned' unticked (the default): faces are found in the images first."""
    import sketchstudio.faces as faces_mod
    from tests.test_match import _on_canvas

    where: dict[bytes, tuple[int, int]] = {}

    def fake_align(img, eyes=None, kind="photo"):  # knows where each face was put
        ox, oy = where[img.tobytes()]
        return type("A", (), {"crop": img[oy:oy + 250, ox:ox + 200].copy(), "n_faces": 1,
                              "method": "fake-detector"})()

    monkeypatch.setattr(faces_mod, "align", fake_align)
    view.aligned_check.setChecked(False)
    view.compare_combo.setCurrentIndex(view.compare_combo.findData("raw"))
    g = tmp_path / "canvases"
    g.mkdir()
    for i in range(4):
        img = _on_canvas(face_like(i, 200, 250), seed=i, ox=10 + 30 * i, oy=90 - 30 * i)
        where[img.tobytes()] = (10 + 30 * i, 90 - 30 * i)
        save_image(img, g / f"p{i}.png")
    query = _on_canvas(face_like(2, 200, 250), seed=50, ox=100, oy=0)
    where[query.tobytes()] = (100, 0)
    save_image(query, tmp_path / "q.png")
    view._ensure_worker()
    with qtbot.waitSignal(view.gallery_ready, timeout=WAIT) as b:
        view.set_gallery(g)
    assert b.args[0].n_faces == 4 and not b.args[0].problems
    with qtbot.waitSignal(view.results_shown, timeout=WAIT):
        view.set_query(tmp_path / "q.png")
    r = view.results
    assert r.hits[0].path.endswith("p2.png") and r.hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert np.array_equal(r.crop, face_like(2, 200, 250))  # the detected face, not the canvas
    assert np.array_equal(r.hits[0].crop, face_like(2, 200, 250))
