"""FSIM calibration: stand-ins are scored against the truth, outputs are checked and compared."""

from __future__ import annotations

import shutil

import pytest

from research.fsim_calibration import calibrate, gradient_energy, main
from sketchstudio.imaging import load_image
from sketchstudio.metrics.fsim import fsim_gray


def _outputs_from_truth(pairs, dst):
    """A perfect "model": its outputs are the ground truths themselves."""
    (dst / "sketches").mkdir(parents=True)
    (dst / "photos").mkdir()
    for i in range(3):
        shutil.copy(pairs / "sketches" / f"p{i}.png", dst / "sketches" / f"p{i}.png")
        shutil.copy(pairs / "photos" / f"p{i}.png", dst / "photos" / f"p{i}.png")
    return dst


def test_stand_ins_rank_as_expected(tiny_pairs):
    r = calibrate(tiny_pairs)
    floor = sum(fsim_gray(load_image(tiny_pairs / "photos" / f"p{i}.png"),
                          load_image(tiny_pairs / "sketches" / f"p{i}.png")) for i in range(3)) / 3
    assert r["input unchanged"]["sketch"] == pytest.approx(floor)
    assert r["input unchanged"]["photo"] == pytest.approx(floor, abs=1e-6)  # FSIM is symmetric
    for d in ("sketch", "photo"):
        assert 1 > r["truth blurred σ=1"][d] > r["truth blurred σ=2"][d] > r["truth blurred σ=3"][d]
        assert r["truth shifted 2 px"][d] < 1
    assert "model output" not in r


def test_outputs_scored_and_gradient_ratio(tiny_pairs, tmp_path, capsys):
    out = _outputs_from_truth(tiny_pairs, tmp_path / "ev")
    r = calibrate(tiny_pairs, out)
    assert r["model output"]["sketch"] == pytest.approx(1.0, abs=1e-5)
    assert r["gradient ratio"]["photo"] == pytest.approx(1.0)
    assert main(["--data", str(tiny_pairs), "--outputs", str(out), "--limit", "2"]) == 0
    assert "model output" in capsys.readouterr().out


def test_gradient_energy_falls_with_blur(tiny_pairs):
    import cv2

    img = load_image(tiny_pairs / "sketches" / "p0.png")
    assert gradient_energy(cv2.GaussianBlur(img, (0, 0), 2.0)) < gradient_energy(img)


def test_incomplete_outputs_folder_is_a_clear_error(tiny_pairs, tmp_path, capsys):
    out = _outputs_from_truth(tiny_pairs, tmp_path / "ev")
    (out / "photos" / "p2.png").unlink()
    assert main(["--data", str(tiny_pairs), "--outputs", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a complete sketchstudio-eval output folder" in err and "p2" in err
    with pytest.raises(SystemExit):
        main(["--data", str(tiny_pairs), "--limit", "0"])
