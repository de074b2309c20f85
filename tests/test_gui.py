"""The desktop app driven by pytest-qt (offscreen): translate, features, train, settings, errors.

Tiny fixtures keep it fast: an ngf=4 model at 32², three 40×48 pairs, a random-weight VGG file.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence, QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from sketchstudio.errors import EyePositionError, NoFaceFoundError  # noqa: E402
from sketchstudio.gui import context as gui_context  # noqa: E402
from sketchstudio.gui import main_window as gui_main  # noqa: E402
from sketchstudio.gui import workers as gui_workers  # noqa: E402
from sketchstudio.gui.main_window import MainWindow  # noqa: E402
from sketchstudio.gui.qtimage import from_qimage  # noqa: E402
from sketchstudio.gui.settings import Settings  # noqa: E402
from sketchstudio.gui.workers import PHOTO2SKETCH, SKETCH2PHOTO, BatchWorker  # noqa: E402
from sketchstudio.imaging import load_image, save_image  # noqa: E402
from tests.conftest import REPO, face_like  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("collect_qt_garbage")]
WAIT = 90_000  # ms: the waits are event-driven, so this only bounds a hang; 20 s timed out
# loading a tiny model while the 2 cores ran ~7 runnable threads (tools/stress_tests.sh)


# --- helpers ------------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.at(tmp_path / "settings.ini")


@pytest.fixture
def no_default_model(monkeypatch):
    """Tests must not depend on whether the shipped default model has landed."""
    monkeypatch.delenv("SKETCHSTUDIO_MODEL", raising=False)
    monkeypatch.setattr(gui_context, "default_model_path", lambda: None)
    monkeypatch.setattr(gui_main, "default_model_path", lambda: None)


@pytest.fixture
def window(qtbot, settings, no_default_model, monkeypatch):
    monkeypatch.setattr(gui_workers, "load_faces", lambda: (None, "Face alignment is not available "
                                                            "(test)."))
    # pytest-qt closes the window before this fixture's teardown runs: if a (failed) test left
    # training running, closing asks "stop training?" in a modal box nobody can answer offscreen
    # (seen: a hang, or a PySide crash painting under it). Answer Yes: cancel, then close.
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    settings.force_cpu = True
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    yield w
    tp = w.train_panel
    if tp.is_training:
        tp.cancel()
        qtbot.waitUntil(lambda: not tp.is_training, timeout=WAIT)


def load_model(qtbot, w: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(w.ctx.model_changed, timeout=WAIT) as blocker:
        w.ctx.load_model(str(path))
    assert blocker.args[0] is not None, "model failed to load"


def drop(widget, path: Path | None = None, mime: QMimeData | None = None) -> None:
    """Deliver a real QDragEnterEvent + QDropEvent carrying a local file URL (or ``mime``).

    QApplication.notify() discards drop events outside a platform drag session, so they are
    handed to the widget's event() directly (the same dispatch a real drop ends in).
    """
    if mime is None:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = QPointF(widget.rect().center())
    with warnings.catch_warnings():  # PySide marks the (only) QPoint constructor deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    widget.event(enter)
    assert enter.isAccepted(), "the view refused the drag"
    ev = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    widget.event(ev)


def translate_file(qtbot, w: MainWindow, path: Path):
    tv = w.translate_view
    with qtbot.waitSignal(w.ctx.translated, timeout=WAIT) as blocker:
        drop(tv, path)
    return blocker.args[0]


def mouse(widget, kind: QEvent.Type, pos: QPointF, buttons=Qt.MouseButton.LeftButton) -> None:
    button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
    ev = QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons,
                     Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


@pytest.fixture
def photo(tmp_path) -> Path:
    p = tmp_path / "photo.png"
    save_image(face_like(3, w=64, h=80), p)
    return p


@pytest.fixture
def sketch(tmp_path) -> Path:
    p = tmp_path / "sketch.png"
    save_image(face_like(4, w=64, h=80, sketch=True), p)
    return p


def test_gui_tests_collect_qt_garbage(request) -> None:
    """Every test here runs with the shared GC fixture (see conftest.collect_qt_garbage)."""
    assert "collect_qt_garbage" in request.fixturenames


# --- start-up -----------------------------------------------------------------------------------
def test_app_shows_window_without_importing_torch(tmp_path) -> None:
    """`sketchstudio` must put its window up before torch is imported (lazy heavy imports)."""
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "sketchstudio.gui.app", "--exit-when-shown",
                        "--settings", str(tmp_path / "s.ini")], capture_output=True, text=True,
                       cwd=REPO, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "shown torch_loaded=False" in r.stdout


def test_empty_state_without_a_model(qtbot, window) -> None:
    with qtbot.waitSignal(window.ctx.model_changed, timeout=WAIT) as blocker:
        window.start()
    assert blocker.args == [None]
    tv = window.translate_view
    assert tv.stack.currentWidget() is tv.empty
    assert "No model loaded" in tv.empty.title.text()
    assert window.model_combo.currentText() == "No model loaded"
    # dropping an image now says what to do instead of failing silently
    drop(tv, Path(__file__))
    assert window.message_bar.isVisible() and "model" in window.message_bar.text.text().lower()


# --- translate view -----------------------------------------------------------------------------
def test_drop_photo_shows_result_and_saves(qtbot, window, tiny_model, photo, tmp_path) -> None:
    load_model(qtbot, window, tiny_model)
    tv = window.translate_view
    assert tv.stack.currentWidget() is tv.panes
    assert "CPU" in window.device_label.text() and "forced" in window.device_label.text()
    r = translate_file(qtbot, window, photo)
    assert r.direction == PHOTO2SKETCH and r.auto
    assert r.output.shape == (80, 64, 3) and r.output.dtype == np.uint8
    assert tv.result_pane.canvas.image().size().toTuple() == (64, 80)
    assert tv.input_pane.canvas.image().size().toTuple() == (64, 80)
    assert tv.p2s_button.isChecked() and not tv.s2p_button.isChecked()
    assert tv.save_button.isEnabled() and tv.copy_button.isEnabled()
    assert "Face alignment is not available" in tv.status.text()  # the guard message
    # save as PNG and JPEG: the file holds the displayed result
    (tmp_path / "out").mkdir()
    png = tv.save_to(tmp_path / "out" / "r.png")
    assert png is not None and np.array_equal(load_image(png), r.output)
    jpg = tv.save_to(tmp_path / "out" / "r.jpg")
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff" and load_image(jpg).shape == (80, 64, 3)
    # copy to the clipboard
    tv.copy_result()
    clip = QGuiApplication.clipboard().image()
    assert (clip.width(), clip.height()) == (64, 80)
    # the save dialog path: suffix added from the chosen filter
    monkey_target = tmp_path / "out" / "dialog"
    from PySide6.QtWidgets import QFileDialog

    orig = QFileDialog.getSaveFileName
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(monkey_target), "PNG image (*.png)"))
    try:
        window.save_action.trigger()
    finally:
        QFileDialog.getSaveFileName = orig
    assert (tmp_path / "out" / "dialog.png").is_file()
    assert window.settings.recent("images") == [str(photo.resolve())]
    window.recent_images_menu.aboutToShow.emit()
    assert [a.text() for a in window.recent_images_menu.actions()] == ["photo.png"]


def test_direction_is_automatic_and_switchable(qtbot, window, tiny_model, photo, sketch) -> None:
    load_model(qtbot, window, tiny_model)
    tv = window.translate_view
    r1 = translate_file(qtbot, window, sketch)
    assert r1.direction == SKETCH2PHOTO and r1.auto and tv.s2p_button.isChecked()
    assert tv.auto_label.text() == "(auto)"
    r2 = translate_file(qtbot, window, photo)
    assert r2.direction == PHOTO2SKETCH and tv.p2s_button.isChecked()
    with qtbot.waitSignal(window.ctx.translated, timeout=WAIT) as blocker:
        tv.s2p_button.click()
    r3 = blocker.args[0]
    assert r3.direction == SKETCH2PHOTO and not r3.auto and r3.guessed_direction == PHOTO2SKETCH
    assert tv.s2p_button.isChecked() and tv.auto_label.text() == "(manual)"
    assert np.array_equal(r3.original, r2.original)
    assert not np.array_equal(r3.output, r2.output)  # F, not G, produced it
    # a new image goes back to automatic
    r4 = translate_file(qtbot, window, photo)
    assert r4.auto and r4.direction == PHOTO2SKETCH


def test_grey_sketch_toggle_retranslates_and_persists(qtbot, window, tiny_model, photo) -> None:
    load_model(qtbot, window, tiny_model)
    tv = window.translate_view
    assert tv.grey_check.isChecked()  # pencil grey by default
    r = translate_file(qtbot, window, photo)
    assert r.direction == PHOTO2SKETCH
    assert np.ptp(r.output.astype(int), axis=2).max() == 0
    with qtbot.waitSignal(window.ctx.translated, timeout=WAIT) as blocker:
        tv.grey_check.setChecked(False)
    raw = blocker.args[0].output
    assert np.ptp(raw.astype(int), axis=2).max() > 0  # the model's own channels
    assert not window.settings.grey_sketch
    shown = from_qimage(tv.result_pane.canvas.image())
    assert np.array_equal(shown, raw)


def test_sample_button_translates_the_shipped_sample(qtbot, window, tiny_model) -> None:
    load_model(qtbot, window, tiny_model)
    tv = window.translate_view
    assert tv.sample_button.isVisibleTo(window)
    tv.align_check.setChecked(False)  # the sample itself is tested with dlib elsewhere
    with qtbot.waitSignal(window.ctx.translated, timeout=WAIT) as blocker:
        tv.sample_button.click()
    r = blocker.args[0]
    assert r.name == "sample: astronaut.jpg" and r.original.shape == (512, 512, 3)
    assert r.direction == PHOTO2SKETCH and r.output.shape == (512, 512, 3)


def test_corrupt_image_shows_error_and_app_keeps_working(qtbot, window, tiny_model, photo,
                                                         tmp_path) -> None:
    load_model(qtbot, window, tiny_model)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)
    tv = window.translate_view
    drop(tv, bad)
    qtbot.waitUntil(lambda: window.message_bar.isVisible(), timeout=WAIT)
    assert window.message_bar.level == "error"
    assert "broken.jpg" in window.message_bar.text.text()
    assert tv.result is None and not tv.save_button.isEnabled()
    # still works afterwards
    r = translate_file(qtbot, window, photo)
    assert r.output.shape == (80, 64, 3) and tv.result is r


def test_paste_image_from_clipboard(qtbot, window, tiny_model, photo) -> None:
    load_model(qtbot, window, tiny_model)
    from sketchstudio.gui.qtimage import to_qimage

    img = face_like(7, w=48, h=56)
    QGuiApplication.clipboard().setImage(to_qimage(img))
    with qtbot.waitSignal(window.ctx.translated, timeout=WAIT) as blocker:
        window.paste_action.trigger()
    r = blocker.args[0]
    assert np.array_equal(r.original, img) and r.name == "clipboard image"


class FakeFaces:
    """Stands in for sketchstudio.faces: finds no face unless eyes are given, then aligns by them."""

    def __init__(self) -> None:
        self.calls: list = []

    def align(self, image, eyes=None, kind="photo"):
        import cv2

        self.calls.append((eyes, kind))
        if eyes is None:
            raise NoFaceFoundError("No face found in the image.")
        (lx, ly), (rx, ry) = eyes
        if abs(rx - lx) + abs(ry - ly) < 4:
            raise EyePositionError("The two eye positions are too close together.")
        src = np.array([rx - lx, ry - ly])
        s = 50.0 / max(np.hypot(*src), 1e-6)
        a = -math.atan2(src[1], src[0])
        c, si = s * math.cos(a), s * math.sin(a)
        m = np.array([[c, -si, 0.0], [si, c, 0.0]])
        m[:, 2] = np.array([75.0, 125.0]) - m[:, :2] @ np.array([lx, ly])
        crop = cv2.warpAffine(image, m, (200, 250))
        return SimpleNamespace(crop=crop, matrix=m, eyes=eyes, landmarks=None, n_faces=1,
                               method="manual")

    def paste_back(self, original, crop_result, matrix, feather=12):
        import cv2

        h, w = original.shape[:2]
        inv = cv2.invertAffineTransform(matrix)
        warped = cv2.warpAffine(crop_result, inv, (w, h))
        mask = cv2.warpAffine(np.ones(crop_result.shape[:2], np.float32), inv, (w, h))[..., None]
        return (warped * mask + original * (1 - mask)).round().astype(np.uint8)


def test_no_face_then_click_eyes_then_drag_marker(qtbot, window, tiny_model, photo,
                                                  monkeypatch) -> None:
    fake = FakeFaces()
    monkeypatch.setattr(gui_workers, "load_faces", lambda: (fake, ""))
    load_model(qtbot, window, tiny_model)
    tv = window.translate_view
    tv.align_check.setChecked(True)
    drop(tv, photo)
    canvas = tv.input_pane.canvas
    qtbot.waitUntil(lambda: canvas.picking, timeout=WAIT)
    assert window.message_bar.level == "warning" and "eyes" in window.message_bar.text.text()
    # two clicks on the same spot: unusable eyes → asked again, not an error
    mouse(canvas, QEvent.Type.MouseButtonPress, canvas.to_widget_coords((20, 30)))
    mouse(canvas, QEvent.Type.MouseButtonPress, canvas.to_widget_coords((20, 30)))
    qtbot.waitUntil(lambda: len(fake.calls) == 2 and canvas.picking, timeout=WAIT)
    assert "too close" in window.message_bar.text.text() and window.message_bar.level == "warning"
    # click the two eyes (image coords (20, 30) and (44, 30))
    mouse(canvas, QEvent.Type.MouseButtonPress, canvas.to_widget_coords((20, 30)))
    with qtbot.waitSignal(window.ctx.translated, timeout=WAIT) as blocker:
        mouse(canvas, QEvent.Type.MouseButtonPress, canvas.to_widget_coords((44, 30)))
    r = blocker.args[0]
    eyes = fake.calls[-1][0]
    assert np.allclose(eyes, ((20, 30), (44, 30)), atol=0.6)
    assert r.aligned and r.crop.shape == (250, 200, 3) and r.output.shape == (250, 200, 3)
    assert np.allclose(r.crop_eyes, ((75, 125), (125, 125)), atol=1e-6)
    assert r.pasted is not None and r.pasted.shape == (80, 64, 3)
    crop_canvas = tv.crop_pane.canvas
    assert crop_canvas.markers_draggable and len(crop_canvas.markers) == 2
    # paste back shows the result on the original
    tv.paste_check.setChecked(True)
    assert tv.displayed_result() is r.pasted
    assert tv.result_pane.canvas.image().size().toTuple() == (64, 80)
    tv.paste_check.setChecked(False)
    # drag the right-eye marker 10 crop pixels down: re-aligned on release
    start = crop_canvas.to_widget_coords((125, 125))
    end = crop_canvas.to_widget_coords((125, 135))
    requests: list = []  # every translation the view asks for, counted as it asks (GUI thread)
    real_translate = window.ctx.translate
    monkeypatch.setattr(window.ctx, "translate",
                        lambda req: (requests.append(req), real_translate(req))[1])
    mouse(crop_canvas, QEvent.Type.MouseButtonPress, start)
    mouse(crop_canvas, QEvent.Type.MouseMove, end)
    assert requests == [] and crop_canvas.markers[1] == pytest.approx((125, 135), abs=0.5)
    with qtbot.waitSignal(window.ctx.translated, timeout=WAIT):
        mouse(crop_canvas, QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)
    assert len(requests) == 1 and len(fake.calls) == 4  # one re-run, on release
    new_eyes = np.array(fake.calls[-1][0])
    expected_right = np.linalg.inv(np.vstack([r.matrix, [0, 0, 1]]))[:2] @ np.array([125, 135, 1])
    assert np.allclose(new_eyes[0], eyes[0], atol=1e-3)
    assert np.allclose(new_eyes[1], expected_right, atol=0.3)


def test_cufs_photo_drop(qtbot, window, tiny_model, cufs, tmp_path) -> None:
    load_model(qtbot, window, tiny_model)
    tv = window.translate_view
    tv.align_check.setChecked(False)  # CUFS crops are already aligned
    photo = sorted((cufs / "test" / "photos").iterdir())[0]
    r = translate_file(qtbot, window, photo)
    assert r.direction == PHOTO2SKETCH and r.auto and not r.aligned
    assert r.output.shape == load_image(photo).shape
    out = tv.save_to(tmp_path / "cufs_sketch.png")
    assert load_image(out).shape == r.output.shape


def test_batch_folder_with_progress_dialog(qtbot, window, tiny_model, tmp_path) -> None:
    load_model(qtbot, window, tiny_model)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        save_image(face_like(i, sketch=i == 2), src / f"f{i}.png")
    (src / "bad.png").write_bytes(b"not an image")
    (src / "notes.txt").write_text("ignored")
    tv = window.translate_view
    tv.translate_folder(src, str(tmp_path / "out"))
    dialog = tv._batch[2]
    assert dialog.isVisible() and dialog.maximum() == 4
    qtbot.waitUntil(lambda: not tv.batch_running, timeout=WAIT)
    s = tv.last_batch
    assert sorted(Path(p).name for p in s.written) == ["f0.png", "f1.png", "f2.png"]
    assert len(s.problems) == 1 and "bad.png" in s.problems[0] and not s.cancelled
    assert load_image(tmp_path / "out" / "f0.png").shape == (48, 40, 3)
    assert window.message_bar.level == "warning" and "3 of 4" in window.message_bar.text.text()


def test_batch_worker_picks_the_direction_per_image(tiny_model, tmp_path) -> None:
    """Direction "auto": photos go through G, greyish sketches through F, file by file."""
    from sketchstudio.engine import Translator

    tr = Translator(tiny_model, device="cpu", precision="fp32")
    imgs = {"a_photo": face_like(0), "b_sketch": face_like(1, sketch=True), "c_photo": face_like(2)}
    files = [str(save_image(img, tmp_path / f"{n}.png")) for n, img in imgs.items()]
    got = []
    w = BatchWorker(tr, files, str(tmp_path / "out"), align=False)
    w.finished.connect(got.append)
    w.run()
    assert len(got[0].written) == 3 and not got[0].problems
    for name, img in imgs.items():
        direction = SKETCH2PHOTO if "sketch" in name else PHOTO2SKETCH
        expected = tr.translate(img, direction, grey_sketch=True).output
        assert np.array_equal(load_image(tmp_path / "out" / f"{name}.png"), expected), name
    sketch = imgs["b_sketch"]
    assert not np.array_equal(tr.translate(sketch, SKETCH2PHOTO, grey_sketch=True).output,
                              tr.translate(sketch, PHOTO2SKETCH, grey_sketch=True).output)


class DetectingFaces(FakeFaces):
    """Like FakeFaces, but finds a face (eyes at (20, 30) and (44, 30)) in every image."""

    def align(self, image, eyes=None, kind="photo"):
        return super().align(image, eyes=eyes or ((20.0, 30.0), (44.0, 30.0)), kind=kind)


@pytest.mark.parametrize("paste", [False, True])
def test_batch_folder_aligns_and_pastes_back(qtbot, window, tiny_model, tmp_path, monkeypatch,
                                             paste) -> None:
    """A folder dropped with "Align faces" (and "Paste back") ticked: each image is aligned, its
    crop translated in the image's direction, and written as the crop or pasted onto the image."""
    fake = DetectingFaces()
    monkeypatch.setattr(gui_workers, "load_faces", lambda: (fake, ""))
    load_model(qtbot, window, tiny_model)
    src = tmp_path / "in"
    src.mkdir()
    imgs = {"photo": face_like(5, w=64, h=80), "sketch": face_like(6, w=64, h=80, sketch=True)}
    for name, img in imgs.items():
        save_image(img, src / f"{name}.png")
    tv = window.translate_view
    tv.align_check.setChecked(True)
    tv.paste_check.setChecked(paste)
    tv.portrait_check.setChecked(False)  # the crop itself (portraits: tests/test_pipeline.py)
    tv.translate_folder(src, str(tmp_path / "out"))
    qtbot.waitUntil(lambda: not tv.batch_running, timeout=WAIT)
    assert len(tv.last_batch.written) == 2 and not tv.last_batch.problems
    assert sorted(kind for _, kind in fake.calls) == ["photo", "sketch"]
    tr = window.ctx.translator
    for name, img in imgs.items():
        direction = SKETCH2PHOTO if name == "sketch" else PHOTO2SKETCH
        ar = fake.align(img)
        expected = tr.translate(ar.crop, direction, grey_sketch=True).output
        if paste:
            expected = fake.paste_back(img, expected, ar.matrix)
        out = load_image(tmp_path / "out" / f"{name}.png")
        assert out.shape == ((80, 64, 3) if paste else (250, 200, 3)), name
        assert np.array_equal(out, expected), name


