"""Export a student to ONNX (fp32) and quantise it to int8, atomically, into a cache folder.

Why atomic: the cache is shared by every SketchStudio process of the user, and an export can be
killed halfway (the app closed, the machine suspended). Each file is written under a temporary
name in its destination folder and renamed into place, so a reader finds either nothing or a
complete model, never a truncated one.

The int8 model uses static QDQ quantisation (per-channel int8 weights, uint8 activations)
calibrated on a handful of *training* images, never test images. What stays in float, and why
(measured on the shipped model, 3 CUHK test photos, mean grey-level difference from fp32):

- the first and last convolutions (7×7 IC and OC): the image's first and last word, ~5 % of
  the FLOPs;
- the decoder's two upsampling stages (UC1, UC2): with them in int8 the output was 2.8 grey
  levels from fp32 (over the 2-level limit); kept in float, 0.4, and int8 was still ~1.7× faster
  than fp32 ONNX Runtime on an AVX2 CPU because the residual blocks hold ~75 % of the FLOPs;
- the squeeze-excitation 1×1 convolutions: tiny, and their global pooling cannot be quantised
  safely (ONNX Runtime's QLinearGlobalAveragePool fails on this graph).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fsutil import TEMP_SUFFIX

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "x", "y"
OPSET = 17
#: node-name parts kept in float in the int8 model (torch.onnx names nodes by module path, e.g.
#: ``/net/IC/IC.1/Conv``): first/last convolutions and the decoder, and the squeeze-excitation MLPs
KEEP_FLOAT_OUTER = ("/IC/", "/UC1/", "/UC2/", "/OC/")
KEEP_FLOAT_ALWAYS = ("/fc/",)
#: torch.onnx.export keeps global state (``GLOBALS.in_onnx_export``): two exports at once in one
#: process fail ("GLOBALS.in_onnx_export must be False", seen when G and F were tuned together)
_EXPORT_LOCK = threading.Lock()


class ExportError(RuntimeError):
    """An export or quantisation step failed; the caller falls back to PyTorch with a note."""


@contextlib.contextmanager
def _atomic_path(dest: Path) -> Iterator[Path]:
    """A temporary path next to ``dest`` that is renamed onto ``dest`` when the block succeeds
    (and deleted when it fails), for writers such as ``torch.onnx.export`` that want a path."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


class _ImageOnly(torch.nn.Module):
    """The student with a single image output (no taps), the graph every runtime runs."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def export_fp32(net: torch.nn.Module, size: int, dest: str | os.PathLike[str]) -> Path:
    """Export ``net`` (a StudentNet) for (1, 3, size, size) inputs to ``dest`` in fp32.

    Uses the TorchScript-based exporter (it needs only the ``onnx`` package); if that one is gone
    from a future torch, the torch.export-based one (needs ``onnxscript``) is tried.
    """
    dest = Path(dest)
    try:
        import onnx  # noqa: F401 - both exporters need it; say so clearly
    except ImportError as exc:
        raise ExportError("the 'onnx' package is not installed") from exc
    wrapped = _ImageOnly(net).eval().float().cpu()
    x = torch.zeros(1, 3, size, size)
    errors: list[str] = []
    for dynamo in (False, True):
        try:
            with _EXPORT_LOCK, _atomic_path(dest) as tmp, warnings.catch_warnings(), \
                    torch.no_grad():
                warnings.simplefilter("ignore")  # tracer/deprecation chatter, not the user's business
                torch.onnx.export(wrapped, (x,), str(tmp), input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], opset_version=OPSET, dynamo=dynamo,
                                  **({"external_data": False} if dynamo else {}))
            log.info("Exported %s (%s exporter)", dest, "dynamo" if dynamo else "TorchScript")
            return dest
        except Exception as exc:  # noqa: BLE001 - any exporter failure: try the other, then report
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
    raise ExportError("ONNX export failed (" + "; ".join(errors) + ")")


def _not_from_onnxruntime(record: logging.LogRecord) -> bool:
    return "onnxruntime" not in record.pathname or record.levelno >= logging.ERROR


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantiser logs advice through the *root* logger (``logging.warning``); drop
    its sub-error records meanwhile so a user's log is not filled with it. A filter on the root
    logger sees only records logged on it directly, so other threads' logging is untouched."""
    root = logging.getLogger()
    root.addFilter(_not_from_onnxruntime)
    try:
        yield
    finally:
        root.removeFilter(_not_from_onnxruntime)


