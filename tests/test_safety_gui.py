"""Issue 19 in the app (pytest-qt, offscreen): a gallery with nothing to search in says so in the
Match view.
"""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402

from sketchstudio.gui.context import AppContext  # noqa: E402
from sketchstudio.gui.match_view import MatchView  # noqa: E402
from sketchstudio.gui.settings import Settings  # noqa: E402
from tests.conftest import face_like  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("collect_qt_garbage")]
WAIT = 90_000  # ms; the waits are event-driven, this only bounds a hang on the busy 2 cores


# --- an empty gallery in the Match view --------------------------------------------------------
@pytest.fixture
def match_view(qtbot, tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("SKETCHSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    s = Settings.at(tmp_path / "match-settings.ini")
    s.force_cpu = True
    ctx = AppContext(s)
    with qtbot.waitSignal(ctx.model_changed, timeout=WAIT):
        ctx.load_model(str(tiny_model))
    v = MatchView(ctx)
    qtbot.addWidget(v)
    v.aligned_check.setChecked(True)
    v.show()
    yield v
    v.shutdown()
    ctx.shutdown()


def _messages(view: MatchView) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    view.ctx.message.connect(lambda level, text, detail: seen.append((level, text, detail)))
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
