"""Small helpers every command-line front end shares (argparse value types, logging set-up,
the error line).

They live in the core so that ``sketchstudio-translate``, ``sketchstudio-train``, the ablation/study
runner, the match CLI and the ``research`` tools of a checkout parse numbers and report errors the
same way.
"""

from __future__ import annotations

import argparse
import logging
import sys


def _whole_number(text: str, lowest: int, bound: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if v < lowest:
        raise argparse.ArgumentTypeError(f"{bound}, got {v}")
    return v


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1, with the message a user can act on."""
    return _whole_number(text, 1, "must be at least 1")


def non_negative_int(text: str) -> int:
    """argparse type: a whole number ≥ 0 (e.g. ``--threads``, where 0 means "the default")."""
    return _whole_number(text, 0, "must be 0 or more")


def set_threads(n: int) -> None:
    """``--threads N`` of the training front ends (0 = torch's default); torch imported only then."""
    if n:
        import torch

        torch.set_num_threads(n)


def finish_resumable(table: dict, wanted: int, what: str, show: str) -> int:
    """Exit status of a resumable multi-run job (study, ablation): 0 and the table when every run
    is done, else 1 with how to continue."""
    if len(table["variants"]) < wanted:
        print(f"{what} stopped; run the same command again to resume.", file=sys.stderr)
        return 1
    print(show)
    return 0


def image_size(text: str) -> int:
    """argparse type: a training/translation size the students accept (divisible by 4, ≥ 16)."""
    v = positive_int(text)
    if v % 4 or v < 16:
        raise argparse.ArgumentTypeError(f"must be divisible by 4 and at least 16 (e.g. 256), got {v}")
    return v


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def report_error(prog: str, exc: BaseException | str) -> int:
    """Print ``prog: error: message`` on stderr and return 2.

    That is the line and the exit status argparse gives a bad invocation, so a refused input
    found after parsing (a missing folder, an unreadable model) reads the same as a bad flag, and
    scripts can tell both from a run that failed half-way (1) or was cancelled (130). Use as
    ``return report_error(PROG, exc)`` in a front end's ``except SketchStudioError``.
    """
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return 2