def float_convs(model: Any, keep_outer_float: bool = True) -> list[str]:
    """Names of the convolutions of an exported student that stay in float."""
    parts = KEEP_FLOAT_ALWAYS + (KEEP_FLOAT_OUTER if keep_outer_float else ())
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")
            and any(p in n.name for p in parts)]


def quantize_int8(fp32_path: str | os.PathLike[str], dest: str | os.PathLike[str],
                  calibration: Sequence[np.ndarray], reduce_range: bool = True,
                  keep_outer_float: bool = True) -> Path:
    """Static int8 (QDQ) quantisation of an exported student, calibrated on ``calibration``.

    ``calibration``: (1, 3, S, S) float32 arrays in [-1, 1] made from training images.
    ``reduce_range``: 7-bit activations, which avoid the int16 saturation of AVX2's u8×s8 dot
    product; machines with VNNI/AMX do not need it (see :func:`~.isa.has_int8_dot`).
    """
    if not calibration:
        raise ExportError("int8 calibration needs at least one training image")
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ExportError(f"int8 quantisation needs onnx and onnxruntime ({exc})") from exc

    batches = [np.ascontiguousarray(c, dtype=np.float32) for c in calibration]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

    src = Path(fp32_path)
    dest = Path(dest)
    try:
        pre = dest.parent / f".{dest.name}.pre.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        with _atomic_path(dest) as tmp, warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            # shape inference + graph clean-up first, as ONNX Runtime's quantiser recommends
            # (folds shared initialisers back into per-conv weights and biases)
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            model = onnx.load(str(pre))
            convs = [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
            exclude = float_convs(model, keep_outer_float)
            if keep_outer_float and len(exclude) < len(KEEP_FLOAT_OUTER):
                raise ExportError("could not find the first/last convolutions to keep in float")
            quantize_static(str(pre), str(tmp), _Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=reduce_range,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv", "ConvTranspose"],
                            nodes_to_exclude=exclude)
        pre.unlink()
    except Exception as exc:  # noqa: BLE001 - reported as an export failure with its reason
        with contextlib.suppress(OSError):
            pre.unlink()
        raise ExportError(f"int8 quantisation failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
    log.info("Quantised %s -> %s (%d of %d convolutions int8, calibrated on %d images)",
             src.name, dest, len(convs) - len(exclude), len(convs), len(batches))
    return dest


# ------------------------------------------------------------------------------------------------
# In a child process. Why: importing ``onnx`` (which torch.onnx.export and the quantiser need)
# imports ``ml_dtypes``, whose C extension initialises for about 3 s on a loaded 2-core machine
# *holding the GIL*; torch's TorchScript exporter also runs long C++ passes under the GIL. In the
# app that froze the UI thread for 2.8 s while a fast path was exported in a background thread
# (tests/test_gui_speed.py). In a child process neither touches the app's GIL, and a crash of the
# exporter cannot take the app down. Frozen bundles (no ``python -m``) export in-process.
#: the child's own time limit: an export of the shipped model takes ~10-60 s
CHILD_TIMEOUT_S = 1800.0


def can_isolate() -> bool:
    """Whether a ``python -m`` child can run here (not in a PyInstaller-style frozen bundle)."""
    return not getattr(sys, "frozen", False) and bool(sys.executable)


#: running children (exports, and the runner processes of :mod:`.remote`), so that a process that
#: exits can stop them instead of waiting minutes, and none outlives it
_CHILDREN: set[Any] = set()
_CHILDREN_LOCK = threading.Lock()
_STOPPING = threading.Event()


def stop_children() -> None:
    """Kill running children and refuse new ones (at exit: the app must not wait for a
    minutes-long export; an export child writes only temp files until its final rename, so a kill
    leaves no half model, and the next start exports again; a runner child holds nothing)."""
    _STOPPING.set()
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for proc in children:
        with contextlib.suppress(OSError):
            proc.kill()


def child_env(threads: int) -> dict[str, str]:
    """The environment of a child: this process's, with ``threads`` OpenMP threads and the folder
    that holds ``sketchstudio/`` first on ``PYTHONPATH`` (a checkout that is not installed)."""
    root = str(Path(__file__).resolve().parents[2])
    return dict(os.environ, OMP_NUM_THREADS=str(max(1, threads)),
                PYTHONPATH=os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]))


