"""Student forward latency and one full KT training step, with achieved GFLOP/s.

FLOPs are counted by torch's FlopCounterMode (a multiply-add = 2 FLOPs) on the same graph.
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from sketchstudio.device import autocast, cpu_has_native_bf16
from sketchstudio.models import StudentNet


def _time(fn, reps: int) -> float:
    fn()  # warm-up (allocations, oneDNN/cuDNN kernel choice)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def _forward_rows(device: str, size: int = 256) -> list[dict]:
    rows = []
    net = StudentNet().to(device).eval()
    x = torch.rand(1, 3, size, size, device=device) * 2 - 1
    precisions = ["fp32", "bf16"]
    for prec in precisions:
        def fwd(prec=prec):
            with torch.inference_mode(), autocast(prec, torch.device(device)):
                net(x)
        reps = 3 if device == "cpu" else 20
        sec = _time(fwd, reps)
        gflop = _flops(fwd) / 1e9
        note = "" if device != "cpu" or prec == "fp32" or cpu_has_native_bf16() else \
            "emulated bf16 (no AVX512-BF16/AMX)"
        row = {"name": f"G forward {size}² {prec} ({device})", "ms": sec * 1e3,
               "GFLOP/s": round(gflop / sec, 1), "GFLOP": round(gflop, 1)}
        if note:
            row["note"] = note
        rows.append(row)
    return rows


def _kt_step_row(device: str, size: int = 256) -> dict:
    """One alternating iteration of the real trainer (teachers, G step, F step) on random data."""
    import tempfile
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from trainer.config import TrainConfig
    from trainer.loop import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pairs"
        for sub in ("photos", "sketches"):
            (root / sub).mkdir(parents=True)
            Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), np.uint8)
                            ).save(root / sub / "a.png")
        teacher = Path(tmp) / "vgg.pth"
        from sketchstudio.models.teacher import VGGTeacher

        torch.save({f"features.{k}": v for k, v in VGGTeacher().features.state_dict().items()}, teacher)
        cfg = TrainConfig(data_dir=str(root), out_dir=str(Path(tmp) / "run"), image_size=size,
                          device=device, teacher_path=str(teacher), teacher_norm_samples=1)
        t = Trainer(cfg)
        t._setup()
        x, y = t._batch(0, 0)
        sec = _time(lambda: t.train_step(x, y), 2 if device == "cpu" else 10)
        gflop = _flops(lambda: t.train_step(x, y)) / 1e9
        return {"name": f"KT train step {size}² {t.precision} ({device})", "ms": sec * 1e3,
                "GFLOP/s": round(gflop / sec, 1), "GFLOP": round(gflop, 1)}


def run() -> list[dict]:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows: list[dict] = []
    for dev in devices:
        rows += _forward_rows(dev)
        rows.append(_kt_step_row(dev))
    return rows


if __name__ == "__main__":
    from benchmarks.__main__ import main

    main(["core"])