def test_batch_worker_cancel_stops_between_images(tiny_model, tmp_path) -> None:
    from sketchstudio.engine import Translator

    files = []
    for i in range(3):
        files.append(str(save_image(face_like(i), tmp_path / f"f{i}.png")))
    w = BatchWorker(Translator(tiny_model, device="cpu"), files, str(tmp_path / "out"), align=False)
    seen = []
    w.progress.connect(lambda i, n, name: (seen.append(i), w.cancel() if i == 1 else None))
    got = []
    w.finished.connect(got.append)
    w.run()  # synchronously, in this thread
    s = got[0]
    assert s.cancelled and len(s.written) == 2 and s.total == 3



def test_batch_that_writes_nothing_leaves_no_new_output_folder(tiny_model, tmp_path) -> None:
    """Every input unreadable: the folder the batch made is removed; one that existed is kept."""
    from sketchstudio.engine import Translator

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    translator = Translator(tiny_model, device="cpu")
    for out, existed in ((tmp_path / "new" / "out", False), (tmp_path / "old", True)):
        if existed:
            out.mkdir()
        got = []
        w = BatchWorker(translator, [str(bad)], str(out), align=False)
        w.finished.connect(got.append)
        w.run()
        s = got[0]
        assert s.written == [] and len(s.problems) == 1 and "bad.png" in s.problems[0]
        assert out.is_dir() == existed
    w = BatchWorker(translator, [str(save_image(face_like(0), tmp_path / "f0.png"))],
                    str(tmp_path / "new" / "out"), align=False)
    w.run()
    assert (tmp_path / "new" / "out" / "f0.png").is_file()

