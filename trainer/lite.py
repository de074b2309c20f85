"""Lite students: a full student's residual blocks narrowed, then distilled back to its outputs.

Why: on a CPU without VNNI or AMX, int8 can at most double the multiply-add rate of fp32, and the
shipped 99 GFLOP student already runs torch fp32 at ~70 % of the machine's peak, so no runtime
can make *that* network 3× faster (issue 23). The residual blocks hold 88 % of its FLOPs, almost
all in the two 3×3 convolutions of each block; the channels *between* those two convolutions can
go without touching the residual stream, the encoder or the decoder. Halving them halves 87 GFLOP.

How, in two steps:

1. **Least-squares pruning** (He et al., "Channel pruning for accelerating very deep neural
   networks", 2017, without the LASSO). Block by block, keep the inner channels whose
   contribution to the second convolution carries the most energy (``‖W₂[:, c]‖² · E[h_c²]`` on
   calibration images), then refit the second convolution by ridge regression so that, fed the
   *pruned* network's own features, it reproduces the *full* network's output of that
   convolution *plus* what cancels the residual stream's accumulated error (the difference
   between the two networks' block inputs, carried back through the block's InstanceNorm and
   squeeze-excitation gate). Each block thereby corrects the error the earlier ones left: on the
   shipped G at width 128 this took the distance on the 27 validation photos from 2.31 to 1.85 grey levels
   before any distillation.
2. **Distillation**: the lite student is trained to reproduce the full student's output (L1 on
   training images with horizontal flips; Adam, a small learning rate because it starts close).

The result is a checkpoint like any other (``block_width`` in its metadata) that names the full
model it was made from (``extra.lite_of``: the full file's SHA-256). The fast paths use it only
for that model, and only where their parity check against the *full* network's fp32 output
passes (:mod:`sketchstudio.runtime.fastpath`). Validation images (never test images) choose the
step that is kept.

Run: ``python -m trainer.lite MODEL DATA_DIR OUT --width 128 --steps 600``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sketchstudio.checkpoint import (
    DIRECTIONS,
    build_student,
    read_checkpoint,
    save_checkpoint,
    student_tensors,
)
from sketchstudio.errors import ConfigError, DataError
from sketchstudio.fsutil import atomic_write_bytes
from sketchstudio.models.student import StudentNet
from sketchstudio.runtime.fastpath import direction_images, file_sha256, grey_level_diff
from sketchstudio.runtime.lite import lite_path_for

log = logging.getLogger(__name__)

#: ridge strength relative to the mean diagonal of the normal equations (numerical safety only)
RIDGE = 1e-4


# -- step 1: least-squares pruning -----------------------------------------------------------------
def _inner(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A block's features between its two convolutions (pad, conv, IN, ReLU)."""
    b = block.body
    return b[3](b[2](b[1](b[0](x))))


def _per_image(fn: Callable[[torch.Tensor], torch.Tensor], xs: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(xs[i:i + 1]) for i in range(len(xs))])


#: the squeeze-excitation gate is clamped to this when the stream's error is divided by it
MIN_GATE = 0.05