def start_child(args: list[str], threads: int, what: str = "export", **popen: Any) -> Any:
    """``subprocess.Popen([sys.executable, *args], ...)`` registered in the child set, so that
    :func:`stop_children` kills it; the caller calls :func:`forget_child` once it has ended.
    Raises :class:`ExportError` when the process is exiting or the child cannot start."""
    import subprocess

    with _CHILDREN_LOCK:  # checked and added under one lock: stop_children cannot miss it
        if _STOPPING.is_set():
            raise ExportError("the process is exiting")
        try:
            proc = subprocess.Popen([sys.executable, *args], env=child_env(threads), **popen)
        except OSError as exc:
            raise ExportError(f"the {what} process did not start ({exc})") from exc
        _CHILDREN.add(proc)
    return proc


def forget_child(proc: Any) -> None:
    with _CHILDREN_LOCK:
        _CHILDREN.discard(proc)


def stopping() -> bool:
    """Whether :func:`stop_children` has run (the process is exiting)."""
    return _STOPPING.is_set()


def _run_child(args: list[str], threads: int) -> None:
    import subprocess

    proc = start_child(["-m", "sketchstudio.runtime.onnx_export", *args], threads,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, text=True)
    try:
        _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise ExportError(f"the export process took over {CHILD_TIMEOUT_S:.0f} s") from exc
    finally:
        forget_child(proc)
    if proc.returncode != 0:
        if _STOPPING.is_set():
            raise ExportError("stopped: the process is exiting")
        lines = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
        raise ExportError(lines[-1][:300] if lines else f"export process exit status {proc.returncode}")


def export_fp32_isolated(ckpt: Any, direction: str, dest: str | os.PathLike[str],
                         threads: int = 1) -> Path:
    """:func:`export_fp32` of ``ckpt``'s student for ``direction``, in a child process (its
    file, or a temporary copy of its tensors when it has none)."""
    from ..checkpoint import save_checkpoint

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = Path(ckpt.path) if ckpt.path is not None and Path(ckpt.path).is_file() else None
    tmp = None
    if src is None:
        tmp = dest.parent / f".model.{secrets.token_hex(4)}.safetensors{TEMP_SUFFIX}"
        save_checkpoint(tmp, dict(ckpt.tensors), ckpt.meta)
        src = tmp
    try:
        _run_child(["fp32", str(src), direction, str(dest)], threads)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return dest


def quantize_int8_isolated(fp32_path: str | os.PathLike[str], dest: str | os.PathLike[str],
                           calibration: Sequence[np.ndarray], reduce_range: bool = True,
                           keep_outer_float: bool = True, threads: int = 1) -> Path:
    """:func:`quantize_int8` in a child process (calibration arrays passed through a temp file)."""
    dest = Path(dest)
    if not calibration:
        raise ExportError("int8 calibration needs at least one training image")
    dest.parent.mkdir(parents=True, exist_ok=True)
    calib = dest.parent / f".calib.{secrets.token_hex(4)}.npy{TEMP_SUFFIX}"
    with open(calib, "wb") as fh:
        np.save(fh, np.concatenate([np.asarray(c, np.float32) for c in calibration]))
    try:
        _run_child(["int8", str(fp32_path), str(dest), str(calib),
                    "reduce-range" if reduce_range else "full-range",
                    "outer-float" if keep_outer_float else "all-int8"], threads)
    finally:
        with contextlib.suppress(OSError):
            calib.unlink()
    return dest


def main(argv: list[str] | None = None) -> int:
    """The child's side: ``fp32 CKPT DIRECTION DEST`` or ``int8 SRC DEST CALIB.npy RANGE OUTER``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m sketchstudio.runtime.onnx_export")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("fp32")
    a.add_argument("checkpoint")
    a.add_argument("direction")
    a.add_argument("dest")
    b = sub.add_parser("int8")
    b.add_argument("src")
    b.add_argument("dest")
    b.add_argument("calibration")
    b.add_argument("range", choices=["reduce-range", "full-range"])
    b.add_argument("outer", choices=["outer-float", "all-int8"])
    args = p.parse_args(argv)
    try:
        if args.cmd == "fp32":
            from ..checkpoint import build_student, read_checkpoint

            ckpt = read_checkpoint(args.checkpoint)
            export_fp32(build_student(ckpt, args.direction), int(ckpt.meta.image_size), args.dest)
        else:
            arr = np.load(args.calibration)
            quantize_int8(args.src, args.dest, [arr[i:i + 1] for i in range(len(arr))],
                          reduce_range=args.range == "reduce-range",
                          keep_outer_float=args.outer == "outer-float")
    except Exception as exc:  # noqa: BLE001 - the parent reports the last stderr line
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