# --- feature maps -------------------------------------------------------------------------------
def test_feature_view_layers_have_the_right_shapes(qtbot, window, tiny_model, random_teacher,
                                                   photo) -> None:
    window.settings.teacher_path = str(random_teacher)
    load_model(qtbot, window, tiny_model)
    translate_file(qtbot, window, photo)
    fv = window.feature_view
    fv.k_spin.setValue(4)
    with qtbot.waitSignal(window.feature_view.maps_shown, timeout=WAIT) as blocker:
        window.show_view("Feature maps")
    m = blocker.args[0]
    assert m.layer == "DC1" and m.network == "G"
    assert m.student_shape == (8, 16, 16)  # ngf=4 → 2·ngf channels at ½ of 32²
    assert len(m.student_channels) == 4 and m.student_grid.shape == (2 * 16 + 3, 2 * 16 + 3, 3)
    assert (m.teacher_side, m.teacher_tap, m.teacher_role) == ("P", "relu2_1", "input")
    assert m.teacher_shape == (128, 16, 16) and len(m.teacher_channels) == 4
    assert m.student_pca.shape == (16, 16, 3) and m.teacher_heat.shape == (16, 16, 3)
    assert fv.student_grid.canvas.image().width() == 35
    assert "Teacher-P" in fv.teacher_grid.title.text() and "relu2_1" in fv.teacher_grid.title.text()
    expected = {"IC": ((4, 32, 32), "P", "relu1_1", "input"), "DC2": ((16, 8, 8), "P", "relu3_1", "input"),
                "Block": ((16, 8, 8), "S", "relu3_1", "output"), "UC1": ((8, 16, 16), "S", "relu2_1", "output"),
                "UC2": ((4, 32, 32), "S", "relu1_1", "output")}
    teacher_ch = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256}
    for layer, (shape, side, tap, role) in expected.items():
        with qtbot.waitSignal(window.feature_view.maps_shown, timeout=WAIT) as blocker:
            fv.set_layer(layer)
        m = blocker.args[0]
        assert m.student_shape == shape, layer
        assert (m.teacher_side, m.teacher_tap, m.teacher_role) == (side, tap, role), layer
        assert m.teacher_shape == (teacher_ch[tap], *shape[1:]), layer
        assert len(m.student_channels) == min(4, shape[0])
    # sketch→photo uses F's table: F.DC1 was taught by Teacher-S relu2_1 on the (input) sketch
    window.show_view("Translate")
    with qtbot.waitSignal(window.ctx.translated, timeout=WAIT):
        window.translate_view.s2p_button.click()
    fv.set_layer("DC1")
    with qtbot.waitSignal(window.feature_view.maps_shown, timeout=WAIT) as blocker:
        window.show_view("Feature maps")
    m = blocker.args[0]
    assert m.network == "F" and (m.teacher_side, m.teacher_tap, m.teacher_role) == ("S", "relu2_1", "input")


