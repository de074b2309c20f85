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
    array_to_tensor,
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



def test_tensor_image_conversions_by_exact_values():
    """The numpy conversions keep torch's arithmetic exactly: x/127.5 - 1 one way; clamp to
    [-1, 1], (x + 1)·127.5 rounded half to even the other; one channel becomes grey RGB."""
    px = np.array([[[0, 127, 255], [1, 128, 254]]], np.uint8)  # (1, 2, 3)
    t = array_to_tensor(px)
    assert t.shape == (3, 1, 2) and t.dtype == torch.float32
    want = torch.from_numpy(px.transpose(2, 0, 1).astype(np.float32)) / 127.5 - 1.0
    assert torch.equal(t, want)
    assert np.array_equal(to_image(t), px) and np.array_equal(to_image(t[None]), px)
    # clamping, and halves to even: (x+1)·127.5 = 0.5 → 0, 1.5 → 2, 254.5 → 254
    vals = torch.tensor([-3.0, 2.0, 0.5 / 127.5 - 1, 1.5 / 127.5 - 1, 254.5 / 127.5 - 1])
    grey = to_image(vals.view(1, 1, 5))
    ref = torch.round((vals.clamp(-1, 1) + 1) * 127.5).to(torch.uint8).numpy()
    assert grey.shape == (1, 5, 3) and grey.dtype == np.uint8 and grey.flags.c_contiguous
    assert np.array_equal(grey[0, :, 0], ref) and list(ref[:2]) == [0, 255]
    assert (grey == grey[..., :1]).all()  # the one channel copied to R, G and B
    with pytest.raises(ValueError, match="one image, got a batch of 2"):
        to_image(torch.zeros(2, 3, 4, 4))
    for bad in (torch.zeros(2, 4, 4), torch.zeros(4, 4), torch.zeros(1, 1, 3, 4, 4)):
        with pytest.raises(ValueError, match=r"Expected a \(3, H, W\) tensor"):
            to_image(bad)
    assert to_image(torch.zeros(3, 10, 12), width=30).shape == (10, 12, 3)  # both or no resize

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
