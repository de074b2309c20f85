"""One translation pipeline (#18) and portrait mode on top of it (#20).

The GUI's single-image worker, its folder worker and ``sketchstudio-translate`` all go through
:func:`sketchstudio.pipeline.translate_face`; these tests drive the same image through all three
and compare what comes out, and check the portrait's geometry, paper, tiling and cancel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sketchstudio import cli, pipeline
from sketchstudio import faces as real_faces
from sketchstudio import portrait as pt
from sketchstudio.checkpoint import ModelMeta, save_checkpoint, student_tensors
from sketchstudio.engine import Translator
from sketchstudio.errors import CancelledError, ConfigError
from sketchstudio.imaging import load_image, save_image
from sketchstudio.models import StudentNet
from sketchstudio.pipeline import PHOTO2SKETCH, SKETCH2PHOTO, translate_face
from tests.conftest import face_like

EYES = ((300.0, 200.0), (340.0, 204.0))  # a slightly tilted face in a 640×480 picture


class TwoFaces:
    """The real alignment at fixed eyes, reporting two faces (as a group photo would)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def align(self, image, eyes=None, kind="photo"):
        self.calls.append(kind)
        r = real_faces.align(image, eyes=eyes or EYES, kind=kind)
        r.n_faces, r.method = 2, "test"
        return r

    def paste_back(self, original, crop_result, matrix):
        return real_faces.paste_back(original, crop_result, matrix)


