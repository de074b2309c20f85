"""Training throughput (issue 23 §3): what a KT step does besides the students' and teachers'
arithmetic is bounded, and the speed-ups change no number.

- prefetching builds the next batch in a background thread and yields exactly the batches,
  losses and weights of a run without it (with flips, crops and jitter on);
- the teacher sees each image once per step, the batch as given (flipped or not);
- a step reads its losses back in one host transfer;
- freed host memory is kept for reuse while a run lasts and given back after (glibc's malloc);
- the options are TrainConfig fields with their generated flags.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading

import pytest
import torch

from tests.conftest import make_pairs, tiny_config
from trainer import cli
from trainer.loop import Trainer
from trainer.prefetch import Prefetcher

PREFETCH_THREAD = "sketchstudio-prefetch"


@pytest.fixture
def four_pairs(tmp_path):
    return make_pairs(tmp_path / "pairs4", 4)


def _recorded_run(data, out, teacher, monkeypatch, **kw):
    """Train the tiny run; return (batches seen by train_step, threads that built them, loss
    rows without the wall time, final weights)."""
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    threads: list[str] = []
    step_fn, build_fn = Trainer.train_step, Trainer._step_batch

    def train_step(self, x, y):
        batches.append((x.clone(), y.clone()))
        return step_fn(self, x, y)

    def step_batch(self, step):
        threads.append(threading.current_thread().name)
        return build_fn(self, step)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    monkeypatch.setattr(Trainer, "_step_batch", step_batch)
    t = Trainer(tiny_config(data, out, teacher, **kw))
    t.run()
    monkeypatch.undo()
    rows = [json.loads(ln) for ln in (out / "losses.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("sec")
    weights = [p.detach().clone() for net in (t.G, t.F) for p in net.parameters()]
    return batches, threads, rows, weights


def test_prefetch_yields_the_same_batches_losses_and_weights(four_pairs, tmp_path, random_teacher,
                                                             monkeypatch):
    kw = dict(epochs=2, hflip=True, augment=True, batch_size=2, preview_every=100)
    on = _recorded_run(four_pairs, tmp_path / "on", random_teacher, monkeypatch, prefetch=True, **kw)
    off = _recorded_run(four_pairs, tmp_path / "off", random_teacher, monkeypatch, prefetch=False, **kw)
    assert len(on[0]) == len(off[0]) == 4  # 4 pairs, batch 2, 2 epochs
    for (xa, ya), (xb, yb) in zip(on[0], off[0], strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert on[2] == off[2]  # every loss term of every step, bit for bit
    assert all(torch.equal(a, b) for a, b in zip(on[3], off[3], strict=True))
    # prefetching is really on: every batch but the first was built off the training thread,
    # one step ahead; without it every batch is built on the training thread
    main = threading.current_thread().name
    assert on[1][0] == main and all(name.startswith(PREFETCH_THREAD) for name in on[1][1:])
    assert len(on[1]) == 4  # and none was built twice or beyond the last step
    assert off[1] == [main] * 4


def test_prefetch_thread_ends_with_the_run_even_when_cancelled(tiny_pairs, tmp_path, random_teacher):
    from trainer.events import DoneEvent, StepEvent, TrainControl

    ctl = TrainControl()
    alive: dict[str, list[str]] = {}

    def prefetchers() -> list[str]:
        return [th.name for th in threading.enumerate() if th.name.startswith(PREFETCH_THREAD)]

    def on_event(e):
        if isinstance(e, StepEvent) and e.step == 1:
            alive["step"] = prefetchers()  # step 2's batch is being built
            ctl.cancel()
        if isinstance(e, DoneEvent):  # the loop has ended; the run still holds its prefetcher
            alive["done"] = prefetchers()

    res = Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, epochs=3),
                  on_event=on_event, control=ctl).run()
    assert res.cancelled and res.step == 1
    assert alive["step"] and not alive["done"]


def test_prefetcher_answers_any_step_and_reraises_the_workers_error():
    built: list[int] = []

    def make(step: int) -> int:
        built.append(step)
        if step == 7:
            raise RuntimeError("bad batch 7")
        return step * 10

    with Prefetcher(make, last_step=7) as p:
        assert p.get(0) == 0 and p.get(1) == 10
        assert p.get(5) == 50  # out of order (a resume): built on the spot, not a stale batch
        with pytest.raises(RuntimeError, match="bad batch 7"):
            p.get(6), p.get(7)
    assert 8 not in built  # nothing past the last step


def test_teacher_runs_once_per_image_per_step_on_the_batch_as_given(tiny_pairs, tmp_path,
                                                                    random_teacher):
    t = Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, style_weight=0.5,
                            hflip=True))
    t._setup()
    real, graded = [], []
    forward, with_grad = t.teacher.forward, t.teacher.forward_with_grad
    t.teacher.forward = lambda img: real.append(img) or forward(img)
    t.teacher.forward_with_grad = lambda img: graded.append(img) or with_grad(img)
    x, y = t._batch(0, 0)
    x, y = x.flip(-1), y.flip(-1)  # as a flipped pair arrives
    t.train_step(x, y)
    # one pass over the photo and one over the sketch, shared by G's and F's updates ...
    assert len(real) == 2 and real[0] is x and real[1] is y
    # ... and, with the texture term, one over each student's output (which it needs)
    assert len(graded) == 2 and all(g.requires_grad for g in graded)
    real.clear()
    graded.clear()
    t.weights = dataclasses.replace(t.weights, style=0.0)
    t.train_step(x, y)
    assert len(real) == 2 and not graded


_SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


def _count_host_reads(monkeypatch) -> list[str]:
    """Patch Tensor's host-reading methods to record each call made from the trainer's code
    (trainer.*), not torch's own (Adam reads its CPU step counters, which costs no device sync)."""
    seen: list[str] = []
    for name in _SYNCS:
        orig = getattr(torch.Tensor, name)

        def wrapper(self, *a, _orig=orig, _name=name, **k):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("trainer."):
                seen.append(f"{_name} in {caller}:{sys._getframe(1).f_lineno}")
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return seen


