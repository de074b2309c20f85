"""`sketchstudio-translate` with face alignment (#4): --align/--no-align, --paste-back, --eyes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sketchstudio import cli
from sketchstudio.faces import models
from sketchstudio.imaging import load_image, save_image
from tests.conftest import face_like


def _run(inputs, out, model, *extra) -> int:
    return cli.main([*map(str, inputs), "-o", str(out), "--model", str(model), "--device", "cpu",
                     *extra])


def _tilted_face(cufs) -> np.ndarray:
    """A CUFS photo rotated 15°, scaled 2× and padded onto a 700×640 canvas."""
    face = load_image(sorted((cufs / "test" / "photos").glob("*.jpg"))[0])
    a = cv2.getRotationMatrix2D((100.0, 125.0), 15.0, 2.0)
    a[:, 2] += (250.0, 200.0)
    return cv2.warpAffine(face, a, (700, 640), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 120, 60))


def test_images_without_a_face_are_listed_as_skipped(tiny_model, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    save_image(np.full((300, 400, 3), (70, 140, 200), np.uint8), src / "flat.png")
    save_image(face_like(1, 120, 150), src / "blobs.png")
    out = tmp_path / "out"
    assert _run([src], out, tiny_model) == 1
    err = capsys.readouterr().err
    assert "skipped:" in err and "flat.png" in err and "blobs.png" in err
    assert err.count("No face found") == 2 and "--eyes X1,Y1,X2,Y2" in err and "--no-align" in err
    assert not out.exists()  # nothing written, and the folder made for the run removed again


def test_no_align_translates_as_is(tiny_model, tmp_path, capsys):
    save_image(np.full((300, 400, 3), (70, 140, 200), np.uint8), tmp_path / "flat.png")
    assert _run([tmp_path / "flat.png"], tmp_path / "out", tiny_model, "--no-align") == 0
    assert load_image(tmp_path / "out" / "flat.png").shape == (300, 400, 3)


def test_manual_eyes_crop_and_paste_back(tiny_model, tmp_path, capsys):
    img = face_like(2, 640, 480)
    save_image(img, tmp_path / "a.png")
    assert _run([tmp_path / "a.png"], tmp_path / "crop", tiny_model, "--eyes", "300,200,340,201") == 0
    assert load_image(tmp_path / "crop" / "a.png").shape == (250, 200, 3)
    assert _run([tmp_path / "a.png"], tmp_path / "full", tiny_model, "--eyes", "340,201,300,200",
                "--paste-back") == 0  # eyes in either order
    pasted = load_image(tmp_path / "full" / "a.png")
    assert pasted.shape == img.shape
    assert (pasted[:50] == img[:50]).all()  # far from the face: the original pixels
    assert np.abs(pasted[190:230, 300:340].astype(int) - img[190:230, 300:340]).mean() > 5  # face


@pytest.mark.parametrize("extra, code, words", [
    (("--eyes", "1,2,3"), 2, "four numbers"),
    (("--eyes", "100,100,102,101"), 1, "apart"),  # too close: the image is skipped, clearly
    (("--eyes", "100,100,900,100"), 1, "outside"),
])
def test_bad_eyes(tiny_model, tmp_path, capsys, extra, code, words):
    save_image(face_like(3, 320, 240), tmp_path / "a.png")
    assert _run([tmp_path / "a.png"], tmp_path / "o", tiny_model, *extra) == code
    assert words in capsys.readouterr().err


def test_flag_conflicts(tiny_model, tmp_path, capsys):
    for name in ("a.png", "b.png"):
        save_image(face_like(4, 100, 120), tmp_path / name)
    assert _run([tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "o", tiny_model,
                "--eyes", "10,50,60,50") == 2
    assert "one image" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        _run([tmp_path / "a.png"], tmp_path / "o", tiny_model, "--no-align", "--paste-back")
    assert info.value.code == 2 and "--paste-back needs face alignment" in capsys.readouterr().err


@pytest.mark.skipif(models.dlib_status() != "", reason="dlib not installed")
def test_align_finds_tilted_face_and_pastes_back(cufs, tiny_model, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    tilted = _tilted_face(cufs)
    save_image(tilted, src / "face.png")
    save_image(np.full((200, 300, 3), 128, np.uint8), src / "grey.png")
    sketch = load_image(sorted((cufs / "test" / "sketches").glob("*.jpg"))[0])
    save_image(cv2.copyMakeBorder(sketch, 50, 30, 80, 20, cv2.BORDER_CONSTANT, value=(255,) * 3),
               src / "sketch.png")
    assert _run([src], tmp_path / "crop", tiny_model) == 1  # grey.png skipped
    err = capsys.readouterr().err
    assert "grey.png" in err and "face.png" not in err and "sketch.png" not in err
    assert load_image(tmp_path / "crop" / "face.png").shape == (250, 200, 3)
    assert load_image(tmp_path / "crop" / "sketch.png").shape == (250, 200, 3)
    assert not (tmp_path / "crop" / "grey.png").exists()
    assert _run([src / "face.png"], tmp_path / "full", tiny_model, "--paste-back") == 0
    pasted = load_image(tmp_path / "full" / "face.png")
    assert pasted.shape == tilted.shape
    assert (pasted[:10, :10] == tilted[:10, :10]).all()


def test_shipped_sample_loads_and_its_largest_face_is_aligned():
    from sketchstudio.faces import align
    from sketchstudio.resources import sample_images

    samples = sample_images()
    assert [p.name for p in samples] == ["astronaut.jpg"]
    img = load_image(samples[0])
    assert img.shape == (512, 512, 3)
    if models.dlib_status() != "":
        pytest.skip("dlib not installed")
    r = align(img, kind="photo")
    assert r.n_faces == 2  # the face and the round mission patch; the larger one is the face
    (lx, ly), (rx, ry) = r.eyes
    assert 195 < lx < 212 and 237 < rx < 255 and 92 < ly < 110 and 94 < ry < 112