def test_feature_view_without_teacher_shows_student_and_why(qtbot, window, tiny_model, photo,
                                                            tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SKETCHSTUDIO_TEACHER", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    window.settings.teacher_path = ""
    load_model(qtbot, window, tiny_model)
    translate_file(qtbot, window, photo)
    with qtbot.waitSignal(window.feature_view.maps_shown, timeout=WAIT) as blocker:
        window.show_view("Feature maps")
    m = blocker.args[0]
    assert m.teacher_error and "teacher" in m.teacher_error.lower() and m.teacher_grid is None
    fv = window.feature_view
    assert fv.student_grid.has_image() and not fv.teacher_grid.has_image()
    assert "No teacher" in fv.teacher_grid.canvas.placeholder


# --- training -----------------------------------------------------------------------------------
def _fill_train_form(tp, data: Path, out: Path, teacher: Path, epochs: int = 200) -> None:
    tp.data_field.set_text(str(data))
    tp.out_field.set_text(str(out), emit=False)
    tp.teacher_field.set_text(str(teacher), emit=False)
    tp.epochs.setValue(epochs)
    tp.image_size.setValue(32)
    tp.ngf.setValue(4)
    tp.n_blocks.setValue(1)
    tp.precision.setCurrentText("fp32")
    tp.preview_every.setValue(1)
    tp.checkpoint_every.setValue(1000)


def test_train_pause_resume_cancel_then_load(qtbot, window, tiny_pairs, random_teacher, tmp_path,
                                             photo, monkeypatch) -> None:
    from sketchstudio.checkpoint import read_checkpoint
    from trainer.events import TrainControl

    blocked, left_paused = threading.Event(), []
    real_wait = TrainControl.wait_while_paused

    def wait_while_paused(ctl, *args, **kwargs):  # runs in the training thread
        blocked.set()
        real_wait(ctl, *args, **kwargs)
        left_paused.append(ctl.paused)  # True would mean it left the wait while still paused

    monkeypatch.setattr(TrainControl, "wait_while_paused", wait_while_paused)
    tp = window.train_panel
    window.show_view("Train")
    _fill_train_form(tp, tiny_pairs, tmp_path / "run", random_teacher)
    qtbot.waitUntil(lambda: tp.scan is not None, timeout=WAIT)
    assert tp.scan.n_pairs == 3 and not tp.scan.problems and "3 pairs" in tp.data_summary.text()
    assert tp.start()
    qtbot.waitUntil(lambda: tp.step >= 1, timeout=WAIT)
    assert tp.total_steps == 600 and "CPU" in tp.device_label.text()
    tp.pause_button.click()
    qtbot.waitUntil(lambda: tp.state == "paused", timeout=WAIT)
    qtbot.waitUntil(blocked.is_set, timeout=WAIT)  # the loop sits in its pause wait
    paused_at = tp.step
    assert tp.pause_button.text() == "Resume" and left_paused == []
    tp.pause_button.click()
    qtbot.waitUntil(lambda: tp.step >= paused_at + 1, timeout=WAIT)
    assert left_paused == [False]  # it stayed in the wait until Resume was clicked
    tp.cancel_button.click()
    qtbot.waitUntil(lambda: not tp.is_training, timeout=WAIT)
    assert tp.state == "cancelled"
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    assert ckpt.is_file() and tp.last_checkpoint == str(ckpt)
    step = read_checkpoint(ckpt).meta.step
    assert 2 <= step < 600 and step == tp.step
    assert len(tp.history["total"]) == step and tp.previews_seen >= 1
    assert tp.previews["G(photo)"].has_image()
    lf = tp.live_features  # student vs teacher grids from the same previews
    assert lf.selected == ("G", "DC1") and lf.student_pane.has_image() and lf.teacher_pane.has_image()
    assert "relu2_1" in lf.teacher_pane.title.text() and "Teacher-P" in lf.teacher_pane.title.text()
    lf.select("F", "IC")
    assert "Teacher-S" in lf.teacher_pane.title.text() and "relu1_1" in lf.teacher_pane.title.text()
    assert "F · IC" in lf.student_pane.title.text() and lf.student_pane.has_image()
    assert tp.load_button.isEnabled()
    with qtbot.waitSignal(window.ctx.model_changed, timeout=WAIT) as blocker:
        tp.load_button.click()
    info = blocker.args[0]
    assert info.path == str(ckpt) and info.step == step
    assert window.tabs.currentWidget() is window.translate_view
    r = translate_file(qtbot, window, photo)
    assert r.translator.model_path == ckpt
    # resume the interrupted run from its folder: continues at the saved step
    window.show_view("Train")
    assert tp.resume_run(tmp_path / "run")
    qtbot.waitUntil(lambda: tp.step > step, timeout=WAIT)
    assert tp.history["total"][0][0] == 1  # the earlier curve was reloaded from losses.jsonl
    tp.cancel()
    qtbot.waitUntil(lambda: not tp.is_training, timeout=WAIT)
    assert read_checkpoint(ckpt).meta.step == tp.step > step


def test_close_during_training_asks_and_checkpoints(qtbot, window, tiny_pairs, random_teacher,
                                                    tmp_path, monkeypatch) -> None:
    tp = window.train_panel
    _fill_train_form(tp, tiny_pairs, tmp_path / "run", random_teacher)
    assert tp.start()
    qtbot.waitUntil(lambda: tp.step >= 1, timeout=WAIT)
    asked = []
    answer = [QMessageBox.StandardButton.No]

    def fake_question(*args, **kwargs):
        asked.append(args[2] if len(args) > 2 else "")
        return answer[0]

    monkeypatch.setattr(QMessageBox, "question", staticmethod(fake_question))
    window.close()
    assert len(asked) == 1 and "checkpoint" in asked[0]
    assert window.isVisible() and tp.is_training  # "No": keeps training
    answer[0] = QMessageBox.StandardButton.Yes
    window.close()
    assert len(asked) == 2
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=WAIT)
    assert not tp.is_training and tp.state == "cancelled"
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()


