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
            with _atomic_path(dest) as tmp, warnings.catch_warnings(), torch.no_grad():
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
