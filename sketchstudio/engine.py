"""Translator: load G and/or F from a checkpoint, translate images, expose feature maps.

The one inference path for the GUI, the CLIs, evaluation and matching. Input is an RGB ``uint8``
array (already aligned to the CUFS geometry, or any crop); the output has the input's size.
CUDA errors (out of memory, missing kernels) fall back to the CPU with a note, instead of failing.

On the CPU, with ``precision="auto"``, an exported runtime (ONNX Runtime / OpenVINO, fp32 or int8;
see :mod:`sketchstudio.runtime`) replaces torch for plain translations once a background
measurement on this machine has shown it to be faster and within 2 grey levels of fp32 torch.
Calls that want feature maps (``return_taps=True``) always run torch: the exported graphs have
only the image output.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import DIRECTIONS, Checkpoint, build_student, read_checkpoint
from .device import autocast, describe_device, is_device_failure, pick_device, resolve_precision
from .errors import CheckpointError, ConfigError
from .imaging import check_rgb, grey_rgb, to_image, to_tensor
from .models import StudentNet, VGGTeacher, load_teacher
from .resources import default_model_path
from .runtime.fastpath import FastPaths
from .threads import use_threads
from .vocab import PHOTO2SKETCH, SKETCH2PHOTO

log = logging.getLogger(__name__)

__all__ = ["PHOTO2SKETCH", "SKETCH2PHOTO", "Translation", "Translator", "load_translator"]


@dataclass
class Translation:
    """Result of one translation: the output image at the input's size, plus optional taps."""

    output: np.ndarray
    direction: str
    taps: dict[str, torch.Tensor] = field(default_factory=dict)  # (C, h, w) float32 on CPU
    input_tensor: torch.Tensor | None = None  # (1, 3, S, S) in [-1, 1]


