"""The validation split: pairs held out of training, scored while the run trains.

Checkpoints and recipes are chosen on these pairs, never on the test set (which is only reported).
A split is a file of stems, one per line (``#`` comments allowed); ``"cufs"`` names the shipped
CUFS split (``splits/cufs_val.txt``: 10 % of each of CUHK, AR and XM2VTS training pairs). The
trainer removes those stems from its training pairs, so the split is disjoint from them by
construction, and keeps ``best.safetensors``: the weights with the best mean validation FSIM.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sketchstudio.errors import ConfigError, DataError

from .data import Pair
from .rundir import BEST_FILE as BEST_FILE
from .rundir import VAL_LOG as VAL_LOG

log = logging.getLogger(__name__)

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
NAMED_SPLITS = {"cufs": SPLITS_DIR / "cufs_val.txt"}


def read_stems(spec: str) -> list[str]:
    """The stems of a validation split: a named split (``cufs``) or a path to a stems file."""
    path = NAMED_SPLITS.get(spec, Path(spec).expanduser())
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        named = ", ".join(NAMED_SPLITS)
        raise ConfigError(f"Cannot read the validation split '{spec}' ({exc}); give a file of "
                          f"stems, one per line, or one of: {named}.") from exc
    stems = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not stems:
        raise ConfigError(f"The validation split '{spec}' lists no stems.")
    return stems


@dataclass
class ValSplit:
    """Training pairs and validation pairs of one data folder, disjoint by stem."""

    train: list[Pair]
    val: list[Pair]
    missing: list[str] = field(default_factory=list)


def split_pairs(pairs: list[Pair], stems: list[str], spec: str = "") -> ValSplit:
    """Hold the pairs named by ``stems`` out of ``pairs``.

    Stems not in the data are reported (a CUFS split used on its CUHK subset only names AR and
    XM2VTS faces that are not there) but are not an error; no match at all is, as is a split that
    would leave nothing to train on.
    """
    wanted = set(stems)
    val = [p for p in pairs if p.stem in wanted]
    train = [p for p in pairs if p.stem not in wanted]
    present = {p.stem for p in val}
    missing = [s for s in stems if s not in present]
    if not val:
        raise DataError(f"None of the {len(stems)} validation stems of '{spec}' is in the training "
                        f"data (e.g. '{stems[0]}'); is it the split of another data set?")
    if not train:
        raise DataError(f"The validation split '{spec}' holds every pair; nothing is left to train on.")
    if missing:
        log.info("validation split %s: %d of its stems are not in this data (%s…)", spec,
                 len(missing), ", ".join(missing[:3]))
    return ValSplit(train=train, val=val, missing=missing)
