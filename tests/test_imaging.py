"""The one image path: loading edge cases, conversions, atomic saves, direction guess."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from sketchstudio import imaging
from sketchstudio.errors import ImageError, OutputError
from sketchstudio.imaging import (
    load_image,
    looks_like_sketch,
    save_image,
    to_image,
    to_tensor,
)
from tests.conftest import face_like


def test_gray_rgba_and_exif_are_normalised(tmp_path):
    Image.fromarray(np.full((20, 30), 100, np.uint8), "L").save(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png")
    assert g.shape == (20, 30, 3) and (g == 100).all()
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent → white paper
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert (load_image(tmp_path / "t.png") == 255).all()
    im = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    im.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (40, 20, 3)


def test_bad_files_have_specific_messages(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "notes.txt")
    buf = io.BytesIO()
    Image.fromarray(face_like(1, 200, 200)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:300])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(ImageError, match="only 8×8"):
        load_image(tmp_path / "tiny.png")


def test_huge_image_is_refused_before_decoding(tmp_path):
    Image.new("L", (3000, 2000)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="larger than the 5 MP limit"):
        load_image(tmp_path / "big.png", max_pixels=5_000_000)


def test_tensor_round_trip_and_range():
    img = face_like(3, 64, 64)
    t = to_tensor(img, 64)
    assert t.shape == (1, 3, 64, 64) and t.min() >= -1 and t.max() <= 1
    assert np.abs(to_image(t).astype(int) - img).max() <= 1
    assert to_image(torch.zeros(3, 10, 12), width=30, height=20).shape == (20, 30, 3)
    with pytest.raises(ImageError, match="H×W×3"):
        to_tensor(np.zeros((10, 10, 5), np.uint8), 32)


def test_save_is_atomic_and_checks_type(tmp_path):
    img = face_like(0)
    out = save_image(img, tmp_path / "x.jpg")
    assert load_image(out).shape == img.shape
    with pytest.raises(OutputError, match="unknown image type"):
        save_image(img, tmp_path / "x.gif2")
    with pytest.raises(OutputError, match="does not exist"):
        save_image(img, tmp_path / "no" / "dir" / "x.png")


def test_direction_guess(cufs):
    photos = sorted((cufs / "test" / "photos").iterdir())[:20]
    sketches = sorted((cufs / "test" / "sketches").iterdir())[:20]
    assert not any(looks_like_sketch(load_image(p)) for p in photos)
    assert all(looks_like_sketch(load_image(p)) for p in sketches)
    train_ar = sorted((cufs / "train" / "sketches").glob("ar_*"))[:10]  # lavender-tinted paper
    assert all(looks_like_sketch(load_image(p)) for p in train_ar)


def test_direction_guess_synthetic():
    assert looks_like_sketch(face_like(0, sketch=True))
    assert imaging.colourfulness(face_like(0)) > imaging.colourfulness(face_like(0, sketch=True))
