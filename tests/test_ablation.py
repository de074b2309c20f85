"""The loss ablation driver: three variants with only the loss weights differing, table, resume."""

from __future__ import annotations

import json

import pytest

import trainer.loop
from sketchstudio.checkpoint import read_checkpoint
from sketchstudio.errors import SketchStudioError
from trainer.ablation import AblationConfig, main, markdown, run_ablation
from trainer.evaluate import evaluate
from trainer.events import StepEvent, TrainControl


def _cfg(tiny_pairs, tmp_path, teacher, **kw) -> AblationConfig:
    base = dict(data_dir=str(tiny_pairs), test_dir=str(tiny_pairs), out_dir=str(tmp_path / "abl"),
                image_size=32, ngf=4, n_blocks=1, epochs=1, teacher_path=str(teacher), device="cpu")
    return AblationConfig(**(base | kw))


def test_three_variants_differ_only_in_loss_and_are_scored(tiny_pairs, tmp_path, random_teacher,
                                                           monkeypatch):
    cfg = _cfg(tiny_pairs, tmp_path, random_teacher)
    table = run_ablation(cfg)
    rows = table["variants"]
    assert list(rows) == ["rec", "rec+tea", "full"]
    for name, weights in [("rec", [0, 0, 1]), ("rec+tea", [1, 0, 1]), ("full", [1, 1, 1])]:
        r = rows[name]
        assert r["loss_weights"] == weights and r["steps"] == 3 and r["n_test"] == 3
        scored = evaluate(tmp_path / "abl" / name, tiny_pairs, device="cpu")  # the same model, rescored
        assert r["photo_fsim"] == pytest.approx(scored.photo_fsim, abs=1e-9)
        assert r["sketch_fsim"] == pytest.approx(scored.sketch_fsim, abs=1e-9)
        meta = read_checkpoint(tmp_path / "abl" / name / "checkpoint.safetensors").meta
        tc = meta.train_config
        assert list(tc["loss_weights"]) == weights
        assert (tc["ngf"], tc["n_blocks"], tc["image_size"], tc["seed"]) == (4, 1, 32, 0)
    # same seed, different loss → different models, so different scores
    assert rows["rec"]["photo_fsim"] != rows["full"]["photo_fsim"]
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert saved["variants"] == rows
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert md.count("\n| ") == 5  # header, rule, 3 rows
    for label, name, w in [("reconstruction only", "rec", "0, 0, 1"),
                           ("+ teacher-student", "rec+tea", "1, 0, 1"),
                           ("+ student-student (full KT)", "full", "1, 1, 1")]:
        r = rows[name]
        assert f"| {label} | {w} | 3 | {r['photo_fsim']:.4f} |" in md, name
    delta = rows["full"]["photo_fsim"] - rows["rec"]["photo_fsim"]
    assert f"{delta:+.4f}" in md

    # a second run reuses the scored variants: no training at all
    def boom(*a, **k):
        raise AssertionError("retrained a finished variant")

    monkeypatch.setattr(trainer.loop.Trainer, "run", boom)
    assert run_ablation(cfg)["variants"] == rows


def test_cancel_stops_and_a_rerun_resumes(tiny_pairs, tmp_path, random_teacher):
    cfg = _cfg(tiny_pairs, tmp_path, random_teacher, variants=["rec"], epochs=2)
    ctl = TrainControl()

    def on_event(name, e):
        if isinstance(e, StepEvent) and e.step == 2:
            ctl.cancel()

    table = run_ablation(cfg, on_event=on_event, control=ctl)
    assert table["variants"] == {}
    assert not (tmp_path / "abl" / "ablation.md").exists()
    assert read_checkpoint(tmp_path / "abl" / "rec" / "checkpoint.safetensors").meta.step == 2
    steps = []
    table = run_ablation(cfg, on_event=lambda n, e: isinstance(e, StepEvent) and steps.append(e.step))
    assert table["variants"]["rec"]["steps"] == 6
    assert steps == [3, 4, 5, 6]  # resumed after step 2, not restarted


def test_bad_variant_and_cli(tiny_pairs, tmp_path, random_teacher, capsys):
    with pytest.raises(SketchStudioError, match="unknown ablation variant"):
        run_ablation(_cfg(tiny_pairs, tmp_path, random_teacher, variants=["gan"]))
    rc = main(["--data", str(tiny_pairs), "--test", str(tiny_pairs), "--out", str(tmp_path / "c"),
               "--size", "32", "--ngf", "4", "--blocks", "1", "--epochs", "1", "--variants", "rec",
               "--teacher", str(random_teacher), "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "reconstruction only" in out and "| 3 |" in out
    assert markdown(json.loads((tmp_path / "c" / "ablation.json").read_text())) in out


def test_loss_plot_window_and_file(tmp_path):
    from research.report import auto_window, plot_losses

    assert auto_window(100) == 25 and auto_window(3000) == 100 and auto_window(60000) == 200
    log = tmp_path / "losses.jsonl"
    rows = [{"step": i, "epoch": i // 10, **{f"{n}_{t}": 1.0 / i for n in "GF"
                                             for t in ("tea", "stu", "rec", "total")}}
            for i in range(1, 61)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = plot_losses(log, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no loss rows"):
        plot_losses(tmp_path / "empty.jsonl", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_loss_plot_marks_learning_rate_changes(tmp_path):
    from research.report import lr_changes, main, parse_mark, read_loss_log

    log = tmp_path / "run" / "losses.jsonl"
    log.parent.mkdir()
    rows = [{"step": i, **{f"{n}_{t}": 1.0 for n in "GF" for t in ("tea", "stu", "rec", "total")}}
            for i in range(1, 31)]
    for r in rows[10:20]:
        r["lr"] = 2e-4  # a resume of an older log: the first row with an lr is a change
    for r in rows[20:]:
        r["lr"] = 5e-5
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert lr_changes(read_loss_log(log)) == [(11.0, "lr 2e-4"), (21.0, "lr 5e-5")]
    # an explicit mark already says the rate was 2e-4 before the log recorded it: no new mark
    assert lr_changes(read_loss_log(log), [(5.0, "lr 2e-4")]) == [(21.0, "lr 5e-5")]
    assert lr_changes(read_loss_log(log), [(5.0, "lr 1e-3")]) == [(11.0, "lr 2e-4"), (21.0, "lr 5e-5")]
    assert parse_mark("2844=lr 5e-5") == (2844.0, "lr 5e-5")
    with pytest.raises(ValueError, match="STEP=LABEL"):
        parse_mark("2844")
    assert main(["--run", str(log.parent), "--out", str(tmp_path / "o"), "--mark", "5=start"]) == 0
    assert (tmp_path / "o" / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        main(["--run", str(log.parent), "--out", str(tmp_path / "o"), "--mark", "x=1"])
    with pytest.raises(SystemExit):
        main(["--run", str(log.parent), "--out", str(tmp_path / "o"), "--smooth", "0"])
