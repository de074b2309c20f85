"""The knowledge-transfer training loop: alternating G/F steps, events, pause/resume/cancel.

Determinism: the data order and flips of epoch ``e`` come from a generator seeded with
(seed, e), so resuming at any step replays exactly what an uninterrupted run would have done.
Checkpoints (weights, Adam state, RNG state, step) are written atomically every
``checkpoint_every`` steps, on cancel and at the end, so a kill loses at most that much work.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from sketchstudio.checkpoint import (
    EMA_PREFIX,
    Checkpoint,
    ModelMeta,
    optim_groups,
    read_checkpoint,
    save_checkpoint,
    student_tensors,
)
from sketchstudio.device import autocast, describe_device, pick_device, resolve_precision
from sketchstudio.errors import ConfigError, SketchStudioError
from sketchstudio.features import transfer_pairs
from sketchstudio.fsutil import atomic_write, ensure_writable_dir
from sketchstudio.imaging import to_image
from sketchstudio.models import TEACHER_TAPS, StudentNet, VGGTeacher, load_teacher

from . import distributed
from .adversarial import PatchDiscriminator, discriminator_loss, generator_adv_loss
from .config import TrainConfig
from .data import PairedFolder
from .distributed import DistContext
from .events import (
    CheckpointEvent,
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    PreviewEvent,
    StartEvent,
    StateEvent,
    StepEvent,
    TrainControl,
    TrainEvent,
    ValEvent,
)
from .hostmem import keep_freed_memory
from .losses import F_TEACHER_PAIRS, G_TEACHER_PAIRS, LossWeights, make_adapters, student_terms
from .prefetch import Inline, Prefetcher
from .rundir import CHECKPOINT_FILE, CONFIG_FILE, LOSS_LOG, append_row, read_rows, truncate_log
from .runlock import claim_run_folder
from .validation import BEST_FILE, VAL_LOG, read_stems, split_pairs

log = logging.getLogger(__name__)

#: ± fraction of the photo colour jitter (brightness, contrast, saturation) with ``augment``
JITTER = 0.1


def augment_margin(size: int) -> int:
    """Extra pixels kept around each image for random crops: 1/8 of the size, a multiple of 4."""
    return max(4, size // 32 * 4)


def jitter_photo(x: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """Mild colour jitter of a (3, H, W) image in [-1, 1]; sketches are never jittered (their
    grey levels are the target)."""
    v = (x + 1) / 2
    mean = v.mean()
    v = (v - mean) * contrast + mean
    v = v * brightness
    grey = v.mean(dim=0, keepdim=True)
    v = grey + (v - grey) * saturation
    return v.clamp(0, 1) * 2 - 1

_ARCH_KEYS = ("ngf", "n_blocks", "image_size", "upsample")


@dataclass
class TrainResult:
    step: int
    checkpoint: Path
    cancelled: bool
    last_losses: dict[str, float]


def _optim_to_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {f"optim.{prefix}.{idx}.{name}": (v if torch.is_tensor(v) else torch.tensor(v))
               for idx, st in sd["state"].items() for name, v in st.items()}
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in sd["param_groups"]]
    return tensors, groups


def _optim_from_tensors(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        groups: list) -> None:
    """Restore Adam's saved moments into ``opt`` at the learning rate ``opt`` was built with, so
    that a long run can be resumed at another rate (``--resume --lr 5e-5``) without losing them."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    head = f"optim.{prefix}."
    for k, v in tensors.items():
        if k.startswith(head):
            idx, name = k[len(head):].split(".", 1)
            state.setdefault(int(idx), {})[name] = v
    for g, current in zip(groups, opt.param_groups, strict=True):
        g["betas"] = tuple(g["betas"])
        if g["lr"] != current["lr"]:
            log.info("%s: learning rate %.3g from the checkpoint replaced by the configured %.3g",
                     prefix, g["lr"], current["lr"])
        g["lr"] = current["lr"]
    opt.load_state_dict({"state": state, "param_groups": groups})


