"""One knowledge-transfer training step broken into its parts (issue 23 §3–4).

Rows, all from one run (so a busy machine slows every side alike):

- the machine's ISA (``sketchstudio.runtime.isa``) and the torch thread count;
- each part of a step, timed on its own with the trainer's own objects: data (the host batch and
  its copy to the device), the teacher forwards (photo and sketch), G forward + objective +
  backward, F forward + objective + backward, the four optimiser steps' worth of Adam (G and F),
  and the step's loss read-out + loss-log row + event (logging/syncs);
- the whole step as the training loop runs it (``Trainer.run``, the time between two step
  events: batch, both updates, the loss row, the event), with the options as shipped ("after")
  and as before issue 23 ("before": no prefetch, one host transfer per loss term, freed host
  memory given back to the system after each step; trainer.hostmem);
- the acceptance ratio: whole step / the sum of the parts' bare arithmetic (teachers, G and F
  forward + backward, optimiser steps); ≤ 1.1 is the target;
- whether channels_last pays for a student's forward + backward (and, with ``--compile``,
  torch.compile: its first call compiles for minutes on a small CPU, so it is not in the
  default run). Neither is switched on by the trainer: on this project's 2-core AVX2 machines
  both were slower (G forward + backward, 256² ngf 32, 3 blocks, 1 thread, CPU time: eager
  1.02 s, channels_last 1.51 s, torch.compile 1.49 s after 625 s of compiling).

Times are medians over rounds that take turns (parts, after, before, parts, …). Each is given as
wall time and as the process's CPU time: on a shared machine the CPU time is the steadier of the
two, the wall time the one that shows what prefetching hides. Model: ngf 32, 3 SE blocks, 256²,
fp32, random weights and data (the arithmetic does not depend on them);
``python -m benchmarks.bench_train --ngf 64 --blocks 9`` measures the paper's student.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

#: the parts whose time is the students' and teachers' arithmetic (the ratio's denominator)
ARITHMETIC = ("teacher forwards", "G forward+backward", "F forward+backward", "optimiser steps")


def _data(root: Path, size: int, n: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("photos", "sketches"):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(root / sub / f"{i}.png")
    return root


def _teacher(path: Path) -> Path:
    from sketchstudio.models.teacher import VGGTeacher

    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in VGGTeacher().features.state_dict().items()}, path)
    return path


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call, after the device has finished its queue."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - w0, time.process_time() - c0


class _Bench:
    def __init__(self, tmp: Path, size: int, ngf: int, n_blocks: int, device: str, steps: int) -> None:
        from trainer.config import TrainConfig

        self.tmp, self.steps, self.runs = tmp, steps, 0
        self.base = dict(data_dir=str(_data(tmp / "pairs", size, 4)), image_size=size, ngf=ngf,
                         n_blocks=n_blocks, device=device, precision="fp32",
                         teacher_path=str(_teacher(tmp / "vgg.pth")), teacher_norm_samples=1,
                         epochs=1000, max_steps=steps, checkpoint_every=10_000, preview_every=10_000)
        self.config = TrainConfig
        self.parts_trainer = self._trainer(prefetch=True)
        self.parts_trainer._setup()

    def _trainer(self, **kw):
        from trainer.loop import Trainer

        self.runs += 1
        return Trainer(self.config(out_dir=str(self.tmp / f"run{self.runs}"), **self.base, **kw))

    def parts(self) -> dict[str, tuple[float, float]]:
        """Each part of one step on its own, as :meth:`Trainer.train_step` does it."""
        from trainer.events import StepEvent
        from trainer.losses import F_TEACHER_PAIRS, G_TEACHER_PAIRS, student_terms

        t = self.parts_trainer
        w, out = t.weights, {}
        batch: list = []
        out["data"] = _timed(lambda: batch.append(t._to_device(t._host_batch(0, 0))))
        x, y = batch[0]
        teach: list = []
        out["teacher forwards"] = _timed(lambda: teach.append((t.teacher(x), t.teacher(y))))
        tp, ts = teach[0]
        with torch.no_grad():  # each student's fixed targets: the other's taps
            taps_g0 = t.G(x, return_taps=True)[1]
            taps_f0 = t.F(y, return_taps=True)[1]
        terms: dict[str, torch.Tensor] = {}

        def student(net, opt, inp, target, other, pairs, is_g, adapters, prefix):
            def go():
                o, taps = net(inp, return_taps=True)
                feats = t.teacher.forward_with_grad(o) if w.needs_output_features else None
                loss, rep = student_terms(o, target, taps, other, tp, ts, pairs, is_g, w, adapters, feats)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                terms.update({f"{prefix}_{k}": v for k, v in rep.items()})
                terms[f"{prefix}_total"] = loss.detach()
            return go

        out["G forward+backward"] = _timed(student(t.G, t.opt_g, x, y, taps_f0, G_TEACHER_PAIRS,
                                                   True, t.adapt_g, "G"))
        out["F forward+backward"] = _timed(student(t.F, t.opt_f, y, x, taps_g0, F_TEACHER_PAIRS,
                                                   False, t.adapt_f, "F"))
        out["optimiser steps"] = _timed(lambda: (t.opt_g.step(), t.opt_f.step()))
        sink = open(self.tmp / "losses.jsonl", "a")  # noqa: SIM115

        def read_and_log():
            losses = t._read_losses(terms)
            t._log_row(sink, {"step": 1, "epoch": 0, **losses, "lr": t.opt_g.param_groups[0]["lr"]})
            t._emit(StepEvent(step=1, total_steps=1, epoch=0, losses=losses, sec_per_step=0.0, eta_s=0.0))
        try:
            out["logging/syncs"] = _timed(read_and_log)
        finally:
            sink.close()
        return out

    def loop_steps(self, before: bool) -> list[tuple[float, float]]:
        """(wall, CPU) of each step after the first, between step events of ``Trainer.run``."""
        from trainer.events import StepEvent
        from trainer.loop import Trainer

        stamps: list[tuple[float, float]] = []

        def on_event(e):
            if isinstance(e, StepEvent):
                stamps.append((time.perf_counter(), time.process_time()))

        t = self._trainer(prefetch=not before, keep_host_memory=not before)
        t.on_event = on_event
        if before:  # the read-out as it was: one float() (one host sync) per loss term
            t._read_losses = lambda terms: {k: float(v) for k, v in terms.items()}
        assert isinstance(t, Trainer)
        t.run()
        return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:], strict=False)]


def layout_rows(size: int = 256, ngf: int = 32, n_blocks: int = 3, device: str = "cpu",
                rounds: int = 5, compile: bool = False) -> list[dict]:
    """A student's forward + backward (with its taps in the loss, as in training) in the default
    layout, in channels_last and (``compile``) through torch.compile, taking turns."""
    from sketchstudio.models import StudentNet

    dev = torch.device(device)
    x = torch.rand(1, 3, size, size, device=dev) * 2 - 1

    def net() -> torch.nn.Module:
        torch.manual_seed(0)
        return StudentNet(ngf, n_blocks).to(dev)

    def step(model: torch.nn.Module, inp: torch.Tensor) -> Callable[[], None]:
        def go() -> None:
            out, taps = model(inp, return_taps=True)
            (out.square().mean() + sum(t.square().mean() for t in taps.values())).backward()
            model.zero_grad(set_to_none=True)
        return go

    ways = {"contiguous": step(net(), x),
            "channels_last": step(net().to(memory_format=torch.channels_last),
                                  x.contiguous(memory_format=torch.channels_last))}
    notes: dict[str, str] = {}
    if compile:
        fn = step(torch.compile(net()), x)
        wall, _ = _timed(fn)
        notes["compile"] = f"first call {wall:.0f} s"
        ways["compile"] = fn
    for fn in ways.values():
        fn()  # warm-up
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in ways}
    for _ in range(rounds):
        for k, fn in ways.items():
            times[k].append(_timed(fn))
    base = _median(times["contiguous"])
    rows = []
    for k in ways:
        wall, cpu = _median(times[k])
        row = {"name": f"G forward+backward {size}² ngf {ngf} {n_blocks} blocks, {k} ({device})",
               "ms": wall * 1e3, "cpu_ms": round(cpu * 1e3, 1)}
        if k != "contiguous":
            row |= {"vs_contiguous_cpu": f"{cpu / base[1]:.2f}×", "used_by_trainer": "no",
                    **({"note": notes[k]} if k in notes else {})}
        rows.append(row)
    return rows


def _median(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def measure(size: int = 256, ngf: int = 32, n_blocks: int = 3, device: str = "cpu", rounds: int = 3,
            steps: int = 3) -> list[dict]:
    """The rows of this benchmark (see the module docstring)."""
    from sketchstudio.runtime.isa import describe_isa

    rows: list[dict] = [{"name": "ISA", "value": describe_isa(), "unit": "",
                         "torch_threads": torch.get_num_threads()}]
    parts: dict[str, list[tuple[float, float]]] = {}
    loops: dict[str, list[tuple[float, float]]] = {"after": [], "before": []}
    with tempfile.TemporaryDirectory() as tmp:
        bench = _Bench(Path(tmp), size, ngf, n_blocks, device, steps)
        bench.parts()  # warm-up: allocations, oneDNN's kernel choice
        for _ in range(rounds):
            for k, v in bench.parts().items():
                parts.setdefault(k, []).append(v)
            loops["after"] += bench.loop_steps(before=False)
            loops["before"] += bench.loop_steps(before=True)
    what = f"{size}² ngf {ngf} {n_blocks} blocks fp32 ({device})"
    med = {k: _median(v) for k, v in parts.items()}
    for k, (wall, cpu) in med.items():
        rows.append({"name": f"KT step part: {k}", "ms": wall * 1e3, "cpu_ms": round(cpu * 1e3, 1)})
    arith_wall = sum(med[k][0] for k in ARITHMETIC)
    arith_cpu = sum(med[k][1] for k in ARITHMETIC)
    rows.append({"name": "KT step parts: bare arithmetic (sum)", "ms": arith_wall * 1e3,
                 "cpu_ms": round(arith_cpu * 1e3, 1), "parts": " + ".join(ARITHMETIC)})
    for label in ("after", "before"):
        wall, cpu = _median(loops[label])
        rows.append({"name": f"KT step {what}, {label}", "ms": wall * 1e3, "cpu_ms": round(cpu * 1e3, 1),
                     "steps": len(loops[label]),
                     "options": "prefetch, one transfer, memory kept" if label == "after"
                     else "no prefetch, one float() per term, memory given back"})
        rows.append({"name": f"KT step / bare arithmetic, {label}", "value": round(wall / arith_wall, 3),
                     "unit": "×", "cpu_ratio": round(cpu / arith_cpu, 3), "target": "≤ 1.1"})
    return rows


def run() -> list[dict]:
    rows = measure() + layout_rows()
    if torch.cuda.is_available():
        rows += measure(device="cuda", rounds=5, steps=6)[1:] + layout_rows(device="cuda", rounds=20)
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="steps per timed training run (≥ 2)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    ap.add_argument("--layouts-only", action="store_true", help="only the layout/compile rows")
    ap.add_argument("--no-layouts", action="store_true", help="without the layout/compile rows")
    a = ap.parse_args(argv)
    from benchmarks.__main__ import _fmt

    rows = [] if a.layouts_only else measure(a.size, a.ngf, a.blocks, a.device, a.rounds, a.steps)
    if not a.no_layouts:
        rows += layout_rows(a.size, a.ngf, a.blocks, a.device, compile=a.compile)
    for r in rows:
        print(" | ".join(_fmt(r)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