def _save(img: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_image(img, path)


def _photo() -> np.ndarray:
    return face_like(2, 640, 480)


def _sketch() -> np.ndarray:
    return face_like(3, 640, 480, sketch=True)


@pytest.fixture
def g_only_model(tmp_path) -> Path:
    """A tiny checkpoint holding G only: a greyish image guessed as a sketch has no F to go to."""
    torch.manual_seed(1)
    path = tmp_path / "g-only.safetensors"
    save_checkpoint(path, student_tensors("G", StudentNet(4, 1)), ModelMeta(ngf=4, n_blocks=1,
                                                                            image_size=32))
    return path


@pytest.fixture
def fixed_faces(monkeypatch) -> TwoFaces:
    fake = TwoFaces()
    monkeypatch.setattr(pipeline, "load_faces", lambda: (fake, ""))
    from sketchstudio.gui import workers as gui_workers

    monkeypatch.setattr(gui_workers, "load_faces", lambda: (fake, ""))
    return fake


def _translator(model: Path) -> Translator:
    return Translator(model, device="cpu", precision="fp32", fast="off")


# --- the three callers agree ----------------------------------------------------------------------
def _through_gui_worker(model: Path, img: np.ndarray, **kw):
    from sketchstudio.gui.workers import TranslateRequest, TranslateWorker

    w = TranslateWorker()
    w.translator = _translator(model)
    got, failed = [], []
    w.result_ready.connect(got.append)
    w.failed.connect(lambda *a: failed.append(a))
    w.latest_seq = 1
    w.translate(TranslateRequest(seq=1, source=img, **kw))
    assert not failed, failed
    return got[0]


def _through_batch(model: Path, src: Path, out: Path, **kw):
    from sketchstudio.gui.workers import BatchWorker

    w = BatchWorker(_translator(model), [str(src)], str(out), **kw)
    got = []
    w.finished.connect(got.append)
    w.run()
    s = got[0]
    assert not s.problems and len(s.written) == 1, s.problems
    return load_image(s.written[0]), s.notes


def _through_cli(model: Path, src: Path, out: Path, capsys, *flags) -> tuple[np.ndarray, list[str]]:
    code = cli.main([str(src), "-o", str(out), "--model", str(model), "--device", "cpu",
                     "--precision", "fp32", *flags])
    err = capsys.readouterr().err
    assert code == 0, err
    (written,) = sorted(out.iterdir())
    notes = [ln.removeprefix("note: ") for ln in err.splitlines() if ln.startswith("note: ")]
    return load_image(written), notes


@pytest.mark.parametrize("case", ["crop", "paste", "portrait"])
def test_gui_worker_batch_and_cli_give_the_same_picture_and_notes(
        case, tiny_model, fixed_faces, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SKETCHSTUDIO_FAST", "off")
    img = _photo()
    src = _save(img, tmp_path / "in" / "face.png")
    gui = _through_gui_worker(tiny_model, img, portrait="head" if case == "portrait" else None)
    shown = {"crop": gui.output, "paste": gui.pasted, "portrait": gui.portrait}[case]
    batch, batch_notes = _through_batch(tiny_model, src, tmp_path / "b",
                                        paste_back=case == "paste",
                                        portrait="head" if case == "portrait" else None)
    flags = {"crop": [], "paste": ["--paste-back"], "portrait": ["--portrait"]}[case]
    cli_img, cli_notes = _through_cli(tiny_model, src, tmp_path / "c", capsys, *flags)
    assert np.array_equal(shown, batch) and np.array_equal(shown, cli_img)
    # one note, worded once, in all three: the several-faces report the GUI batch used to drop
    assert gui.notes == ["2 faces found; translated the largest."]
    assert batch_notes == [f"face.png: {n}" for n in gui.notes]
    assert cli_notes == [f"{src}: {n}" for n in gui.notes]
    assert gui.n_faces == 2 and gui.aligned and fixed_faces.calls == ["photo"] * 3


def test_auto_falls_back_to_the_models_direction_in_every_caller(g_only_model, fixed_faces,
                                                                 tmp_path, capsys, monkeypatch):
    """A greyish picture and a G-only model: "auto" runs G with a note, everywhere (before, only
    the GUI did; the CLI and the batch skipped the file)."""
    monkeypatch.setenv("SKETCHSTUDIO_FAST", "off")
    img = _sketch()
    src = _save(img, tmp_path / "in" / "drawing.png")
    gui = _through_gui_worker(g_only_model, img)
    batch, batch_notes = _through_batch(g_only_model, src, tmp_path / "b")
    cli_img, cli_notes = _through_cli(g_only_model, src, tmp_path / "c", capsys)
    note = "This model has no sketch → photo network; used photo → sketch."
    assert gui.direction == PHOTO2SKETCH and gui.guessed_direction == SKETCH2PHOTO
    assert note in gui.notes and f"drawing.png: {note}" in batch_notes and f"{src}: {note}" in cli_notes
    assert np.array_equal(gui.output, batch) and np.array_equal(gui.output, cli_img)


def test_an_explicit_direction_the_model_lacks_is_an_error_everywhere(g_only_model, tmp_path,
                                                                      capsys):
    img = _sketch()
    with pytest.raises(ConfigError, match="no sketch → photo network"):
        translate_face(img, _translator(g_only_model), direction=SKETCH2PHOTO, align=False)
    src = save_image(img, tmp_path / "s.png")
    assert cli.main([str(src), "-o", str(tmp_path / "o"), "--model", str(g_only_model),
                     "--device", "cpu", "--no-align", "--direction", SKETCH2PHOTO]) == 1
    assert "no sketch → photo network" in capsys.readouterr().err


def test_alignment_unavailable_translates_as_is_with_a_note(tiny_model):
    ft = translate_face(_photo(), _translator(tiny_model), faces=(None, "no alignment (test)"),
                        portrait="head")
    assert not ft.aligned and ft.output.shape == (480, 640, 3) and ft.portrait is None
    assert ft.notes == ["no alignment (test)",
                        "A portrait needs face alignment; wrote the translated image as it is."]


def test_the_gui_sources_no_alignment_or_direction_code_of_its_own():
    """The copies are gone: the GUI drives the pipeline and shows the result."""
    import sketchstudio.gui.translate_view as tv
    import sketchstudio.gui.workers as gw

    for mod in (gw, tv):
        src = Path(mod.__file__).read_text()
        for name in ("def apply_affine", "def invert_affine", "looks_like_sketch", ".paste_back(",
                     ".align("):
            assert name not in src.split("class ScanWorker")[0], (mod.__name__, name)


def test_set_teacher_path_drops_the_loaded_teacher(tiny_model, tmp_path):
    tr = _translator(tiny_model)
    tr._teacher = object()  # as if a teacher had been loaded
    tr.set_teacher_path(str(tmp_path / "vgg.pth"))
    assert tr.teacher_path == str(tmp_path / "vgg.pth") and tr._teacher is None
    tr.set_teacher_path("")
    assert tr.teacher_path is None


# --- portrait ---------------------------------------------------------------------------------
class IdentityNet(nn.Module):
    """A "student" that returns its input: the portrait then shows the photo itself, so its
    geometry (framing, orientation, scale) can be checked pixel by pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FakeTranslator:
    image_size = 64
    directions = [PHOTO2SKETCH]
    device = torch.device("cpu")
    fallback_note = None

    def __init__(self, net: nn.Module) -> None:
        self._net = net
        self.forwards = 0

    def net(self, direction: str) -> nn.Module:
        return self._net

    def run(self, fn):
        self.forwards += 1
        with torch.inference_mode():
            return fn()


def test_portrait_is_the_photo_region_in_its_own_orientation():
    """With an identity network the portrait of a tilted face is the photo's own head-and-
    shoulders region, upright as in the photo (not rotated like the aligned crop), at 2× the
    template's resolution for the face."""
    import cv2

    img = cv2.GaussianBlur(_photo(), (0, 0), 3)
    m = real_faces.align(img, eyes=EYES).matrix
    p = pt.render_portrait(img, m, FakeTranslator(IdentityNet()), PHOTO2SKETCH, grey=False,
                           paper=False)
    x0, y0, x1, y1 = p.plan.region
    assert 0 <= x0 < 300 < 340 < x1 <= 640 and 0 <= y0 < 200 < y1 <= 480
    ow, oh = p.plan.out_size
    expected = cv2.resize(img[y0:y1, x0:x1], (ow, oh), interpolation=cv2.INTER_LINEAR)
    diff = np.abs(p.image.astype(int) - expected).mean()
    rotated = cv2.warpAffine(expected, cv2.getRotationMatrix2D((ow / 2, oh / 2), 6, 1), (ow, oh))
    assert diff < 2.0 and np.abs(rotated.astype(int) - expected).mean() > 3 * diff
    eye_dist = np.hypot(40, 4) * p.plan.out_scale
    assert eye_dist == pytest.approx(2 * 50.0, rel=1e-6)  # template eye distance is 50 px


def test_a_face_near_the_edge_draws_no_replicated_border(tiny_model):
    """Eyes 30 px from the left edge: the head-and-shoulders canvas runs far past the photo. The
    portrait stops at the photo's edge (no pixel of it lies outside the photo), and what G sees
    beyond the edge is the photo mirrored, never the edge column repeated (which it drew as
    streaks)."""
    img = _photo()
    img[:, 0] = (255, 0, 0)  # a red edge column: replicated, it would be a red band
    eyes = ((30.0, 200.0), (70.0, 200.0))
    ft = translate_face(img, _translator(tiny_model), eyes=eyes, portrait="head")
    p = ft.portrait
    outside = ~p.canvas_valid
    assert outside.mean() > 0.1  # the head box reaches well past the left edge
    red = (p.canvas[..., 0] > 200) & (p.canvas[..., 1] < 60) & (p.canvas[..., 2] < 60)
    assert red[outside].mean() < 0.01  # not the edge colour smeared over the outside
    assert red.sum() <= 2 * p.canvas.shape[0]  # the one red column, resampled: no band
    x0, y0, x1, y1 = p.plan.region
    assert x0 == 0 and 0 <= y0 < y1 <= 480 and x1 <= 640  # cropped at the photo's edge
    assert p.image.shape[:2] == (p.plan.out_size[1], p.plan.out_size[0])
    assert p.image.shape[1] == round(x1 * p.plan.out_scale)


def test_tiled_and_single_pass_portraits_agree(tiny_model):
    """A whole 1280×960 photo drawn in one pass and in 32-pixel tiles with a 48-pixel halo (the
    tiny student sees 31 pixels around each output pixel): within 2 grey levels everywhere."""
    img = face_like(2, 1280, 960)
    tr = _translator(tiny_model)
    m = real_faces.align(img, eyes=((600.0, 400.0), (680.0, 408.0))).matrix
    one = pt.render_portrait(img, m, tr, PHOTO2SKETCH, mode="full", tile=1024, halo=0)
    tiled = pt.render_portrait(img, m, tr, PHOTO2SKETCH, mode="full", tile=32, halo=48)
    assert one.tiles == 1 and tiled.tiles > 8
    diff = np.abs(one.image.astype(int) - tiled.image.astype(int))
    assert diff.max() <= 2, diff.max()


def test_tiles_share_one_normalisation(tiny_model):
    """Without frozen statistics each tile would be normalised on its own and drawn with its own
    contrast: the frozen pass and a naive per-tile pass differ, the frozen one matches one pass."""
    tr = _translator(tiny_model)
    net = tr.net(PHOTO2SKETCH)
    x = torch.rand(1, 3, 192, 256) * 2 - 1
    x[..., :, 128:] *= 0.2  # a flat right half: its own statistics differ from the whole's
    with torch.inference_mode():
        whole = net(x)[0].permute(1, 2, 0).numpy()
        stats = pt.collect_norm_stats(net, x)

        def frozen(t):
            with pt.frozen_norms(net, stats):
                return net(t)
        tiled, n = pt.run_tiled(frozen, x, tile=32, halo=48)
        naive, _ = pt.run_tiled(net, x, tile=32, halo=48)
    assert n > 1
    assert np.abs(tiled - whole).max() < 2 / 127.5
    assert np.abs(naive - whole).max() > 4 / 127.5


def test_cancel_stops_between_tiles_and_progress_counts_them(tiny_model, monkeypatch):
    monkeypatch.setattr(pt, "DEFAULT_TILE", 32)
    monkeypatch.setattr(pt, "DEFAULT_HALO", 8)
    img = _photo()
    tr = _translator(tiny_model)
    seen: list[tuple[int, int]] = []
    with pytest.raises(CancelledError):
        translate_face(img, tr, eyes=EYES, portrait="full", progress=lambda d, t: seen.append((d, t)),
                       cancelled=lambda: len(seen) >= 2)
    assert [d for d, _ in seen] == [0, 1] and seen[0][1] > 2  # stopped after two of many tiles


def test_batch_cancel_during_a_portrait_writes_nothing_more(tiny_model, fixed_faces, tmp_path,
                                                            monkeypatch):
    from sketchstudio.gui.workers import BatchWorker

    monkeypatch.setattr(pt, "DEFAULT_TILE", 32)
    monkeypatch.setattr(pt, "DEFAULT_HALO", 8)

    files = [str(_save(_photo(), tmp_path / "in" / f"f{i}.png")) for i in range(2)]
    w = BatchWorker(_translator(tiny_model), files, str(tmp_path / "out"), portrait="full")
    tiles = []

    def progress(done, total):  # the user presses Cancel while the first portrait draws
        tiles.append(done)
        if done == 1:
            w.cancel()
    real = pt.render_portrait
    monkeypatch.setattr(pt, "render_portrait", lambda *a, **kw: real(*a, **{**kw, "progress": progress}))
    got = []
    w.finished.connect(got.append)
    w.run()
    assert tiles == [0, 1] and got[0].cancelled and got[0].written == []
    assert not (tmp_path / "out").exists()


def test_paper_levels_make_the_background_white():
    rng = np.random.default_rng(0)
    g = np.full((100, 100), 220, np.uint8)
    g[40:60, 20:80] = rng.integers(20, 120, size=(20, 60))  # the strokes
    out = pt.paper_levels(np.repeat(g[..., None], 3, axis=2))
    assert (out[:30] == 255).all() and out[40:60, 20:80].mean() < 120 * 255 / 220 + 1
    dark = np.full((10, 10, 3), 60, np.uint8)  # no paper at all: left alone
    assert np.array_equal(pt.paper_levels(dark), dark)


def test_portrait_of_a_sketch_in_the_app_is_left_as_a_crop(tiny_model, fixed_faces):
    """The app's Portrait option is for photo→sketch; a sketch "auto" sends through F is shown
    as the translated crop (portrait_only_for)."""
    gui = _through_gui_worker(tiny_model, _sketch(), portrait="head")
    assert gui.direction == SKETCH2PHOTO and gui.portrait is None and gui.pasted is not None
    gui = _through_gui_worker(tiny_model, _photo(), portrait="head")
    assert gui.portrait is not None and gui.portrait.shape[0] > 2 * gui.output.shape[0] * 0.9


def test_cli_portrait_flags(tiny_model, tmp_path, capsys):
    src = save_image(_photo(), tmp_path / "a.png")
    for extra in (["--no-align"], ["--paste-back"]):
        with pytest.raises(SystemExit) as info:
            cli.main([str(src), "-o", str(tmp_path / "o"), "--model", str(tiny_model),
                      "--portrait", *extra])
        assert info.value.code == 2
    assert "--portrait" in capsys.readouterr().err
    assert cli.main([str(src), "-o", str(tmp_path / "o"), "--model", str(tiny_model),
                     "--device", "cpu", "--eyes", "300,200,340,204", "--portrait", "full"]) == 0
    out = load_image(tmp_path / "o" / "a.png")
    scale = 2 * 50 / np.hypot(40, 4)  # portrait pixels per photo pixel
    assert out.shape[:2] == (round(480 * scale), round(640 * scale))
    assert load_image(src).shape == (480, 640, 3)  # the input is untouched


def test_train_panel_dispatches_events_by_type():
    pytest.importorskip("PySide6")
    from sketchstudio.gui.train_panel import TrainPanel
    from trainer import events

    handled = set(TrainPanel._EVENT_HANDLERS)
    assert {events.StartEvent, events.StepEvent, events.PreviewEvent, events.ValEvent,
            events.CheckpointEvent, events.StateEvent, events.DoneEvent} <= handled

    class Later(events.ValEvent):  # a subclass reaches its parent's handler
        pass
    calls = []
    fake = type("P", (), {"_EVENT_HANDLERS": {events.ValEvent: lambda self, e: calls.append(e)}})()
    e = Later.__new__(Later)
    TrainPanel._on_event(fake, e)
    assert calls == [e]
