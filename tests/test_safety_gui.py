"""Issue 19 in the app (pytest-qt, offscreen): Save onto a full disk is a message with nothing
half-written, a dropped symlink loop is a message, and a gallery with nothing to search in says so
in the Match view.
"""

from __future__ import annotations

import errno
import os
import sys

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402
from PySide6.QtWidgets import QFileDialog  # noqa: E402

from sketchstudio.gui.match_view import MatchView  # noqa: E402
from tests import test_gui as _gui  # noqa: E402
from tests import test_match_gui as _mgui  # noqa: E402
from tests import test_safety as _safety  # noqa: E402
from tests.conftest import face_like  # noqa: E402
from tests.test_gui import drop, load_model, translate_file  # noqa: E402

# fixtures of those modules, used here by name
settings, no_default_model, window, photo = (_gui.settings, _gui.no_default_model, _gui.window,
                                             _gui.photo)
small_fs = _safety.small_fs  # a real 256 kB tmpfs (root and mount only)
view = _mgui.view  # the Match view with a tiny model, "Already aligned" ticked

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("collect_qt_garbage")]
WAIT = 90_000  # ms; the waits are event-driven, this only bounds a hang on the busy 2 cores


# --- Save onto a full disk --------------------------------------------------------------------
@pytest.fixture(params=["real tmpfs", "injected ENOSPC"])
def full_folder(request, tmp_path, monkeypatch):
    """(folder, make_full): a real tmpfs filled to the last page (root and mount needed, else
    skipped), or a plain folder where ``make_full()`` injects ENOSPC into the atomic write's
    fsync, after the bytes were written, as a real disk reports it. Called once the model is
    loaded and the photo translated, so nothing before the Save meets the full disk."""
    if request.param == "real tmpfs":
        mnt = request.getfixturevalue("small_fs")

        def fill() -> None:
            with (mnt / "filler").open("wb", buffering=0) as fh, pytest.raises(OSError):
                while True:
                    fh.write(b"\1" * 4096)

        return mnt, fill
    import sketchstudio.fsutil as fsutil

    def enospc(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    folder = tmp_path / "full"
    folder.mkdir()
    return folder, lambda: monkeypatch.setattr(fsutil.os, "fsync", enospc)


def test_save_onto_a_full_disk_is_a_message_and_leaves_no_partial_file(
        qtbot, window, tiny_model, photo, full_folder, monkeypatch):
    """The user clicks Save… and picks a file on a full disk: the message bar says "No space left
    on <mount>", no exception escapes the slot (pytest-qt fails the test on one), the file that
    was there keeps its bytes and no temp file is left next to it."""
    folder, make_full = full_folder
    load_model(qtbot, window, tiny_model)
    translate_file(qtbot, window, photo)
    tv = window.translate_view
    make_full()
    before = sorted(p.name for p in folder.iterdir())
    target = folder / "result.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "PNG image (*.png)")))
    hooked: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda _t, exc, _tb: hooked.append(exc))
    tv.save_button.click()  # through the real slot, as a click runs it
    qtbot.waitUntil(lambda: "No space left on" in window.message_bar.text.text(), timeout=WAIT)
    assert hooked == []
    text = window.message_bar.text.text()
    assert "nothing was half-written" in text and "Traceback" not in text
    assert window.message_bar.isVisible()
    assert not target.exists()
    assert sorted(p.name for p in folder.iterdir()) == before  # no .result.png.*.tmp
    assert not str(tv.status.text()).startswith("Saved")


# --- a hostile file dropped on the window -------------------------------------------------------
def test_a_dropped_symlink_loop_is_a_message_not_an_exception(qtbot, window, tiny_model, tmp_path,
                                                            monkeypatch):
    """§5: dropping a symlink loop raised inside dropEvent (in ``settings.add_recent``). Through
    the real drop: the user reads why the file cannot be opened, and nothing escapes."""
    load_model(qtbot, window, tiny_model)
    loop = tmp_path / "loop.png"
    loop.symlink_to("loop.png")
    hooked: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda _t, exc, _tb: hooked.append(exc))
    drop(window.translate_view, loop)
    qtbot.waitUntil(lambda: "symbolic link loop" in window.message_bar.text.text(), timeout=WAIT)
    assert hooked == [] and "Unexpected error" not in window.message_bar.text.text()