class Translator:
    """Holds the students of one checkpoint on one device. Thread-safe for concurrent calls.

    ``precision="auto"`` runs bf16 autocast where the hardware does bf16 natively (CUDA, CPUs with
    AVX-512 BF16 or AMX): about 2× faster on such a CPU, at a mean difference of about one grey
    level. Evaluation asks for ``"fp32"`` so scores do not depend on the machine.

    ``fast``: ``"auto"`` (default; ``$SKETCHSTUDIO_FAST`` overrides it) lets a measured, parity-
    checked exported runtime take over plain CPU translations at ``precision="auto"``; ``"off"``
    keeps torch; a path name (``"onnx-int8"``…) forces that path if it passes the parity check.
    Tuning starts in the background after the first plain torch translation of a network big
    enough for it to pay (≥ 2 GFLOP; the shipped one is 99), or when :meth:`prepare_fast_paths`
    is called; it never blocks the caller.
    """

    def __init__(self, model: str | os.PathLike[str] | Checkpoint | None = None,
                 device: str = "auto", teacher_path: str | None = None,
                 precision: str = "auto", fast: str = "auto",
                 fast_cache_dir: str | os.PathLike[str] | None = None) -> None:
        if model is None:
            model = default_model_path()
            if model is None:
                raise CheckpointError(
                    "No model given and no default model is installed. Load a checkpoint "
                    "(--model PATH) or train one with sketchstudio-train.")
        self.ckpt = model if isinstance(model, Checkpoint) else read_checkpoint(model)
        self.model_path = self.ckpt.path
        self.device = pick_device(device)
        self.precision_request = precision
        self.precision = resolve_precision(precision, self.device)
        self.image_size = int(self.ckpt.meta.image_size)
        self.teacher_path = teacher_path
        self.fallback_note: str | None = None
        self._nets: dict[str, StudentNet] = {}
        self._teacher: VGGTeacher | None = None
        self._lock = threading.RLock()
        #: intra-op threads for this Translator's work, applied in whichever thread calls it
        #: (None: leave that thread's count alone); the app lowers it while training runs
        self.threads: int | None = None
        self.fast = FastPaths(self.ckpt, mode=fast,
                              cache_root=Path(fast_cache_dir) if fast_cache_dir else None,
                              lock=self._lock)

    # --------------------------------------------------------------------------------------
    @property
    def directions(self) -> list[str]:
        return self.ckpt.directions

    @property
    def device_name(self) -> str:
        return describe_device(self.device)

    @property
    def describe(self) -> str:
        """Device and precision, e.g. "CPU (2 threads), bf16" or "CPU (2 threads), fp32, ONNX
        Runtime int8" once a fast path runs, for status lines."""
        fast = self.fast.describe()
        return f"{self.device_name}, {self.precision}" + (f", {fast}" if fast else "")

    @property
    def fast_eligible(self) -> bool:
        """Fast paths replace torch only on the CPU and only at ``precision="auto"``: an explicit
        fp32/bf16 request (evaluation, reports) gets exactly that, from torch."""
        return self.fast.enabled and self.device.type == "cpu" and self.precision_request == "auto"

    def set_threads(self, n: int | None) -> None:
        """Use ``n`` intra-op threads from the next call on, torch and exported runtimes alike
        (see :mod:`sketchstudio.runtime.threads`); safe to call from any thread."""
        self.threads = None if n is None else max(1, int(n))

    def _apply_threads(self) -> None:
        if self.threads is not None:
            use_threads(self.threads)

    def _torch_forward(self, direction: str):
        """The torch path as translate runs it (device, autocast), for the tuner to time."""
        def fwd(x: torch.Tensor) -> torch.Tensor:
            net = self.net(direction)
            with torch.inference_mode(), autocast(self.precision, self.device):
                return net(x.to(self.device)).float().cpu()
        return fwd

    def prepare_fast_paths(self, directions: list[str] | None = None):
        """Start tuning now (e.g. right after loading the model) instead of after the first slow
        translation; returns {direction: Future[Decision]} (empty when not eligible). Returns at
        once: export and measurement run on a background thread."""
        if not self.fast_eligible:
            return {}
        return {d: self.fast.start(d, lambda d=d: self.net(d), self._torch_forward(d),
                                   threads=self.threads)
                for d in (directions or self.directions)}

    def net(self, direction: str) -> StudentNet:
        with self._lock:
            if direction not in self._nets:
                self._nets[direction] = build_student(self.ckpt, direction).to(self.device)
            return self._nets[direction]

    def teacher(self) -> VGGTeacher:
        """The VGG-19 teacher for feature comparisons (raises TeacherUnavailableError if none)."""
        with self._lock:
            if self._teacher is None:
                t = load_teacher(self.teacher_path, allow_download=False, device=self.device)
                t.set_channel_scales(self.ckpt.teacher_scales())
                self._teacher = t
            return self._teacher

    def set_teacher_path(self, path: str | None) -> None:
        """Use another VGG-19 teacher file for feature comparisons (None: the default lookup).

        The loaded teacher is dropped under the lock, so a feature request running in another
        thread finishes with the old one and the next one loads the new file.
        """
        with self._lock:
            self.teacher_path = path or None
            self._teacher = None

    def run(self, fn):
        """Run ``fn()`` (which calls :meth:`net` modules itself) as :meth:`translate` does: under
        the lock, in inference mode, at ``self.precision``, retried once on the CPU after a GPU
        failure. For callers that drive a student on their own tensors (tiled portraits)."""
        return self._run(fn)

    def _fall_back_to_cpu(self, exc: BaseException) -> None:
        self.fallback_note = (f"{self.device_name} failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:120]}); running on the CPU instead.")
        log.warning(self.fallback_note)
        self.device = torch.device("cpu")
        self.precision = resolve_precision(
            "auto" if self.precision_request == "fp16" else self.precision_request, self.device)
        self._nets = {k: v.cpu() for k, v in self._nets.items()}
        if self._teacher is not None:
            self._teacher = self._teacher.cpu()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _run(self, fn):
        """Run ``fn()`` on the current device (autocast at ``self.precision``); on a GPU failure
        retry once on the CPU."""
        def under_autocast():
            with autocast(self.precision, self.device):
                return fn()

        with self._lock, torch.inference_mode():
            self._apply_threads()
            try:
                return under_autocast()
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                if self.device.type == "cpu" or not is_device_failure(exc):
                    raise
                self._fall_back_to_cpu(exc)
                return under_autocast()

    # --------------------------------------------------------------------------------------
    def translate(self, img: np.ndarray, direction: str, return_taps: bool = False,
                  grey_sketch: bool = False) -> Translation:
        """Translate an RGB image; the output is resized back to the input's width × height.

        ``grey_sketch``: photo→sketch outputs become pencil grey (luma in all three channels);
        off by default so evaluation sees the model's own output.
        """
        if direction not in DIRECTIONS:
            raise ConfigError(f"Unknown direction '{direction}'; use {' or '.join(DIRECTIONS)}.")
        img = check_rgb(img)
        h, w = img.shape[:2]
        x = to_tensor(img, self.image_size)

        runner = (self.fast.runner(direction, self.threads)
                  if not return_taps and self.fast_eligible else None)
        if runner is not None:
            try:
                y = torch.from_numpy(runner(x.numpy()))
            except Exception as exc:  # noqa: BLE001 - any runtime failure: back to torch, noted
                self.fast.disable(direction, exc)
                self.fallback_note = self.fast.notes[-1]
            else:
                img_out = to_image(y, w, h)
                if grey_sketch and direction == PHOTO2SKETCH:
                    img_out = grey_rgb(img_out)
                return Translation(output=img_out, direction=direction, input_tensor=x)

        def fwd() -> Translation:
            out, taps = self.net(direction)(x.to(self.device), return_taps=True)
            img_out = to_image(out, w, h)
            if grey_sketch and direction == PHOTO2SKETCH:
                img_out = grey_rgb(img_out)
            return Translation(
                output=img_out, direction=direction, input_tensor=x,
                taps={k: v[0].float().cpu() for k, v in taps.items()} if return_taps else {})

        result = self._run(fwd)
        if not return_taps and self.fast_eligible:
            self.fast.maybe_start(direction, lambda: self.net(direction),
                                  self._torch_forward(direction), threads=self.threads)
        return result

    def teacher_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher taps (scaled as in training) for a (1, 3, S, S) input; (C, h, w) on CPU."""
        def fwd() -> dict[str, torch.Tensor]:
            return {k: v[0].float().cpu() for k, v in self.teacher()(x.to(self.device)).items()}

        return self._run(fwd)


def load_translator(model: str | Path | None = None, device: str = "auto",
                    precision: str = "auto", fast: str = "auto") -> Translator:
    return Translator(model, device=device, precision=precision, fast=fast)
