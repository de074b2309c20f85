"""The one checkpoint format: a safetensors file with JSON metadata. No pickle, ever.

A file holds the weights of G (photo→sketch, keys ``G.*``) and/or F (sketch→photo, ``F.*``), the
teacher's per-channel feature scales (``teacher_scale.*``) and, for training checkpoints, the
optimizer state (``optim.*``) and RNG state (``rng.*``). The header's ``__metadata__`` carries
``{"format": "sketchstudio", "format_version": "1", "meta": <JSON>}`` where the JSON describes the
architecture, training config, data and metrics. The same file serves the app, the CLIs and resume.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from . import __version__
from .errors import CheckpointError
from .fsutil import atomic_write_bytes
from .models.student import StudentNet

log = logging.getLogger(__name__)

FORMAT = "sketchstudio"
FORMAT_VERSION = "1"
ARCH = "kt-student"
#: direction name -> tensor prefix
DIRECTIONS = {"photo2sketch": "G", "sketch2photo": "F"}
CHECKPOINT_NAMES = ("checkpoint.safetensors", "model.safetensors")
#: refuse absurd files before reading them into memory (a full training checkpoint is ~300 MB)
MAX_FILE_BYTES = 4 << 30

#: training checkpoints keep weight averages under ``ema.G.*`` / ``ema.F.*`` (trainer --ema-decay)
EMA_PREFIX = "ema"


@dataclass
class ModelMeta:
    """What a checkpoint says about itself (JSON in the safetensors header)."""

    arch: str = ARCH
    ngf: int = 64
    n_blocks: int = 9
    image_size: int = 256
    #: how the decoder doubles resolution: "deconv" (transposed convs, the paper's and every
    #: model before this field) or "resize" (nearest-neighbour ×2 then a 3×3 conv: no checkerboard)
    upsample: str = "deconv"
    step: int = 0
    epoch: int = 0
    train_config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    sketchstudio_version: str = __version__

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Checkpoint:
    tensors: dict[str, torch.Tensor]
    meta: ModelMeta
    path: Path | None = None

    @property
    def directions(self) -> list[str]:
        return [d for d, p in DIRECTIONS.items() if any(k.startswith(p + ".") for k in self.tensors)]

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}

    def teacher_scales(self) -> dict[str, torch.Tensor] | None:
        s = self.prefixed("teacher_scale")
        return s or None


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """A model is a .safetensors file, or a run folder holding checkpoint/model.safetensors."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in CHECKPOINT_NAMES:
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"Folder '{p}' holds no {' or '.join(CHECKPOINT_NAMES)}.")
    if not p.exists():
        raise CheckpointError(f"Model file not found: '{p}'.")
    return p


def save_checkpoint(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor],
                    meta: ModelMeta) -> Path:
    """Write atomically (temp + rename): a kill mid-write leaves the previous file intact."""
    meta.created = meta.created or datetime.now(UTC).isoformat(timespec="seconds")
    header = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "meta": json.dumps(asdict(meta), sort_keys=True)}
    data = st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=header)
    dest = Path(path)
    atomic_write_bytes(dest, data)
    log.info("Saved checkpoint %s (%.1f MB)", dest, len(data) / 1e6)
    return dest


