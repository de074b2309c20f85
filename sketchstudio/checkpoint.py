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
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save as st_save

from . import __version__
from .errors import CheckpointError, OutputError
from .fsutil import atomic_write_bytes
from .models.student import StudentNet
from .vocab import CHECKPOINT_NAMES, DIRECTION_NET, UPSAMPLE_MODES

log = logging.getLogger(__name__)

FORMAT = "sketchstudio"
FORMAT_VERSION = "1"
ARCH = "kt-student"
#: direction name -> tensor prefix (G, F)
DIRECTIONS = DIRECTION_NET
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
    #: channels inside each residual block; 0 is ``4 * ngf`` (the paper's, and every model before
    #: this field). Narrower: a lite student distilled from a full one (trainer.lite)
    block_width: int = 0
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


#: the header is JSON of a few kB per hundred tensors; more than this is not a model's header
MAX_HEADER_BYTES = 16 << 20
#: (type, lowest, highest) of each architecture field: a hostile ``ngf: 1500`` or
#: ``image_size: 20000`` must fail here, not as a multi-GB allocation in StudentNet or cv2.resize
META_INTS: dict[str, tuple[int, int]] = {
    "ngf": (1, 256), "n_blocks": (0, 32), "image_size": (16, 1024), "block_width": (0, 1024),
    "step": (0, 10**12), "epoch": (0, 10**9)}
META_DICTS = ("train_config", "data", "metrics", "extra")
META_STRS = ("arch", "created", "sketchstudio_version")


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read only the safetensors header of ``path``: (tensor table, ``__metadata__``).

    Reads 8 bytes plus the header (a few kB), never the tensors, so looking at a multi-GB file costs
    nothing; refuses pickles, truncated files and headers that do not describe the file.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(8)
            if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
                raise CheckpointError(
                    f"'{p.name}' is a pickled PyTorch file. SketchStudio never unpickles model files "
                    "(they can run code); convert it to a .safetensors checkpoint.")
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            if not 2 <= n <= min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(f"'{p.name}' is truncated or not a safetensors model file "
                                      f"({size} bytes, header length {n}).")
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"Cannot read '{p}': {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"'{p.name}' is truncated or not a safetensors model file "
                              f"(unreadable header: {exc}).") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"'{p.name}' is not a safetensors model file (its header is not a table).")
    md = header.pop("__metadata__", None) or {}
    if not isinstance(md, dict):
        raise CheckpointError(f"'{p.name}' has unreadable metadata (not a table).")
    end = 0
    for k, v in header.items():
        ok = (isinstance(v, dict) and isinstance(v.get("shape"), list)
              and all(isinstance(d, int) and d >= 0 for d in v["shape"])
              and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2
              and all(isinstance(o, int) for o in v["data_offsets"]))
        if not ok:
            raise CheckpointError(f"'{p.name}' is damaged: the header entry of tensor '{k}' is malformed.")
        end = max(end, v["data_offsets"][1])
    if 8 + n + end > size:
        raise CheckpointError(f"'{p.name}' is truncated: its header describes {8 + n + end} bytes, "
                              f"the file has {size}.")
    return header, md


