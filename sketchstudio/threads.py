"""Thread budget: a training job and the Translate view share the cores instead of fighting.

Why: two torch users with 2 threads each on 2 cores ran about 10× slower than one (issue 23):
OpenMP teams spin-wait for each other's cores. While a training job runs in the app, training gets
``total - 1`` intra-op threads and translation 1; when it stops, translation gets ``total`` back.

``torch.set_num_threads`` looks process-global, but with the OpenMP backend (the PyTorch wheels
for Linux, Windows and macOS) the count that a parallel region uses is the *calling thread's*
OpenMP setting: :func:`use_threads` called in the training thread and in the compute thread gives
each its own team size, which is what the budget needs. Two traps, both handled here:

- a thread that has not yet run a parallel op initialises its count lazily, on its first op, from
  the last value set anywhere in the process, overwriting a value set before it; so
  :func:`use_threads` first triggers that lazy initialisation (``torch.get_num_threads()``), then
  sets the count;
- with PyTorch's native thread pool (no OpenMP) there is one shared pool, so there is nothing to
  split and no oversubscription to fear: the pool queues the work of both callers. :func:`use_threads`
  then leaves the count alone (:func:`per_thread_counts` says which case applies).

Exported runtimes (ONNX Runtime, OpenVINO) size their pools when a model is loaded; the engine
keeps one loaded runner per thread count (see
:meth:`~sketchstudio.runtime.fastpath.FastPaths.runner`).

torch is imported inside the functions: the GUI's context holds a budget before torch is loaded
(the window appears first).
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def parallel_backend() -> str:
    """"OpenMP", "native thread pool" or "TBB": ATen's intra-op backend in this build."""
    import torch

    info = torch.__config__.parallel_info()
    for line in info.splitlines():
        if line.startswith("ATen parallel backend:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def per_thread_counts() -> bool:
    """Whether each thread can have its own intra-op thread count (the OpenMP backend)."""
    return parallel_backend().lower().startswith("openmp")


def use_threads(n: int) -> None:
    """Make torch ops issued from *the calling thread* use ``n`` intra-op threads (OpenMP builds;
    a no-op with a shared native pool, which cannot oversubscribe). Cheap: call it before each job."""
    import torch

    n = max(1, int(n))
    if not per_thread_counts():
        return
    if torch.get_num_threads() != n:  # the call also runs this thread's lazy initialisation
        torch.set_num_threads(n)


def default_total() -> int:
    """The threads torch would use here (respects ``OMP_NUM_THREADS`` and CPU affinity)."""
    import torch

    return max(1, torch.get_num_threads())


@dataclass
class ThreadBudget:
    """How many intra-op threads training and translation get. Thread-safe; holds only numbers,
    the threads apply them themselves (:func:`use_threads`)."""

    #: all the intra-op threads there are to share (None: :func:`default_total`, read on first use)
    total_request: int | None = None
    _jobs: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def total(self) -> int:
        if self.total_request is None:
            self.total_request = default_total()
        return self.total_request

    @property
    def training(self) -> bool:
        return self._jobs > 0

    @property
    def train_threads(self) -> int:
        """A training job's share: all cores but one for translation (at least one)."""
        return max(1, self.total - 1)

    @property
    def translate_threads(self) -> int:
        """Translation's share: one thread while training runs, else all of them."""
        return 1 if self.training else self.total

    @property
    def translate_request(self) -> int | None:
        """:attr:`translate_threads` without resolving the total: None means all of them (torch's
        own count, read by the thread that runs torch). For the UI thread, which must not import
        torch: :func:`default_total` would, and that import froze the window for seconds."""
        return 1 if self.training else self.total_request

    def training_started(self) -> int:
        """A training job starts; returns its thread count."""
        with self._lock:
            self._jobs += 1
        log.info("thread budget: training %d thread(s), translation %d", self.train_threads,
                 self.translate_threads)
        return self.train_threads

    def training_stopped(self) -> None:
        with self._lock:
            self._jobs = max(0, self._jobs - 1)
        log.info("thread budget: translation %d thread(s)", self.translate_threads)
