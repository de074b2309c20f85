"""What the machine's processor can do, in the terms that decide which inference path is fast.

int8 only pays where the CPU multiplies int8 natively at a high rate (AVX-512 VNNI, AVX-VNNI,
AMX); bf16 only where it is native (AVX-512 BF16, AMX). On plain AVX2 both are emulated or
narrow, which is why the choice is measured rather than assumed (see ``fastpath``).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

#: the flags that matter here, in the order they are reported
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                     "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where they cannot be read.

    Other systems report what torch's dispatcher detected (e.g. ``avx2``/``avx512``) instead.
    """
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    cap = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()).lower()
    return frozenset({cap} if cap else set())


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (part of the per-machine cache key), or the platform's best guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_int8_dot() -> bool:
    """Native int8 dot products (VNNI or AMX): int8 activations then need no 7-bit range reduction."""
    f = cpu_flags()
    return bool(f & {"avx512_vnni", "avx_vnni", "amx_int8"})


def describe_isa() -> str:
    """A one-line summary such as ``x86_64 AVX2 FMA (no AVX-512, no VNNI, no AMX, no native bf16);
    torch: AVX2``, for benchmarks and logs."""
    f = cpu_flags()
    have = [x.upper() for x in INTERESTING_FLAGS if x in f]
    missing = [name for name, keys in (("AVX-512", {"avx512f"}),
                                       ("VNNI", {"avx512_vnni", "avx_vnni"}),
                                       ("AMX", {"amx_tile"}),
                                       ("native bf16", {"avx512_bf16", "amx_bf16"}))
               if not f & keys]
    cap = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")())
    text = f"{platform.machine()} {' '.join(have) or '(flags unknown)'}"
    if missing:
        text += f" (no {', no '.join(missing)})"
    text += f"; torch: {cap}"
    if torch.cuda.is_available():
        text += f"; CUDA: {torch.cuda.get_device_name(0)}"
    return text