# --- an empty gallery in the Match view --------------------------------------------------------
@pytest.fixture
def match_view(view):  # noqa: F811 - test_match_gui's fixture, under this file's name
    return view


def _messages(mv: MatchView) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    mv.ctx.message.connect(lambda level, text, detail: seen.append((level, text, detail)))
    return seen


def test_the_match_view_says_a_gallery_folder_holds_no_images(qtbot, match_view, tmp_path):
    g = tmp_path / "empty"
    (g / "sub").mkdir(parents=True)
    (g / "readme.txt").write_text("no images here")
    seen = _messages(match_view)
    with qtbot.waitSignal(match_view.index_stopped, timeout=WAIT) as b:
        match_view.set_gallery(g)
    assert "holds no images" in b.args[0] and str(g) in b.args[0]
    assert "holds no images" in match_view.status.text()
    assert not match_view.indexing and match_view.summary is None
    assert [(lv, "holds no images" in t) for lv, t, _ in seen] == [("error", True)]
    # a sketch dropped now is refused for that reason, not "not indexed yet"
    q = tmp_path / "q.png"
    Image.fromarray(face_like(1, 200, 250)).save(q)
    match_view.set_query(q)
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=WAIT)
    assert "holds no images" in seen[1][1] and "not indexed" not in seen[1][1]


def test_the_match_view_lists_why_no_gallery_image_could_be_used(qtbot, match_view, tmp_path):
    g = tmp_path / "bad"
    g.mkdir()
    (g / "a.jpg").write_text("not an image")
    (g / "b.png").write_bytes(b"")
    seen = _messages(match_view)
    with qtbot.waitSignal(match_view.index_stopped, timeout=WAIT) as b:
        match_view.set_gallery(g)
    assert "None of the 2 image(s)" in b.args[0] and "2 unreadable" in b.args[0]
    level, text, detail = seen[-1]
    assert level == "error" and "None of the 2 image(s)" in text
    assert "a.jpg" in detail and "b.png" in detail and "is empty (0 bytes)" in detail


def test_gui_tests_collect_qt_garbage(request):
    """Every test here runs with the shared GC fixture (see conftest.collect_qt_garbage)."""
    assert "collect_qt_garbage" in request.fixturenames


def test_the_match_view_says_it_waits_for_another_process_indexing_the_gallery(
        qtbot, match_view, tmp_path):
    """Another process holds the gallery index's lock: the view says whom it waits for, Cancel
    stops the wait, and once the lock is free the gallery is indexed as usual."""
    from sketchstudio.filelock import FileLock
    from sketchstudio.match import MatchConfig, Matcher
    from sketchstudio.match.index import LOCK_NAME, GalleryIndex

    g = tmp_path / "g"
    g.mkdir()
    for i in range(3):
        Image.fromarray(face_like(i, 200, 250)).save(g / f"p{i}.png")
    settings = Matcher(MatchConfig(method="nlda", aligned=True)).index_settings()
    idx = GalleryIndex.open(g, settings, cache_root=tmp_path / "cache")  # the view's cache
    idx._make_cache_dir()
    other = FileLock(idx.cache_dir / LOCK_NAME)
    other.acquire()  # as another process would hold it (a separate open file: a real flock)
    try:
        match_view.set_gallery(g)
        qtbot.waitUntil(lambda: "Waiting for another SketchStudio process" in
                        match_view.status.text(), timeout=WAIT)
        assert f"PID {os.getpid()}" in match_view.status.text() and match_view.indexing
        with qtbot.waitSignal(match_view.index_stopped, timeout=WAIT) as b:
            match_view.cancel_index()
        assert "while another process was indexing this gallery" in b.args[0]
        match_view.start_index()
        qtbot.waitUntil(lambda: "Waiting for another" in match_view.status.text(), timeout=WAIT)
    finally:
        other.release()
    with qtbot.waitSignal(match_view.gallery_ready, timeout=WAIT) as b:
        pass
    assert b.args[0].n_faces == 3
