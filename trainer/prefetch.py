"""The next step's batch, prepared in a background thread while this step trains.

A batch is a pure function of its step (the epoch's seeded order, flips, crops and jitter; see
``Trainer._host_batch``), so preparing it early changes no number: a run with prefetching sees
exactly the batches of a run without, and a resumed run asks for the step it resumes at. Only
the host work moves (slicing the cached uint8 images, conversion to float, jitter, stacking,
pinning for a GPU); the copy to the device stays on the training thread, in its stream order.

One worker thread is enough: a batch costs milliseconds next to a step's seconds, and more
threads would compete with the step's own (the 2-core machines this runs on have none to spare).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Prefetcher(Generic[T]):
    """``get(step)`` returns ``make(step)``, and starts ``make(step + 1)`` in the background.

    Steps are usually asked for in order; any other step (after a resume, or a caller that
    jumps) is built on the spot, so the answer never depends on what was prefetched. ``make``
    must not touch the global RNG: it runs in another thread, at another time than it would
    without prefetching.
    """

    def __init__(self, make: Callable[[int], T], last_step: int) -> None:
        """``last_step``: the last step that will be asked for (nothing is built beyond it)."""
        self._make = make
        self._last = last_step
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sketchstudio-prefetch")
        self._pending: tuple[int, Future[T]] | None = None

    def get(self, step: int) -> T:
        if self._pending is not None and self._pending[0] == step:
            batch = self._pending[1].result()  # re-raises what went wrong in the worker
        else:
            if self._pending is not None:  # asked out of order: that batch is not needed
                self._pending[1].cancel()
            batch = self._make(step)
        nxt = step + 1
        self._pending = (nxt, self._pool.submit(self._make, nxt)) if nxt <= self._last else None
        return batch

    def close(self) -> None:
        """Stop the worker; a batch still being built is waited for (it is short) and dropped."""
        if self._pending is not None:
            self._pending[1].cancel()
            self._pending = None
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Inline(Generic[T]):
    """The same interface without a thread (``prefetch: false``): each batch on the training
    thread, when its step starts."""

    def __init__(self, make: Callable[[int], T], last_step: int) -> None:
        self._make = make

    def get(self, step: int) -> T:
        return self._make(step)

    def close(self) -> None:
        pass

    def __enter__(self) -> Inline[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