def test_train_folder_problems_are_listed(qtbot, window, tmp_path) -> None:
    root = tmp_path / "pairs"
    (root / "photos").mkdir(parents=True)
    (root / "sketches").mkdir()
    save_image(face_like(0), root / "photos" / "a.png")
    save_image(face_like(0, sketch=True), root / "sketches" / "a.png")
    save_image(face_like(1), root / "photos" / "lonely.png")
    (root / "photos" / "c.png").write_bytes(b"garbage")
    (root / "sketches" / "c.png").write_bytes(b"garbage too")
    tp = window.train_panel
    window.show_view("Train")
    tp.data_field.set_text(str(root))
    qtbot.waitUntil(lambda: tp.scan is not None, timeout=WAIT)
    items = [tp.problems.item(i).text() for i in range(tp.problems.count())]
    assert any("photo without sketch" in t and "lonely" in t for t in items)
    assert sum("unreadable" in t for t in items) == 2
    assert tp.problems.isVisible() and "problem" in tp.data_summary.text()
    # a bad option is refused with a message, nothing starts
    tp.out_field.set_text("", emit=False)
    assert not tp.start()
    assert window.message_bar.level == "error" and "output folder" in window.message_bar.text.text()



def test_train_form_weight_average_round_trips(qtbot, window, tiny_pairs, random_teacher,
                                               tmp_path) -> None:
    tp = window.train_panel
    _fill_train_form(tp, tiny_pairs, tmp_path / "run", random_teacher)
    qtbot.waitUntil(lambda: tp.scan is not None, timeout=WAIT)  # the folder scan's thread is done
    assert tp.ema_decay.value() == 0 and tp.ema_decay.text() == "off"
    assert tp.config().ema_decay == 0
    tp.ema_decay.setValue(0.999)
    cfg = tp.config()
    assert cfg.ema_decay == 0.999
    tp.ema_decay.setValue(0)
    tp.set_config(cfg)  # as when resuming a run from its config.yaml
    assert tp.ema_decay.value() == pytest.approx(0.999)

