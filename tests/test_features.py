"""Feature maps -> images: top-k, grids, PCA-to-RGB, heat maps, and the teacher pairing lookup."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from sketchstudio import features as ft
from trainer.losses import F_TEACHER_PAIRS, G_TEACHER_PAIRS


def _fmap(c: int = 6, h: int = 5, w: int = 7) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((c, h, w), dtype=np.float32)


def test_as_array_accepts_tensors_and_drops_batch() -> None:
    t = torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4)
    a = ft.as_array(t)
    assert a.shape == (2, 3, 4) and a.dtype == np.float32 and a[1, 2, 3] == 23
    assert ft.as_array(np.zeros((3, 4))).shape == (1, 3, 4)
    with pytest.raises(ValueError):
        ft.as_array(np.zeros((2, 2, 3, 4)))


def test_top_channels_orders_by_mean_activation() -> None:
    a = np.zeros((5, 4, 4), np.float32)
    a[3] = 9.0
    a[1] = 4.0
    a[4, 0, 0] = 16.0  # mean 1.0
    assert ft.top_channels(a, 3).tolist() == [3, 1, 4]
    assert ft.top_channels(a, 99).tolist() == [3, 1, 4, 0, 2]  # ties (0, 2) by index
    assert ft.top_channels(a, 0).tolist() == []


def test_channel_grid_geometry_and_per_tile_scaling() -> None:
    a = _fmap(6, 5, 7)
    a[2] *= 1000.0  # one loud channel must not wash out the others
    grid, idx = ft.channel_grid(a, k=5, pad=1)
    rows, cols = ft.grid_shape(5)
    assert (rows, cols) == (2, 3)
    assert grid.shape == (rows * 5 + rows + 1, cols * 7 + cols + 1, 3) and grid.dtype == np.uint8
    assert idx[0] == 2 and len(idx) == 5 and len(set(idx)) == 5
    # every tile spans the full 0..255 range (each scaled on its own)
    for n in range(5):
        r, c = divmod(n, cols)
        tile = grid[1 + r * 6:1 + r * 6 + 5, 1 + c * 8:1 + c * 8 + 7, 0]
        assert tile.min() == 0 and tile.max() == 255
    # the unused sixth slot stays padding
    assert (grid[1 + 6:1 + 6 + 5, 1 + 2 * 8:1 + 2 * 8 + 7] == 255).all()


def test_channel_grid_explicit_channels_and_empty() -> None:
    a = _fmap()
    grid, idx = ft.channel_grid(a, channels=[4, 0], cols=2, pad=0)
    assert idx == [4, 0] and grid.shape == (5, 14, 3)
    expected = (ft.normalize01(a[4:5])[0] * 255).round().astype(np.uint8)
    assert np.array_equal(grid[:, :7, 0], expected)
    with pytest.raises(ValueError):
        ft.channel_grid(a, channels=[])


def test_pca_recovers_a_planted_structure() -> None:
    h, w = 8, 8
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # 10 channels that are all mixtures of two spatial patterns + tiny noise
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(10, 2)).astype(np.float32)
    a = np.einsum("ck,khw->chw", mix, np.stack([xx, yy])) + 1e-3 * rng.normal(size=(10, h, w))
    comps, ratios = ft.pca_components(a, 3)
    assert comps.shape == (3, h, w)
    assert ratios[:2].sum() > 0.999 and ratios[2] < 1e-3
    rgb = ft.pca_rgb(a)
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].min() == 0 and rgb[..., 0].max() == 255


def test_pca_with_fewer_channels_than_components_and_constant_map() -> None:
    comps, ratios = ft.pca_components(_fmap(2, 4, 4), 3)
    assert np.all(comps[2] == 0) and ratios[2] == 0
    flat = ft.pca_rgb(np.ones((4, 3, 3), np.float32))
    assert flat.shape == (3, 3, 3) and (flat == 0).all()


def test_heat_map_marks_the_busy_region() -> None:
    a = np.zeros((3, 10, 10), np.float32)
    a[:, 2:4, 6:8] = 5.0
    hm = ft.heat_map(a)
    assert hm.shape == (10, 10, 3) and hm.dtype == np.uint8
    hot, cold = hm[3, 7].astype(int).sum(), hm[8, 1].astype(int).sum()
    assert hot > cold + 300  # inferno: near-white/yellow vs near-black
    over = ft.overlay(np.zeros((20, 20, 3), np.uint8), hm, alpha=1.0)
    assert over.shape == (20, 20, 3) and over[7, 14].sum() > over[17, 3].sum()


def test_teacher_counterpart_follows_method_tables() -> None:
    assert ft.teacher_counterpart(G_TEACHER_PAIRS, "IC") == ("P", "relu1_1")
    assert ft.teacher_counterpart(G_TEACHER_PAIRS, "Block") == ("S", "relu3_1")
    assert ft.teacher_counterpart(F_TEACHER_PAIRS, "UC2") == ("P", "relu1_1")
    assert ft.teacher_counterpart(F_TEACHER_PAIRS, "DC1") == ("S", "relu2_1")
    with pytest.raises(KeyError):
        ft.teacher_counterpart(G_TEACHER_PAIRS, "OC")


def test_teacher_input_role() -> None:
    assert ft.teacher_input_role("P", "photo2sketch") == "input"
    assert ft.teacher_input_role("S", "photo2sketch") == "output"
    assert ft.teacher_input_role("S", "sketch2photo") == "input"
    assert ft.teacher_input_role("P", "sketch2photo") == "output"
    with pytest.raises(ValueError):
        ft.teacher_input_role("X", "photo2sketch")


def test_shrink_average_pools_by_a_whole_factor() -> None:
    a = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    assert ft.shrink(a, 8).shape == (2, 8, 8)  # already small enough: unchanged
    s = ft.shrink(a, 4)
    assert s.shape == (2, 4, 4)
    assert s[0, 0, 0] == pytest.approx(a[0, :2, :2].mean())
    assert ft.shrink(np.ones((1, 256, 200)), 64).shape == (1, 64, 50)  # factor 4, both sides


def test_transfer_pairs_follow_the_pairing_table() -> None:
    rng = np.random.default_rng(0)
    student = {"IC": rng.random((8, 32, 32)), "DC1": rng.random((16, 16, 16)),
               "DC2": rng.random((32, 8, 8)), "Block": rng.random((32, 8, 8)),
               "UC1": rng.random((16, 16, 16)), "UC2": rng.random((8, 32, 32))}
    teach = {side: {"relu1_1": rng.random((64, 32, 32)), "relu2_1": rng.random((128, 16, 16)),
                    "relu3_1": rng.random((256, 8, 8))} for side in "PS"}
    pairs = ft.transfer_pairs("G", student, teach, G_TEACHER_PAIRS, k=4, max_side=16)
    assert [(p.layer, p.teacher_side, p.teacher_tap) for p in pairs] == \
        [(s, side, t) for side, t, s in G_TEACHER_PAIRS]
    ic = pairs[0]
    assert ic.student_shape == (8, 32, 32) and ic.teacher_shape == (64, 32, 32)
    # 4 tiles in a 2×2 grid of 16×16 tiles (shrunk from 32) with 1-px padding
    assert ic.student.shape == (35, 35, 3) and ic.teacher.shape == (35, 35, 3)
    assert ic.student.dtype == np.uint8
    f_pairs = ft.transfer_pairs("F", student, teach, F_TEACHER_PAIRS, k=4)
    assert {p.layer: p.teacher_side for p in f_pairs}["IC"] == "S"


def test_features_module_is_qt_free() -> None:
    code = ("import sys; import sketchstudio.features; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'torch')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