def _int_field(d: dict[str, Any], key: str, name: str) -> None:
    v = d[key]
    lo, hi = META_INTS[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise CheckpointError(f"'{name}' has invalid metadata: {key} must be a whole number, "
                              f"got {v!r}.")
    if not lo <= v <= hi:
        raise CheckpointError(f"'{name}' has invalid metadata: {key}={v} is outside {lo}..{hi}.")


def validate_meta(d: Any, name: str) -> ModelMeta:
    """Check every known metadata field's type and range before anything is built from it.

    Unknown fields are ignored (newer files stay readable); a field a newer :class:`ModelMeta`
    gains is checked here as soon as it has a rule (``upsample``: one of the student's modes).
    """
    if not isinstance(d, dict):
        raise CheckpointError(f"'{name}' has unreadable metadata (a {type(d).__name__}, not a table).")
    for key in META_INTS:
        if key in d:
            _int_field(d, key, name)
    if d.get("image_size", 256) % 4:
        raise CheckpointError(f"'{name}' has invalid metadata: image_size={d['image_size']} is not "
                              "divisible by 4 (the student halves it twice).")
    for key in META_DICTS:
        if key in d and not isinstance(d[key], dict):
            raise CheckpointError(f"'{name}' has invalid metadata: {key} must be a table, "
                                  f"got {type(d[key]).__name__}.")
    for key in META_STRS:
        if key in d and not isinstance(d[key], str):
            raise CheckpointError(f"'{name}' has invalid metadata: {key} must be text, got {d[key]!r}.")
    if "upsample" in d and (not isinstance(d["upsample"], str) or d["upsample"] not in UPSAMPLE_MODES):
        raise CheckpointError(f"'{name}' has invalid metadata: upsample={d['upsample']!r}; this "
                              f"SketchStudio knows {', '.join(UPSAMPLE_MODES)}.")
    return ModelMeta.from_dict(d)


def expected_shapes(meta: ModelMeta) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the student ``meta`` describes, built on the meta device (no memory)."""
    kwargs: dict[str, Any] = {"ngf": meta.ngf, "n_blocks": meta.n_blocks,
                              "upsample": meta.upsample, "block_width": meta.block_width}
    with torch.device("meta"):
        net = StudentNet(**kwargs)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _mismatch(have: dict[str, tuple[int, ...]], want: dict[str, tuple[int, ...]]) -> str:
    """How weight shapes ``have`` differ from ``want`` (up to three names of each kind), or "".

    One wording for the header check and for :func:`build_student`, which also sees in-memory
    checkpoints (the trainer's) that no header check has seen.
    """
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    wrong = [f"{k}: {have[k]} vs {want[k]}" for k in want if k in have and have[k] != want[k]]

    def first3(names: list[str]) -> str:
        return ", ".join(names[:3]) + ("…" if len(names) > 3 else "")

    return "; ".join(part for part in (
        f"missing {first3(missing)}" if missing else "",
        f"unexpected {first3(unexpected)}" if unexpected else "",
        f"wrong shapes {', '.join(wrong[:3])}" if wrong else "") if part)


def _arch_words(meta: ModelMeta) -> str:
    """The architecture fields as an error message names them."""
    return (f"ngf={meta.ngf}, n_blocks={meta.n_blocks}, upsample={meta.upsample}"
            + (f", block_width={meta.block_width}" if meta.block_width else ""))


def _check_shapes(header: dict[str, Any], meta: ModelMeta, name: str) -> None:
    """The tensors of G/F (and their weight averages) must be exactly what the metadata says."""
    want = expected_shapes(meta)
    arch = _arch_words(meta)
    for prefix in ("G", "F", f"{EMA_PREFIX}.G", f"{EMA_PREFIX}.F"):
        head = prefix + "."
        have = {k[len(head):]: tuple(v["shape"]) for k, v in header.items() if k.startswith(head)}
        if not have:
            continue
        detail = _mismatch(have, want)
        if detail:
            raise CheckpointError(
                f"'{name}' does not match the {ARCH} architecture with {arch} its metadata "
                f"describes ({prefix} weights: {detail}). It was made by another model or version.")


def optim_groups(ckpt: Checkpoint, prefix: str) -> list[dict[str, Any]]:
    """The saved Adam param groups of ``prefix`` ("G"/"F"), for resuming its optimizer state.

    A file can hold the state without them (hand-made, or an old tool's); such a file is still a
    fine model, but resuming it must say so instead of failing with a ``KeyError``.
    """
    groups = ckpt.meta.extra.get("optim_groups")
    g = groups.get(prefix) if isinstance(groups, dict) else None
    if not (isinstance(g, list) and g and all(isinstance(x, dict) and "lr" in x and "betas" in x
                                              for x in g)):
        raise CheckpointError(
            f"'{ckpt.path}' holds optimizer state for {prefix} but not its settings (optim_groups), "
            "so it cannot be resumed. Start a new run from its weights with --init-from instead.")
    return g


def read_checkpoint(path: str | os.PathLike[str], check_finite: bool = True) -> Checkpoint:
    """Read and validate a checkpoint; every failure is a :class:`CheckpointError` that says why.

    The header is read and checked first (format, metadata types and ranges, tensor shapes
    against the metadata); only then are the tensors loaded.
    """
    p = resolve_path(path)
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"'{p.name}' is {size / 2**30:.1f} GB, too large to be a SketchStudio model.")
    header, md = read_header(p)
    if md.get("format") != FORMAT:
        raise CheckpointError(f"'{p.name}' is a safetensors file but not a SketchStudio model (no "
                              "SketchStudio metadata).")
    if md.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"'{p.name}' has format version {md.get('format_version')!r}; this "
                              f"SketchStudio reads version {FORMAT_VERSION}. Update the app.")
    try:
        raw_meta = json.loads(md["meta"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{p.name}' has unreadable metadata ({exc}).") from exc
    meta = validate_meta(raw_meta, p.name)
    if meta.arch != ARCH:
        raise CheckpointError(f"'{p.name}' holds architecture '{meta.arch}', not '{ARCH}'.")
    _check_shapes(header, meta, p.name)
    try:
        tensors = st_load_file(p)  # memory-mapped: no second copy of the whole file in memory
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(
            f"'{p.name}' is truncated or not a safetensors model file ({exc}).") from exc
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
    net = StudentNet(ngf=m.ngf, n_blocks=m.n_blocks, upsample=m.upsample,
                     block_width=m.block_width)
    sd = ckpt.prefixed(DIRECTIONS[direction])
    detail = _mismatch({k: tuple(v.shape) for k, v in sd.items()},
                       {k: tuple(v.shape) for k, v in net.state_dict().items()})
    if detail:
        raise CheckpointError(
            f"'{ckpt.path}' does not match the {ARCH} architecture with {_arch_words(m)} "
            f"({detail}). It was made by another model or version.")
    net.load_state_dict({k: v.float() for k, v in sd.items()})
    return net.eval()


def student_tensors(prefix: str, net: torch.nn.Module, dtype: torch.dtype | None = None
                    ) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": (v.to(dtype) if dtype and v.is_floating_point() else v)
            for k, v in net.state_dict().items()}


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def check_export_target(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Refuse an export that would destroy a training checkpoint.

    ``sketchstudio-export runs/x runs/x/checkpoint.safetensors`` used to replace the checkpoint
    being read with the fp16 model, after which ``--resume`` went on silently without Adam state.
    The target may be neither the source itself (or a link to it) nor any other file holding
    optimizer state; a folder is refused too (the model needs a file name).
    """
    src_path = resolve_path(src)
    dest = Path(dst).expanduser()
    if dest.is_dir():
        raise OutputError(f"'{dest}' is a folder; give the model's file name, e.g. "
                          f"'{dest / 'model.safetensors'}'.")
    if not dest.exists():
        return
    if _same_file(src_path, dest):
        raise OutputError(
            f"Refusing to export '{src_path}' onto itself: that would replace the training checkpoint "
            "(weights, Adam and RNG state) with the compact model. Choose another output file.")
    try:
        header, _ = read_header(dest)
    except CheckpointError:
        return  # not a model file: an ordinary overwrite of the file the user named
    if any(k.startswith("optim.") for k in header):
        raise OutputError(
            f"'{dest}' is a training checkpoint (it holds the optimizer state --resume needs); "
            "exporting onto it would destroy that. Choose another output file.")


def export_model(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                 dtype: torch.dtype = torch.float16, metrics: dict[str, Any] | None = None,
                 ema: bool = False) -> Path:
    """Strip a training checkpoint down to what inference needs (weights + teacher scales).

    fp16 halves the size (2 × 11.4 M params ≈ 46 MB) with no visible change in the outputs.
    ``ema``: export the weight average the run kept (:data:`EMA_PREFIX`) as G and F. Refuses a
    target that is the source or another training checkpoint (:func:`check_export_target`).
    """
    check_export_target(src, dst)
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
