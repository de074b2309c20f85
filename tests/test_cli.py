"""The three CLIs end to end on tiny data, and their errors for bad flags and folders."""

from __future__ import annotations

import json
import os

import pytest
import torch

from sketchstudio import cli as translate_cli
from sketchstudio.checkpoint import read_checkpoint
from sketchstudio.imaging import load_image, save_image
from sketchstudio.metrics.fsim import fsim_gray
from tests.conftest import face_like
from trainer import cli


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
    assert 0 < metrics["photo_fsim"] <= 1 and 0 < metrics["sketch_fsim"] <= 1
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


def test_output_path_that_is_a_file(tiny_pairs, tmp_path, random_teacher, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.train_main(_train_args(tiny_pairs, f, random_teacher)) == 2
    err = capsys.readouterr().err
    assert "not a folder" in err or "Cannot create output folder" in err
    assert translate_cli.main([str(tiny_pairs / "photos"), "-o", str(f / "sub")]) == 2


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
