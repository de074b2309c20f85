"""The three CLIs end to end on tiny data, and their errors for bad flags and folders."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from sketchstudio import cli as translate_cli
from sketchstudio.checkpoint import read_checkpoint
from sketchstudio.engine import PHOTO2SKETCH, SKETCH2PHOTO, Translator
from sketchstudio.imaging import load_image, looks_like_sketch, save_image
from sketchstudio.metrics.fsim import fsim_gray
from tests.conftest import face_like
from trainer import cli
from trainer.events import StepEvent
from trainer.loop import Trainer


def _train_args(data, out, teacher, *extra):
    return ["--data", str(data), "--out", str(out), "--teacher", str(teacher), "--size", "32",
            "--ngf", "4", "--blocks", "1", "--epochs", "1", "--precision", "fp32", "--device", "cpu",
            *extra]


def test_train_then_eval_then_export(tiny_pairs, tmp_path, random_teacher, capsys):
    run = tmp_path / "run"
    assert cli.train_main(_train_args(tiny_pairs, run, random_teacher)) == 0
    assert "finished at step 3" in capsys.readouterr().out
    assert cli.train_main(_train_args(tiny_pairs, run, random_teacher, "--epochs", "2", "--resume")) == 0
    assert read_checkpoint(run).meta.step == 6
    ev = tmp_path / "eval"
    assert cli.eval_main(["--model", str(run), "--data", str(tiny_pairs), "--out", str(ev),
                          "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "sketch→photo" in out and "photo→sketch" in out
    metrics = json.loads((ev / "metrics.json").read_text())
    # the scores are FSIM(F(sketch), photo) and FSIM(G(photo), sketch), recomputed here exactly
    tr = Translator(run, device="cpu", precision="fp32")
    photo_fsim, sketch_fsim = [], []
    for i in range(3):
        photo = load_image(tiny_pairs / "photos" / f"p{i}.png")
        sketch = load_image(tiny_pairs / "sketches" / f"p{i}.png")
        fake_photo = tr.translate(sketch, SKETCH2PHOTO).output
        fake_sketch = tr.translate(photo, PHOTO2SKETCH).output
        assert np.array_equal(load_image(ev / "photos" / f"p{i}.png"), fake_photo)
        assert np.array_equal(load_image(ev / "sketches" / f"p{i}.png"), fake_sketch)
        photo_fsim.append(fsim_gray(fake_photo, photo))
        sketch_fsim.append(fsim_gray(fake_sketch, sketch))
        assert metrics["per_image"][f"p{i}"]["photo_fsim"] == pytest.approx(photo_fsim[-1], abs=1e-9)
        assert metrics["per_image"][f"p{i}"]["sketch_fsim"] == pytest.approx(sketch_fsim[-1], abs=1e-9)
    assert metrics["photo_fsim"] == pytest.approx(sum(photo_fsim) / 3, abs=1e-9)
    assert metrics["sketch_fsim"] == pytest.approx(sum(sketch_fsim) / 3, abs=1e-9)
    assert metrics["photo_fsim"] != pytest.approx(metrics["sketch_fsim"], abs=1e-6)
    assert "input as output" in out
    floor = [fsim_gray(load_image(tiny_pairs / "photos" / f"p{i}.png"),
                       load_image(tiny_pairs / "sketches" / f"p{i}.png")) for i in range(3)]
    assert metrics["input_fsim"] == pytest.approx(sum(floor) / 3)
    assert metrics["per_image"]["p1"]["input_fsim"] == pytest.approx(floor[1])
    assert metrics["n_pairs"] == 3 and metrics["step"] == 6
    fake = load_image(ev / "sketches" / "p0.png")
    assert fake.shape == load_image(tiny_pairs / "sketches" / "p0.png").shape  # ground-truth size
    model = tmp_path / "model.safetensors"
    assert cli.export_main([str(run), str(model), "--metrics", str(ev / "metrics.json")]) == 0
    embedded = read_checkpoint(model).meta.metrics
    assert embedded["photo_fsim"] == pytest.approx(metrics["photo_fsim"])
    assert embedded["input_fsim"] == pytest.approx(metrics["input_fsim"])
    assert "per_image" not in embedded



def test_train_with_ema_then_export_the_average(tiny_pairs, tmp_path, random_teacher, capsys):
    run, plain = tmp_path / "run", tmp_path / "plain"
    assert cli.train_main(_train_args(tiny_pairs, run, random_teacher, "--ema-decay", "0.9")) == 0
    ck = read_checkpoint(run)
    assert ck.meta.train_config["ema_decay"] == 0.9 and ck.meta.extra["ema"]["updates"] == 3
    model = tmp_path / "ema.safetensors"
    assert cli.export_main([str(run), str(model), "--ema", "--fp32"]) == 0
    assert torch.equal(read_checkpoint(model).tensors["F.OC.1.weight"], ck.tensors["ema.F.OC.1.weight"])
    assert cli.train_main(_train_args(tiny_pairs, plain, random_teacher)) == 0
    capsys.readouterr()
    assert cli.export_main([str(plain), str(tmp_path / "x.safetensors"), "--ema"]) == 2
    assert "holds no weight average" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    assert cli.train_main(_train_args(tiny_pairs, tmp_path / "bad", random_teacher,
                                      "--ema-decay", "1")) == 2
    assert "EMA decay must be in [0, 1)" in capsys.readouterr().err

@pytest.mark.parametrize("flag,value,msg", [
    ("--size", "250", "divisible by 4"),
    ("--epochs", "-3", "at least 1"),
    ("--epochs", "ten", "whole number"),
    ("--precision", "int8", "invalid choice"),
])
def test_train_rejects_bad_flags(tiny_pairs, tmp_path, random_teacher, capsys, flag, value, msg):
    args = _train_args(tiny_pairs, tmp_path / "run", random_teacher)
    i = args.index(flag) if flag in args else None
    if i is not None:
        args[i + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(SystemExit) as ei:
        cli.train_main(args)
    assert ei.value.code == 2
    assert msg in capsys.readouterr().err


def test_train_bad_loss_weights_and_teacher(tiny_pairs, tmp_path, random_teacher, capsys):
    assert cli.train_main(_train_args(tiny_pairs, tmp_path / "r", random_teacher,
                                      "--loss-weights", "1,2")) == 2
    assert "three numbers" in capsys.readouterr().err
    bad = tmp_path / "vgg.pth"
    bad.write_bytes(b"nope")
    assert cli.train_main(_train_args(tiny_pairs, tmp_path / "r2", bad)) == 2
    assert "not a readable VGG-19" in capsys.readouterr().err


def test_unwritable_output_folder(tiny_pairs, tmp_path, random_teacher, capsys):
    if os.geteuid() == 0:  # root ignores permission bits; /proc refuses new folders even to root
        target = "/proc/sketchstudio-test/run"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "run")
    assert cli.train_main(_train_args(tiny_pairs, target, random_teacher)) == 2
    assert "Cannot create output folder" in capsys.readouterr().err


def test_output_path_that_is_a_file(tiny_pairs, tmp_path, random_teacher, tiny_model, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.train_main(_train_args(tiny_pairs, f, random_teacher)) == 2
    err = capsys.readouterr().err
    assert f"Cannot create output folder '{f}'" in err and "File exists" in err
    assert f.read_text() == "x"
    # everything else about this call is valid: only the output path can make it fail
    assert translate_cli.main([str(tiny_pairs / "photos"), "-o", str(f / "sub"), "--model",
                               str(tiny_model), "--device", "cpu", "--no-align"]) == 2
    err = capsys.readouterr().err
    assert f"Cannot create output folder '{f / 'sub'}'" in err and "Not a directory" in err
    assert f.read_text() == "x"


def test_translate_files_and_folders(tiny_model, tiny_pairs, tmp_path, capsys):
    (tiny_pairs / "photos" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code = translate_cli.main([str(tiny_pairs / "photos"), str(tmp_path / "missing.jpg"),
                               "-o", str(out), "--model", str(tiny_model), "--device", "cpu",
                               "--no-align"])
    assert code == 1  # some inputs skipped
    err = capsys.readouterr().err
    assert "broken.png" in err and "missing.jpg" in err
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert load_image(out / "p0.png").shape == (48, 40, 3)


def _channel_spread(img) -> int:
    """The largest difference between a pixel's channels: 0 for a grey image."""
    return int((img.max(axis=2).astype(int) - img.min(axis=2).astype(int)).max())


