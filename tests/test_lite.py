"""Lite students (issue 23): least-squares pruning, distillation, the companion file and its use
as a fast path. Tiny nets (ngf 4, 2 blocks, 32²); speed is measured only in benchmarks/."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from sketchstudio.checkpoint import (
    ModelMeta,
    build_student,
    read_checkpoint,
    save_checkpoint,
    student_tensors,
)
from sketchstudio.errors import ConfigError
from sketchstudio.models import StudentNet
from sketchstudio.runtime import fastpath
from sketchstudio.runtime.fastpath import Tuner, file_sha256, grey_level_diff
from sketchstudio.runtime.lite import find_lite, lite_path_for
from tests.conftest import make_pairs
from trainer import lite as lite_mod
from trainer.lite import DistillConfig, distill, make_lite, prune_student

G = "photo2sketch"
HAVE_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def _full(seed: int = 0) -> StudentNet:
    """A small student with weights large enough that pruning visibly changes its output."""
    torch.manual_seed(seed)
    net = StudentNet(4, 2)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                m.weight.normal_(0, 0.3)
    return net.eval()


def _images(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # some spatial correlation, like a photo


def _err(a: StudentNet, b: StudentNet, xs: torch.Tensor) -> float:
    with torch.inference_mode():
        return float(np.mean([grey_level_diff(a(xs[i:i + 1]), b(xs[i:i + 1])) for i in range(len(xs))]))


def test_keeping_every_channel_reproduces_the_full_net():
    """At full width the least-squares refit must give back the network (up to the ridge)."""
    full, xs = _full(), _images(6)
    same = prune_student(full, xs, 16)
    assert same.block_width == 16
    assert _err(full, same, _images(3, seed=9)) < 0.05


def _redundant_full() -> StudentNet:
    """A student whose blocks each compute every inner channel twice (channel c + 8 is a copy of
    c, read by the second convolution through other, smaller weights): half the inner channels
    carry no information, so a width-8 refit can be exact while simply dropping them cannot."""
    net = _full()
    with torch.no_grad():
        for b in net.Block:
            c1, c2 = b.body[1], b.body[5]
            c1.weight[8:] = c1.weight[:8]
            c1.bias[8:] = c1.bias[:8]
            c2.weight[:, 8:] *= 0.3
    return net


def test_the_refit_recovers_a_redundant_block_that_dropping_channels_cannot():
    full, cal, val = _redundant_full(), _images(8), _images(4, seed=7)
    lite = prune_student(full, cal, 8)
    assert tuple(lite.Block[0].body[1].weight.shape) == (8, 16, 3, 3)
    assert tuple(lite.Block[0].body[5].weight.shape) == (16, 8, 3, 3)
    for name in ("IC.1.weight", "DC1.0.weight", "UC2.0.weight", "OC.1.bias", "Block.1.body.7.fc.1.weight"):
        assert torch.equal(lite.state_dict()[name], full.state_dict()[name]), name
    for fb, lb in zip(full.Block, lite.Block, strict=True):  # the originals were kept, not copies
        assert torch.equal(lb.body[1].weight, fb.body[1].weight[:8])
        exact = fb.body[5].weight[:, :8] + fb.body[5].weight[:, 8:]
        assert torch.allclose(lb.body[5].weight, exact, atol=2e-3)
    naive = StudentNet(4, 2, block_width=8).eval()  # the same channels, their weights just cut
    naive.load_state_dict(lite.state_dict())
    with torch.no_grad():
        for nb, fb in zip(naive.Block, full.Block, strict=True):
            nb.body[5].weight.copy_(fb.body[5].weight[:, :8])
            nb.body[5].bias.copy_(fb.body[5].bias)
    assert _err(full, lite, val) < 0.1
    assert _err(full, naive, val) > 1.0


def test_pruning_refuses_a_width_it_cannot_make():
    with pytest.raises(ConfigError, match=r"width must be 1\.\.16 \(the blocks' 16 channels\), got 17"):
        prune_student(_full(), _images(2), 17)
    with pytest.raises(ConfigError, match="got 0"):
        prune_student(_full(), _images(2), 0)


def test_distillation_brings_the_lite_net_closer_to_the_full_one():
    """From a disturbed start (the exact refit of a redundant net plus noise), distillation must
    find its way back towards the full net's outputs, reporting each validation."""
    full, cal = _redundant_full(), _images(8)
    train = [_images(1, seed=20 + i) for i in range(6)]
    val = _images(3, seed=5)
    lite = prune_student(full, cal, 8)
    torch.manual_seed(3)
    with torch.no_grad():
        for b in lite.Block:
            b.body[5].weight.add_(torch.randn_like(b.body[5].weight) * 0.02)
    before = _err(full, lite, val)
    seen: list[tuple[int, float]] = []
    distill(lite, full, train, val, DistillConfig(width=8, steps=90, lr=1e-3, validate_every=30),
            on_validate=lambda step, err, net, opt: seen.append((step, err)))
    assert [s for s, _ in seen] == [30, 60, 90]
    assert seen[-1][1] == pytest.approx(_err(full, lite, val), abs=1e-6)
    assert before > 2.0 and seen[-1][1] < 0.75 * before, (before, seen)
    assert all(not p.requires_grad for p in full.parameters())  # the teacher is frozen