# --- model, device, settings, polish ------------------------------------------------------------
def test_force_cpu_and_recent_models_persist(qtbot, tiny_model, settings, no_default_model,
                                             monkeypatch) -> None:
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    load_model(qtbot, w, tiny_model)
    assert settings.recent("models") == [str(tiny_model.resolve())]
    assert w.model_combo.findData(str(tiny_model.resolve())) >= 0 or \
        w.model_combo.findData(str(tiny_model)) >= 0
    with qtbot.waitSignal(w.ctx.model_changed, timeout=WAIT) as blocker:
        w.cpu_action.setChecked(True)
    assert blocker.args[0].device_name.startswith("CPU") and settings.force_cpu
    assert "forced" in w.device_label.text()
    w.tabs.setCurrentIndex(2)
    w.resize(1100, 700)
    w.close()
    # a new window restores tab, size and reloads the last model
    w2 = MainWindow(settings)
    qtbot.addWidget(w2)
    assert settings.geometry() is not None
    # restored, not the 1280×820 default (offscreen clamps the width to its 800-px screen)
    assert w2.tabs.currentIndex() == 2 and w2.size().toTuple() != (1280, 820)
    assert w2.size().height() == 700
    assert w2.cpu_action.isChecked()
    with qtbot.waitSignal(w2.ctx.model_changed, timeout=WAIT) as blocker:
        w2.start()
    assert blocker.args[0].path in (str(tiny_model), str(tiny_model.resolve()))


