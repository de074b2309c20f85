"""The Translate view asks for no student taps (so an exported fast runtime can serve it); the
Feature maps view gets them on demand, once per translation, from torch."""

from __future__ import annotations

import numpy as np

from sketchstudio.engine import PHOTO2SKETCH, Translator
from sketchstudio.gui.workers import FeatureRequest, FeatureWorker, TranslateResult


def test_feature_maps_compute_the_taps_once_when_the_translation_has_none(tiny_model, random_teacher):
    tr = Translator(tiny_model, device="cpu", teacher_path=str(random_teacher), precision="fp32")
    crop = np.full((40, 32, 3), 120, np.uint8)
    plain = tr.translate(crop, PHOTO2SKETCH)  # what the Translate view now asks for
    assert plain.taps == {}
    calls = []
    real = tr.translate

    def counting(*args, **kwargs):
        calls.append(kwargs.get("return_taps", False))
        return real(*args, **kwargs)

    tr.translate = counting  # type: ignore[method-assign]
    res = TranslateResult(seq=1, name="x", original=crop, direction=PHOTO2SKETCH,
                          guessed_direction=PHOTO2SKETCH, auto=True, crop=crop, output=plain.output,
                          translation=plain, translator=tr)
    w = FeatureWorker()
    first = w._compute(FeatureRequest(1, res, "DC1", k=4))
    second = w._compute(FeatureRequest(2, res, "UC2", k=4))
    assert calls == [True]  # one torch forward with taps, shared by every layer of that result
    assert first.student_shape[0] == 8 and second.student_shape[0] == 4  # ngf=4: DC1 2×, UC2 1×
    assert first.teacher_grid is not None and first.teacher_error is None
