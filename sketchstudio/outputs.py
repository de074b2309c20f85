"""Output names for batch jobs that never destroy a user's file.

A batch (``sketchstudio-translate``, the GUI's folder batch) used to write ``<out>/<stem>.<ext>``
blindly: translating ``d/x.png`` into ``d`` replaced the photo with its sketch, and ``a/face.jpg``
plus ``b/face.png`` (or one file given twice) left one output while "2 written" was reported.
:class:`OutputNamer` hands out one distinct path per input and never one that is

- an input of the same job (compared by real path and by inode, so links count too),
- a path already given to another input of the same job, or
- an existing file SketchStudio did not write (no :data:`~sketchstudio.imaging.OUTPUT_MARKER`).

The plain ``<stem>.<ext>`` is used when it is free (or an earlier SketchStudio output, so a
rerun refreshes its own results); otherwise ``<stem>.<tag>.<ext>`` (``face.sketch.png``), then
``<stem>-2.<tag>.<ext>``, ``<stem>-3.<tag>.<ext>`` …, and the caller gets a note saying why.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import OutputError
from .imaging import is_our_output

#: how far ``<stem>-N.<tag>.<ext>`` counts before giving up (a folder with that many clashes is
#: not one a person meant to write into)
MAX_SUFFIX = 9999


def _real(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass(frozen=True)
class Claim:
    """Where one input's output goes; ``note`` says why it is not the plain name (None if it is)."""

    path: Path
    note: str | None = None


class OutputNamer:
    """Distinct, safe output paths in ``out_dir`` for the inputs of one job (see the module doc)."""

    def __init__(self, out_dir: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> None:
        self.out_dir = Path(out_dir)
        paths = [Path(p) for p in inputs]
        self._input_real = {_real(p) for p in paths}
        self._input_ids = {i for i in map(_inode, paths) if i is not None}
        self._claimed: set[str] = set()  # case-folded: face.PNG and face.png are one file on macOS

    def is_input(self, path: Path) -> bool:
        """Whether ``path`` is (or links to) one of the job's inputs."""
        ident = _inode(path)
        return _real(path) in self._input_real or (ident is not None and ident in self._input_ids)

    def _why_not(self, path: Path) -> str | None:
        if path.name.casefold() in self._claimed:
            return f"'{path.name}' is already the output of another input of this run"
        if self.is_input(path):
            return f"'{path.name}' is one of the inputs"
        if path.is_symlink() or path.exists():
            if not path.is_file() or path.is_symlink():
                return f"'{path.name}' exists and is not a plain file"
            if not is_our_output(path):
                return f"'{path.name}' exists and was not written by SketchStudio"
        return None

    def _candidates(self, stem: str, tag: str, ext: str) -> Iterator[Path]:
        yield self.out_dir / f"{stem}.{ext}"
        yield self.out_dir / f"{stem}.{tag}.{ext}"
        for n in range(2, MAX_SUFFIX + 1):
            yield self.out_dir / f"{stem}-{n}.{tag}.{ext}"

    def claim(self, source: str | os.PathLike[str], tag: str, ext: str) -> Claim:
        """Reserve the output path for ``source``; ``tag`` names what it became ("sketch"/"photo")."""
        stem = Path(source).stem
        first_reason: str | None = None
        for cand in self._candidates(stem, tag, ext.lstrip(".")):
            reason = self._why_not(cand)
            if reason is None:
                self._claimed.add(cand.name.casefold())
                note = None if first_reason is None else (
                    f"{source}: written as '{cand.name}' ({first_reason}; nothing is overwritten)")
                return Claim(cand, note)
            first_reason = first_reason or reason
        raise OutputError(f"{source}: no free output name in '{self.out_dir}' "
                          f"({stem}.{ext} … {stem}-{MAX_SUFFIX}.{tag}.{ext} are all taken).")


def split_earlier_outputs(files: Iterable[Path], out_dir: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """(inputs to translate, earlier SketchStudio outputs lying in ``out_dir``).

    A folder translated into itself holds the previous run's results next to the originals; a
    rerun would otherwise translate those again (``x.sketch.sketch.png``). Files elsewhere, even
    SketchStudio outputs (a sketch folder translated back to photos), are always kept.
    """
    out_real = _real(Path(out_dir))
    keep: list[Path] = []
    earlier: list[Path] = []
    for f in files:
        if _real(f.parent) == out_real and is_our_output(f):
            earlier.append(f)
        else:
            keep.append(f)
    return keep, earlier
