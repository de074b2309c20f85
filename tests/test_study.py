"""The recipe study runner (equal budget, validation table, grid, resume) and the texture measures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from sketchstudio.errors import ConfigError
from sketchstudio.imaging import load_image
from sketchstudio.metrics.texture import gradient_energy, grid_peak_ratio
from trainer.events import StepEvent, TrainControl
from trainer.study import StudyConfig, main, markdown, run_study


def _study(tmp_path, tiny_pairs, teacher, **variants) -> StudyConfig:
    (tmp_path / "val.txt").write_text("p1\n")
    base = dict(data_dir=str(tiny_pairs), val=str(tmp_path / "val.txt"), val_every=1, image_size=32,
                ngf=4, n_blocks=1, epochs=2, seed=0, precision="fp32", device="cpu",
                teacher_path=str(teacher), teacher_norm_samples=3, checkpoint_every=1)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"out": str(tmp_path / "st"), "base": base, "grid_faces": 1,
                                    "test": {"data_dir": str(tiny_pairs)},
                                    "variants": variants or {"rec": {"loss_weights": [0, 0, 1]},
                                                             "l1": {"loss_weights": [0, 0, 1],
                                                                    "rec_loss": "l1"}}},
                                   sort_keys=False))
    return StudyConfig.load(path)


def test_study_trains_each_variant_at_the_same_budget_and_writes_table_and_grid(
        tiny_pairs, tmp_path, random_teacher):
    cfg = _study(tmp_path, tiny_pairs, random_teacher)
    table = run_study(cfg)
    rows = table["variants"]
    assert list(rows) == ["rec", "l1"]
    assert {r["steps"] for r in rows.values()} == {4}  # 2 training pairs (p1 held out) × 2 epochs
    for name, r in rows.items():
        assert r["val"]["n"] == 1 and r["test"]["n"] == 3
        assert 0 < r["val"]["sketch_fsim"] <= 1 and r["val"]["sketch_grad_ratio"] > 0
        assert r["best_val"]["step"] in (1, 2, 3, 4)
        assert json.loads((tmp_path / "st" / name / "study.json").read_text()) == r
    assert rows["l1"]["changes"] == {"loss_weights": [0, 0, 1], "rec_loss": "l1"}
    md = (tmp_path / "st" / "study.md").read_text()
    assert "| rec |" in md and "| l1 |" in md and "rec_loss=l1" in md
    grid = load_image(tmp_path / "st" / "grid.png")
    assert grid.shape == (4 * 32, 32, 3)  # photo, drawing, then one row per variant


def test_a_half_finished_study_resumes_where_it_stopped(tiny_pairs, tmp_path, random_teacher):
    cfg = _study(tmp_path, tiny_pairs, random_teacher)
    ctl = TrainControl()

    def on_event(name, e):
        if name == "l1" and isinstance(e, StepEvent) and e.step == 2:
            ctl.cancel()

    part = run_study(cfg, on_event=on_event, control=ctl)
    assert list(part["variants"]) == ["rec"]
    assert not (tmp_path / "st" / "study.md").exists()
    first_rec = part["variants"]["rec"]
    steps: list[tuple[str, int]] = []
    done = run_study(cfg, on_event=lambda n, e: isinstance(e, StepEvent) and steps.append((n, e.step)))
    assert steps == [("l1", 3), ("l1", 4)]  # rec is reused, l1 goes on from its checkpoint
    assert done["variants"]["rec"] == first_rec
    assert (tmp_path / "st" / "study.md").is_file()


@pytest.mark.parametrize("variants,msg", [
    ({"a": {"image_size": 64}}, "changes image_size"),
    ({"a": {"max_steps": 3}}, "changes max_steps"),
    ({"a": {"ngf": "wide"}}, "variant 'a': ngf must be a whole number"),
    ({"a/b": {}}, "must be letters"),
])
def test_unfair_or_bad_variants_are_refused(tiny_pairs, tmp_path, random_teacher, variants, msg):
    with pytest.raises(ConfigError, match=msg):
        _study(tmp_path, tiny_pairs, random_teacher, **variants)


def test_study_needs_a_validation_split(tiny_pairs, tmp_path, random_teacher, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"out": str(tmp_path / "o"), "variants": {"rec": {}},
                                    "base": {"data_dir": str(tiny_pairs), "image_size": 32, "ngf": 4,
                                             "n_blocks": 1, "epochs": 1, "device": "cpu",
                                             "precision": "fp32", "teacher_path": str(random_teacher)}}))
    assert main([str(path)]) == 2
    assert "needs a validation split" in capsys.readouterr().err


def test_markdown_reports_subsets_and_missing_test():
    row = {"steps": 5, "sec_per_step": 1.5, "changes": {"rec_loss": "l1"}, "grid_peak": 0.8,
           "val": {"photo_fsim": 0.7, "sketch_fsim": 0.6, "mean_fsim": 0.65, "input_fsim": 0.5, "n": 2,
                   "sketch_grad_ratio": 0.4, "subsets": {"ar": {"sketch_fsim": 0.61},
                                                         "cuhk": {"sketch_fsim": 0.59}}}}
    md = markdown({"base": {"max_steps": 5, "image_size": 32, "val": "cufs"}, "variants": {"x": row}})
    assert "| sketch ar | sketch cuhk |" in md
    header, rule = md.splitlines()[2:4]
    assert header.count("|") == rule.count("|") == 15  # 14 columns (2 subsets), a rule under each
    assert "| x | rec_loss=l1 | 5 | 1.5 | 0.7000 | 0.6000 | 0.6500 | 0.6100 | 0.5900 | 0.40 | 0.8 | — | — | — |" in md


# --- texture measures ---------------------------------------------------------------------------
def _smooth(seed: int, n: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = 128 + 60 * np.sin(2 * np.pi * (xx * rng.uniform(1, 3) + yy * rng.uniform(1, 3)))
    return np.repeat(img[..., None], 3, axis=2).astype(np.uint8)


def test_grid_peak_ratio_flags_a_checkerboard_and_not_a_smooth_image():
    smooth = [_smooth(i) for i in range(3)]
    grid = np.indices((64, 64)).sum(axis=0) % 2 * 12  # period-2 checkerboard, ±6 grey levels
    board = [(s.astype(int) + grid[..., None] - 6).clip(0, 255).astype(np.uint8) for s in smooth]
    assert grid_peak_ratio(smooth) < 2
    assert grid_peak_ratio(board) > 50
    with pytest.raises(ValueError, match="differ in size"):
        grid_peak_ratio([smooth[0], smooth[0][:32]])


def test_gradient_energy_is_zero_for_flat_and_higher_for_strokes():
    flat = np.full((20, 20, 3), 128, np.uint8)
    strokes = flat.copy()
    strokes[:, ::4] = 0
    assert gradient_energy(flat) == 0 and gradient_energy(strokes) > 10


def test_report_plots_the_validation_log(tiny_pairs, tmp_path, random_teacher):
    from research.report import main as report_main
    from tests.conftest import tiny_config
    from trainer.loop import Trainer

    (tmp_path / "val.txt").write_text("p1\n")
    Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, epochs=2,
                        val=str(tmp_path / "val.txt"), val_every=1)).run()
    assert report_main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "figs")]) == 0
    img = load_image(tmp_path / "figs" / "val_curves.png")
    assert img.shape[0] > 200 and img.shape[1] > 400
    (tmp_path / "run" / "val.jsonl").write_text("")
    from research.report import plot_validation

    with pytest.raises(ValueError, match="holds no validation rows"):
        plot_validation(tmp_path / "run" / "val.jsonl", tmp_path / "x.png")


def test_shipped_model_paints_no_checkerboard(cufs):
    """Issue 16's acceptance: no peak at the grid frequencies in the shipped G's mean power
    spectrum. The model shipped before the resize-convolve decoder measured 9.5 here (CUHK test
    drawings: 1.3), so for it the check is skipped with that reason until a new model ships."""
    import torch

    from sketchstudio.checkpoint import build_student, read_checkpoint
    from sketchstudio.imaging import to_image, to_tensor
    from sketchstudio.resources import default_model_path

    path = default_model_path()
    if path is None:
        pytest.skip("no default model installed")
    ckpt = read_checkpoint(path)
    if ckpt.meta.upsample == "deconv":
        pytest.skip("the shipped model still decodes with transposed convolutions (grid peak 9.5 "
                    "measured on CUHK test); this check applies to the next default model")
    g = build_student(ckpt, "photo2sketch")
    photos = sorted((cufs / "test" / "photos").glob("*.jpg"))[:4]
    with torch.no_grad():
        outs = [to_image(g(to_tensor(load_image(p), ckpt.meta.image_size))) for p in photos]
    assert grid_peak_ratio(outs) < 2.0


def test_a_variant_scored_again_later_keeps_its_speed_from_the_loss_log(tiny_pairs, tmp_path,
                                                                          random_teacher):
    cfg = _study(tmp_path, tiny_pairs, random_teacher, rec={"loss_weights": [0, 0, 1]})
    first = run_study(cfg)["variants"]["rec"]
    rows = [json.loads(ln) for ln in (tmp_path / "st" / "rec" / "losses.jsonl").read_text().splitlines()]
    assert all(r["sec"] > 0 for r in rows)
    (tmp_path / "st" / "rec" / "study.json").unlink()  # e.g. after a change to the scoring
    again = run_study(cfg)["variants"]["rec"]
    import statistics

    assert again["sec_per_step"] == pytest.approx(statistics.median(r["sec"] for r in rows))
    assert again["val"] == first["val"]


def test_a_subset_of_the_variants_is_run_and_tabulated(tiny_pairs, tmp_path, random_teacher, capsys):
    cfg = _study(tmp_path, tiny_pairs, random_teacher)
    path = tmp_path / "study.yaml"
    assert main([str(path), "--variants", "l1"]) == 0
    assert "| l1 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "st" / "study.json").read_text())["variants"].keys() == {"l1"}
    assert not (tmp_path / "st" / "rec").exists()
    assert main([str(path), "--variants", "nope"]) == 2
    assert "unknown variant(s) nope; the study has rec, l1" in capsys.readouterr().err
    assert list(cfg.subset(["l1", "rec"]).variants) == ["rec", "l1"]