def test_translate_writes_grey_sketches_unless_asked(tiny_model, tiny_pairs, tmp_path):
    photo = tiny_pairs / "photos" / "p0.png"
    common = ["--model", str(tiny_model), "--device", "cpu", "--no-align",
              "--direction", "photo2sketch"]
    assert translate_cli.main([str(photo), "-o", str(tmp_path / "grey"), *common]) == 0
    assert translate_cli.main([str(photo), "-o", str(tmp_path / "raw"), *common, "--no-grey"]) == 0
    grey, raw = load_image(tmp_path / "grey" / "p0.png"), load_image(tmp_path / "raw" / "p0.png")
    assert _channel_spread(grey) == 0  # pencil grey: R = G = B
    assert _channel_spread(raw) > 0  # the untrained model's channels differ
    # grey is the luma of the raw output (rounding aside)
    luma = raw.astype(float) @ [0.299, 0.587, 0.114]
    assert abs(grey[:, :, 0].astype(float) - luma).max() <= 1.0


def test_translate_without_model_explains(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sketchstudio.engine.default_model_path", lambda: None)
    save_image(face_like(0), tmp_path / "a.png")
    assert translate_cli.main([str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]) == 2
    assert "No model given" in capsys.readouterr().err


def test_translate_precision_flag(tmp_path, tiny_model, capsys):
    from sketchstudio.cli import main
    from sketchstudio.imaging import save_image
    from tests.conftest import face_like

    src = tmp_path / "in.png"
    save_image(face_like(2, 40, 48), src)
    out = tmp_path / "out"
    assert main([str(src), "-o", str(out), "--model", str(tiny_model), "--no-align",
                 "--precision", "fp16", "--device", "cpu"]) == 2
    assert "fp16 precision needs a CUDA GPU" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    assert main([str(src), "-o", str(out), "--model", str(tiny_model), "--no-align",
                 "--precision", "fp32", "--device", "cpu"]) == 0
    assert (out / "in.png").is_file()


def test_translate_with_no_usable_input_leaves_no_output_folder(tiny_model, tmp_path, capsys):
    (tmp_path / "fake.jpg").write_text("hello")
    common = ["--model", str(tiny_model), "--device", "cpu", "--no-align"]
    out = tmp_path / "out"
    # nothing exists: an error before anything is created
    assert translate_cli.main([str(tmp_path / "missing.jpg"), "-o", str(out), *common]) == 2
    assert "nothing to translate: " in capsys.readouterr().err and not out.exists()
    # a file that is not an image: skipped, and the folder made for the run is removed again
    assert translate_cli.main([str(tmp_path / "fake.jpg"), "-o", str(out), *common]) == 1
    assert "not an image file" in capsys.readouterr().err and not out.exists()
    # a folder that was there before is kept
    out.mkdir()
    assert translate_cli.main([str(tmp_path / "fake.jpg"), "-o", str(out), *common]) == 1
    assert out.is_dir()


def test_translate_picks_the_direction_per_image(tiny_model, tmp_path):
    """Default --direction auto: a photo goes through G, a greyish sketch through F."""
    src = tmp_path / "in"
    src.mkdir()
    photo, sketch = face_like(0), face_like(1, sketch=True)
    save_image(photo, src / "photo.png")
    save_image(sketch, src / "sketch.png")
    assert not looks_like_sketch(photo) and looks_like_sketch(sketch)
    out = tmp_path / "out"
    assert translate_cli.main([str(src), "-o", str(out), "--model", str(tiny_model), "--device",
                               "cpu", "--precision", "fp32", "--no-align"]) == 0
    tr = Translator(tiny_model, device="cpu", precision="fp32")
    g_photo = tr.translate(photo, PHOTO2SKETCH, grey_sketch=True).output
    f_sketch = tr.translate(sketch, SKETCH2PHOTO, grey_sketch=True).output
    assert not np.array_equal(f_sketch, tr.translate(sketch, PHOTO2SKETCH, grey_sketch=True).output)
    assert np.array_equal(load_image(out / "photo.png"), g_photo)
    assert np.array_equal(load_image(out / "sketch.png"), f_sketch)
    # a forced direction applies to every image
    forced = tmp_path / "forced"
    assert translate_cli.main([str(src / "photo.png"), "-o", str(forced), "--model", str(tiny_model),
                               "--device", "cpu", "--precision", "fp32", "--no-align",
                               "--direction", "sketch2photo"]) == 0
    assert np.array_equal(load_image(forced / "photo.png"),
                          tr.translate(photo, SKETCH2PHOTO).output)


def test_train_init_from_starts_at_the_models_weights_and_step(tiny_pairs, tmp_path,
                                                               random_teacher, capsys,
                                                               monkeypatch):
    first = tmp_path / "first"
    assert cli.train_main(_train_args(tiny_pairs, first, random_teacher)) == 0
    base = read_checkpoint(first)
    second = tmp_path / "second"
    seen: list[int] = []
    real = Trainer._load_state

    def spy(self, path, with_optim):  # what the new run starts from, before its first step
        out = real(self, path, with_optim)
        seen.append(self.step)
        assert torch.equal(self.G.IC[1].weight.detach(), base.tensors["G.IC.1.weight"])
        assert not self.opt_g.state  # the model's weights, a fresh optimizer
        return out

    monkeypatch.setattr(Trainer, "_load_state", spy)
    assert cli.train_main(_train_args(tiny_pairs, second, random_teacher, "--epochs", "2",
                                      "--init-from", str(first))) == 0
    monkeypatch.undo()
    assert seen == [3]
    assert "finished at step 6" in capsys.readouterr().out
    rows = [json.loads(ln) for ln in (second / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 5, 6]  # continued from the model's step 3
    assert cli.train_main(_train_args(tiny_pairs, tmp_path / "bad", random_teacher, "--ngf", "8",
                                      "--init-from", str(first))) == 2
    assert "ngf" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_train_ctrl_c_stops_after_the_step_and_checkpoints(tiny_pairs, tmp_path, random_teacher,
                                                           capsys, monkeypatch, sig):
    """Ctrl+C (or SIGTERM) during sketchstudio-train: the step finishes, a checkpoint is written,
    exit code 130; the signal arrives for real, from the progress bar's event at step 2."""
    real_progress = cli._Progress.__call__

    def progress(self, e):
        real_progress(self, e)
        if isinstance(e, StepEvent) and e.step == 2:
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(cli._Progress, "__call__", progress)
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def unhandled(signum, frame):  # train_main must replace this; if not, fail this test only
        raise AssertionError(f"signal {signum} was not handled by sketchstudio-train")

    for s in old:
        signal.signal(s, unhandled)
    run = tmp_path / "run"
    try:
        code = cli.train_main(_train_args(tiny_pairs, run, random_teacher, "--epochs", "50"))
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    assert code == cli.EXIT_CANCELLED  # a script can tell it from a finished run
    out = capsys.readouterr().out
    assert f"Training cancelled at step 2; checkpoint: {run / 'checkpoint.safetensors'}" in out
    assert read_checkpoint(run).meta.step == 2
    rows = [json.loads(ln) for ln in (run / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    # the run resumes from there
    assert cli.train_main(_train_args(tiny_pairs, run, random_teacher, "--epochs", "1",
                                      "--resume")) == 0
    assert read_checkpoint(run).meta.step == 3