def _stream_correction(block: torch.nn.Module, y: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """What to add to the full block's second-convolution output ``y`` so that the block's branch
    (IN, then the SE gate ``g``) also cancels the residual stream's accumulated ``error``
    (full − lite): the branch is ``g · (y − μ) / σ``, so ``+error`` at its output is ``+error · σ / g``
    at ``y`` (μ, σ, g taken from the full block, so it is exact at zero error)."""
    sd = (y.var(dim=(2, 3), unbiased=False, keepdim=True) + block.body[6].eps).sqrt()
    gate = block.body[7].fc((y - y.mean(dim=(2, 3), keepdim=True)) / sd)
    return error * sd / gate.clamp_min(MIN_GATE)


def prune_student(full: StudentNet, calibration: torch.Tensor, width: int) -> StudentNet:
    """A copy of ``full`` with ``width`` channels inside each residual block, fitted by least
    squares on ``calibration`` ((N, 3, S, S) in [-1, 1], training images)."""
    channels = full.ngf * 4
    if not 1 <= width <= channels:
        raise ConfigError(f"width must be 1..{channels} (the blocks' {channels} channels), got {width}.")
    if len(calibration) < 1:
        raise DataError("pruning needs at least one calibration image")
    lite = StudentNet(ngf=full.ngf, n_blocks=full.n_blocks, upsample=full.upsample,
                      block_width=width).eval()
    sd = {k: v for k, v in full.state_dict().items() if ".body.1." not in k and ".body.5." not in k}
    lite.load_state_dict(sd, strict=False)  # everything but the narrowed convolutions
    with torch.inference_mode():
        x_full = _per_image(lambda x: full.DC2(full.DC1(full.IC(x))), calibration)
        x_lite = x_full.clone()
        for fb, lb in zip(full.Block, lite.Block, strict=True):
            c1, c2 = fb.body[1], fb.body[5]
            pad, dil = fb.body[4].padding[0], c2.dilation
            y_full = _per_image(lambda x, fb=fb: fb.body[5](fb.body[4](_inner(fb, x))), x_full)
            target = y_full + _stream_correction(fb, y_full, x_full - x_lite)
            h = _per_image(lambda x, fb=fb: _inner(fb, x), x_lite)
            energy = c2.weight.pow(2).sum(dim=(0, 2, 3)) * h.pow(2).mean(dim=(0, 2, 3))
            keep = torch.sort(torch.argsort(energy, descending=True)[:width]).values
            d = width * 9 + 1
            a = torch.zeros(d, d, dtype=torch.float64)
            rhs = torch.zeros(d, channels, dtype=torch.float64)
            for i in range(len(h)):
                hp = F.pad(h[i:i + 1, keep], (pad,) * 4, mode="reflect")
                cols = F.unfold(hp, 3, dilation=dil)[0].T.double()  # (pixels, width·9)
                cols = torch.cat([cols, torch.ones(len(cols), 1, dtype=torch.float64)], 1)
                a += cols.T @ cols
                rhs += cols.T @ target[i].reshape(channels, -1).T.double()
            a += RIDGE * a.diagonal().mean() * torch.eye(d, dtype=torch.float64)
            sol = torch.linalg.solve(a, rhs)
            lb.body[1].weight.copy_(c1.weight[keep])
            lb.body[1].bias.copy_(c1.bias[keep])
            lb.body[5].weight.copy_(sol[:-1].T.reshape(channels, width, 3, 3).float())
            lb.body[5].bias.copy_(sol[-1].float())
            x_full = _per_image(fb, x_full)
            x_lite = _per_image(lb, x_lite)
    return lite


# -- step 2: distillation --------------------------------------------------------------------------
@dataclass
class DistillConfig:
    """What a distillation run depends on (stored in the lite file's metadata)."""

    width: int = 128
    steps: int = 600
    lr: float = 5e-5
    seed: int = 0
    n_calibration: int = 24
    validate_every: int = 50


def distill(lite: StudentNet, full: StudentNet, train: Sequence[torch.Tensor],
            val: torch.Tensor, cfg: DistillConfig, start_step: int = 0,
            opt_state: dict | None = None,
            on_validate: Callable[[int, float, StudentNet, dict], None] | None = None) -> StudentNet:
    """Train ``lite`` to reproduce ``full`` on ``train`` (each (1, 3, S, S)); every
    ``cfg.validate_every`` steps measure the grey-level error on ``val`` and report it (with the
    optimiser state, so a caller can save a resumable state)."""
    full.eval()
    for p in full.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        val_ref = _per_image(full, val)
    # only the narrowed convolutions learn: everything else is already the full net's exactly, and
    # Adam's first steps move every parameter by about lr whatever its gradient, which disturbs
    # exact layers more than it helps
    params = [p for b in lite.Block for p in (*b.body[1].parameters(), *b.body[5].parameters())]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    if opt_state:
        opt.load_state_dict(opt_state)
    rng = np.random.default_rng([cfg.seed, start_step])
    targets: dict[tuple[int, bool], torch.Tensor] = {}
    lite.train()
    for step in range(start_step + 1, cfg.steps + 1):
        i, flip = int(rng.integers(len(train))), bool(rng.integers(2))
        x = train[i].flip(-1) if flip else train[i]
        if (i, flip) not in targets:  # the full net's answer, computed once per image and flip
            with torch.inference_mode():
                targets[(i, flip)] = full(x)
        loss = (lite(x) - targets[(i, flip)]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.validate_every == 0 or step == cfg.steps:
            lite.eval()
            with torch.inference_mode():
                err = float(np.mean([grey_level_diff(val_ref[j:j + 1], lite(val[j:j + 1]))
                                     for j in range(len(val))]))
            lite.train()
            log.info("distill step %d: validation %.3f grey levels from the full net", step, err)
            if on_validate is not None:
                on_validate(step, err, lite, opt.state_dict())
    return lite.eval()


# -- the command -----------------------------------------------------------------------------------
def _images(folder: Path, direction: str, size: int, skip: set[str]
            ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(training, validation) inputs of ``direction`` in ``folder`` (validation: the stems in
    ``skip``)."""
    from sketchstudio.imaging import load_image, to_tensor

    files = direction_images(folder, direction) if folder.is_dir() else []
    if not files:
        raise DataError(f"'{folder}' holds no images to distil on.")
    train = [to_tensor(load_image(p), size) for p in files if p.stem not in skip]
    val = [to_tensor(load_image(p), size) for p in files if p.stem in skip]
    if not train or not val:
        raise DataError(f"'{folder}': {len(train)} training and {len(val)} validation images; "
                        "distillation needs both (check --val).")
    return train, val


def make_lite(model: Path, data: Path, out: Path, direction: str, cfg: DistillConfig,
              val_stems: Sequence[str], resume: bool = True) -> Path:
    """Prune and distil ``model``'s ``direction`` into ``out`` (the best validation step), with a
    resumable state next to it (``out`` + ``.state``)."""
    ckpt = read_checkpoint(model)
    full = build_student(ckpt, direction)
    size = int(ckpt.meta.image_size)
    train, val = _images(data, direction, size, set(val_stems))
    state_path = out.with_name(out.name + ".state")
    best: dict = {"err": float("inf")}
    start, opt_state = 0, None
    lite = StudentNet(ngf=full.ngf, n_blocks=full.n_blocks, upsample=full.upsample,
                      block_width=cfg.width)
    if resume and state_path.is_file():
        s = torch.load(state_path, weights_only=True)
        def same(c: dict) -> dict:  # more steps continue a run; anything else is another run
            return {k: v for k, v in c.items() if k != "steps"}

        if same(s.get("config") or {}) != same(dataclasses.asdict(cfg)):
            raise ConfigError(f"'{state_path}' was made with other settings; remove it or use them "
                              "(or --fresh).")
        lite.load_state_dict(s["net"])
        start, opt_state, best = int(s["step"]), s["opt"], s["best"]
        log.info("resuming at step %d (best %.3f grey levels)", start, best["err"])
    else:
        n = min(cfg.n_calibration, len(train))
        picks = torch.cat([train[i * len(train) // n] for i in range(n)])
        t0 = time.perf_counter()
        lite = prune_student(full, picks, cfg.width)
        log.info("pruned to width %d in %.0f s", cfg.width, time.perf_counter() - t0)
    parent = file_sha256(model)

    def save_lite(net: StudentNet, step: int, err: float) -> None:
        meta = dataclasses.replace(
            ckpt.meta, block_width=cfg.width, step=step, created="", metrics={"val_grey_from_full": err},
            extra={**ckpt.meta.extra, "dtype": "float16", "lite_of": parent,
                   "lite": dataclasses.asdict(cfg) | {"step": step, "direction": direction}})
        save_checkpoint(out, student_tensors(DIRECTIONS[direction], net, torch.float16), meta)

    def on_validate(step: int, err: float, net: StudentNet, opt: dict) -> None:
        if err < best["err"]:
            best.update(err=err, step=step)
            save_lite(net, step, err)
        buf = io.BytesIO()
        torch.save({"net": net.state_dict(), "opt": opt, "step": step, "best": best,
                    "config": dataclasses.asdict(cfg)}, buf)
        atomic_write_bytes(state_path, buf.getvalue())

    if start == 0:
        lite.eval()
        with torch.inference_mode():
            err0 = float(np.mean([grey_level_diff(full(v), lite(v)) for v in val]))
        log.info("after pruning: %.3f grey levels from the full net on validation", err0)
        best.update(err=err0, step=0)
        save_lite(lite, 0, err0)
    distill(lite, full, train, torch.cat(val), cfg, start, opt_state, on_validate)
    log.info("best: step %s, %.3f grey levels", best.get("step"), best["err"])
    return out


def main(argv: list[str] | None = None) -> int:
    from trainer.validation import read_stems

    p = argparse.ArgumentParser(prog="python -m trainer.lite", description=__doc__.split("\n")[0])
    p.add_argument("model", type=Path, help="the full model (.safetensors)")
    p.add_argument("data", type=Path, help="training folder (photos/ and sketches/)")
    p.add_argument("out", type=Path, nargs="?", help="default: MODEL with .lite.safetensors")
    p.add_argument("--direction", choices=list(DIRECTIONS), default="photo2sketch",
                   help="which student to make lite (default photo2sketch)")
    p.add_argument("--width", type=int, default=DistillConfig.width,
                   help="channels inside each residual block (the full net has 4·ngf)")
    p.add_argument("--steps", type=int, default=DistillConfig.steps, help="distillation steps")
    p.add_argument("--lr", type=float, default=DistillConfig.lr, help="Adam learning rate")
    p.add_argument("--val", default="cufs", help="validation split: 'cufs' or a file of stems")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--fresh", action="store_true", help="ignore a saved state and start again")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = DistillConfig(width=a.width, steps=a.steps, lr=a.lr)
    try:
        out = make_lite(a.model, a.data, a.out or lite_path_for(a.model), a.direction, cfg,
                        read_stems(a.val), resume=not a.fresh)
    except (ConfigError, DataError, OSError) as exc:
        p.exit(2, f"error: {exc}\n")
    print(json.dumps({"lite": str(out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
