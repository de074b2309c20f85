"""The one image path: loading edge cases, conversions, atomic saves, direction guess."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

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


# --- exact behaviour of the loader's helpers (mutation testing, issue 17) ------------------------
def test_bomb_message_states_the_limit_in_megapixels():
    err = imaging._too_large("x.png", ValueError("too many"), 50_000_000)
    assert str(err) == ("'x.png' is too large to open (too many); the limit is 50 MP. "
                        "Scale it down first.")
    assert "the limit is 2 MP" in str(imaging._too_large("x.png", ValueError(), 1_500_000))


@pytest.mark.parametrize("values, want", [
    # 0..1 (a scanner's float TIFF): times 255, rounded half to even
    ([0.0, 0.5, 1.0, 0.002], [0, 128, 255, 1]),
    # 0..255 keeps its meaning, rounded
    ([0.0, 1.0, 2.4, 254.6, 255.0], [0, 1, 2, 255, 255]),
    # anything else is stretched from its minimum to its maximum
    ([-1.0, 0.0, 1.0], [0, 128, 255]),
    ([10.0, 300.0, 590.0], [0, 128, 255]),
    ([-1.0, 0.5, 1.0], [0, 191, 255]),  # 0.75 of the range: 191.25
    # the edges of the 0..255 convention: kept as they are, not stretched
    ([0.0, 1.5, 2.0], [0, 2, 2]),
    ([0.0, 100.0, 200.0], [0, 100, 200]),
    ([0.5, 100.0, 200.0], [0, 100, 200]),
    ([10.0, 100.0, 255.0], [10, 100, 255]),
    # just past 255: stretched, (100 - 10) / 245.5 * 255 = 93.5
    ([10.0, 100.0, 255.5], [0, 93, 255]),
])
def test_float_images_scale_by_their_range(values, want):
    out = imaging._float_to_uint8(np.array([values], np.float64), "f.tif")
    assert out.dtype == np.uint8 and out.tolist() == [want]


def test_float_image_with_nan_is_refused_by_name(tmp_path):
    arr = np.zeros((20, 20), np.float32)
    arr[3, 4] = np.nan
    Image.fromarray(arr, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "nan.tif")
    assert str(e.value) == f"'{tmp_path / 'nan.tif'}' is a floating-point image with NaN or infinite pixels."


def test_float_tiff_loads_at_its_values(tmp_path):
    arr = np.tile(np.linspace(0.0, 1.0, 32, dtype=np.float32), (20, 1))
    Image.fromarray(arr, mode="F").save(tmp_path / "f.tif")
    got = load_image(tmp_path / "f.tif")
    assert np.array_equal(got[..., 0], np.round(arr.astype(np.float64) * 255).astype(np.uint8))
    assert (got == got[..., :1]).all()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_our_outputs_are_recognised_by_their_stamp(tmp_path, suffix):
    """save_image stamps PNG (Software text), JPEG (comment) and TIFF (Software tag); a file of
    the same kind written by anyone else, or one that is not an image at all, is not ours."""
    img = face_like(0, 40, 40)
    assert imaging.is_our_output(save_image(img, tmp_path / f"ours{suffix}"))
    Image.fromarray(img).save(tmp_path / f"theirs{suffix}")
    assert not imaging.is_our_output(tmp_path / f"theirs{suffix}")
    (tmp_path / f"junk{suffix}").write_bytes(b"not an image")
    assert not imaging.is_our_output(tmp_path / f"junk{suffix}")
    assert not imaging.is_our_output(tmp_path / f"missing{suffix}")


def test_stamp_must_start_with_the_marker(tmp_path):
    img = Image.fromarray(face_like(0, 40, 40))
    for text, ours in (("SketchStudio 0.1", True), ("GIMP, not SketchStudio", False)):
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", text)
        img.save(tmp_path / "s.png", pnginfo=info)
        assert imaging.is_our_output(tmp_path / "s.png") is ours
    img.save(tmp_path / "c.jpg", comment=b"SketchStudio")  # a JPEG comment comes back as bytes
    assert imaging.is_our_output(tmp_path / "c.jpg") is True
    img.save(tmp_path / "t.tif", tiffinfo={305: "SketchStudio"})
    assert imaging.is_our_output(tmp_path / "t.tif") is True


def test_colourfulness_is_the_mean_hsv_saturation():
    grey = np.full((64, 64, 3), 120, np.uint8)
    assert imaging.colourfulness(grey) == 0.0
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 200
    assert imaging.colourfulness(red) == 1.0
    half = red.copy()
    half[:, 32:] = 120  # left half fully saturated, right half grey
    assert imaging.colourfulness(half) == pytest.approx(0.5, abs=1e-9)
    assert imaging.colourfulness(half.transpose(1, 0, 2)) == pytest.approx(0.5, abs=1e-9)  # top
    # a 64-wide stripe on a bigger image keeps its share after the 64×64 shrink
    wide = np.full((128, 256, 3), 120, np.uint8)
    wide[:, :64, 0], wide[:, :64, 1:] = 200, 0
    assert imaging.colourfulness(wide) == pytest.approx(0.25, abs=1e-9)


def test_direction_guess_threshold_is_strict():
    img = face_like(0, 64, 64)
    c = imaging.colourfulness(img)
    assert not looks_like_sketch(img, threshold=c)
    assert looks_like_sketch(img, threshold=c + 1e-6)


# --- modes, array checks, encoding options, resampling (mutation testing, issue 17) -------------
def test_transparent_modes_are_composited_onto_white_paper():
    la = np.zeros((16, 16, 2), np.uint8)
    la[..., 0], la[:8, :, 1], la[8:, :, 1] = 100, 255, 0  # grey 100: opaque top, clear bottom
    got = imaging._to_rgb(Image.fromarray(la, "LA"), "t.png")
    assert got.mode == "RGB"
    arr = np.asarray(got)
    assert (arr[:8] == 100).all() and (arr[8:] == 255).all()
    # half-transparent red: 255·a + 255·(1 - a) stays 255 in R; G and B get the paper's share
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    arr = np.asarray(imaging._to_rgb(Image.fromarray(rgba, "RGBA"), "t.png"))
    assert arr[0, 0].tolist() == [255, 127, 127] and (arr == arr[0, 0]).all()
    # a palette image whose index 1 is transparent: those pixels become paper, the rest keep
    # their palette colour
    p = Image.fromarray(np.array([[0, 1] * 8] * 16, np.uint8), "P")
    p.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    p.info["transparency"] = 1
    arr = np.asarray(imaging._to_rgb(p, "t.png"))
    assert arr[0, 0].tolist() == [10, 20, 30] and arr[0, 1].tolist() == [255, 255, 255]
    p.info.pop("transparency")  # without it nothing is composited
    assert np.asarray(imaging._to_rgb(p, "t.png"))[0, 1].tolist() == [200, 0, 0]
    # palette + alpha: index 1 (red) everywhere, opaque on top, clear below
    d = np.zeros((16, 16, 2), np.uint8)
    d[..., 0], d[:8, :, 1] = 1, 255
    pa = Image.frombytes("PA", (16, 16), d.tobytes())
    pa.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    arr = np.asarray(imaging._to_rgb(pa, "t.png"))
    assert arr[0, 0].tolist() == [200, 0, 0] and arr[10, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("dtype, mode", [(np.uint16, "I;16"), (">u2", "I;16B"),
                                         ("<u2", "I;16L"), (np.int32, "I")])
def test_high_bit_depth_scans_are_scaled_by_their_maximum(dtype, mode):
    px = np.array([[0, 1000, 2000, 4000]] * 16, dtype=dtype)
    im = Image.fromarray(px) if mode in ("I;16", "I") else Image.frombytes(mode, (4, 16),
                                                                           px.tobytes())
    assert im.mode == mode
    arr = np.asarray(imaging._to_rgb(im, "t.png"))
    assert arr.shape == (16, 4, 3) and arr[0, :, 0].tolist() == [0, 63, 127, 255]  # truncated
    black = Image.fromarray(np.zeros((16, 16), np.uint16))
    assert (np.asarray(imaging._to_rgb(black, "t.png")) == 0).all()  # all zero: no division by zero


def test_check_rgb_normalises_and_refuses_by_exact_message():
    grey = np.arange(16 * 20, dtype=np.uint8).reshape(16, 20)
    out = imaging.check_rgb(grey)
    assert out.shape == (16, 20, 3) and all(np.array_equal(out[..., c], grey) for c in range(3))
    rgba = np.random.default_rng(0).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    assert np.array_equal(imaging.check_rgb(rgba), rgba[..., :3])
    rgb = face_like(0, 16, 16)
    assert imaging.check_rgb(rgb) is rgb  # valid input passes through untouched
    for bad, msg in (
        ([[1, 2]], "Expected an image array, got list."),
        (np.zeros((16, 16, 5), np.uint8), "Expected an H×W×3 RGB image, got shape (16, 16, 5)."),
        (np.zeros((16, 16, 3), np.float32), "Expected uint8 pixels, got float32."),
        (np.zeros((15, 20, 3), np.uint8), "Image is only 20×15 pixels."),
        (np.zeros((40, 15), np.uint8), "Image is only 15×40 pixels."),
    ):
        with pytest.raises(ImageError) as e:
            imaging.check_rgb(bad)
        assert str(e.value) == msg


def _pillow_bytes(img: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_save_image_encodes_at_the_asked_quality(tmp_path):
    img = face_like(1, 64, 64)
    out = save_image(img, tmp_path / "a.jpg")  # default quality 95, with the output stamp
    assert out.read_bytes() == _pillow_bytes(img, "JPEG", quality=95, comment=imaging.OUTPUT_MARKER)
    low = save_image(img, tmp_path / "b.jpeg", quality=30)
    assert low.read_bytes() == _pillow_bytes(img, "JPEG", quality=30, comment=imaging.OUTPUT_MARKER)
    webp = save_image(img, tmp_path / "c.webp")
    assert webp.read_bytes() == _pillow_bytes(img, "WEBP", quality=95)
    assert load_image(tmp_path / "c.webp").shape == img.shape
    with pytest.raises(OutputError) as e:
        save_image(img, tmp_path / "x.gif2")
    assert str(e.value) == ("Cannot save 'x.gif2': unknown image type '.gif2'. Use one of .bmp, "
                            ".jpeg, .jpg, .png, .tif, .tiff, .webp.")


@pytest.mark.parametrize("size, interp", [
    ((20, 10), "area"),   # shrinking
    ((80, 60), "cubic"),  # enlarging
    ((10, 80), "cubic"),  # the same pixel count, another shape: not a shrink
])
def test_resize_filters(size, interp):
    import cv2

    img = face_like(2, 40, 20)  # 40 wide, 20 high: 800 pixels
    want = cv2.resize(img, size, interpolation=cv2.INTER_AREA if interp == "area"
                      else cv2.INTER_CUBIC)
    assert np.array_equal(imaging.resize(img, *size), want)
    other = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC if interp == "area"
                       else cv2.INTER_AREA)
    assert not np.array_equal(want, other)  # the case tells the filters apart
    assert imaging.resize(img, 40, 20) is img