@pytest.fixture
def full_model(tmp_path) -> Path:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, student_tensors("G", _full()), ModelMeta(ngf=4, n_blocks=2, image_size=32))
    return path


@pytest.fixture
def pairs(tmp_path) -> Path:
    return make_pairs(tmp_path / "pairs", 6)


def test_make_lite_writes_a_companion_that_names_its_model_and_resumes(full_model, pairs, tmp_path):
    out = lite_path_for(full_model)
    assert out.name == "m.lite.safetensors"
    cfg = DistillConfig(width=8, steps=4, lr=1e-3, validate_every=2, n_calibration=3)
    make_lite(full_model, pairs, out, G, cfg, val_stems=["p0", "p1"])
    ck = read_checkpoint(out)
    assert ck.meta.block_width == 8 and ck.directions == [G]
    assert ck.meta.extra["lite_of"] == file_sha256(full_model)
    assert ck.meta.extra["lite"]["direction"] == G
    assert ck.tensors["G.Block.0.body.5.weight"].dtype == torch.float16
    best = ck.meta.metrics["val_grey_from_full"]
    state = torch.load(out.with_name(out.name + ".state"), weights_only=True)
    assert state["step"] == 4 and state["best"]["err"] == pytest.approx(best)
    # the saved file is the best validation step, and its error is what it says
    full = build_student(read_checkpoint(full_model), G)
    lite = build_student(ck, G)
    from sketchstudio.imaging import load_image, to_tensor

    val = torch.cat([to_tensor(load_image(pairs / "photos" / f"p{i}.png"), 32) for i in (0, 1)])
    assert _err(full, lite, val) == pytest.approx(best, abs=0.05)  # fp16 storage
    # resume: two more steps continue from step 4; other settings are refused
    make_lite(full_model, pairs, out, G, DistillConfig(**{**cfg.__dict__, "steps": 6}),
              val_stems=["p0", "p1"])
    with pytest.raises(ConfigError, match="was made with other settings"):
        make_lite(full_model, pairs, out, G, DistillConfig(**{**cfg.__dict__, "lr": 1.0}),
                  val_stems=["p0", "p1"])
    assert torch.load(out.with_name(out.name + ".state"), weights_only=True)["step"] == 6


def test_make_lite_needs_training_and_validation_images(full_model, pairs, tmp_path):
    from sketchstudio.errors import DataError

    with pytest.raises(DataError, match="6 training and 0 validation images"):
        make_lite(full_model, pairs, tmp_path / "x.safetensors", G, DistillConfig(steps=1),
                  val_stems=["nobody"])


