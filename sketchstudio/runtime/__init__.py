"""Exported inference runtimes behind :class:`sketchstudio.engine.Translator` (issue 23).

Why this package exists: on CPUs without native bf16 (AVX2 laptops) eager PyTorch runs the
student at about a third of what the hardware can do. An ONNX Runtime (or OpenVINO) export of
the same network, in fp32 or int8, can be markedly faster. Each such path is used only when a short
measurement on the machine at hand says it is faster than the torch path *and* its output stays
within :data:`~sketchstudio.runtime.fastpath.PARITY_MAX_GREY` grey levels of fp32 torch; the
decision is cached per machine and model.

Modules:

- ``isa``: what the CPU/GPU can do (AVX2, AVX-512, VNNI, AMX, bf16), for decisions and benchmarks
- ``onnx_export``: atomic fp32 export and int8 static quantisation of a student (into the cache)
- ``backends``: ONNX Runtime / OpenVINO runners with one call signature
- ``remote``: the same runners in a child process (what the app uses: their imports and compiles
  hold the GIL long enough to freeze a window)
- ``lite``: finds a model's lite companion (narrower residual blocks distilled from it by
  ``trainer.lite``), the source of the ``*-int8-lite`` paths
- ``fastpath``: the cache layout, parity, measurement, decision and the background tuner

Nothing here imports Qt; ``onnxruntime``, ``onnx`` and ``openvino`` are optional
(``pip install 'sketchstudio[fast]'``) and imported only in child processes (in a frozen bundle,
which cannot start them, when a fast path is tried).
"""

from __future__ import annotations

from .fastpath import (
    BACKEND_NAMES,
    PARITY_MAX_GREY,
    Decision,
    FastPaths,
    FastPathUnavailable,
    grey_level_diff,
)
from .isa import cpu_flags, describe_isa

__all__ = ["BACKEND_NAMES", "PARITY_MAX_GREY", "Decision", "FastPathUnavailable", "FastPaths",
           "cpu_flags", "describe_isa", "grey_level_diff"]