class Trainer:
    """Runs one training job; construct, then call :meth:`run` (in any thread)."""

    def __init__(self, config: TrainConfig, on_event: Callable[[TrainEvent], None] | None = None,
                 control: TrainControl | None = None, resume: bool = False,
                 init_from: str | Path | None = None, preview_features: bool = False,
                 dist: DistContext | None = None) -> None:
        """``preview_features``: previews also carry feature-map grids (student vs teacher, every
        layer of both networks) for a live view; off for the CLI, which has nowhere to show them.
        ``dist``: this process's place in a torchrun job (:mod:`trainer.distributed`); only rank 0
        writes files and emits events."""
        self.cfg = config.validate()
        self.preview_features = preview_features
        self.dist = dist or DistContext()
        self.on_event = (on_event or (lambda e: None)) if self.dist.is_main else (lambda e: None)
        self.control = control or TrainControl()
        self.resume = resume
        self.init_from = init_from
        self.out_dir = Path(config.out_dir)
        self.ckpt_path = self.out_dir / CHECKPOINT_FILE

    # ------------------------------------------------------------------------------------------
    def _emit(self, event: TrainEvent) -> None:
        try:
            self.on_event(event)
        except Exception:  # a broken listener must not kill a long training run
            log.exception("training event listener failed on %s", type(event).__name__)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.precision, self.device)

    def _setup(self) -> None:
        cfg = self.cfg
        ensure_writable_dir(self.out_dir)
        if self.dist.is_main:  # the other ranks of a torchrun job write nothing in the folder
            self._run_lock = claim_run_folder(self, self.out_dir)  # one run per folder; stale temps go
        self.device = pick_device(self.dist.device(cfg.device))
        distributed.init(self.dist, str(self.device))
        self.precision = resolve_precision(cfg.precision, self.device)
        val_stems = read_stems(cfg.val) if cfg.val else []
        self.data = PairedFolder(cfg.data_dir, cfg.image_size, split=cfg.split,
                                 transform=self._align_transform() if cfg.align else None,
                                 exclude_stems=val_stems,
                                 margin=augment_margin(cfg.image_size) if cfg.augment else 0)
        self.val_pairs = split_pairs(self.data.scan.pairs, val_stems, cfg.val).val if cfg.val else []
        self.teacher: VGGTeacher = load_teacher(cfg.teacher_path, device=self.device)
        torch.manual_seed(cfg.seed)
        self.G = StudentNet(cfg.ngf, cfg.n_blocks, upsample=cfg.upsample).to(self.device)
        self.F = StudentNet(cfg.ngf, cfg.n_blocks, upsample=cfg.upsample).to(self.device)
        regress = cfg.tap_compare == "regressor"
        self.adapt_g = make_adapters(G_TEACHER_PAIRS, cfg.ngf, every_tap=regress).to(self.device)
        self.adapt_f = make_adapters(F_TEACHER_PAIRS, cfg.ngf, every_tap=regress).to(self.device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam([*self.G.parameters(), *self.adapt_g.parameters()],
                                      lr=cfg.lr, betas=betas)
        self.opt_f = torch.optim.Adam([*self.F.parameters(), *self.adapt_f.parameters()],
                                      lr=cfg.lr, betas=betas)
        # conditional PatchGANs (trainer.adversarial): D_g judges sketches given the photo,
        # D_f photos given the sketch; built only when the term is on
        self.gan = cfg.gan_weight > 0
        if self.gan:
            self.D_g = PatchDiscriminator(ndf=cfg.ngf).to(self.device)
            self.D_f = PatchDiscriminator(ndf=cfg.ngf).to(self.device)
            self.opt_dg = torch.optim.Adam(self.D_g.parameters(), lr=cfg.lr, betas=betas)
            self.opt_df = torch.optim.Adam(self.D_f.parameters(), lr=cfg.lr, betas=betas)
        # created before any weights are loaded: an average that has seen no update copies the
        # net's weights at its first update, so it starts from wherever training (re)starts
        self.ema = {name: AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
                    for name, net in (("G", self.G), ("F", self.F))} if cfg.ema_decay else {}
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.weights = LossWeights(cfg.w_tea, cfg.w_stu, cfg.w_rec, style=cfg.style_weight,
                                   perceptual=cfg.perceptual_weight, tap_compare=cfg.tap_compare,
                                   stu_compare=cfg.stu_compare, rec_loss=cfg.rec_loss)
        self.n = len(self.data)
        self.data_desc = self.data.describe()
        # one step = one global batch of world_size × batch_size pairs (trainer.distributed)
        self.steps_per_epoch = math.ceil(self.n / (cfg.batch_size * self.dist.world_size))
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.step = 0
        self.resumed = False
        scales_loaded = False
        if self.resume and self.ckpt_path.is_file():
            scales_loaded = self._load_state(self.ckpt_path, with_optim=True)
            self.resumed = True
        elif self.resume:
            log.info("No checkpoint in %s; starting fresh", self.out_dir)
        elif self.ckpt_path.is_file():
            raise ConfigError(f"'{self.out_dir}' already holds a training run. Resume it (--resume) "
                              "or choose another output folder.")
        if self.init_from and not self.resumed:
            scales_loaded = self._load_state(Path(self.init_from), with_optim=False)
        if cfg.teacher_norm == "channel_mean" and not scales_loaded:
            self.teacher.set_channel_scales(self._teacher_channel_means())
        if self.dist.is_main:
            with atomic_write(self.out_dir / CONFIG_FILE, "w") as fh:
                fh.write(cfg.dump_yaml())
            self._truncate_loss_log()
            self._truncate_log(VAL_LOG)
        self.best_val = self._best_so_far()
        self.run_g, self.run_f = self._parallel(self.G), self._parallel(self.F)
        self.dist.barrier()

    def _parallel(self, net: StudentNet) -> torch.nn.Module:
        """``net`` in its DDP wrapper in a torchrun job (weights already loaded: DDP broadcasts
        rank 0's at construction), else ``net`` itself."""
        if not self.dist.enabled:
            return net
        from torch.nn.parallel import DistributedDataParallel

        uses_output = bool(self.cfg.w_rec or self.cfg.style_weight or self.cfg.perceptual_weight)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids, find_unused_parameters=not uses_output)

    def _align_transform(self):
        """Face alignment with crops cached on disk (next to the data, else in the run folder)."""
        from sketchstudio.faces import CachedAligner, choose_cache_dir

        return CachedAligner(choose_cache_dir(self.cfg.data_dir, self.out_dir))

    def _load_state(self, path: Path, with_optim: bool) -> bool:
        """Load weights (and optimizer/RNG state); returns whether teacher scales were restored."""
        ckpt = read_checkpoint(path)
        m = ckpt.meta
        mine = {k: getattr(self.cfg, k) for k in _ARCH_KEYS}
        theirs = {k: getattr(m, k) for k in _ARCH_KEYS}
        if mine != theirs:
            raise ConfigError(f"Checkpoint '{path}' was trained with {theirs}, but this run asks for "
                              f"{mine}. Use the same settings or another output folder.")
        for prefix, net in self._modules_to_save():
            sd = ckpt.prefixed(prefix)
            if sd:
                net.load_state_dict({k: v.float() for k, v in sd.items()})
        self.step = int(m.step)
        if with_optim and any(k.startswith("optim.") for k in ckpt.tensors):
            for name, opt in self._optimizers():
                if name in ("G", "F") or name in (ckpt.meta.extra.get("optim_groups") or {}):
                    _optim_from_tensors(name, opt, ckpt.tensors, optim_groups(ckpt, name))
                else:  # the adversarial term was switched on for this resume: fresh Adam
                    log.info("%s: no optimizer state in the checkpoint; it starts fresh", name)
            for _, opt in self._optimizers():
                for st in opt.state.values():
                    for k, v in st.items():
                        if torch.is_tensor(v) and k != "step":
                            st[k] = v.to(self.device)
        if with_optim:
            self._load_ema(ckpt)
        if "rng.torch" in ckpt.tensors:
            torch.set_rng_state(ckpt.tensors["rng.torch"])
        scales = ckpt.teacher_scales()
        if scales and self.cfg.teacher_norm == "channel_mean":
            self.teacher.set_channel_scales(scales)
            return True
        log.info("Loaded %s at step %d (optimizer state: %s)", path, self.step, with_optim)
        return False

    def _load_ema(self, ckpt: Checkpoint) -> None:
        """Continue the checkpoint's weight average. Without one (an older run, or the average
        was off) it starts from the loaded weights at the next step."""
        updates = int(ckpt.meta.extra.get("ema", {}).get("updates", 0))
        for name, avg in self.ema.items():
            sd = ckpt.prefixed(f"{EMA_PREFIX}.{name}")
            if sd and updates:
                avg.module.load_state_dict({k: v.float() for k, v in sd.items()})
                avg.n_averaged.fill_(updates)
            else:
                log.info("%s: no weight average in the checkpoint; it starts at step %d",
                         name, self.step + 1)
        if not self.ema and any(k.startswith(EMA_PREFIX + ".") for k in ckpt.tensors):
            log.warning("The checkpoint holds a weight average but this run has ema_decay 0: "
                        "the average is dropped at the next checkpoint.")

    @torch.no_grad()
    def _teacher_channel_means(self) -> dict[str, torch.Tensor]:
        """Per-channel mean teacher activation over training photos and sketches (Gatys' scaling)."""
        k = self.cfg.teacher_norm_samples or self.n
        idx = torch.linspace(0, self.n - 1, steps=min(k, self.n)).round().long().unique().tolist()
        sums = {t: 0.0 for t in TEACHER_TAPS}
        count = 0
        for i in idx:
            x, y = (t.unsqueeze(0).to(self.device) for t in self.data[i])
            for img in (x, y):
                raw = self.teacher.forward_raw(img)
                for t in TEACHER_TAPS:
                    sums[t] = sums[t] + raw[t].float().mean(dim=(0, 2, 3))
                count += 1
        means = {t: (sums[t] / count).cpu() for t in TEACHER_TAPS}
        log.info("Teacher channel means from %d images: %s", count,
                 {t: round(float(m.mean()), 2) for t, m in means.items()})
        return means

    def _truncate_loss_log(self) -> None:
        self._truncate_log(LOSS_LOG)

    def _log_row(self, fh, row: dict) -> None:
        """Append one row to the loss log. A full disk stops the run with a message saying where
        (the last checkpoint stays intact; a torn last row is dropped on resume)."""
        append_row(fh, row, self.out_dir / LOSS_LOG)

    def _truncate_log(self, name: str) -> None:
        """Drop rows of a JSON-lines log written after the step the run (re)starts from."""
        truncate_log(self.out_dir / name, self.step)

    def _last_val_step(self) -> int:
        try:
            rows = read_rows(self.out_dir / VAL_LOG)
        except OSError:
            return -1
        return int(rows[-1].get("step", -1)) if rows else -1

    def _best_so_far(self) -> dict | None:
        """The best validation score kept so far: read from best.safetensors itself, so a crash
        between writing it and the next checkpoint cannot lose or fake it."""
        path = self.out_dir / BEST_FILE
        if not (self.val_pairs and path.is_file()):
            return None
        try:
            val = read_checkpoint(path, check_finite=False).meta.metrics.get("val")
        except SketchStudioError as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
            return None
        return val if isinstance(val, dict) and "mean_fsim" in val else None

    def _apply_lr_schedule(self) -> None:
        """``lr_schedule: linear``: constant for the first half of the run, then linear decay to 0
        over the second half (pix2pix / CycleGAN); a function of the step, so resume-exact."""
        if self.cfg.lr_schedule != "linear":
            return
        half = self.total_steps / 2
        factor = 1.0 if self.step < half else max(0.0, (self.total_steps - self.step) / half)
        for opt in (self.opt_g, self.opt_f):
            for g in opt.param_groups:
                g["lr"] = self.cfg.lr * factor

    def _inference_checkpoint(self) -> Checkpoint:
        """G, F and the teacher scales as an in-memory model, for the one translation path."""
        tensors = (student_tensors("G", self.G) | student_tensors("F", self.F)
                   | {f"teacher_scale.{t}": s.cpu() for t, s in self.teacher.channel_scales.items()})
        meta = ModelMeta(ngf=self.cfg.ngf, n_blocks=self.cfg.n_blocks, image_size=self.cfg.image_size,
                         upsample=self.cfg.upsample, step=self.step,
                         epoch=self.step // self.steps_per_epoch, train_config=self.cfg.to_dict(),
                         data=self.data_desc)
        return Checkpoint(tensors={k: v.detach().cpu().clone() for k, v in tensors.items()}, meta=meta,
                          path=self.out_dir / f"step-{self.step}")

    def validate(self) -> ValEvent | None:
        """Score FSIM both ways on the validation pairs (fp32, through the app's translation
        path), log it to val.jsonl and keep best.safetensors by the mean of the two. In a
        torchrun job rank 0 scores while the others wait."""
        if not self.dist.is_main:
            self.dist.barrier()
            return None
        try:
            return self._validate()
        finally:
            self.dist.barrier()

    def _validate(self) -> ValEvent:
        from sketchstudio.engine import Translator

        from .evaluate import evaluate

        t0 = time.perf_counter()
        ckpt = self._inference_checkpoint()
        tr = Translator(ckpt, device=str(self.device), precision="fp32")
        res = evaluate(tr, None, pairs=self.val_pairs)
        row = {"step": self.step, "photo_fsim": res.photo_fsim, "sketch_fsim": res.sketch_fsim,
               "mean_fsim": res.mean_fsim, "input_fsim": res.input_fsim, "n": res.n_pairs,
               "subsets": res.subsets()}
        best = self.best_val is None or res.mean_fsim > self.best_val["mean_fsim"]
        if best:
            ckpt.meta.metrics = {"val": row}
            save_checkpoint(self.out_dir / BEST_FILE, ckpt.tensors, ckpt.meta)
            self.best_val = row
        with open(self.out_dir / VAL_LOG, "a") as fh:
            append_row(fh, row | {"best": best}, self.out_dir / VAL_LOG)
        log.info("validation at step %d: photo %.4f, sketch %.4f%s (%.0f s)", self.step,
                 res.photo_fsim, res.sketch_fsim, " (best)" if best else "", time.perf_counter() - t0)
        event = ValEvent(step=self.step, photo_fsim=res.photo_fsim, sketch_fsim=res.sketch_fsim,
                         subsets=row["subsets"], best=best)
        self._emit(event)
        return event

    # ------------------------------------------------------------------------------------------
    def _epoch_plan(self, epoch: int) -> tuple[list[int], list[bool]]:
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        flips = (torch.rand(self.n, generator=g) < 0.5).tolist() if self.cfg.hflip else [False] * self.n
        return perm, flips

    def _augment_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per pair of epoch ``epoch``: crop offsets (n, 2) and photo jitter factors (n, 3),
        from their own seeded generator, so runs without augmentation keep their data order."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch + 7_919_000)
        offsets = torch.randint(0, self.data.margin + 1, (self.n, 2), generator=g)
        jitter = 1.0 + (torch.rand(self.n, 3, generator=g) * 2 - 1) * JITTER
        return offsets, jitter

    def _batch(self, epoch: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``i`` of epoch ``epoch`` on the training device."""
        return self._to_device(self._host_batch(epoch, i))

    def _to_device(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        non_blocking = x.is_pinned()  # pinned by _host_batch for a GPU: the copy can overlap
        return x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)

    def _step_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The host batch of global step ``step`` (what the prefetcher builds ahead)."""
        return self._host_batch(*divmod(step, self.steps_per_epoch))

    def _host_batch(self, epoch: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``i`` of epoch ``epoch`` in host memory: a function of (seed, epoch, i) and the
        data only (seeded generators, never the global RNG), so it may be built ahead in
        another thread (:mod:`trainer.prefetch`) without changing any number."""
        perm, flips = self._epoch_plan(epoch)
        bs = self.cfg.batch_size
        big = bs * self.dist.world_size  # the global batch; this rank trains on its slice
        xs, ys = [], []
        aug = self._augment_plan(epoch) if self.cfg.augment else None
        for j in self.dist.shard(perm[i * big:(i + 1) * big], perm, bs):
            if aug is None:
                x, y = self.data[j]
            else:
                left, top = aug[0][j].tolist()
                x, y = self.data.crop(j, left, top)
                x = jitter_photo(x, *aug[1][j].tolist())
            if flips[j]:
                x, y = x.flip(-1), y.flip(-1)
            xs.append(x)
            ys.append(y)
        x, y = torch.stack(xs), torch.stack(ys)
        if self.device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def _adversarial(self, loss: torch.Tensor, report: dict[str, torch.Tensor], disc: str,
                     condition: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Add ``gan_weight`` × the LSGAN generator term (the discriminator frozen for it)."""
        if not self.gan:
            return loss
        d = getattr(self, disc)
        d.requires_grad_(False)
        adv = generator_adv_loss(d(condition, out))
        d.requires_grad_(True)
        report["gan"] = adv.detach()
        return loss + self.cfg.gan_weight * adv

    def _update_discriminator(self, disc: str, condition: torch.Tensor, real: torch.Tensor,
                              fake: torch.Tensor, report: dict[str, torch.Tensor]) -> None:
        """One step of a PatchGAN on a real pair and the student's (detached) output."""
        if not self.gan:
            return
        d = getattr(self, disc)
        opt = self.opt_dg if disc == "D_g" else self.opt_df
        with self._autocast():
            loss = discriminator_loss(d(condition, real), d(condition, fake.detach()))
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.dist.average_gradients(d.parameters())
        self.scaler.step(opt)
        self.scaler.update()
        report["D"] = loss.detach()

    def _update(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        # the tap regressors train outside the students' DDP wrappers: averaged across ranks here
        self.dist.average_gradients((self.adapt_g if opt is self.opt_g else self.adapt_f).parameters())
        self.scaler.step(opt)
        self.scaler.update()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One alternating KT iteration: a step of G, then a step of F.

        In G's step F's features are fixed targets; in F's step G's features (from G's forward
        in the same iteration, detached) are. F's forward is run once, before G's update: F's
        weights do not change during G's step, so its taps serve both as G's fixed targets and
        as F's own graph — the same numbers as recomputing them, for one forward less.
        Teachers run without gradients, once per image: their taps of the photo and the sketch
        (flipped or not, as the batch is) serve both students' updates.

        The step's loss terms stay on the device until its end and come back in one transfer
        (:meth:`_read_losses`): one host sync per step, not one per term.
        """
        w = self.weights
        with self._autocast():
            tp, ts = self.teacher(x), self.teacher(y)
            out_g, taps_g = self.run_g(x, return_taps=True)
            out_f, taps_f = self.run_f(y, return_taps=True)
            feats_g = self.teacher.forward_with_grad(out_g) if w.needs_output_features else None
            loss_g, rep_g = student_terms(out_g, y, taps_g, taps_f, tp, ts,
                                              G_TEACHER_PAIRS, True, w, self.adapt_g, feats_g)
            loss_g = self._adversarial(loss_g, rep_g, "D_g", x, out_g)
        self._update(self.opt_g, loss_g)
        self._update_discriminator("D_g", x, y, out_g, rep_g)
        with self._autocast():
            feats_f = self.teacher.forward_with_grad(out_f) if w.needs_output_features else None
            loss_f, rep_f = student_terms(out_f, x, taps_f, taps_g, tp, ts,
                                              F_TEACHER_PAIRS, False, w, self.adapt_f, feats_f)
            loss_f = self._adversarial(loss_f, rep_f, "D_f", y, out_f)
        self._update(self.opt_f, loss_f)
        self._update_discriminator("D_f", y, x, out_f, rep_f)
        for name, avg in self.ema.items():
            avg.update_parameters(getattr(self, name))
        terms = {f"G_{k}": v for k, v in rep_g.items()} | {f"F_{k}": v for k, v in rep_f.items()}
        terms["G_total"], terms["F_total"] = loss_g.detach(), loss_f.detach()
        losses = self._read_losses(terms)
        losses["total"] = losses["G_total"] + losses["F_total"]
        losses = self.dist.mean_losses(losses, self.device)  # the global batch's losses
        for k, v in losses.items():
            if not math.isfinite(v):
                raise SketchStudioError(
                    f"Training diverged at step {self.step + 1}: loss {k} is {v}. Lower the learning "
                    "rate or use fp32 precision; the last checkpoint is intact.")
        return losses

    @staticmethod
    def _read_losses(terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """The step's 0-d loss tensors as Python numbers, in one device-to-host transfer (each
        ``float(t)`` would be a sync of its own, which stalls a GPU's queue every time). The
        values are the float32 numbers ``float(t)`` gives, bit for bit."""
        if not terms:
            return {}
        values = torch.stack([t.float() for t in terms.values()]).tolist()
        return dict(zip(terms, values, strict=True))

    @torch.no_grad()
    def preview(self) -> PreviewEvent:
        """G and F on the first training pair; with ``preview_features``, their taps next to the
        teachers' (fed the real photo and sketch, as in training)."""
        x, y = (t.unsqueeze(0).to(self.device) for t in self.data[0])
        out_g, taps_g = self.G(x, return_taps=True)
        out_f, taps_f = self.F(y, return_taps=True)
        event = PreviewEvent(step=self.step, images={
            "photo": to_image(x), "G(photo)": to_image(out_g),
            "sketch": to_image(y), "F(sketch)": to_image(out_f)})
        if self.preview_features:
            teachers = {"P": self.teacher(x), "S": self.teacher(y)}
            event.features = (transfer_pairs("G", taps_g, teachers, G_TEACHER_PAIRS)
                              + transfer_pairs("F", taps_f, teachers, F_TEACHER_PAIRS))
        return event

    def _modules_to_save(self) -> list[tuple[str, torch.nn.Module]]:
        mods: list[tuple[str, torch.nn.Module]] = [
            ("G", self.G), ("F", self.F), ("adapter.G", self.adapt_g), ("adapter.F", self.adapt_f)]
        if self.gan:
            mods += [("disc.G", self.D_g), ("disc.F", self.D_f)]
        return mods

    def _optimizers(self) -> list[tuple[str, torch.optim.Optimizer]]:
        opts = [("G", self.opt_g), ("F", self.opt_f)]
        if self.gan:
            opts += [("DG", self.opt_dg), ("DF", self.opt_df)]
        return opts

    def save(self) -> Path:
        if not self.dist.is_main:  # rank 0 holds the same weights and writes them
            return self.ckpt_path
        cfg = self.cfg
        tensors: dict[str, torch.Tensor] = {}
        for prefix, net in self._modules_to_save():
            tensors |= student_tensors(prefix, net)
        for name, avg in self.ema.items():
            tensors |= student_tensors(f"{EMA_PREFIX}.{name}", avg.module)
        tensors |= {f"teacher_scale.{t}": s.cpu() for t, s in self.teacher.channel_scales.items()}
        groups: dict[str, list] = {}
        for name, opt in self._optimizers():
            t, groups[name] = _optim_to_tensors(name, opt)
            tensors |= t
        tensors["rng.torch"] = torch.get_rng_state()
        extra = {"optim_groups": groups, "teacher_norm": cfg.teacher_norm}
        if self.ema:
            extra["ema"] = {"decay": cfg.ema_decay, "updates": int(self.ema["G"].n_averaged)}
        meta = ModelMeta(ngf=cfg.ngf, n_blocks=cfg.n_blocks, image_size=cfg.image_size,
                         upsample=cfg.upsample, step=self.step, epoch=self.step // self.steps_per_epoch,
                         train_config=cfg.to_dict(), data=self.data_desc, extra=extra)
        path = save_checkpoint(self.ckpt_path, tensors, meta)
        self._emit(CheckpointEvent(step=self.step, path=str(path)))
        return path

    # ------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        try:
            return self._run()
        except Exception as exc:
            msg = str(exc) if isinstance(exc, SketchStudioError) else f"{type(exc).__name__}: {exc}"
            self._emit(ErrorEvent(step=getattr(self, "step", 0), message=msg))
            raise
        finally:
            lock = getattr(self, "_run_lock", None)
            if lock is not None:  # the folder is free for the next run as soon as this one ends
                lock.release()

    def _run(self) -> TrainResult:
        with keep_freed_memory(self.cfg.keep_host_memory):  # trainer.hostmem: no page-fault storm
            return self._run_kept()

    def _run_kept(self) -> TrainResult:
        self._setup()
        cfg, ctl = self.cfg, self.control
        self._emit(StartEvent(step=self.step, total_steps=self.total_steps,
                              steps_per_epoch=self.steps_per_epoch,
                              device=f"{describe_device(self.device)}, {self.precision}", resumed=self.resumed))
        losses: dict[str, float] = {}
        start = self.step
        epoch_sums: dict[str, float] = {}
        epoch_count = 0
        t_recent: list[float] = []
        log_fh = open(self.out_dir / LOSS_LOG if self.dist.is_main else os.devnull, "a")  # noqa: SIM115
        batches = (Prefetcher if cfg.prefetch else Inline)(self._step_batch, self.total_steps - 1)
        try:
            while self.step < self.total_steps:
                if ctl.paused:
                    self._emit(StateEvent(step=self.step, state="paused"))
                    ctl.wait_while_paused()
                    if not ctl.cancelled:
                        self._emit(StateEvent(step=self.step, state="running"))
                if self.dist.any(ctl.cancelled, self.device):  # every rank stops at the same step
                    break
                epoch, i = divmod(self.step, self.steps_per_epoch)
                t0 = time.perf_counter()
                self._apply_lr_schedule()
                x, y = self._to_device(batches.get(self.step))
                losses = self.train_step(x, y)
                self.step += 1
                dt = time.perf_counter() - t0
                t_recent = (t_recent + [dt])[-50:]
                sec = sum(t_recent) / len(t_recent)
                # lr in every row, so a plot of the log shows where a resume changed it
                # and the step's wall time, so speed survives a resume (the study reports it)
                self._log_row(log_fh, {"step": self.step, "epoch": epoch, **losses,
                                       "lr": self.opt_g.param_groups[0]["lr"], "sec": round(dt, 3)})
                self._emit(StepEvent(step=self.step, total_steps=self.total_steps, epoch=epoch,
                                     losses=losses, sec_per_step=sec,
                                     eta_s=sec * (self.total_steps - self.step)))
                for k, v in losses.items():
                    epoch_sums[k] = epoch_sums.get(k, 0.0) + v
                epoch_count += 1
                if self.step % cfg.preview_every == 0:
                    self._emit(self.preview())
                if self.step % self.steps_per_epoch == 0:
                    self._emit(EpochEvent(step=self.step, epoch=epoch,
                                          mean_losses={k: v / epoch_count for k, v in epoch_sums.items()}))
                    epoch_sums, epoch_count = {}, 0
                if self.val_pairs and self.step % cfg.val_every == 0 and self.step < self.total_steps:
                    self.validate()
                if self.step % cfg.checkpoint_every == 0 and self.step < self.total_steps:
                    self.save()
        finally:
            batches.close()
            log_fh.close()
        if self.val_pairs and self.step == self.total_steps and self._last_val_step() != self.step:
            self.validate()  # (a finished run resumed again is not scored twice)
        if self.step == start and self.step < self.total_steps:
            # cancelled before its first step (e.g. Ctrl+C during set-up): nothing new to save,
            # so no step-0 checkpoint appears and an earlier one is left as it was
            cancelled = True
            self._emit(DoneEvent(step=self.step, path=str(self.ckpt_path), cancelled=cancelled))
            return TrainResult(step=self.step, checkpoint=self.ckpt_path, cancelled=cancelled,
                               last_losses={})
        path = self.save()
        cancelled = self.step < self.total_steps
        self._emit(DoneEvent(step=self.step, path=str(path), cancelled=cancelled))
        return TrainResult(step=self.step, checkpoint=path, cancelled=cancelled, last_losses=losses)
