"""Pick the compute device: CUDA > MPS > CPU unless the user forces one."""

from __future__ import annotations

import contextlib

import torch

from .errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "bf16", "fp32", "fp16")


def pick_device(name: str = "auto") -> torch.device:
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise ConfigError(f"Unknown device '{name}'; use one of {', '.join(DEVICE_CHOICES)}.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("MPS was requested but is not available on this machine.")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """Human-readable name for status bars and logs."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"


def is_device_failure(exc: BaseException) -> bool:
    """True for errors that mean 'this GPU cannot run it' (OOM, missing kernel), not a bug."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in msg for s in ("CUDA", "cuDNN", "CUBLAS", "no kernel image", "out of memory", "MPS"))


def cpu_has_native_bf16() -> bool:
    """bf16 on CPUs without AVX-512 BF16/AMX is emulated and ~5× slower than fp32 (measured)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn "auto" into the fastest safe choice; reject fp16 where it cannot run."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 precision needs a CUDA GPU; use bf16, fp32 or auto on the CPU.")
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision for a resolved ``precision`` (fp32: no autocast); weights stay fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
