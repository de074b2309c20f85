"""The thread budget (issue 23): a training job and translations split the cores, per thread.

The GUI side (Train view + Translate view in one process) is in tests/test_gui_speed.py; these
are the pieces: the split policy, per-thread counts with the OpenMP backend (and the lazy
initialisation that silently overwrites a count set too early), and the Translator applying its
count in whichever thread calls it.
"""

from __future__ import annotations

import threading

import pytest
import torch

from sketchstudio.engine import Translator
from sketchstudio.threads import ThreadBudget, per_thread_counts, use_threads

from .conftest import face_like

needs_openmp = pytest.mark.skipif(not per_thread_counts(),
                                  reason="this torch build shares one native thread pool")
G = "photo2sketch"


def _parallel_op() -> None:
    x = torch.randn(1, 8, 48, 48)
    torch.nn.functional.conv2d(x, torch.randn(8, 8, 3, 3), padding=1)


def test_budget_gives_training_all_but_one_thread_and_restores():
    b = ThreadBudget(total_request=4)
    assert (b.training, b.translate_threads) == (False, 4)
    assert b.training_started() == 3
    assert b.translate_threads == 1
    assert b.training_started() == 3  # a second job (resume) while one runs: same split
    b.training_stopped()
    assert b.translate_threads == 1  # one job still runs
    b.training_stopped()
    assert b.translate_threads == 4
    b.training_stopped()  # an extra stop never goes negative
    assert b.translate_threads == 4 and not b.training


def test_budget_on_one_core_never_asks_for_zero_threads():
    b = ThreadBudget(total_request=1)
    assert b.training_started() == 1 and b.translate_threads == 1


def test_budget_total_defaults_to_torchs_thread_count():
    assert ThreadBudget().total == max(1, torch.get_num_threads())


@needs_openmp
def test_use_threads_is_per_thread_and_survives_lazy_initialisation():
    """A thread that sets its count before its first op would lose it to the process-wide value
    of the moment (OpenMP's lazy per-thread initialisation); use_threads keeps it, and another
    thread changing its own count later does not reach it."""
    before = torch.get_num_threads()
    set_here, main_changed = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def worker() -> None:
        use_threads(1)
        set_here.set()
        main_changed.wait(10)
        _parallel_op()  # first op of this thread after the main thread set another count
        seen["worker"] = torch.get_num_threads()

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert set_here.wait(10)
        torch.set_num_threads(3)
        main_changed.set()
        t.join(10)
        assert seen["worker"] == 1
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@needs_openmp
def test_translator_applies_its_threads_in_the_calling_thread(tiny_model):
    tr = Translator(tiny_model, device="cpu", fast="off")
    seen: list[int] = []
    tr.net(G).register_forward_pre_hook(lambda m, a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()

    def translate() -> None:
        tr.translate(face_like(1), G)

    tr.set_threads(1)
    t = threading.Thread(target=translate)
    t.start()
    t.join(60)
    assert seen[-1] == 1
    assert torch.get_num_threads() == before  # this (the caller's) thread kept its count
    tr.set_threads(2)
    translate()
    assert seen[-1] == 2
    torch.set_num_threads(before)
    tr.set_threads(None)  # None: leave the calling thread's count as it is
    translate()
    assert seen[-1] == before
