"""FSIM: identity is 1, degradation lowers it, sizes are reconciled."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sketchstudio.metrics.fsim import fsim_gray
from tests.conftest import face_like


def test_fsim_identity_and_degradation():
    img = face_like(4, 80, 96)
    assert fsim_gray(img, img) == pytest.approx(1.0, abs=1e-5)
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    very = cv2.GaussianBlur(img, (0, 0), 5.0)
    a, b = fsim_gray(blurred, img), fsim_gray(very, img)
    assert 0 < b < a < 1


def test_fsim_resizes_result_to_truth():
    img = face_like(5, 80, 100)
    big = cv2.resize(img, (160, 200), interpolation=cv2.INTER_CUBIC)
    assert fsim_gray(big, img) > 0.9


def test_fsim_cufs_sketch_vs_its_photo_is_low(cufs):
    from sketchstudio.imaging import load_image

    photo = load_image(cufs / "test" / "photos" / "cuhk_f-039-01.jpg")
    sketch = load_image(cufs / "test" / "sketches" / "cuhk_f-039-01.jpg")
    assert photo.shape == (250, 200, 3)
    v = fsim_gray(photo, sketch)
    assert 0.4 < v < 0.9 and np.isfinite(v)


def test_fsim_is_symmetric():
    """evaluate() reports one input-as-output floor for both directions; that relies on this."""
    a, b = face_like(1, 80, 96), face_like(1, 80, 96, sketch=True)
    assert fsim_gray(a, b) == pytest.approx(fsim_gray(b, a), abs=1e-6)
    assert fsim_gray(a, b) < 0.99
