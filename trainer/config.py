"""TrainConfig: one options object drives training, resume, the CLI and the GUI's train view.

Defaults are the paper's (METHOD.md): Adam lr 2e-4, β1 0.5, 200 epochs, batch 1, 256², ngf 64,
9 blocks, loss weights 1/1/1. Every option is stated once, here: its type, default, command-line
flag and help text (field metadata). ``sketchstudio-train``'s parser is generated from these fields,
so a new option is a new field and nothing else. Values from a YAML/JSON file or a form are coerced
per field type (``lr: 1e-4``, which YAML 1.1 reads as a string, works) and every bad value is a
:class:`ConfigError` naming the key. ``validate`` then checks ranges with messages a user can act on.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from sketchstudio.device import PRECISIONS
from sketchstudio.errors import ConfigError

from .choices import (
    LR_SCHEDULES,
    REC_LOSSES,
    STU_COMPARES,
    TAP_COMPARES,
    TEACHER_NORMS,
    UPSAMPLE_MODES,
)


def _opt(default: Any, flag: str | None, help: str = "", **arg: Any) -> Any:
    """A config field with its command-line flag (``None``: not a flag) and help text."""
    kw: dict[str, Any] = {"default_factory": default} if callable(default) else {"default": default}
    return field(metadata={"flag": flag, "help": help, "arg": arg}, **kw)


@dataclass
class TrainConfig:
    data_dir: str = _opt("", "--data", "paired folder: photos/ + sketches/ (same file names), a "
                         "MANIFEST.tsv folder, or a flat folder of name.jpg + name-sz1.jpg")
    out_dir: str = _opt("", "--out", "run folder for checkpoint.safetensors, "
                        "losses.jsonl and config.yaml")
    epochs: int = _opt(200, "--epochs", "passes over the training pairs")
    #: stop after this many steps even if the epochs are not done (0 = the epochs decide): the
    #: study runner's equal budget; the lr schedule decays over this shorter run
    max_steps: int = _opt(0, "--max-steps", "stop after this many steps (0 = run all epochs)")
    image_size: int = _opt(256, "--size", "training image size (divisible by 4)")
    ngf: int = _opt(64, "--ngf", "student width")
    n_blocks: int = _opt(9, "--blocks", "SE residual blocks")
    upsample: str = _opt("deconv", "--upsample", "decoder upsampling: deconv (the paper's "
                         "transposed convs) or resize (nearest ×2 + conv, no checkerboard)",
                         choices=UPSAMPLE_MODES)
    batch_size: int = _opt(1, "--batch-size", "pairs per step (the paper: 1)")
    lr: float = _opt(2e-4, "--lr", "Adam learning rate")
    lr_schedule: str = _opt("constant", "--lr-schedule", "constant, or linear: constant for the "
                            "first half of the run, then linear decay to 0", choices=LR_SCHEDULES)
    beta1: float = _opt(0.5, "--beta1", "Adam β1")
    beta2: float = _opt(0.999, "--beta2", "Adam β2")
    #: weights of L_tea-stu, L_stu-stu, L_rec (set one to 0 for the paper's ablation)
    loss_weights: tuple[float, float, float] = _opt(
        (1.0, 1.0, 1.0), "--loss-weights", "tea-stu,stu-stu,rec weights, e.g. 0,0,1")
    tap_compare: str = _opt("mse", "--tap-compare", "how student taps are compared with the "
                            "teacher's: mse (literal), standardised, cosine, regressor",
                            choices=TAP_COMPARES)
    stu_compare: str = _opt("mse", "--stu-compare", "how G's and F's taps are compared with each "
                            "other (regressor is not available here)",
                            choices=STU_COMPARES)
    rec_loss: str = _opt("l2", "--rec-loss", "reconstruction distance: l2 (the paper's) or l1",
                         choices=REC_LOSSES)
    #: output-space texture terms through the frozen teacher (0 = off): Gram matrices (Gatys) and
    #: feature distance (Johnson) between the teacher's taps of the output and of the target
    style_weight: float = _opt(0.0, "--style-weight", "Gram-matrix texture loss on the output "
                               "through the teacher (0 = off)")
    perceptual_weight: float = _opt(0.0, "--perceptual-weight", "teacher feature distance "
                                    "between output and target (0 = off)")
    #: conditional PatchGAN term per student (trainer.adversarial; pix2pix uses 1 next to L1 × 100)
    gan_weight: float = _opt(0.0, "--gan-weight", "adversarial PatchGAN term on each student's "
                             "output (0 = off)")
    #: "auto": bf16 autocast on CUDA and on CPUs with native bf16 (AVX-512 BF16/AMX), else fp32
    precision: str = _opt("auto", "--precision", "auto: bf16 on CUDA and on CPUs with native "
                          "bf16, else fp32", choices=PRECISIONS)
    device: str = _opt("auto", "--device", "auto | cpu | cuda | mps")
    #: build the next step's batch in a background thread during this step (the same batches
    #: either way: they come from seeded generators, never the global RNG; trainer.prefetch)
    prefetch: bool = _opt(True, "--prefetch", "prepare the next batch in a background thread "
                          "(--no-prefetch: on the training thread)")
    #: keep freed host memory in the heap between steps instead of giving it back to the system
    #: (glibc only; trainer.hostmem: about a tenth of a 256² ngf 64 CPU step was page faults)
    keep_host_memory: bool = _opt(True, "--keep-host-memory", "reuse freed host memory from step "
                                  "to step (glibc; --no-keep-host-memory: return it to the system)")
    seed: int = _opt(0, "--seed", "random seed (initial weights, pair order, flips)")
    teacher_path: str | None = _opt(None, "--teacher", "VGG-19 weights (.pth/.safetensors); else "
                                    "$SKETCHSTUDIO_TEACHER or torchvision's")
    teacher_norm: str = _opt("channel_mean", "--teacher-norm", "divide each teacher channel by "
                             "its mean over the training images (none: raw VGG features)",
                             choices=TEACHER_NORMS)
    #: images used to estimate the teacher's per-channel means (0 = all)
    teacher_norm_samples: int = _opt(64, "--teacher-norm-samples",
                                     "images used for the teacher's channel means (0 = all)")
    #: random horizontal flips of each pair (a choice beyond the paper: faces are ~symmetric)
    hflip: bool = _opt(True, "--flip", "random horizontal flips of each pair (--no-flip: off)")
    #: random crops of a 1/8 larger resize (the same crop for photo and sketch) and mild colour
    #: jitter on photos (brightness, contrast, saturation ±10 %): more faces from 241 pairs
    augment: bool = _opt(False, "--augment", "random crops of a slightly larger resize and colour "
                         "jitter on photos (--no-augment: off)")
    #: decay of an exponential moving average of G's and F's weights, kept beside them in the
    #: checkpoint (0 = off). Batch-1 training leaves single checkpoints noisy: twelve checkpoints
    #: of the CUFS run scored 0.692–0.729 sketch FSIM (mean 0.712); averages of their weights
    #: scored 0.714–0.724 (MODEL_CARD.md). 0.999 averages ≈ the last 1,000 steps.
    ema_decay: float = _opt(0.0, "--ema-decay", "keep an exponential moving average of the "
                            "weights, e.g. 0.999 (0 = off); export it with sketchstudio-export --ema")
    checkpoint_every: int = _opt(200, "--checkpoint-every", "steps between checkpoints (a kill "
                                 "loses at most this many)")
    preview_every: int = _opt(50, "--preview-every", "steps between preview images")
    #: validation pairs held out of the training pairs: a file of stems (one per line) or
    #: "cufs" for the split shipped in trainer/splits/cufs_val.txt
    val: str | None = _opt(None, "--val", "hold out these pairs for validation: a stems file "
                           "or 'cufs' (the shipped CUFS split); scored every --val-every steps")
    val_every: int = _opt(200, "--val-every", "steps between validation scores (with --val)")
    align: bool = _opt(False, "--align", "align faces by eye centres (for unaligned sets)")
    split: str | None = _opt(None, "--split", "with a MANIFEST.tsv folder: which rows, e.g. "
                             "train or train,subset=cuhk")
    extra: dict[str, Any] = _opt(dict, None)

    @property
    def w_tea(self) -> float:
        return float(self.loss_weights[0])

    @property
    def w_stu(self) -> float:
        return float(self.loss_weights[1])

    @property
    def w_rec(self) -> float:
        return float(self.loss_weights[2])

    def validate(self) -> TrainConfig:
        def bad(msg: str) -> None:
            raise ConfigError(msg)

        for f in fields(self):  # values set in code (GUI, tests) get the same type checks as files
            setattr(self, f.name, coerce_field(f.name, getattr(self, f.name)))
        if not self.data_dir:
            bad("No training data folder given (--data DIR).")
        if not self.out_dir:
            bad("No run folder given (--out DIR).")
        if self.epochs < 1:
            bad(f"epochs must be a positive whole number, got {self.epochs!r}.")
        if self.image_size < 16 or self.image_size % 4:
            bad(f"image size must be divisible by 4 and at least 16 (e.g. 256), got {self.image_size}.")
        if self.image_size > 1024:
            bad(f"image size {self.image_size} is too large (max 1024).")
        if self.ngf < 1 or self.ngf > 256:
            bad(f"width (ngf) must be between 1 and 256, got {self.ngf}.")
        if self.n_blocks < 0 or self.n_blocks > 32:
            bad(f"residual blocks must be between 0 and 32, got {self.n_blocks}.")
        if self.batch_size < 1:
            bad(f"batch size must be at least 1, got {self.batch_size}.")
        if not 0 < self.lr < 1:
            bad(f"learning rate must be in (0, 1), got {self.lr}.")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            bad(f"Adam betas must be in [0, 1), got {self.beta1}, {self.beta2}.")
        if any(w < 0 for w in self.loss_weights):
            bad(f"loss weights must be three non-negative numbers (tea-stu, stu-stu, rec), got "
                f"{self.loss_weights}.")
        if not any(self.loss_weights):
            bad("at least one loss weight must be positive.")
        for name in ("style_weight", "perceptual_weight", "gan_weight"):
            if getattr(self, name) < 0:
                bad(f"{name} must be ≥ 0 (0 = off), got {getattr(self, name)}.")
        choices = {"precision": PRECISIONS, "teacher_norm": TEACHER_NORMS, "upsample": UPSAMPLE_MODES,
                   "tap_compare": TAP_COMPARES, "rec_loss": REC_LOSSES, "lr_schedule": LR_SCHEDULES,
                   "stu_compare": STU_COMPARES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                bad(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}.")
        if not 0 <= self.ema_decay < 1:
            bad(f"EMA decay must be in [0, 1) (0 = off; e.g. 0.999), got {self.ema_decay}.")
        if self.checkpoint_every < 1 or self.preview_every < 1 or self.val_every < 1:
            bad("checkpoint, preview and validation intervals must be at least 1 step.")
        if self.max_steps < 0:
            bad(f"max_steps must be ≥ 0 (0 = run all epochs), got {self.max_steps}.")
        if self.teacher_norm_samples < 0:
            bad("teacher_norm_samples must be ≥ 0.")
        return self

    # --- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss_weights"] = list(self.loss_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (a file, a checkpoint's metadata), coercing each value by type."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"Unknown config keys: {', '.join(unknown)}.")
        return cls(**coerce_fields(d))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(read_config_file(path))

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=True)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The option → value mapping of a YAML/JSON config file (values not yet coerced)."""
    p = Path(path)
    try:
        text = p.read_text()
        d = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Cannot read config '{p}': {exc}") from exc
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"Config '{p}' must be a mapping of option: value.")
    return d


