"""Checkpoint format: round trip, export, and a clear error for every kind of bad file."""

from __future__ import annotations

import pytest
import torch

from sketchstudio.checkpoint import (
    ModelMeta,
    build_student,
    export_model,
    read_checkpoint,
    save_checkpoint,
    student_tensors,
)
from sketchstudio.errors import CheckpointError
from sketchstudio.models import StudentNet


def test_round_trip_and_strict_build(tiny_model):
    ck = read_checkpoint(tiny_model)
    assert ck.directions == ["photo2sketch", "sketch2photo"]
    g = build_student(ck, "photo2sketch")
    assert torch.equal(g.OC[1].weight, ck.tensors["G.OC.1.weight"])


def test_run_folder_resolves_to_its_checkpoint(tiny_model, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(tiny_model.read_bytes())
    assert read_checkpoint(run).path == run / "checkpoint.safetensors"
    with pytest.raises(CheckpointError, match="holds no"):
        read_checkpoint(tmp_path / "run" / ".." / "run" / "..")


def test_truncated_file(tiny_model, tmp_path):
    bad = tmp_path / "trunc.safetensors"
    bad.write_bytes(tiny_model.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(bad)


def test_pickle_is_refused(tmp_path):
    p = tmp_path / "model.pth"
    torch.save({"a": torch.zeros(1)}, p)
    with pytest.raises(CheckpointError, match="never unpickles"):
        read_checkpoint(p)


def test_other_architecture(tmp_path):
    net = StudentNet(8, 2)
    p = tmp_path / "liar.safetensors"
    save_checkpoint(p, student_tensors("G", net), ModelMeta(ngf=4, n_blocks=1, image_size=32))
    with pytest.raises(CheckpointError, match="does not match.*ngf=4.*wrong shapes|does not match"):
        build_student(read_checkpoint(p), "photo2sketch")
    p2 = tmp_path / "arch.safetensors"
    save_checkpoint(p2, student_tensors("G", net), ModelMeta(arch="pix2pix", ngf=8, n_blocks=2))
    with pytest.raises(CheckpointError, match="architecture 'pix2pix'"):
        read_checkpoint(p2)


def test_nan_weights(tmp_path):
    net = StudentNet(4, 1)
    t = student_tensors("F", net)
    t["F.IC.1.weight"][0, 0, 0, 0] = float("nan")
    p = tmp_path / "nan.safetensors"
    save_checkpoint(p, t, ModelMeta(ngf=4, n_blocks=1))
    with pytest.raises(CheckpointError, match=r"'F\.IC\.1\.weight' contains NaN"):
        read_checkpoint(p)


def test_foreign_safetensors_and_missing_direction(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(CheckpointError, match="not a SketchStudio model"):
        read_checkpoint(p)
    p2 = tmp_path / "g_only.safetensors"
    save_checkpoint(p2, student_tensors("G", StudentNet(4, 1)), ModelMeta(ngf=4, n_blocks=1))
    with pytest.raises(CheckpointError, match="no sketch2photo network"):
        build_student(read_checkpoint(p2), "sketch2photo")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.safetensors")


def test_export_fp16_keeps_inference_parts_only(tmp_path, tiny_model):
    ck = read_checkpoint(tiny_model)
    tensors = dict(ck.tensors)
    tensors["optim.G.0.exp_avg"] = torch.zeros(3)
    tensors["teacher_scale.relu1_1"] = torch.full((64,), 20.0)
    src = tmp_path / "train.safetensors"
    save_checkpoint(src, tensors, ck.meta)
    out = export_model(src, tmp_path / "model.safetensors", metrics={"photo_fsim": 0.7})
    ex = read_checkpoint(out)
    assert not any(k.startswith("optim.") for k in ex.tensors)
    assert ex.tensors["G.IC.1.weight"].dtype == torch.float16
    assert ex.tensors["teacher_scale.relu1_1"].dtype == torch.float32
    assert ex.meta.metrics == {"photo_fsim": 0.7}
    g = build_student(ex, "photo2sketch")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    ref = build_student(ck, "photo2sketch")
    assert torch.allclose(g(x), ref(x), atol=2e-2)



def test_export_ema_ships_the_weight_average(tmp_path, tiny_model):
    ck = read_checkpoint(tiny_model)
    tensors = dict(ck.tensors)
    ema = {f"ema.{k}": v + 1.0 for k, v in ck.tensors.items() if k.startswith(("G.", "F."))}
    src = tmp_path / "train.safetensors"
    save_checkpoint(src, tensors | ema, ck.meta)
    ex = read_checkpoint(export_model(src, tmp_path / "ema.safetensors", dtype=torch.float32, ema=True))
    assert ex.meta.extra["weights"] == "ema" and not any(k.startswith("ema.") for k in ex.tensors)
    assert torch.equal(ex.tensors["G.IC.1.weight"], ck.tensors["G.IC.1.weight"] + 1.0)
    assert set(ex.directions) == {"photo2sketch", "sketch2photo"}
    plain = read_checkpoint(export_model(src, tmp_path / "plain.safetensors", dtype=torch.float32))
    assert plain.meta.extra["weights"] == "trained"
    assert torch.equal(plain.tensors["G.IC.1.weight"], ck.tensors["G.IC.1.weight"])
    with pytest.raises(CheckpointError, match="holds no weight average"):
        export_model(tiny_model, tmp_path / "none.safetensors", ema=True)
    assert not (tmp_path / "none.safetensors").exists()

def test_atomic_write_leaves_old_file_on_failure(tiny_model, monkeypatch):
    before = tiny_model.read_bytes()
    import sketchstudio.fsutil as fsutil

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(fsutil.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tiny_model, student_tensors("G", StudentNet(4, 1)), ModelMeta(ngf=4, n_blocks=1))
    assert tiny_model.read_bytes() == before
    assert [p.name for p in tiny_model.parent.iterdir() if p.suffix == ".tmp"] == []
