"""TrainConfig: one options object drives training, resume, the CLI and the GUI's train view.

Defaults are the paper's (METHOD.md): Adam lr 2e-4, β1 0.5, 200 epochs, batch 1, 256², ngf 64,
9 blocks, loss weights 1/1/1. ``validate`` rejects bad values with messages a user can act on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from sketchstudio.device import PRECISIONS
from sketchstudio.errors import ConfigError

TEACHER_NORMS = ("channel_mean", "none")


@dataclass
class TrainConfig:
    data_dir: str = ""
    out_dir: str = "runs/default"
    epochs: int = 200
    image_size: int = 256
    ngf: int = 64
    n_blocks: int = 9
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    #: weights of L_tea-stu, L_stu-stu, L_rec (set one to 0 for the paper's ablation)
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: "auto": bf16 autocast on CUDA and on CPUs with native bf16 (AVX-512 BF16/AMX), else fp32
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    teacher_path: str | None = None
    teacher_norm: str = "channel_mean"
    #: images used to estimate the teacher's per-channel means (0 = all)
    teacher_norm_samples: int = 64
    #: random horizontal flips of each pair (a choice beyond the paper: faces are ~symmetric)
    hflip: bool = True
    #: decay of an exponential moving average of G's and F's weights, kept beside them in the
    #: checkpoint (0 = off). Batch-1 training leaves single checkpoints noisy: twelve checkpoints
    #: of the CUFS run scored 0.692–0.729 sketch FSIM (mean 0.712); averages of their weights
    #: scored 0.714–0.724 (MODEL_CARD.md). 0.999 averages ≈ the last 1,000 steps.
    ema_decay: float = 0.0
    checkpoint_every: int = 200
    preview_every: int = 50
    align: bool = False
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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

        if not self.data_dir:
            bad("No training data folder given (--data DIR).")
        if not isinstance(self.epochs, int) or self.epochs < 1:
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
        if len(self.loss_weights) != 3 or any(w < 0 for w in self.loss_weights):
            bad(f"loss weights must be three non-negative numbers (tea-stu, stu-stu, rec), got "
                f"{self.loss_weights}.")
        if not any(self.loss_weights):
            bad("at least one loss weight must be positive.")
        if self.precision not in PRECISIONS:
            bad(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if self.teacher_norm not in TEACHER_NORMS:
            bad(f"teacher_norm must be one of {', '.join(TEACHER_NORMS)}, got {self.teacher_norm!r}.")
        if not 0 <= self.ema_decay < 1:
            bad(f"EMA decay must be in [0, 1) (0 = off; e.g. 0.999), got {self.ema_decay}.")
        if self.checkpoint_every < 1 or self.preview_every < 1:
            bad("checkpoint and preview intervals must be at least 1 step.")
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
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"Unknown config keys: {', '.join(unknown)}.")
        d = dict(d)
        if "loss_weights" in d:
            d["loss_weights"] = tuple(float(w) for w in d["loss_weights"])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        p = Path(path)
        try:
            text = p.read_text()
            d = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (OSError, yaml.YAMLError, json.JSONDecodeError) as exc:
            raise ConfigError(f"Cannot read config '{p}': {exc}") from exc
        if not isinstance(d, dict):
            raise ConfigError(f"Config '{p}' must be a mapping of option: value.")
        return cls.from_dict(d)

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=True)


def parse_loss_weights(text: str) -> tuple[float, float, float]:
    """'1,1,1' -> (1.0, 1.0, 1.0) with a clear error for anything else."""
    parts = [p.strip() for p in text.split(",")]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--loss-weights takes three numbers like 1,1,1; got '{text}'.") from None
    if len(vals) != 3:
        raise ConfigError(f"--loss-weights takes three numbers (tea-stu, stu-stu, rec); got '{text}'.")
    return vals  # type: ignore[return-value]