def test_cuda_fallback_note_is_visible(qtbot, window, tiny_model, photo, monkeypatch) -> None:
    """A CUDA failure mid-session: the engine's fallback note reaches the status bar and messages."""
    from tests.test_engine import fake_gpu_failure

    # no warm-up forward: it runs on the compute thread after the load and, racing the patch
    # below, made a third forward call (the stress loop caught it in 2 of 6 loaded runs)
    monkeypatch.setattr(gui_workers.TranslateWorker, "_warm_up", lambda *a, **k: None)
    load_model(qtbot, window, tiny_model)
    tr = window.ctx.translator
    calls = fake_gpu_failure(monkeypatch, tr, PHOTO2SKETCH)  # the first G forward fails
    r = translate_file(qtbot, window, photo)
    assert calls == ["meta", "cpu"] and tr.device.type == "cpu"
    assert r.direction == PHOTO2SKETCH and r.translator is tr
    assert any("Fake GPU failed (RuntimeError: CUDA error" in n and "running on the CPU" in n
               for n in r.notes)
    assert "running on the CPU" in window.translate_view.status.text()
    assert "fallback" in window.device_label.text() and "Fake GPU" in window.device_label.toolTip()
    assert window.message_bar.level == "warning" and "Fake GPU" in window.message_bar.text.text()


def test_bad_model_file_reports_and_keeps_previous(qtbot, window, tiny_model, tmp_path) -> None:
    load_model(qtbot, window, tiny_model)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    window.ctx.load_model(str(bad))
    qtbot.waitUntil(lambda: window.message_bar.isVisible() and window.message_bar.level == "error",
                    timeout=WAIT)
    assert "bad.safetensors" in window.message_bar.text.text()
    assert window.ctx.model.path == str(tiny_model)


def test_model_tooltip_tells_its_test_scores(qtbot, window, tiny_model, tmp_path) -> None:
    from sketchstudio.checkpoint import export_model

    load_model(qtbot, window, tiny_model)
    assert "No test scores" in window.model_info.toolTip()
    scored = export_model(tiny_model, tmp_path / "scored.safetensors",
                          metrics={"photo_fsim": 0.76549, "sketch_fsim": 0.71342,
                                   "input_fsim": 0.70861, "n_pairs": 100})
    load_model(qtbot, window, scored)
    tip = window.model_info.toolTip()
    assert "100 test pairs" in tip and "sketch→photo FSIM 0.7655" in tip
    assert "photo→sketch FSIM 0.7134" in tip and "unchanged scores 0.7086" in tip


