"""Runners for exported students: one call, ``runner(x) -> y``, on (1, 3, S, S) float32 arrays.

Each runner uses the same number of threads as torch (``torch.get_num_threads()``) so that a
fast path respects the app's thread budget instead of grabbing every core (two runtimes
oversubscribing two cores ran about 10× slower in issue 23's measurements).

Where they run: the app does not load these classes itself but a
:class:`~sketchstudio.runtime.remote.RemoteRunner`, which builds one of them in a long-lived child
process and sends it the arrays over pipes. Why: ``import onnxruntime`` / ``import openvino`` and
OpenVINO's ``compile_model`` run native code holding the GIL, and even on a background thread
that stalled the app's UI thread for 60 ms (warm cache: import + compile) to 132 ms (cold cache)
in the real window, over issue 23's 50 ms. In-process they still serve frozen bundles (no
``python -m`` child) and tests that patch them; the child builds them with :func:`runner_class`.

This module imports neither torch nor the rest of the package at import time, so the child
that loads it starts in a fraction of a second (torch alone takes ~4 s and ~600 MB there).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class Runner(Protocol):
    """A loaded exported model; thread-safe for concurrent calls."""

    name: str
    threads: int  # the intra-op pool size it was loaded with

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class BackendMissing(ImportError):
    """The runtime package of a backend is not installed."""


class OrtRunner:
    """ONNX Runtime on the CPU (MLAS kernels; int8 QDQ graphs become QLinearConv)."""

    def __init__(self, name: str, path: str | os.PathLike[str], threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendMissing("onnxruntime is not installed") from exc
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # warnings about unused initialisers are noise here
        if threads < (os.cpu_count() or 1):
            # sharing the cores (the app's thread budget while training runs): idle pool threads
            # must sleep, not spin on a core that the training job needs
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.name, self.threads = name, max(1, threads)
        self.path = Path(path)
        self._session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        # the graph's own input name (onnx_export.INPUT_NAME), read here so that this module does
        # not import onnx_export, which imports torch (see the module docstring)
        self._input = self._session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: np.ascontiguousarray(x, np.float32)})[0]


class OpenVinoRunner:
    """OpenVINO on the CPU, from the same ONNX file (it picks bf16 by itself on AMX CPUs and runs
    QDQ int8 graphs with its int8 kernels)."""

    def __init__(self, name: str, path: str | os.PathLike[str], threads: int) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendMissing("openvino is not installed") from exc
        core = ov.Core()
        self.name, self.threads = name, max(1, threads)
        self.path = Path(path)
        self._compiled = core.compile_model(str(path), "CPU",
                                            {"INFERENCE_NUM_THREADS": max(1, threads),
                                             "PERFORMANCE_HINT": "LATENCY"})

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # a fresh infer request per call keeps concurrent calls independent
        req = self._compiled.create_infer_request()
        req.infer({0: np.ascontiguousarray(x, np.float32)})
        return np.array(req.get_output_tensor(0).data, copy=True)


def runner_class(name: str) -> type[OrtRunner] | type[OpenVinoRunner]:
    """The runner class of a fast path by its name ("onnx-fp32", "openvino-int8", ...)."""
    if name.startswith("onnx-"):
        return OrtRunner
    if name.startswith("openvino"):
        return OpenVinoRunner
    raise ValueError(f"unknown fast-path backend {name!r}")


def runtime_versions() -> dict[str, str]:
    """Versions of the optional runtimes that are importable (part of the cache keys)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for mod in ("onnxruntime", "onnx", "openvino"):
        # the installed distribution's version, without importing it (importing onnx holds the
        # GIL for seconds; see onnx_export)
        try:
            out[mod] = version(mod)
        except PackageNotFoundError:  # e.g. onnxruntime-gpu: the module's own, if imported
            m = sys.modules.get(mod)
            if m is not None:
                out[mod] = str(getattr(m, "__version__", "?"))
    return out
