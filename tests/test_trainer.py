"""The training loop on tiny data: alternation, checkpoints, resume, pause/cancel, events."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from sketchstudio.checkpoint import read_checkpoint
from sketchstudio.errors import ConfigError, DataError
from tests.conftest import tiny_config
from trainer.events import CheckpointEvent, DoneEvent, PreviewEvent, StepEvent, TrainControl
from trainer.loop import Trainer


def _params(net) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_two_steps_write_checkpoint_and_events(tiny_pairs, tmp_path, random_teacher):
    events = []
    cfg = tiny_config(tiny_pairs, tmp_path / "run", random_teacher, epochs=1)
    cfg.extra = {}
    result = Trainer(cfg, on_event=events.append).run()
    assert result.step == 3 and not result.cancelled  # 3 pairs, batch 1, 1 epoch
    ck = read_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert ck.meta.step == 3 and ck.meta.ngf == 4 and ck.meta.data["n_pairs"] == 3
    assert set(ck.directions) == {"photo2sketch", "sketch2photo"}
    assert any(k.startswith("optim.G.") for k in ck.tensors) and "rng.torch" in ck.tensors
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == [1, 2, 3]
    assert {"G_tea", "G_stu", "G_rec", "F_tea", "F_stu", "F_rec", "total"} <= set(steps[0].losses)
    previews = [e for e in events if isinstance(e, PreviewEvent)]
    assert previews and previews[0].images["G(photo)"].shape == (32, 32, 3)
    assert isinstance(events[-1], DoneEvent) and any(isinstance(e, CheckpointEvent) for e in events)
    lines = (tmp_path / "run" / "losses.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [1, 2, 3]


def test_previews_carry_feature_grids_only_when_asked(tiny_pairs, tmp_path, random_teacher):
    plain: list = []
    Trainer(tiny_config(tiny_pairs, tmp_path / "a", random_teacher), on_event=plain.append).run()
    assert all(not e.features for e in plain if isinstance(e, PreviewEvent))
    live: list = []
    Trainer(tiny_config(tiny_pairs, tmp_path / "b", random_teacher), on_event=live.append,
            preview_features=True).run()
    previews = [e for e in live if isinstance(e, PreviewEvent)]
    assert previews
    pairs = {(p.network, p.layer): p for p in previews[-1].features}
    assert len(pairs) == 12
    g_dc1, f_ic = pairs[("G", "DC1")], pairs[("F", "IC")]
    assert (g_dc1.teacher_side, g_dc1.teacher_tap) == ("P", "relu2_1")
    assert (f_ic.teacher_side, f_ic.teacher_tap) == ("S", "relu1_1")
    assert g_dc1.student_shape == (8, 16, 16) and g_dc1.teacher_shape == (128, 16, 16)  # ngf 4, 32²
    assert g_dc1.student.dtype == np.uint8 and g_dc1.student.ndim == 3


def test_g_step_does_not_touch_f_and_teacher_gets_no_grad(tiny_pairs, tmp_path, random_teacher):
    t = Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher))
    t._setup()
    x, y = t._batch(0, 0)
    g0, f0 = _params(t.G), _params(t.F)
    orig_update = t._update
    seen = {}

    def spy(opt, loss):
        if opt is t.opt_g:  # right after G's update, before F's: F must be unchanged
            orig_update(opt, loss)
            seen["f_after_g"] = _params(t.F)
            seen["g_after_g"] = _params(t.G)
        else:
            orig_update(opt, loss)

    t._update = spy
    t.train_step(x, y)
    assert _same(seen["f_after_g"], f0) and not _same(seen["g_after_g"], g0)
    assert _same(_params(t.G), seen["g_after_g"])  # F's step does not change G
    assert not _same(_params(t.F), f0)
    assert all(p.grad is None for p in t.teacher.parameters())


def test_zero_weights_train_without_those_terms(tiny_pairs, tmp_path, random_teacher):
    events = []
    cfg = tiny_config(tiny_pairs, tmp_path / "run", random_teacher, loss_weights=(0.0, 0.0, 1.0))
    Trainer(cfg, on_event=events.append).run()
    losses = next(e for e in events if isinstance(e, StepEvent)).losses
    assert "G_tea" not in losses and "F_stu" not in losses and "G_rec" in losses


def test_resume_equals_uninterrupted(tiny_pairs, tmp_path, random_teacher):
    full = Trainer(tiny_config(tiny_pairs, tmp_path / "a", random_teacher, epochs=2)).run()
    # interrupted: stop after 2 steps (cancel from the event callback), then resume
    ctl = TrainControl()

    def stop_at_2(e):
        if isinstance(e, StepEvent) and e.step == 2:
            ctl.cancel()

    part = Trainer(tiny_config(tiny_pairs, tmp_path / "b", random_teacher, epochs=2),
                   on_event=stop_at_2, control=ctl).run()
    assert part.cancelled and part.step == 2
    done = Trainer(tiny_config(tiny_pairs, tmp_path / "b", random_teacher, epochs=2), resume=True).run()
    assert done.step == full.step == 6
    a, b = read_checkpoint(full.checkpoint), read_checkpoint(done.checkpoint)
    for k in a.tensors:
        if k.startswith(("G.", "F.")):
            assert torch.allclose(a.tensors[k], b.tensors[k], atol=1e-6), k
    assert full.last_losses["total"] == pytest.approx(done.last_losses["total"], rel=1e-5)
    logged = [json.loads(ln)["step"] for ln in (tmp_path / "b" / "losses.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]


def test_resume_with_a_new_learning_rate_keeps_adam_state(tiny_pairs, tmp_path, random_teacher):
    first = Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, lr=2e-4)).run()
    saved = read_checkpoint(first.checkpoint)
    trainer = Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, lr=5e-5, epochs=2),
                      resume=True)
    trainer._setup()
    assert trainer.step == first.step == 3
    for opt in (trainer.opt_g, trainer.opt_f):
        assert [g["lr"] for g in opt.param_groups] == [5e-5]
    # the moment estimates came back from the checkpoint, they were not reset
    exp_avg = trainer.opt_g.state[trainer.opt_g.param_groups[0]["params"][0]]["exp_avg"]
    assert torch.equal(exp_avg, saved.tensors["optim.G.0.exp_avg"])
    assert float(exp_avg.abs().sum()) > 0
    done = trainer.run()
    groups = read_checkpoint(done.checkpoint).meta.extra["optim_groups"]
    assert groups["G"][0]["lr"] == groups["F"][0]["lr"] == 5e-5
    # the loss log says which rate each step ran at
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert [(r["step"], r["lr"]) for r in rows] == [(1, 2e-4), (2, 2e-4), (3, 2e-4),
                                                    (4, 5e-5), (5, 5e-5), (6, 5e-5)]


def test_pause_resume_and_cancel_from_another_thread(tiny_pairs, tmp_path, random_teacher):
    blocked, stepped_after_resume = threading.Event(), threading.Event()
    log: list = []  # events from the training thread and marks from this one, in order
    lock = threading.Lock()

    class Observed(TrainControl):
        def wait_while_paused(self, *args, **kwargs):  # runs in the training thread
            blocked.set()
            super().wait_while_paused(*args, **kwargs)
            with lock:
                log.append(("left wait", self.paused))

    ctl = Observed()

    def on_event(e):
        with lock:
            if isinstance(e, StepEvent):
                log.append(("step", e.step))
                if e.step == 1:
                    ctl.pause()
                if ("resume",) in log:
                    stepped_after_resume.set()
            if getattr(e, "state", None):
                log.append(("state", e.state))

    cfg = tiny_config(tiny_pairs, tmp_path / "run", random_teacher, epochs=50)
    trainer = Trainer(cfg, on_event=on_event, control=ctl)
    th = threading.Thread(target=lambda: setattr(trainer, "result", trainer.run()))
    th.start()
    assert blocked.wait(90)  # the loop is in its pause wait, after step 1
    assert trainer.step == 1
    with lock:
        log.append(("resume",))
        ctl.resume()
    assert stepped_after_resume.wait(90)
    ctl.cancel()
    th.join(90)
    assert not th.is_alive()
    assert trainer.result.cancelled and 2 <= trainer.result.step < 150
    # nothing ran between the pause and the resume, and the wait ended because of the resume
    assert log[:5] == [("step", 1), ("state", "paused"), ("resume",), ("left wait", False),
                       ("state", "running")]
    assert log[5] == ("step", 2)
    ck = read_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert ck.meta.step == trainer.result.step


def test_existing_run_needs_resume_and_matching_arch(tiny_pairs, tmp_path, random_teacher):
    Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher)).run()
    with pytest.raises(ConfigError, match="already holds a training run"):
        Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher)).run()
    with pytest.raises(ConfigError, match="ngf"):
        Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, ngf=8), resume=True).run()


def test_init_from_model_with_fresh_optimizer(tiny_pairs, tmp_path, random_teacher):
    first = Trainer(tiny_config(tiny_pairs, tmp_path / "a", random_teacher)).run()
    t = Trainer(tiny_config(tiny_pairs, tmp_path / "b", random_teacher, epochs=2),
                init_from=first.checkpoint)
    t._setup()
    assert t.step == 3 and not t.opt_g.state  # weights and step kept, Adam state fresh
    ck = read_checkpoint(first.checkpoint)
    assert torch.equal(t.G.IC[1].weight.detach(), ck.tensors["G.IC.1.weight"])


def test_unpaired_folder_lists_every_problem(tiny_pairs, tmp_path, random_teacher):
    (tiny_pairs / "photos" / "lonely.png").write_bytes((tiny_pairs / "photos" / "p0.png").read_bytes())
    (tiny_pairs / "sketches" / "orphan.png").write_bytes((tiny_pairs / "sketches" / "p0.png").read_bytes())
    (tiny_pairs / "sketches" / "p1.png").write_bytes(b"garbage")
    with pytest.raises(DataError) as ei:
        Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher)).run()
    msg = str(ei.value)
    assert "photo without sketch" in msg and "lonely.png" in msg
    assert "sketch without photo" in msg and "orphan.png" in msg
    assert "unreadable image" in msg and "p1.png" in msg
    assert len(ei.value.problems) == 3


def _run_to(data, out, teacher, step, resume, **kw):
    """Train (or resume) the tiny run in ``out`` and stop after ``step``; return its checkpoint."""
    ctl = TrainControl()

    def stop(e):
        if isinstance(e, StepEvent) and e.step == step:
            ctl.cancel()

    result = Trainer(tiny_config(data, out, teacher, **kw), on_event=stop, control=ctl,
                     resume=resume).run()
    assert result.step == step
    return read_checkpoint(result.checkpoint)


def test_weight_average_is_an_ema_that_survives_resume(tiny_pairs, tmp_path, random_teacher):
    d = 0.5
    ck = [_run_to(tiny_pairs, tmp_path / "b", random_teacher, s, resume=s > 1, ema_decay=d)
          for s in (1, 2, 3)]
    full = _run_to(tiny_pairs, tmp_path / "a", random_teacher, 3, resume=False, ema_decay=d)
    keys = [k for k in ck[0].tensors if k.startswith(("G.", "F."))]
    assert keys and all(f"ema.{k}" in ck[0].tensors for k in keys)
    for k in keys:
        w = [c.tensors[k] for c in ck]
        e = [c.tensors[f"ema.{k}"] for c in ck]
        assert torch.equal(e[0], w[0])  # the average starts at the first step's weights
        assert torch.allclose(e[1], d * e[0] + (1 - d) * w[1], atol=1e-6), k
        assert torch.allclose(e[2], d * e[1] + (1 - d) * w[2], atol=1e-6), k
        assert torch.allclose(full.tensors[f"ema.{k}"], e[2], atol=1e-6), k  # resume = uninterrupted
    assert not all(torch.equal(ck[2].tensors[k], ck[2].tensors[f"ema.{k}"]) for k in keys)
    assert [c.meta.extra["ema"] for c in ck] == [{"decay": d, "updates": n} for n in (1, 2, 3)]


def test_no_weight_average_unless_asked_and_resume_of_an_older_run_starts_one(
        tiny_pairs, tmp_path, random_teacher):
    plain = _run_to(tiny_pairs, tmp_path / "run", random_teacher, 2, resume=False)
    assert not any(k.startswith("ema.") for k in plain.tensors) and "ema" not in plain.meta.extra
    later = _run_to(tiny_pairs, tmp_path / "run", random_teacher, 3, resume=True, ema_decay=0.9)
    assert later.meta.extra["ema"] == {"decay": 0.9, "updates": 1}
    assert torch.equal(later.tensors["ema.G.IC.1.weight"], later.tensors["G.IC.1.weight"])


@pytest.mark.parametrize("decay", [-0.1, 1.0, 2.0])
def test_ema_decay_out_of_range_is_rejected(tiny_pairs, tmp_path, random_teacher, decay):
    with pytest.raises(ConfigError, match="EMA decay must be in"):
        tiny_config(tiny_pairs, tmp_path, random_teacher, ema_decay=decay).validate()