_HINTS: dict[str, Any] = {}


def field_types() -> dict[str, Any]:
    """TrainConfig's field name → resolved type annotation (the source of every coercion)."""
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    return _HINTS


def coerce_fields(d: dict[str, Any]) -> dict[str, Any]:
    return {k: coerce_field(k, v) for k, v in d.items()}


def _whole(name: str, v: Any) -> int:
    if isinstance(v, bool):
        raise ConfigError(f"{name} must be a whole number, got {v!r}.")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            pass
    raise ConfigError(f"{name} must be a whole number, got {v!r}.")


def _number(name: str, v: Any) -> float:
    if isinstance(v, bool):
        raise ConfigError(f"{name} must be a number, got {v!r}.")
    if isinstance(v, int | float):
        out = float(v)
    elif isinstance(v, str):
        try:
            out = float(v.strip())  # YAML 1.1 reads 1e-4 (no dot) as a string
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {v!r}.") from None
    else:
        raise ConfigError(f"{name} must be a number, got {v!r}.")
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be a finite number, got {v!r}.")
    return out


def _flag(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return v.strip().lower() in ("true", "yes", "on", "1")
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise ConfigError(f"{name} must be true or false, got {v!r}.")


def coerce_field(name: str, v: Any) -> Any:
    """``v`` as the type of TrainConfig field ``name``, or a ConfigError that names the key."""
    typ = field_types().get(name)
    if typ is None:
        raise ConfigError(f"Unknown config key: {name}.")
    optional = isinstance(typ, types.UnionType) and type(None) in typing.get_args(typ)
    if optional:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    if typ is int:
        return _whole(name, v)
    if typ is float:
        return _number(name, v)
    if typ is bool:
        return _flag(name, v)
    if typ is str:
        if not isinstance(v, str):
            raise ConfigError(f"{name} must be text, got {v!r}.")
        return v
    if typing.get_origin(typ) is tuple:  # loss_weights
        parts = [p.strip() for p in v.split(",")] if isinstance(v, str) else v
        if not isinstance(parts, list | tuple) or len(parts) != len(typing.get_args(typ)):
            raise ConfigError(f"{name} takes three numbers (tea-stu, stu-stu, rec) like 1,1,1; "
                              f"got {v!r}.")
        return tuple(_number(name, p) for p in parts)
    if typing.get_origin(typ) is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"{name} must be a mapping, got {v!r}.")
        return dict(v)
    raise ConfigError(f"{name}: unsupported type {typ}.")  # pragma: no cover - a new field's type


def field_default(name: str) -> Any:
    f = next(f for f in fields(TrainConfig) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
