"""Choose, per machine and model, whether an exported runtime beats the torch path, and use it.

The flow for one direction (G or F) of one model, run on a background thread so that neither the
GUI thread nor the worker that translates ever waits for it:

1. The decision cache (``<cache>/fast-paths/decisions/<machine>-<model>-<direction>.json``)
   answers at once when this machine has already measured this model.
2. Otherwise the student is exported once into ``<cache>/fast-paths/<model>-<direction>-<S>/``
   (fp32 ONNX, then int8 QDQ calibrated on training images), every runtime that is installed is
   loaded, and each one is timed against the torch path on a few images while its output is
   compared with fp32 torch (mean absolute difference in 0..255 grey levels).
3. The fastest path that is at least :data:`SPEEDUP_MARGIN` faster than torch *and* within
   :data:`PARITY_MAX_GREY` grey levels wins; if none does, torch stays. The decision is cached.

Where the work runs (issue 23: the UI thread never blocks for more than 50 ms): the Tuner runs on
that background thread of the app, holding the Translator's lock around each timed forward so a
measurement never shares the cores with a translation. Everything that runs long native code
holding the GIL runs in child processes instead: the exports and the int8 quantisation
(:mod:`.onnx_export`: importing onnx alone froze the UI for 2.8 s) and the runners themselves
(:mod:`.remote`: importing onnxruntime / openvino and compiling a model stalled the UI thread
60-132 ms even from a background thread). So the app process never imports onnx, onnxruntime or
openvino; :func:`missing_packages` asks ``find_spec`` and :func:`runtime_versions` reads package
metadata. The timings of a child's runner include the round trip through its pipes, which is
honest: that is what the app then pays per translation (a 256² image: 3.5-8 ms more than
in-process on the loaded 2-core test machine, against 0.5-5 s for the shipped model's forward).
Frozen bundles (no ``python -m`` child, :func:`~.onnx_export.can_isolate`) export and run
in-process; so do tests that patch the runtimes (:data:`ISOLATE_RUNNERS`).

``<model>`` is the SHA-256 of the model file (of its tensors when it has no file), so a retrained
or replaced model gets its own exports; ``<machine>`` hashes the CPU model and flags, the thread
count and the versions of torch and of the runtimes, so an upgrade measures again.

Missing packages, a failed export or a runtime error all leave the torch path in place with a
note (:attr:`FastPaths.notes`) instead of failing a translation.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import platform
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import DIRECTIONS, Checkpoint, build_student
from ..errors import ConfigError
from ..fsutil import TEMP_SUFFIX, atomic_write_json
from ..threads import use_threads
from ..userdirs import user_cache_dir
from . import isa
from .backends import BackendMissing, Runner, runner_class, runtime_versions
from .lite import find_lite
from .onnx_export import (
    ExportError,
    can_isolate,
    export_fp32,
    export_fp32_isolated,
    quantize_int8,
    quantize_int8_isolated,
    stop_children,
)
from .remote import RemoteRunner, close_runner

log = logging.getLogger(__name__)

#: the exported paths, in the order they are tried
#: "-lite": the int8 export of the model's lite companion (narrower residual blocks distilled
#: from it, :mod:`.lite`); tried only where one exists for this very model, and judged, like every
#: path, against the full model's fp32 output
BACKEND_NAMES = ("onnx-fp32", "onnx-int8", "openvino", "openvino-int8", "onnx-int8-lite",
                 "openvino-int8-lite")
LITE_NAMES = tuple(n for n in BACKEND_NAMES if n.endswith("-lite"))
#: what ``mode`` may be: measure and choose, never, or one path by name (still parity-checked)
#: "cached": use a decision made earlier on this machine (by the app, or a run with "auto"), but
#: never export or measure: one-shot command-line runs end in seconds, before a background export
#: could finish, and a process must not exit while one runs native code (it aborts)
MODES = ("auto", "cached", "off", *BACKEND_NAMES)
#: issue 23's acceptance: every fast path within 2 grey levels (mean absolute) of fp32 torch
PARITY_MAX_GREY = 2.0
#: a path must be this much faster than torch to be chosen, so measurement noise cannot pick a
#: path that is not really faster
SPEEDUP_MARGIN = 0.9
#: below this forward cost (GFLOP) an export cannot save a noticeable amount of time, so no
#: tuning is started: the shipped 256² model is 99 GFLOP (~0.5-5 s on a laptop CPU), the tiny
#: test models 0.004 GFLOP. A FLOP count, not a timing, so a loaded machine cannot change it.
MIN_GFLOP = 2.0
N_CALIBRATION, N_PARITY = 4, 3
#: bump when exports or decisions change meaning, so old caches are not trusted
CACHE_VERSION = 1
ENV_MODE = "SKETCHSTUDIO_FAST"
ENV_CALIBRATION = "SKETCHSTUDIO_CALIBRATION_DIR"
#: export and quantise in a child process (see onnx_export: importing onnx holds the GIL for
#: seconds, which froze the app's UI); tests that patch the exporter in-process turn it off
ISOLATE_EXPORTS = True
#: load runners in a child process (:class:`~.remote.RemoteRunner`): importing a runtime and
#: compiling a model hold the GIL (60-132 ms UI stalls); tests that patch the runner classes in
#: this process turn it off
ISOLATE_RUNNERS = True
#: temp files of exports killed halfway are deleted after this long
STALE_TEMP_S = 3600.0

_INSTALL_HINT = "install the optional runtimes with: pip install 'sketchstudio[fast]'"


class FastPathUnavailable(RuntimeError):
    """No exported path can run here (runtimes missing, export failed); the message says why."""


# ------------------------------------------------------------------------------------------------
def grey_level_diff(ref: np.ndarray | torch.Tensor, out: np.ndarray | torch.Tensor) -> float:
    """Mean absolute difference of two network outputs in [-1, 1], in 0..255 grey levels after
    the same rounding :func:`~sketchstudio.imaging.to_image` applies (what a user would see)."""
    a = np.asarray(ref.detach().float().cpu() if isinstance(ref, torch.Tensor) else ref, np.float32)
    b = np.asarray(out.detach().float().cpu() if isinstance(out, torch.Tensor) else out, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"outputs differ in shape: {a.shape} vs {b.shape}")

    def u8(v: np.ndarray) -> np.ndarray:
        return np.round((np.clip(v, -1, 1) + 1.0) * 127.5)

    return float(np.abs(u8(a) - u8(b)).mean())


_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) for the life of the process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASHES:
            return _HASHES[key]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    with _HASH_LOCK:
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def model_key(ckpt: Checkpoint, direction: str) -> str:
    """What the exports of ``direction`` depend on: the model file's hash (its tensors' when it has
    no file), the direction, the architecture fields and :data:`CACHE_VERSION`."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"Unknown direction '{direction}'; use one of {', '.join(DIRECTIONS)}.")
    h = hashlib.sha256()
    if ckpt.path is not None and Path(ckpt.path).is_file():
        h.update(file_sha256(ckpt.path).encode())
    else:
        for k, v in sorted(ckpt.prefixed(DIRECTIONS[direction]).items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    m = ckpt.meta
    h.update(json.dumps([direction, m.ngf, m.n_blocks, m.image_size, m.upsample, CACHE_VERSION]
                        ).encode())
    return h.hexdigest()[:24]


def machine_info(threads: int) -> dict[str, Any]:
    """The facts a speed decision depends on (and is invalid without)."""
    return {"cpu": isa.cpu_model(), "flags": sorted(isa.cpu_flags() & set(isa.INTERESTING_FLAGS)),
            "machine": platform.machine(), "threads": threads, "torch": torch.__version__,
            "runtimes": runtime_versions(), "version": CACHE_VERSION}


def machine_key(threads: int) -> str:
    return hashlib.sha256(json.dumps(machine_info(threads), sort_keys=True).encode()).hexdigest()[:16]


#: the packages each path needs: the exporter (onnx), the runtime, the quantiser for int8
_NEEDS = {"onnx-fp32": ("onnx", "onnxruntime"),
          "onnx-int8": ("onnx", "onnxruntime", "onnxruntime.quantization"),
          "openvino": ("onnx", "openvino"),
          "openvino-int8": ("onnx", "openvino", "onnxruntime.quantization")}
_NEEDS |= {n: _NEEDS[n.removesuffix("-lite")] for n in LITE_NAMES}  # the same export, smaller net


def _findable(mod: str) -> bool:
    """Whether ``mod`` can be imported here, found without importing it *or its parents*:
    ``importlib.util.find_spec("onnxruntime.quantization")`` imports onnxruntime itself, which the
    app process must never do (its import holds the GIL; see :mod:`.remote`)."""
    parts = mod.split(".")
    names = [".".join(parts[:i + 1]) for i in range(len(parts))]
    if any(sys.modules.get(n, ...) is None for n in names):  # blocked (tests set None)
        return False
    try:
        spec = importlib.util.find_spec(names[0])
        for n in names[1:]:
            if n in sys.modules:  # already imported (a frozen bundle, a test): nothing to avoid
                spec = importlib.util.find_spec(n)
            elif spec is None or not spec.submodule_search_locations:
                return False
            else:
                spec = importlib.machinery.PathFinder.find_spec(
                    n, list(spec.submodule_search_locations))
    except (ImportError, ValueError):  # e.g. a module whose __spec__ is None
        return False
    return spec is not None


def missing_packages(name: str) -> list[str]:
    """The packages ``name`` needs that cannot be imported here (checked before any export)."""
    # found, not imported: importing onnx costs seconds holding the GIL (onnx_export)
    return [mod for mod in _NEEDS[name] if not _findable(mod)]


def default_cache_root() -> Path:
    return user_cache_dir() / "fast-paths"


# ------------------------------------------------------------------------------------------------
@dataclass
class Decision:
    """The outcome of tuning one direction on one machine: which path runs, and the evidence."""

    backend: str  # "torch" or one of BACKEND_NAMES
    direction: str
    torch_ms: float | None = None
    #: per path: {"ms": float | None, "parity": float | None, "ok": bool, "note": str}
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""
    images: str = ""  # where the calibration / parity images came from
    machine: str = ""
    created: str = ""

    @property
    def speedup(self) -> float | None:
        c = self.candidates.get(self.backend, {})
        return self.torch_ms / c["ms"] if self.torch_ms and c.get("ms") else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Decision:
        if not isinstance(d, dict) or not isinstance(d.get("backend"), str) or \
                d["backend"] not in ("torch", *BACKEND_NAMES):
            raise ValueError("not a fast-path decision")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def direction_images(folder: Path, direction: str) -> list[Path]:
    """The images a ``direction``'s network takes in ``folder``: its ``photos/`` or
    ``sketches/`` when there is one, else the folder itself; sorted."""
    from ..imaging import is_image_path

    sub = folder / ("photos" if direction == "photo2sketch" else "sketches")
    src = sub if sub.is_dir() else folder
    try:
        return sorted(p for p in src.iterdir() if p.is_file() and is_image_path(p))
    except OSError:
        return []


def reference_inputs(ckpt: Checkpoint, direction: str,
                     calibration_dir: str | os.PathLike[str] | None = None
                     ) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """Calibration and parity inputs ((1, 3, S, S) float32), disjoint, and where they came from.

    Sources, first that has images: ``calibration_dir``, ``$SKETCHSTUDIO_CALIBRATION_DIR``, the
    model's own training folder (``meta.data["root"]``, if it exists on this machine; its
    ``photos/`` or ``sketches/`` by direction), else the bundled sample photo (public domain; a
    grey copy for sketch→photo) and its mirror image. Never a test set: int8 ranges must not be
    fitted on the images the model is scored on.
    """
    from ..imaging import grey_rgb, load_image, to_tensor
    from ..resources import sample_images

    size = int(ckpt.meta.image_size)
    folders: list[tuple[Path, str]] = []
    if calibration_dir:
        folders.append((Path(calibration_dir), "given folder"))
    if os.environ.get(ENV_CALIBRATION):
        folders.append((Path(os.environ[ENV_CALIBRATION]), f"${ENV_CALIBRATION}"))
    root = (ckpt.meta.data or {}).get("root") if isinstance(ckpt.meta.data, dict) else None
    if isinstance(root, str) and root:
        folders.append((Path(root), "the model's training folder"))
        if ckpt.path is not None and not Path(root).is_absolute():
            folders.append((Path(ckpt.path).parent / root, "the model's training folder"))
    for folder, what in folders:
        files = direction_images(folder, direction) if folder.is_dir() else []
        if calibration_dir and folder == Path(calibration_dir) and not files:
            raise ConfigError(f"Calibration folder '{folder}' holds no images.")
        if len(files) >= 2:
            # spread the picks over the folder (sorted names often group subsets: AR, CUHK, XM2VTS)
            n = min(len(files), N_CALIBRATION + N_PARITY)
            picks = [files[i * len(files) // n] for i in range(n)]
            n_cal = max(1, min(N_CALIBRATION, n - 1))
            arrays = [to_tensor(load_image(p), size).numpy() for p in picks]
            return arrays[:n_cal], arrays[n_cal:], f"{what} {folder} ({len(picks)} images)"
    samples = sample_images()
    if not samples:
        raise FastPathUnavailable("no training images and no bundled sample to calibrate on")
    img = load_image(samples[0])
    if direction == "sketch2photo":
        img = grey_rgb(img)
    x = to_tensor(img, size).numpy()
    return [x], [np.ascontiguousarray(x[..., ::-1])], f"bundled sample {samples[0].name} (+ mirror)"


def _clean_stale_temps(folder: Path) -> None:
    """Delete temp files of exports that were killed halfway (older than STALE_TEMP_S)."""
    now = time.time()
    with contextlib.suppress(OSError):
        for p in folder.glob(f".*{TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > STALE_TEMP_S:
                    p.unlink()


# ------------------------------------------------------------------------------------------------
TorchForward = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[str, str], None]  # (direction, message)


class Tuner:
    """Exports, measures and decides for one direction. Runs on whatever thread calls :meth:`run`
    (the background thread of :class:`FastPaths`, or a benchmark)."""

    def __init__(self, ckpt: Checkpoint, direction: str, net: torch.nn.Module,
                 torch_forward: TorchForward | None = None, cache_root: Path | None = None,
                 threads: int | None = None, candidates: Sequence[str] = BACKEND_NAMES,
                 calibration_dir: str | os.PathLike[str] | None = None,
                 progress: Progress | None = None, force: str | None = None,
                 lock: contextlib.AbstractContextManager | None = None) -> None:
        bad = [c for c in candidates if c not in BACKEND_NAMES]
        if bad:
            raise ConfigError(f"Unknown fast path {bad[0]!r}; use one of {', '.join(BACKEND_NAMES)}.")
        self.ckpt, self.direction, self.net = ckpt, direction, net
        self.torch_forward = torch_forward or self._fp32
        self._torch_is_fp32 = torch_forward is None
        self.cache_root = Path(cache_root) if cache_root else default_cache_root()
        self.threads = int(threads or torch.get_num_threads())
        self.candidates = list(candidates)
        self.calibration_dir = calibration_dir
        self.progress = progress
        self.force = force
        #: held around each timed forward: the Translator's lock, so a measurement never shares
        #: the cores with a translation (that would skew it and oversubscribe the CPU)
        self.lock = lock or contextlib.nullcontext()
        self.size = int(ckpt.meta.image_size)
        self.key = model_key(ckpt, direction)
        self.artifacts = self.cache_root / f"{self.key}-{direction}-{self.size}"
        #: the model's lite companion for this direction (:func:`.lite.find_lite`), if any: part
        #: of the decision's key, so a companion added, replaced or removed is measured again
        self.lite = find_lite(ckpt, direction) if set(candidates) & set(LITE_NAMES) else None
        lite_key = f"-lite{model_key(self.lite, direction)[:8]}" if self.lite is not None else ""
        self.decision_path = (self.cache_root / "decisions" /
                              f"{machine_key(self.threads)}-{self.key}{lite_key}-{direction}.json")

    def _source(self, lite: bool) -> tuple[Checkpoint, Path]:
        """The checkpoint an export is made from and the folder its exports live in."""
        if not lite:
            return self.ckpt, self.artifacts
        if self.lite is None:
            raise ExportError("this model has no lite companion")
        return self.lite, self.cache_root / f"{model_key(self.lite, self.direction)}-" \
                                            f"{self.direction}-{self.size}"

    # -- pieces (also used by tests and benchmarks) ----------------------------------------------
    def _fp32(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(x)

    def _say(self, msg: str) -> None:
        log.info("fast path %s: %s", self.direction, msg)
        if self.progress is not None:
            with contextlib.suppress(Exception):  # a broken listener must not stop tuning
                self.progress(self.direction, msg)

    def fp32_path(self, lite: bool = False) -> Path:
        """The fp32 ONNX export (of the lite companion with ``lite``), made once (atomically)
        and reused."""
        ckpt, folder = self._source(lite)
        dest = folder / "fp32.onnx"
        if not dest.is_file():
            self._say(f"exporting the {'lite ' if lite else ''}network (once per model)…")
            folder.mkdir(parents=True, exist_ok=True)
            if ISOLATE_EXPORTS and can_isolate():
                export_fp32_isolated(ckpt, self.direction, dest, threads=self.threads)
            else:
                net = build_student(ckpt, self.direction) if lite else self.net
                export_fp32(net, self.size, dest)
        return dest

    def int8_path(self, calibration: Sequence[np.ndarray] | None = None, lite: bool = False
                  ) -> Path:
        """The int8 export, calibrated (once) on ``calibration`` or, when None, on the images
        :func:`reference_inputs` finds; an existing export is reused without reading any image."""
        reduce = not isa.has_int8_dot()
        dest = self._source(lite)[1] / ("int8-r7.onnx" if reduce else "int8.onnx")
        if not dest.is_file():
            if calibration is None:
                calibration = reference_inputs(self.ckpt, self.direction, self.calibration_dir)[0]
            src = self.fp32_path(lite)
            self._say(f"calibrating int8 on {len(calibration)} training images (once per model)…")
            if ISOLATE_EXPORTS and can_isolate():
                quantize_int8_isolated(src, dest, calibration, reduce_range=reduce,
                                       threads=self.threads)
            else:
                quantize_int8(src, dest, calibration, reduce_range=reduce)
        return dest

    def load(self, name: str, calibration: Sequence[np.ndarray] | None = None) -> Runner:
        """Export what ``name`` needs (if not cached) and load its runner."""
        if name in LITE_NAMES:
            path = self.int8_path(calibration, lite=True)
        elif name.endswith("-int8"):
            path = self.int8_path(calibration)
        else:
            path = self.fp32_path()
        if ISOLATE_RUNNERS and can_isolate():
            return RemoteRunner(name, path, self.threads)
        return runner_class(name)(name, path, self.threads)

    def cached_decision(self) -> Decision | None:
        try:
            d = Decision.from_json(json.loads(self.decision_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return d

    # -- the whole job ---------------------------------------------------------------------------
    def run(self) -> tuple[Decision, Runner | None]:
        """Decide (from the cache or by measuring) and return the decision and its loaded runner
        (None when torch stays)."""
        if self.force is None:
            cached = self.cached_decision()
            if cached is not None:
                if cached.backend == "torch":
                    return cached, None
                runner = None
                try:
                    runner = self.load(cached.backend)
                    self._say(f"warming up {cached.backend}…")
                    with self.lock:  # first call: lazy kernel and memory set-up, off the caller
                        runner(np.zeros((1, 3, self.size, self.size), np.float32))
                    return cached, runner
                except (ExportError, BackendMissing, OSError, RuntimeError) as exc:
                    close_runner(runner)
                    log.info("cached fast path %s unusable (%s); measuring again", cached.backend, exc)
        _clean_stale_temps(self.artifacts)
        return self._measure()

    def _measure(self) -> tuple[Decision, Runner | None]:
        names = [self.force] if self.force else self.candidates
        if not self.force and self.lite is None:  # nothing to try: not a failure, not missing
            names = [n for n in names if n not in LITE_NAMES]
        calib, parity_inputs, source = reference_inputs(self.ckpt, self.direction,
                                                        self.calibration_dir)
        decision = Decision(backend="torch", direction=self.direction, images=source,
                            machine=isa.describe_isa(),
                            created=datetime.now(UTC).isoformat(timespec="seconds"))
        self._say("measuring PyTorch…")
        refs, torch_ms = [], []
        with torch.inference_mode():
            with self.lock:
                self.torch_forward(torch.from_numpy(parity_inputs[0]))  # warm-up
            for x in parity_inputs:
                with self.lock:
                    t0 = time.perf_counter()
                    out = self.torch_forward(torch.from_numpy(x))
                    torch_ms.append((time.perf_counter() - t0) * 1e3)
                exact = self._torch_is_fp32 and out.dtype == torch.float32
                refs.append(out if exact else self._fp32(torch.from_numpy(x)))
        decision.torch_ms = min(torch_ms)
        runners: dict[str, Runner] = {}
        missing: list[str] = []
        for name in names:
            entry: dict[str, Any] = {"ms": None, "parity": None, "ok": False, "note": ""}
            decision.candidates[name] = entry
            runner = None
            try:
                lacking = missing_packages(name)
                if lacking:
                    raise BackendMissing(f"{', '.join(lacking)} not installed")
                self._say(f"trying {name}…")
                runner = self.load(name, calib)
                with self.lock:
                    runner(parity_inputs[0])  # warm-up: lazy kernel and memory set-up
                diffs, times = [], []
                for x, ref in zip(parity_inputs, refs, strict=True):
                    with self.lock:
                        t0 = time.perf_counter()
                        y = runner(x)
                        times.append((time.perf_counter() - t0) * 1e3)
                    diffs.append(grey_level_diff(ref, y))
            except BackendMissing as exc:
                entry["note"] = str(exc)
                missing.append(name)
                continue
            except (ExportError, OSError, RuntimeError, ValueError) as exc:
                close_runner(runner)  # e.g. a runner child that died mid-measurement
                entry["note"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("fast path %s for %s failed: %s", name, self.direction, entry["note"])
                continue
            entry.update(ms=min(times), parity=float(np.mean(diffs)))
            entry["ok"] = entry["parity"] <= PARITY_MAX_GREY
            if not entry["ok"]:
                entry["note"] = (f"{entry['parity']:.2f} grey levels from fp32 "
                                 f"(> {PARITY_MAX_GREY:g}): rejected")
                close_runner(runner)  # its child (if any) is not needed
                continue
            runners[name] = runner
        passing = [n for n, c in decision.candidates.items() if c["ok"]]
        if self.force:
            if passing:
                decision.backend = self.force
                decision.note = f"{self.force} forced"
            else:
                decision.note = f"{self.force} forced but unusable: {decision.candidates[self.force]['note']}"
        else:
            faster = [n for n in passing
                      if decision.candidates[n]["ms"] < SPEEDUP_MARGIN * decision.torch_ms]
            if faster:
                decision.backend = min(faster, key=lambda n: decision.candidates[n]["ms"])
                decision.note = (f"{decision.backend}: {decision.speedup:.2f}× PyTorch, "
                                 f"{decision.candidates[decision.backend]['parity']:.2f} grey levels "
                                 "from fp32")
            elif passing:
                decision.note = "no exported path was faster than PyTorch here"
            elif len(missing) == len(names):
                decision.note = f"no exported runtime is installed ({_INSTALL_HINT})"
            else:
                decision.note = "no exported path passed the parity check; PyTorch stays"
        self._say(decision.note)
        if not self.force and len(missing) < len(names):
            # a cache of "nothing installed" would hide a later install; everything else is kept
            try:
                self.decision_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(self.decision_path, decision.to_json())
            except OSError as exc:
                log.warning("could not cache the fast-path decision (%s)", exc)
        for name, runner in runners.items():  # the losers' children end now, not at exit
            if name != decision.backend:
                close_runner(runner)
        return decision, runners.get(decision.backend)


# ------------------------------------------------------------------------------------------------
#: tuning threads not yet finished: the interpreter waits for them at exit (see _finish_tuning)
_RUNNING: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
#: one tuning job at a time per process: two at once (G and F after a load) would time each
#: other's runtimes on shared cores and oversubscribe them
_TUNE_LOCK = threading.Lock()


@atexit.register
def _finish_tuning() -> None:
    """A process that exits while an export runs native code in a daemon thread aborts
    ("terminate called without an active exception", status 134). Let it finish instead; the
    atomic writes mean its files are then complete and the next run reuses them. Children are
    killed first: export children (their temp files never become models) and runner children (a
    measurement waiting on one then fails at once), so what is left to wait for is seconds of
    in-process work at most, not a minutes-long export."""
    stop_children()
    for thread in list(_RUNNING):
        if thread.is_alive():
            log.warning("waiting for the fast-path export (%s) to finish before exiting…", thread.name)
            thread.join()


@dataclass
class _State:
    status: str = "torch"  # torch | tuning | ready | failed
    runner: Runner | None = None
    decision: Decision | None = None
    future: Future | None = None
    #: builds the torch net (for loading the same export at another thread count)
    net_fn: Callable[[], torch.nn.Module] | None = None
    #: the ready runner loaded again at another thread count (the app's thread budget): at most
    #: :data:`MAX_VARIANTS`, since each one of a child's runner is a process
    variants: dict[int, Runner] = field(default_factory=dict)

    def drop_runners(self) -> list[Runner]:
        """Forget the runner and its variants; the caller closes what this returns (outside any
        lock: a close waits for a call in flight)."""
        runners = {id(r): r for r in (self.runner, *self.variants.values()) if r is not None}
        self.runner, self.variants = None, {}
        return list(runners.values())


#: variants kept per direction besides the runner itself: the app asks for two thread counts (all
#: cores, and its share while training runs), so one extra covers it; another count replaces it
MAX_VARIANTS = 1


class FastPaths:
    """The fast paths of one :class:`~sketchstudio.engine.Translator`, one per direction.

    Tuning runs on a daemon thread (an app closing mid-export must not wait for it; the atomic
    writes leave no half file), and the runner is swapped in when it is ready. Until then, and
    whenever anything fails, :meth:`runner` returns None and the caller runs torch.
    """

    def __init__(self, ckpt: Checkpoint, mode: str = "auto", cache_root: Path | None = None,
                 calibration_dir: str | os.PathLike[str] | None = None,
                 min_gflop: float | None = None,
                 lock: contextlib.AbstractContextManager | None = None) -> None:
        mode = os.environ.get(ENV_MODE, mode) if mode == "auto" else mode
        if mode not in MODES:
            raise ConfigError(f"Unknown fast-path mode {mode!r}; use one of {', '.join(MODES)}"
                              f" (from ${ENV_MODE} or the fast= argument).")
        self.ckpt, self.mode = ckpt, mode
        self.cache_root = cache_root
        self.calibration_dir = calibration_dir
        #: None: :data:`MIN_GFLOP`, read when asked (tests lower the module's value)
        self.min_gflop = min_gflop
        self.lock = lock
        self.notes: list[str] = []
        #: called as progress(direction, message) from the tuning thread (GUI: a queued signal)
        self.progress: Progress | None = None
        self._states: dict[str, _State] = {d: _State() for d in DIRECTIONS}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def runner(self, direction: str, threads: int | None = None) -> Runner | None:
        """The ready runner of ``direction`` (None: use torch), at ``threads`` intra-op threads
        when given: runtimes fix their pool size at load, so the same export is loaded once more
        (in the calling thread, from the cache: no export; a child's runner starts another child)
        for a thread count asked for. At most :data:`MAX_VARIANTS` are kept: a new count closes
        the oldest one (after a call in flight on it)."""
        st = self._states.get(direction)
        runner = st.runner if st is not None else None
        if st is None or st.status != "ready" or runner is None:
            return None
        if threads is None or getattr(runner, "threads", threads) == threads:
            return runner
        with self._lock:
            variant = st.variants.get(threads)
        if variant is None and st.net_fn is not None and st.decision is not None:
            try:
                tuner = Tuner(self.ckpt, direction, st.net_fn(), cache_root=self.cache_root,
                              threads=threads, calibration_dir=self.calibration_dir)
                variant = tuner.load(st.decision.backend)
            except Exception as exc:  # noqa: BLE001 - keep the runner we have
                log.info("could not load %s at %d thread(s) (%s)", runner.name, threads, exc)
                variant = runner
            old: list[Runner] = []
            with self._lock:
                if st.runner is not runner:  # disabled meanwhile: this variant is not wanted
                    old.append(variant)
                    variant = None
                elif threads in st.variants:  # another thread loaded it meanwhile: use that one
                    old.append(variant)
                    variant = st.variants[threads]
                else:
                    while len(st.variants) >= MAX_VARIANTS:
                        old.append(st.variants.pop(next(iter(st.variants))))
                    st.variants[threads] = variant
            for r in old:
                if r is not runner:
                    close_runner(r)
        return variant or st.runner

    def status(self, direction: str) -> str:
        return self._states[direction].status

    def decision(self, direction: str) -> Decision | None:
        return self._states[direction].decision

    def describe(self, direction: str | None = None) -> str:
        """E.g. "ONNX Runtime int8" for the status line; "" when torch runs."""
        names = {"onnx-fp32": "ONNX Runtime fp32", "onnx-int8": "ONNX Runtime int8",
                 "openvino": "OpenVINO", "openvino-int8": "OpenVINO int8"}
        names |= {n: names[n.removesuffix("-lite")] + ", lite" for n in LITE_NAMES}
        dirs = [direction] if direction else list(DIRECTIONS)
        used = sorted({names[self._states[d].runner.name] for d in dirs
                       if self.runner(d) is not None})
        return ", ".join(used)

    def worth_tuning(self, direction: str) -> bool:
        """Whether the network is big enough for an export to pay (see :data:`MIN_GFLOP`)."""
        bar = MIN_GFLOP if self.min_gflop is None else self.min_gflop
        return forward_gflop(self.ckpt, direction) >= bar

    def maybe_start(self, direction: str, net_fn: Callable[[], torch.nn.Module],
                    torch_forward: TorchForward, threads: int | None = None) -> None:
        """Called after each torch forward: start tuning once, if it can pay (``cached``: only
        load an earlier decision, in this thread)."""
        st = self._states[direction]
        if not self.enabled or st.status != "torch" or not self.worth_tuning(direction):
            return
        if self.mode == "cached":
            self._load_cached(direction, net_fn, torch_forward)
        else:
            self.start(direction, net_fn, torch_forward, threads=threads)

    def _load_cached(self, direction: str, net_fn: Callable[[], torch.nn.Module],
                     torch_forward: TorchForward) -> None:
        st = self._states[direction]
        st.status = "failed"  # looked once; torch from here on unless a cached runner loads
        tuner = Tuner(self.ckpt, direction, net_fn(), torch_forward, self.cache_root,
                      calibration_dir=self.calibration_dir, lock=self.lock)
        decision = tuner.cached_decision()
        if decision is None or decision.backend == "torch":
            return
        try:
            st.runner, st.decision = tuner.load(decision.backend), decision
            st.net_fn = net_fn
            st.status = "ready"
        except Exception as exc:  # noqa: BLE001 - a fast path must never break translation
            log.info("cached fast path %s unusable here (%s); using PyTorch", decision.backend, exc)

    def start(self, direction: str, net_fn: Callable[[], torch.nn.Module],
              torch_forward: TorchForward | None = None, threads: int | None = None) -> Future:
        """Start tuning ``direction`` in the background (once); the future gives the Decision."""
        with self._lock:
            st = self._states[direction]
            if st.future is not None:
                return st.future
            st.status, st.future, st.net_fn = "tuning", Future(), net_fn
            fut = st.future
        force = self.mode if self.mode in BACKEND_NAMES else None
        threads = threads or torch.get_num_threads()

        def job() -> None:
            use_threads(threads)  # this thread's torch forwards (measurement) keep to the budget
            try:
                with _TUNE_LOCK:
                    tuner = Tuner(self.ckpt, direction, net_fn(), torch_forward, self.cache_root,
                                  threads=threads, calibration_dir=self.calibration_dir,
                                  progress=self.progress, force=force, lock=self.lock)
                    decision, runner = tuner.run()
            except Exception as exc:  # noqa: BLE001 - a fast path must never break translation
                note = (f"Fast path for {direction} unavailable ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); using PyTorch.")
                log.warning(note)
                self.notes.append(note)
                st.status = "failed"
                fut.set_result(Decision(backend="torch", direction=direction, note=note))
                return
            st.decision, st.runner = decision, runner
            st.status = "ready" if runner is not None else "failed"
            if decision.backend == "torch" and decision.note:
                self.notes.append(f"Fast path for {direction}: {decision.note}.")
            fut.set_result(decision)

        thread = threading.Thread(target=job, name=f"fast-path-{direction}", daemon=True)
        _RUNNING.add(thread)
        thread.start()
        return fut

    def disable(self, direction: str, exc: BaseException) -> None:
        """A runner failed at run time: go back to torch for good, with a note."""
        st = self._states[direction]
        name = st.runner.name if st.runner is not None else "fast path"
        note = f"{name} failed ({type(exc).__name__}: {str(exc)[:160]}); using PyTorch again."
        log.warning(note)
        self.notes.append(note)
        st.status = "failed"
        with self._lock:
            dropped = st.drop_runners()
        for r in dropped:  # their children end now, not when the app exits
            close_runner(r)


def forward_gflop(ckpt: Checkpoint, direction: str) -> float:
    """The student's forward cost in GFLOP (2 per multiply-add), from its weight shapes: each
    stage's convolution weights times the pixels it runs at. Cheap (no forward) and
    deterministic, unlike a timing, so it decides whether tuning can pay on any machine load."""
    s = int(ckpt.meta.image_size)
    deconv = ckpt.meta.upsample != "resize"
    pixels = {"IC": s * s, "DC1": (s // 2) ** 2, "DC2": (s // 4) ** 2, "Block": (s // 4) ** 2,
              # a transposed conv multiplies its whole kernel at each *input* pixel
              "UC1": (s // 4 if deconv else s // 2) ** 2, "UC2": (s // 2 if deconv else s) ** 2,
              "OC": s * s}
    macs = 0
    for name, w in ckpt.prefixed(DIRECTIONS[direction]).items():
        stage = name.split(".", 1)[0]
        if name.endswith(".weight") and w.dim() == 4 and stage in pixels:
            # squeeze-excitation 1×1 convs run on the pooled 1×1 map
            macs += w.numel() * (1 if ".fc." in name else pixels[stage])
    return 2 * macs / 1e9