def read_checkpoint(path: str | os.PathLike[str], check_finite: bool = True) -> Checkpoint:
    """Read and validate a checkpoint; every failure is a :class:`CheckpointError` that says why."""
    p = resolve_path(path)
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"'{p.name}' is {size / 2**30:.1f} GB, too large to be a SketchStudio model.")
    raw = p.read_bytes()
    if raw[8:9] != b"{" and (raw[:4] == b"PK\x03\x04" or (raw[:1] == b"\x80" and raw[1:2] in b"\x02\x03\x04\x05")):
        raise CheckpointError(
            f"'{p.name}' is a pickled PyTorch file. SketchStudio never unpickles model files (they can "
            "run code); convert it to a .safetensors checkpoint.")
    try:
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_len]) if 0 < header_len < len(raw) else None
        tensors = st_load(raw)
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"'{p.name}' is truncated or not a safetensors model file ({exc}).") from exc
    md = (header or {}).get("__metadata__") or {}
    if md.get("format") != FORMAT:
        raise CheckpointError(f"'{p.name}' is a safetensors file but not a SketchStudio model (no "
                              "SketchStudio metadata).")
    if md.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"'{p.name}' has format version {md.get('format_version')!r}; this "
                              f"SketchStudio reads version {FORMAT_VERSION}. Update the app.")
    try:
        meta = ModelMeta.from_dict(json.loads(md["meta"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{p.name}' has unreadable metadata ({exc}).") from exc
    if meta.arch != ARCH:
        raise CheckpointError(f"'{p.name}' holds architecture '{meta.arch}', not '{ARCH}'.")
    if check_finite:
        for k, v in tensors.items():
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise CheckpointError(f"'{p.name}' is damaged: tensor '{k}' contains NaN or inf values.")
    ckpt = Checkpoint(tensors=tensors, meta=meta, path=p)
    if not ckpt.directions:
        raise CheckpointError(f"'{p.name}' holds neither G (photo→sketch) nor F (sketch→photo) weights.")
    return ckpt


def build_student(ckpt: Checkpoint, direction: str) -> StudentNet:
    """Instantiate the student for ``direction`` and load its weights strictly."""
    if direction not in DIRECTIONS:
        raise CheckpointError(f"Unknown direction '{direction}'; use one of {', '.join(DIRECTIONS)}.")
    if direction not in ckpt.directions:
        raise CheckpointError(f"Model '{ckpt.path}' has no {direction} network "
                              f"(it holds: {', '.join(ckpt.directions)}).")
    m = ckpt.meta
    net = StudentNet(ngf=m.ngf, n_blocks=m.n_blocks, upsample=m.upsample)
    sd = ckpt.prefixed(DIRECTIONS[direction])
    expected = net.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [f"{k}: {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or wrong:
        detail = "; ".join(filter(None, [
            f"missing {', '.join(missing[:3])}" + ("…" if len(missing) > 3 else "") if missing else "",
            f"unexpected {', '.join(unexpected[:3])}" + ("…" if len(unexpected) > 3 else "") if unexpected else "",
            f"wrong shapes {', '.join(wrong[:3])}" if wrong else ""]))
        raise CheckpointError(
            f"'{ckpt.path}' does not match the {ARCH} architecture with ngf={m.ngf}, "
            f"n_blocks={m.n_blocks}, upsample={m.upsample} ({detail}). It was made by another model or version.")
    net.load_state_dict({k: v.float() for k, v in sd.items()})
    return net.eval()


def student_tensors(prefix: str, net: torch.nn.Module, dtype: torch.dtype | None = None
                    ) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": (v.to(dtype) if dtype and v.is_floating_point() else v)
            for k, v in net.state_dict().items()}


def export_model(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                 dtype: torch.dtype = torch.float16, metrics: dict[str, Any] | None = None,
                 ema: bool = False) -> Path:
    """Strip a training checkpoint down to what inference needs (weights + teacher scales).

    fp16 halves the size (2 × 11.4 M params ≈ 46 MB) with no visible change in the outputs.
    ``ema``: export the weight average the run kept (:data:`EMA_PREFIX`) as G and F.
    """
    ckpt = read_checkpoint(src)
    tensors = ckpt.tensors
    if ema:
        averaged = {k.removeprefix(f"{EMA_PREFIX}."): v for k, v in tensors.items()
                    if k.startswith((f"{EMA_PREFIX}.G.", f"{EMA_PREFIX}.F."))}
        if not averaged:
            raise CheckpointError(f"'{ckpt.path}' holds no weight average; train with --ema-decay "
                                  "(e.g. 0.999) to keep one, or export without --ema.")
        tensors = {k: v for k, v in tensors.items() if k.startswith("teacher_scale.")} | averaged
    keep = {k: (v.to(dtype) if v.is_floating_point() and not k.startswith("teacher_scale.") else v)
            for k, v in tensors.items()
            if k.split(".", 1)[0] in ("G", "F", "teacher_scale")}
    meta = ckpt.meta
    meta.extra = {k: v for k, v in meta.extra.items() if k != "optim_groups"}
    meta.extra["exported_from"] = str(ckpt.path)
    meta.extra["dtype"] = str(dtype).removeprefix("torch.")
    meta.extra["weights"] = "ema" if ema else "trained"
    if metrics:
        meta.metrics = dict(metrics)
    meta.created = ""
    return save_checkpoint(dst, keep, meta)
