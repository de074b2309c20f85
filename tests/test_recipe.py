"""Recipe options of issue 16: tap comparisons, texture terms, L1, upsampling, lr schedule,
the validation split and best.safetensors. Each against a hand computation or an invariant."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sketchstudio.checkpoint import build_student, read_checkpoint
from sketchstudio.models import StudentNet
from tests.conftest import tiny_config
from tests.test_trainer import _run_to  # train (or resume) a tiny run and stop after a step
from trainer.events import TrainControl, ValEvent
from trainer.loop import Trainer
from trainer.losses import (
    G_TEACHER_PAIRS,
    LossWeights,
    feature_distance,
    gram,
    make_adapters,
    perceptual_loss,
    rec_loss,
    stu_stu_loss,
    student_objective,
    style_loss,
    tea_stu_loss,
)
from trainer.validation import NAMED_SPLITS, read_stems, split_pairs


# --- comparisons --------------------------------------------------------------------------------
def test_standardised_distance_ignores_scale_and_offset_per_channel():
    torch.manual_seed(0)
    a = torch.rand(1, 3, 4, 5)
    scale, shift = torch.tensor([2.0, 0.5, 7.0]).view(1, 3, 1, 1), torch.tensor([1.0, -3.0, 0.2]).view(1, 3, 1, 1)
    assert feature_distance(a * scale + shift, a, "standardised").item() == pytest.approx(0, abs=1e-5)
    assert feature_distance(a * scale + shift, a, "mse").item() > 1
    # anti-correlated channel: standardised values are negatives, MSE of z and -z = 4·mean(z²) = 4
    b = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
    assert feature_distance(b, -b, "standardised").item() == pytest.approx(4.0, rel=1e-4)


def test_cosine_distance_by_hand():
    a = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    b = torch.tensor([0.0, 3.0]).view(1, 2, 1, 1)
    c = torch.tensor([5.0, 0.0]).view(1, 2, 1, 1)
    assert feature_distance(a, b, "cosine").item() == pytest.approx(1.0)  # orthogonal
    assert feature_distance(a, c, "cosine").item() == pytest.approx(0.0, abs=1e-6)  # length ignored
    two = torch.cat([a, a], dim=3), torch.cat([b, c], dim=3)  # positions averaged
    assert feature_distance(*two, "cosine").item() == pytest.approx(0.5)


def test_comparison_modes_reach_the_tea_and_stu_terms():
    student = {"IC": torch.full((1, 2, 2, 2), 2.0), "DC1": torch.ones(1, 2, 2, 2), "DC2": torch.ones(1, 2, 2, 2),
               "Block": torch.ones(1, 2, 2, 2), "UC1": torch.ones(1, 2, 2, 2), "UC2": torch.ones(1, 2, 2, 2)}
    teacher = {t: torch.ones(1, 2, 2, 2) for t in ("relu1_1", "relu2_1", "relu3_1")}
    # cosine: every tap is parallel to the teacher's → 0; mse: only IC differs (by 1 everywhere)
    assert tea_stu_loss(teacher, teacher, student, G_TEACHER_PAIRS, mode="cosine").item() == pytest.approx(0, abs=1e-6)
    assert tea_stu_loss(teacher, teacher, student, G_TEACHER_PAIRS, mode="mse").item() == pytest.approx(1.0)
    assert stu_stu_loss(student, {k: v * 3 for k, v in student.items()}, mode="cosine").item() == pytest.approx(0, abs=1e-6)


def test_regressor_adapters_cover_every_tap_and_start_at_the_identity():
    ad = make_adapters(G_TEACHER_PAIRS, ngf=64, every_tap=True)
    assert set(ad) == {"IC", "DC1", "DC2", "Block", "UC1", "UC2"}
    x = torch.rand(1, 64, 3, 3)
    assert torch.allclose(ad["IC"](x), x)
    assert ad["IC"].bias is not None
    assert len(make_adapters(G_TEACHER_PAIRS, ngf=64)) == 0  # literal formula: none


# --- reconstruction and texture -----------------------------------------------------------------
def test_l1_reconstruction_by_hand():
    out = torch.tensor([[[[0.5, -1.0]]]])
    assert rec_loss(out, torch.zeros_like(out), "l1").item() == pytest.approx(0.75)
    assert rec_loss(out, torch.zeros_like(out), "l2").item() == pytest.approx((0.25 + 1) / 2)


def test_gram_and_style_by_hand():
    f = torch.tensor([[[[1.0, 2.0]], [[0.0, 3.0]]]])  # N=1, C=2, H=1, W=2
    g = gram(f)
    # rows: ch0·ch0 = 5, ch0·ch1 = 6, ch1·ch1 = 9, divided by C·H·W = 4
    assert torch.allclose(g, torch.tensor([[[5.0, 6.0], [6.0, 9.0]]]) / 4)
    zero = torch.zeros_like(f)
    assert style_loss({"relu1_1": f}, {"relu1_1": zero}).item() == pytest.approx(
        float((g ** 2).mean()))
    assert perceptual_loss({"relu1_1": f}, {"relu1_1": zero}).item() == pytest.approx((1 + 4 + 9) / 4)


def test_style_targets_the_teacher_of_the_real_image_and_zero_weight_removes_it():
    out = torch.zeros(1, 3, 2, 2, requires_grad=True)
    feats = {"relu1_1": out.mean(1, keepdim=True) + 1.0}  # depends on out: gradient can flow
    sketch_t = {"relu1_1": torch.full((1, 1, 2, 2), 3.0)}
    photo_t = {"relu1_1": torch.full((1, 1, 2, 2), 1.0)}
    taps = {k: torch.zeros(1, 1, 1, 1) for k in ("IC", "DC1", "DC2", "Block", "UC1", "UC2")}
    w = LossWeights(tea=0, stu=0, rec=0, perceptual=1.0)
    total, rep = student_objective(out, out.detach(), taps, taps, photo_t, sketch_t, G_TEACHER_PAIRS,
                                   True, w, out_feats=feats)
    assert rep["perc"] == pytest.approx(4.0)  # G's target is the sketch's taps: (1 − 3)²
    total.backward()
    assert out.grad.abs().sum() > 0
    _, rep_f = student_objective(out, out.detach(), taps, taps, photo_t, sketch_t, G_TEACHER_PAIRS,
                                 False, w, out_feats=feats)
    assert rep_f["perc"] == pytest.approx(0.0)  # F's target is the photo's taps
    total0, rep0 = student_objective(out, out.detach(), taps, taps, photo_t, sketch_t, G_TEACHER_PAIRS,
                                     True, LossWeights(tea=0, stu=0, rec=1), out_feats=feats)
    assert "perc" not in rep0 and "style" not in rep0


def test_teacher_forward_with_grad_reaches_the_input(random_teacher):
    from sketchstudio.models import load_teacher

    t = load_teacher(random_teacher)
    x = torch.zeros(1, 3, 16, 16, requires_grad=True)
    assert not t(x)["relu3_1"].requires_grad  # targets: no graph
    t.forward_with_grad(x)["relu3_1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in t.parameters())  # the teacher stays frozen


# --- upsampling ---------------------------------------------------------------------------------
def test_resize_upsampling_has_no_checkerboard_at_init():
    """A constant input gives a constant output with resize-convolve; transposed convs with
    stride 2 give every other pixel a different number of kernel taps (the checkerboard)."""
    torch.manual_seed(0)
    x = torch.full((1, 32, 8, 8), 0.5)
    up = StudentNet(8, 0, upsample="resize")
    de = StudentNet(8, 0, upsample="deconv")
    conv_r = up.UC1[:3]
    conv_d = de.UC1[:1]
    r, d = conv_r(x), conv_d(x)
    inner_r, inner_d = r[..., 2:-2, 2:-2], d[..., 2:-2, 2:-2]
    assert torch.allclose(inner_r, inner_r[..., :1, :1].expand_as(inner_r), atol=1e-6)
    assert not torch.allclose(inner_d[..., 0::2, 0::2], inner_d[..., 1::2, 1::2], atol=1e-4)


def test_upsample_mode_travels_with_the_checkpoint(tiny_pairs, tmp_path, random_teacher):
    run = Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, upsample="resize")).run()
    ck = read_checkpoint(run.checkpoint)
    assert ck.meta.upsample == "resize"
    net = build_student(ck, "photo2sketch")
    assert isinstance(net.UC1[0], torch.nn.Upsample)
    with pytest.raises(Exception, match="upsample"):
        Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher), resume=True).run()


# --- schedule -----------------------------------------------------------------------------------
def test_linear_schedule_is_constant_then_decays_to_zero(tiny_pairs, tmp_path, random_teacher):
    cfg = tiny_config(tiny_pairs, tmp_path / "run", random_teacher, epochs=4, lr=1e-3,
                      lr_schedule="linear")
    Trainer(cfg).run()  # 3 pairs × 4 epochs = 12 steps, decay from step 6
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows]
    assert lrs[:6] == [1e-3] * 6
    assert lrs[6:] == pytest.approx([1e-3 * (12 - s) / 6 for s in range(6, 12)])


# --- validation split ---------------------------------------------------------------------------
def test_shipped_cufs_split_is_stratified_and_disjoint_from_training(cufs):
    stems = read_stems("cufs")
    assert len(stems) == len(set(stems)) == 27
    assert sum(s.startswith("cuhk_") for s in stems) == 9
    assert sum(s.startswith("ar_") for s in stems) == 8
    assert sum(s.startswith("xm2vts_") for s in stems) == 10
    from trainer.data import scan_pairs

    pairs = scan_pairs(cufs / "train", check_images=False).pairs
    vs = split_pairs(pairs, stems, "cufs")
    assert len(vs.val) == 27 and len(vs.train) == len(pairs) - 27
    assert not {p.stem for p in vs.val} & {p.stem for p in vs.train}
    test_stems = {p.stem for p in scan_pairs(cufs / "test", check_images=False).pairs}
    assert not set(stems) & test_stems
    assert NAMED_SPLITS["cufs"].is_file()


def test_split_errors_are_specific(tmp_path):
    from sketchstudio.errors import ConfigError, DataError
    from trainer.data import Pair

    pairs = [Pair("a", tmp_path / "a", tmp_path / "a"), Pair("b", tmp_path / "b", tmp_path / "b")]
    with pytest.raises(DataError, match="None of the 1 validation stems"):
        split_pairs(pairs, ["zz"], "x")
    with pytest.raises(DataError, match="nothing is left to train on"):
        split_pairs(pairs, ["a", "b"], "x")
    with pytest.raises(ConfigError, match="Cannot read the validation split"):
        read_stems(str(tmp_path / "none.txt"))
    (tmp_path / "empty.txt").write_text("# only a comment\n")
    with pytest.raises(ConfigError, match="lists no stems"):
        read_stems(str(tmp_path / "empty.txt"))


def _val_file(tmp_path):
    path = tmp_path / "val.txt"
    path.write_text("p1\n")
    return path


def test_validation_holds_out_pairs_logs_and_keeps_the_best(tiny_pairs, tmp_path, random_teacher):
    events = []
    cfg = tiny_config(tiny_pairs, tmp_path / "run", random_teacher, epochs=3,
                      val=str(_val_file(tmp_path)), val_every=1)
    t = Trainer(cfg, on_event=events.append)
    t.run()
    assert [p.stem for p in t.data.pairs] == ["p0", "p2"] and [p.stem for p in t.val_pairs] == ["p1"]
    vals = [e for e in events if isinstance(e, ValEvent)]
    assert [e.step for e in vals] == [1, 2, 3, 4, 5, 6]  # 2 training pairs × 3 epochs
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "val.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    best_row = max(rows, key=lambda r: r["mean_fsim"])
    best = read_checkpoint(tmp_path / "run" / "best.safetensors")
    assert best.meta.step == best_row["step"]
    assert best.meta.metrics["val"]["mean_fsim"] == pytest.approx(best_row["mean_fsim"])
    # the score is the real FSIM of those weights on the held-out pair, via the eval path
    from trainer.evaluate import evaluate

    again = evaluate(tmp_path / "run" / "best.safetensors", None, pairs=t.val_pairs, device="cpu")
    assert again.mean_fsim == pytest.approx(best_row["mean_fsim"], abs=1e-6)
    assert rows[0]["subsets"]["all"]["n"] == 1


def test_best_follows_the_best_score_across_a_resume(tiny_pairs, tmp_path, random_teacher):
    kw = dict(epochs=3, val=str(_val_file(tmp_path)), val_every=1, checkpoint_every=1)
    _run_to(tiny_pairs, tmp_path / "run", random_teacher, 3, False, **kw)
    first_best = read_checkpoint(tmp_path / "run" / "best.safetensors").meta.metrics["val"]
    Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, **kw), resume=True).run()
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "val.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    best = read_checkpoint(tmp_path / "run" / "best.safetensors").meta
    top = max(rows, key=lambda r: r["mean_fsim"])
    assert best.step == top["step"] and best.metrics["val"]["mean_fsim"] >= first_best["mean_fsim"]
    assert sum(r["best"] for r in rows if r["step"] > 3) == sum(
        1 for i, r in enumerate(rows) if r["step"] > 3
        and r["mean_fsim"] > max(x["mean_fsim"] for x in rows[:i]))


def test_output_texture_terms_train_end_to_end(tiny_pairs, tmp_path, random_teacher):
    cfg = tiny_config(tiny_pairs, tmp_path / "run", random_teacher, style_weight=1.0,
                      perceptual_weight=1.0, tap_compare="regressor", stu_compare="standardised",
                      rec_loss="l1")
    r = Trainer(cfg).run()
    assert {"G_style", "G_perc", "F_style", "F_perc", "G_tea", "G_rec"} <= set(r.last_losses)
    assert all(np.isfinite(v) for v in r.last_losses.values())
    ck = read_checkpoint(r.checkpoint)
    assert "adapter.G.IC.weight" in ck.tensors and "adapter.G.IC.bias" in ck.tensors


def test_resuming_a_finished_run_does_not_score_it_again(tiny_pairs, tmp_path, random_teacher):
    kw = dict(epochs=1, val=str(_val_file(tmp_path)), val_every=100)
    Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, **kw)).run()
    Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, **kw), resume=True).run()
    rows = (tmp_path / "run" / "val.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [2]


# --- stopping and failing cleanly (issue 19's trainer items) ------------------------------------
def test_cancel_during_set_up_writes_no_checkpoint(tiny_pairs, tmp_path, random_teacher):
    ctl = TrainControl()
    ctl.cancel()  # as when Ctrl+C arrives while the data and the teacher load
    r = Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher), control=ctl).run()
    assert r.cancelled and r.step == 0
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "run" / ".sketchstudio-train.lock").exists()  # released at the end


def test_a_full_disk_while_logging_stops_with_the_folder_and_keeps_the_checkpoint(
        tiny_pairs, tmp_path, random_teacher, monkeypatch):
    from sketchstudio.errors import DiskFullError

    run = tmp_path / "run"
    Trainer(tiny_config(tiny_pairs, run, random_teacher)).run()
    before = (run / "checkpoint.safetensors").read_bytes()

    real = Trainer._log_row
    monkeypatch.setattr(Trainer, "_log_row", lambda self, fh, row: real(self, _Full(), row))
    with pytest.raises(DiskFullError, match="No space left on .*losses.jsonl"):
        Trainer(tiny_config(tiny_pairs, run, random_teacher, epochs=2), resume=True).run()
    assert (run / "checkpoint.safetensors").read_bytes() == before


class _Full:
    """A log file on a full disk."""

    def write(self, _text: str) -> int:
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("flag,value,msg", [("--threads", "-3", "must be 0 or more"),
                                            ("--loss-weights", "nan,1,1", "finite")])
def test_bad_numbers_are_messages_not_tracebacks(tiny_pairs, tmp_path, random_teacher, capsys,
                                                 flag, value, msg):
    from trainer import cli

    args = ["--data", str(tiny_pairs), "--out", str(tmp_path / "r"), "--teacher", str(random_teacher),
            flag, value]
    try:
        code = cli.train_main(args)
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and msg in capsys.readouterr().err


# --- augmentation -------------------------------------------------------------------------------
def test_augmented_crops_cut_the_same_window_of_photo_and_sketch(tiny_pairs):
    from trainer.data import PairedFolder
    from trainer.loop import augment_margin

    plain = PairedFolder(tiny_pairs, 32)
    wide = PairedFolder(tiny_pairs, 32, margin=augment_margin(32))
    assert wide.margin == 4 and wide[0][0].shape == plain[0][0].shape == (3, 32, 32)
    x0, y0 = wide.crop(1, 0, 0)
    x4, y4 = wide.crop(1, 4, 4)
    # a window 4 px right and down: the overlap agrees in both images of the pair
    assert torch.equal(x0[:, 4:, 4:], x4[:, :-4, :-4]) and torch.equal(y0[:, 4:, 4:], y4[:, :-4, :-4])
    with pytest.raises(ValueError, match="outside 0..4"):
        wide.crop(0, 5, 0)


def test_photo_jitter_by_hand():
    from trainer.loop import jitter_photo

    x = torch.tensor([[[-1.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]])  # (3, 1, 2)
    assert torch.allclose(jitter_photo(x, 1.0, 1.0, 1.0), x)
    # brightness 0.5 on [0, 1] values, then back to [-1, 1]
    assert torch.allclose(jitter_photo(x, 0.5, 1.0, 1.0), ((x + 1) / 2 * 0.5) * 2 - 1)
    grey = jitter_photo(x, 1.0, 1.0, 0.0)  # saturation 0: every channel is the grey level
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])


def test_augmented_training_resumes_exactly_and_jitters_only_photos(tiny_pairs, tmp_path,
                                                                    random_teacher):
    full = Trainer(tiny_config(tiny_pairs, tmp_path / "a", random_teacher, epochs=2, augment=True)).run()
    _run_to(tiny_pairs, tmp_path / "b", random_teacher, 2, False, epochs=2, augment=True)
    done = Trainer(tiny_config(tiny_pairs, tmp_path / "b", random_teacher, epochs=2, augment=True),
                   resume=True).run()
    assert done.last_losses == pytest.approx(full.last_losses)
    t = Trainer(tiny_config(tiny_pairs, tmp_path / "c", random_teacher, augment=True))
    t._setup()
    x, y = t._batch(0, 0)
    j = t._epoch_plan(0)[0][0]
    left, top = t._augment_plan(0)[0][j].tolist()
    raw_x, raw_y = t.data.crop(j, left, top)
    flip = t._epoch_plan(0)[1][j]
    raw_x, raw_y = (raw_x.flip(-1), raw_y.flip(-1)) if flip else (raw_x, raw_y)
    assert torch.equal(y[0], raw_y)  # the sketch is cropped, never jittered
    assert not torch.equal(x[0], raw_x)  # the photo is jittered


# --- adversarial term ---------------------------------------------------------------------------
def test_lsgan_losses_by_hand():
    from trainer.adversarial import discriminator_loss, generator_adv_loss

    real, fake = torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 2, 2), 0.25)
    assert generator_adv_loss(fake).item() == pytest.approx(0.75 ** 2)
    assert discriminator_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.0625))


def test_patch_discriminator_scores_patches():
    from trainer.adversarial import PatchDiscriminator

    d = PatchDiscriminator(ndf=8)
    out = d(torch.zeros(2, 3, 256, 256), torch.zeros(2, 3, 256, 256))
    assert out.shape == (2, 1, 30, 30)  # pix2pix's 70×70 PatchGAN on a 256² image


def test_gan_training_saves_discriminators_resumes_exactly_and_exports_without_them(
        tiny_pairs, tmp_path, random_teacher):
    from sketchstudio.checkpoint import export_model

    kw = dict(epochs=2, gan_weight=0.5)
    full = Trainer(tiny_config(tiny_pairs, tmp_path / "a", random_teacher, **kw)).run()
    assert {"G_gan", "G_D", "F_gan", "F_D"} <= set(full.last_losses)
    ck = read_checkpoint(full.checkpoint)
    assert any(k.startswith("disc.G.") for k in ck.tensors) and "DG" in ck.meta.extra["optim_groups"]
    _run_to(tiny_pairs, tmp_path / "b", random_teacher, 2, False, **kw)
    done = Trainer(tiny_config(tiny_pairs, tmp_path / "b", random_teacher, **kw), resume=True).run()
    assert done.last_losses == pytest.approx(full.last_losses)
    model = export_model(full.checkpoint, tmp_path / "m.safetensors")
    assert not any(k.startswith("disc.") for k in read_checkpoint(model).tensors)
    plain = Trainer(tiny_config(tiny_pairs, tmp_path / "c", random_teacher)).run()
    assert not any(k.startswith("disc.") for k in read_checkpoint(plain.checkpoint).tensors)
    assert "G_gan" not in plain.last_losses