def test_a_step_reads_its_losses_back_in_one_transfer(tiny_pairs, tmp_path, random_teacher,
                                                      monkeypatch):
    # every reported term on: tea, stu, rec, style, perc, the GAN terms and the discriminators'
    t = Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, style_weight=0.5,
                            perceptual_weight=0.5, gan_weight=0.1))
    t._setup()
    x, y = t._batch(0, 0)
    seen = _count_host_reads(monkeypatch)
    losses = t.train_step(x, y)
    monkeypatch.undo()
    assert {"G_style", "F_perc", "G_gan", "F_D", "G_total", "total"} <= set(losses)
    assert len(seen) == 1, seen
    # and the numbers are the float32 values a per-term float() gives
    assert all(isinstance(v, float) for v in losses.values())
    assert losses["total"] == losses["G_total"] + losses["F_total"]


def test_read_losses_is_exactly_float_per_term():
    terms = {"a": torch.tensor(0.1), "b": torch.tensor(3.0e-7), "c": torch.tensor(1.5, dtype=torch.bfloat16)}
    assert Trainer._read_losses(terms) == {k: float(v) for k, v in terms.items()}
    assert Trainer._read_losses({}) == {}


def test_prefetch_and_memory_are_config_options_with_flags():
    _, cfg = cli.parse_train_args(["--data", "d", "--out", "o"])
    assert cfg.prefetch is True and cfg.keep_host_memory is True
    _, cfg = cli.parse_train_args(["--data", "d", "--out", "o", "--no-prefetch", "--no-keep-host-memory"])
    assert cfg.prefetch is False and cfg.keep_host_memory is False


class _FakeLibc:
    """Records mallopt/malloc_trim calls instead of changing this process's allocator."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("trim", pad))
        return 1


@pytest.mark.parametrize("keep", [True, False])
def test_freed_host_memory_is_kept_during_a_run_and_given_back_after(tiny_pairs, tmp_path,
                                                                     random_teacher, monkeypatch, keep):
    from trainer import hostmem

    fake = _FakeLibc()
    monkeypatch.setattr(hostmem, "_glibc", lambda: fake)
    during: list[list] = []
    step_fn = Trainer.train_step
    monkeypatch.setattr(Trainer, "train_step", lambda self, x, y: during.append(list(fake.calls))
                        or step_fn(self, x, y))
    Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, keep_host_memory=keep)).run()
    kept = [("mallopt", hostmem.M_MMAP_THRESHOLD, hostmem.KEEP_MMAP),
            ("mallopt", hostmem.M_TRIM_THRESHOLD, hostmem.KEEP_TRIM)]
    if not keep:
        assert fake.calls == [] and during == [[]] * 3
        return
    assert during == [kept] * 3  # set before the first step, not undone between steps
    assert fake.calls == kept + [("mallopt", hostmem.M_MMAP_THRESHOLD, hostmem.DEFAULT_MMAP),
                                 ("mallopt", hostmem.M_TRIM_THRESHOLD, hostmem.DEFAULT_TRIM),
                                 ("trim", 0)]


def test_glibc_accepts_the_thresholds():
    from trainer import hostmem

    if hostmem._glibc() is None:
        pytest.skip("not glibc: the option does nothing here")
    with hostmem.keep_freed_memory(True) as ok:
        assert ok  # mallopt refuses an mmap threshold above 32 MiB; these are within its limits
