"""The run folder: the files a training run writes, and the one way to read them back.

A run folder (``--out``) holds::

    checkpoint.safetensors   the latest weights + optimiser state (resume from it)
    best.safetensors         the best by validation FSIM (runs with --val)
    config.yaml              the TrainConfig the run trains with (resume reads it)
    losses.jsonl             one JSON row per step: {"step", "epoch", "lr", G/F loss terms, ...}
    val.jsonl                one JSON row per validation

The trainer appends to the logs and truncates them to the step it resumes from; the GUI's Train
view and ``research.report`` read them. They all go through this module, so a row torn by a crash
(the last line of a log, half-written) is skipped the same way everywhere instead of breaking
one reader and not another. No torch here: the GUI reads a run folder without loading a model.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from sketchstudio.errors import OutputError
from sketchstudio.fsutil import atomic_write, disk_full_error, is_disk_full
from sketchstudio.vocab import CHECKPOINT_FILE

log = logging.getLogger(__name__)

__all__ = ["BEST_FILE", "CHECKPOINT_FILE", "CONFIG_FILE", "LOSS_LOG", "VAL_LOG", "append_row",
           "read_columns", "read_rows", "truncate_log"]

BEST_FILE = "best.safetensors"
CONFIG_FILE = "config.yaml"
LOSS_LOG = "losses.jsonl"
VAL_LOG = "val.jsonl"


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a JSON-lines log, oldest first; [] when the file does not exist.

    Blank lines and lines that are not a JSON object (a row torn by a crash or a full disk) are
    skipped with a warning: the rows before and after them are still good.
    """
    return [row for _, row in _lines(path)]


def _lines(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """(line as written, parsed row) for every readable row of a log."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return []
    out = []
    for ln in text.splitlines():
        if not ln.strip():
            continue
        try:
            row = json.loads(ln)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            out.append((ln, row))
        else:
            log.warning("%s: skipped an unreadable line (torn by a crash?)", p)
    return out


def read_columns(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A log as float columns (one per key seen in any row, NaN where a row lacks it): what the
    plots want."""
    rows = read_rows(path)
    keys = sorted({k for r in rows for k in r})
    return {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in keys}


def append_row(fh: IO[str], row: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write one row to an open log and flush it, so a crash loses at most that row.

    A full disk raises :class:`~sketchstudio.errors.DiskFullError` naming the folder (the last
    checkpoint stays intact; the torn row is dropped on resume); other write errors raise
    :class:`~sketchstudio.errors.OutputError`. ``path`` is the log's path, for the message.
    """
    p = Path(path)
    line = json.dumps(row) + "\n"
    try:
        fh.write(line)
        fh.flush()
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(p.parent, len(line), p.name) from exc
        raise OutputError(f"Cannot write {p}: {exc.strerror or exc}") from exc


def truncate_log(path: str | os.PathLike[str], step: int) -> None:
    """Drop the rows written after ``step`` (and unreadable ones), atomically: a run resumed from
    the checkpoint of ``step`` then logs each later step exactly once."""
    p = Path(path)
    if not p.exists():
        return
    keep = [ln for ln, r in _lines(p) if r.get("step", 0) <= step]  # rows kept byte for byte
    with atomic_write(p, "w") as fh:
        fh.write("".join(ln + "\n" for ln in keep))