def test_the_command_line_reports_bad_input_without_a_traceback(full_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        lite_mod.main([str(full_model), str(tmp_path / "nowhere"), "--steps", "1"])
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def _companion(full_model: Path, **meta_kw) -> Path:
    net = StudentNet(4, 2, block_width=8)
    meta = dict(ngf=4, n_blocks=2, image_size=32, block_width=8,
                extra={"lite_of": file_sha256(full_model)})
    meta.update(meta_kw)
    return save_checkpoint(lite_path_for(full_model), student_tensors("G", net), ModelMeta(**meta))


def test_a_companion_is_used_only_for_the_model_it_was_made_from(full_model, caplog):
    caplog.set_level(logging.INFO, logger="sketchstudio.runtime.lite")
    ck = read_checkpoint(full_model)
    assert find_lite(ck, G) is None  # no file
    _companion(full_model)
    found = find_lite(ck, G)
    assert found is not None and found.meta.block_width == 8
    assert find_lite(ck, "sketch2photo") is None  # it has no F
    _companion(full_model, extra={"lite_of": "0" * 64})
    assert find_lite(ck, G) is None
    assert "it was made from another model" in caplog.text
    _companion(full_model, image_size=64)
    assert find_lite(ck, G) is None
    lite_path_for(full_model).write_bytes(b"not a model")
    assert find_lite(ck, G) is None
    assert "ignoring the lite companion m.lite.safetensors" in caplog.text


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime/onnx not installed (pip install 'sketchstudio[fast]')")
def test_the_tuner_judges_the_lite_path_against_the_full_model(full_model, pairs, tmp_path, monkeypatch):
    """The lite int8 export is measured like every path, its parity against the *full* model's
    fp32 output; the decision's cache key changes with the companion."""
    monkeypatch.setattr(fastpath, "ISOLATE_EXPORTS", False)
    monkeypatch.setattr(fastpath, "ISOLATE_RUNNERS", False)
    ck = read_checkpoint(full_model)
    full = build_student(ck, G)

    def tuner() -> Tuner:
        return Tuner(ck, G, full, cache_root=tmp_path / "cache", threads=1,
                     calibration_dir=pairs, candidates=["onnx-int8", "onnx-int8-lite"])

    t = tuner()
    assert t.lite is None
    d, _ = t.run()
    assert "onnx-int8-lite" not in d.candidates  # nothing to try, and not reported missing
    key_without = t.decision_path.name

    cfg = DistillConfig(width=8, steps=2, lr=1e-3, validate_every=2, n_calibration=3)
    make_lite(full_model, pairs, lite_path_for(full_model), G, cfg, val_stems=["p0"])
    t = tuner()
    assert t.lite is not None and t.decision_path.name != key_without
    d, runner = t.run()
    entry = d.candidates["onnx-int8-lite"]
    assert entry["ms"] is not None, entry["note"]
    lite_net = build_student(t.lite, G)
    x = np.stack([t_ for t_ in fastpath.reference_inputs(ck, G, pairs)[1]])[:, 0]
    with torch.inference_mode():
        to_full = np.mean([grey_level_diff(full(torch.from_numpy(x[i:i + 1])),
                                           lite_net(torch.from_numpy(x[i:i + 1])))
                           for i in range(len(x))])
    # the lite path's parity is its distance from the full net (int8 on top of the lite's own)
    assert entry["parity"] == pytest.approx(to_full, abs=1.5)
    assert to_full > 3.0 and entry["parity"] > 0.5 * to_full, (to_full, entry)
    lite_exports = list((tmp_path / "cache").glob(f"*-{G}-32/int8*.onnx"))
    assert len(lite_exports) == 2  # the full model's and the lite one's, in their own folders
    forced = Tuner(ck, G, full, cache_root=tmp_path / "cache2", threads=1, calibration_dir=pairs,
                   force="onnx-int8-lite")
    lite_path_for(full_model).unlink()
    forced.lite = None
    d, runner = forced.run()
    assert d.backend == "torch"
    assert "no lite companion" in d.candidates["onnx-int8-lite"]["note"]
    json.dumps(d.to_json())