def test_shortcuts_and_tab_cycling(qtbot, window) -> None:
    assert window.open_action.shortcut().matches(QKeySequence("Ctrl+O")) == QKeySequence.SequenceMatch.ExactMatch
    assert window.save_action.shortcut().matches(QKeySequence("Ctrl+S")) == QKeySequence.SequenceMatch.ExactMatch
    assert window.copy_action.shortcut().matches(QKeySequence("Ctrl+C")) == QKeySequence.SequenceMatch.ExactMatch
    assert window.next_tab_action.shortcut() == QKeySequence("Ctrl+Tab")
    window.tabs.setCurrentIndex(0)
    window.next_tab_action.trigger()
    assert window.tabs.currentIndex() == 1
    window.prev_tab_action.trigger()
    window.prev_tab_action.trigger()
    assert window.tabs.currentIndex() == window.tabs.count() - 1
    # the views are registered as (title, factory) entries
    assert [t for t, _ in gui_main.VIEWS][:3] == ["Translate", "Feature maps", "Train"]


def test_about_box_lists_licences(qtbot, window) -> None:
    window.show_about()
    box = window.about_box
    assert box.isVisible() and not box.isModal()
    text = box.text()
    for needle in ("CC BY 4.0", "Simonyan", "Zisserman", "CUHK", "non-commercial", "AR face",
                   "XM2VTS"):
        assert needle in text, needle


def test_icon_files_exist_and_load() -> None:
    from PySide6.QtGui import QIcon

    from sketchstudio.resources import icon_path

    assert icon_path("sketchstudio.svg").is_file()
    icon = QIcon(str(icon_path()))
    assert not icon.isNull() and icon.availableSizes()[0].width() == 256


def test_message_bar_detail_toggle(qtbot, window) -> None:
    bar = window.message_bar
    window.ctx.notify("error", "Something failed.", "Traceback: line 1\nline 2")
    assert bar.isVisible() and bar.details_button.isVisible() and not bar.detail.isVisible()
    bar.details_button.click()
    assert bar.detail.isVisible() and "line 2" in bar.detail.toPlainText()
    bar.close_button.click()
    assert not bar.isVisible()
    window.ctx.notify("info", "No detail.")
    assert bar.isVisible() and bar.level == "info" and not bar.details_button.isVisible()


def test_start_on_an_existing_run_asks_to_resume(qtbot, window, tiny_pairs, random_teacher,
                                                 tmp_path, monkeypatch) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(b"\x00" * 32)  # someone's earlier (broken) run
    tp = window.train_panel
    _fill_train_form(tp, tiny_pairs, run, random_teacher)
    answers = [QMessageBox.StandardButton.Cancel]
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: answers.pop(0)))
    tp.start_button.click()
    assert not tp.is_training and tp.state == "idle"
    answers.append(QMessageBox.StandardButton.Yes)
    tp.start_button.click()  # resumes → reads the checkpoint → its error is shown, app survives
    qtbot.waitUntil(lambda: tp.state == "failed" and not tp.is_training, timeout=WAIT)
    assert tp.worker is None and tp.last_run_resumed is True
    assert window.message_bar.level == "error" and "checkpoint.safetensors" in window.message_bar.text.text()
    assert tp.start_button.isEnabled()


def _tilted(img: np.ndarray, angle: float = 9.0, scale: float = 1.2) -> np.ndarray:
    """A CUFS crop turned into an unaligned snapshot: rotated, scaled, on a larger canvas."""
    import cv2

    h, w = img.shape[:2]
    out_w, out_h = 360, 400
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += ((out_w - w) / 2, (out_h - h) / 2)
    return cv2.warpAffine(img, m, (out_w, out_h), borderMode=cv2.BORDER_REPLICATE)


def test_real_face_alignment_and_paste_back(qtbot, settings, no_default_model, tiny_model, cufs,
                                            tmp_path) -> None:
    """With sketchstudio.faces installed: a tilted CUFS photo is aligned, translated, pasted back."""
    faces, why = gui_workers.load_faces()
    if faces is None:
        pytest.skip(why)
    settings.force_cpu = True
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    load_model(qtbot, w, tiny_model)
    src = load_image(sorted((cufs / "test" / "photos").iterdir())[0])
    path = tmp_path / "tilted.png"
    save_image(_tilted(src), path)
    tv = w.translate_view
    tv.align_check.setChecked(True)
    r = translate_file(qtbot, w, path)
    assert r.aligned and r.crop.shape == (250, 200, 3) and r.output.shape == (250, 200, 3)
    assert np.allclose(r.crop_eyes, ((75, 125), (125, 125)), atol=1.0)
    (lx, ly), (rx, ry) = r.eyes
    assert math.degrees(math.atan2(ry - ly, rx - lx)) == pytest.approx(-9.0, abs=4.0)
    assert r.pasted.shape == (400, 360, 3)
    assert tv.crop_pane.canvas.markers_draggable and len(tv.input_pane.canvas.markers) == 2
    tv.paste_check.setChecked(True)
    out = tv.save_to(tmp_path / "pasted.png")
    assert load_image(out).shape == (400, 360, 3)


def test_save_onto_a_full_disk_says_so_and_keeps_the_old_file(qtbot, window, tiny_model, photo,
                                                             tmp_path, monkeypatch) -> None:
    """#19 §5: Save onto a full disk is a message in the app (not an escaped OSError), and the file
    that was there stays as it was."""
    import errno

    from sketchstudio import fsutil

    load_model(qtbot, window, tiny_model)
    translate_file(qtbot, window, photo)
    tv = window.translate_view
    target = tmp_path / "r.png"
    target.write_bytes(b"an earlier file")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "replace", full)
    assert tv.save_to(target) is None
    assert "No space left on" in window.message_bar.text.text()
    assert target.read_bytes() == b"an earlier file"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
