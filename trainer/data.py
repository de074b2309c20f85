"""Paired photo/sketch datasets with up-front validation.

Accepted layouts (first match wins):
1. ``root/photos/<stem>.<ext>`` + ``root/sketches/<stem>.<ext>`` (CUFS as in ../shared/data/cufs/train);
2. ``root/MANIFEST.tsv`` with ``photo`` and ``sketch`` columns (paths relative to root) and an
   optional ``split`` column, filtered by ``split=...`` (``"train"``, or column filters such as
   ``"train,subset=cuhk"`` for one source of CUFS, as the paper's CUHK-only ablation needs);
3. a flat folder of ``<stem>.<ext>`` photos next to ``<stem>-sz1.<ext>`` / ``<stem>_sketch.<ext>`` /
   ``<stem>-sketch.<ext>`` sketches (CUFS' original naming).

Every problem (unpaired stems, unreadable or non-image files) is collected and reported at once, so a
user fixes the folder in one go instead of one error per run.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sketchstudio.errors import DataError, ImageError, SketchStudioError
from sketchstudio.imaging import IMAGE_SUFFIXES, array_to_tensor, load_image, resize

log = logging.getLogger(__name__)

SKETCH_SUFFIXES = ("-sz1", "_sketch", "-sketch")


@dataclass(frozen=True)
class Pair:
    stem: str
    photo: Path
    sketch: Path


@dataclass
class PairScan:
    """Result of looking at a folder: usable pairs and a list of human-readable problems."""

    root: Path
    layout: str
    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.pairs) and not self.problems

    def require_ok(self, kind: str) -> list[Pair]:
        """The pairs, or a DataError listing the problems (``kind``: "Training", "Test", …)."""
        if not self.ok:
            shown = "\n  ".join(self.problems[:20])
            more = f"\n  … and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
            raise DataError(f"{kind} folder '{self.root}' has {len(self.problems)} problem(s):\n  "
                            f"{shown}{more}", self.problems)
        return self.pairs


def _images_in(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            out.setdefault(p.stem, p)
    return out


def _pair_by_stem(root: Path, photos: dict[str, Path], sketches: dict[str, Path],
                  layout: str) -> PairScan:
    scan = PairScan(root=root, layout=layout)
    for stem in sorted(set(photos) | set(sketches)):
        if stem not in sketches:
            scan.problems.append(f"photo without sketch: {photos[stem]}")
        elif stem not in photos:
            scan.problems.append(f"sketch without photo: {sketches[stem]}")
        else:
            scan.pairs.append(Pair(stem, photos[stem], sketches[stem]))
    return scan


def parse_split(split: str | None) -> dict[str, str]:
    """``"train,subset=cuhk"`` → ``{"split": "train", "subset": "cuhk"}``; a bare word filters ``split``."""
    filters: dict[str, str] = {}
    for part in (split or "").split(","):
        if not part.strip():
            continue
        col, eq, value = part.partition("=")
        col, value = (col.strip(), value.strip()) if eq else ("split", col.strip())
        if not col or not value:
            raise DataError(f"bad split filter '{part}': use a split name (train) or column=value "
                            "pairs separated by commas (train,subset=cuhk)")
        filters[col] = value
    return filters


def _scan_manifest(root: Path, split: str | None) -> PairScan:
    scan = PairScan(root=root, layout="manifest")
    with open(root / "MANIFEST.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if rows and not {"photo", "sketch"} <= set(rows[0]):
        scan.problems.append("MANIFEST.tsv needs 'photo' and 'sketch' columns")
        return scan
    filters = parse_split(split)
    unknown = sorted(set(filters) - set(rows[0] if rows else ()))
    if unknown:
        scan.problems.append(f"MANIFEST.tsv has no column {', '.join(map(repr, unknown))} to filter "
                             f"on (columns: {', '.join(rows[0]) if rows else 'none'})")
        return scan
    for i, row in enumerate(rows, start=2):
        if any(row.get(col) != value for col, value in filters.items()):
            continue
        photo, sketch = root / row["photo"], root / row["sketch"]
        missing = [str(p) for p in (photo, sketch) if not p.is_file()]
        if missing:
            scan.problems.append(f"MANIFEST.tsv line {i}: missing {', '.join(missing)}")
            continue
        scan.pairs.append(Pair(row.get("stem") or photo.stem, photo, sketch))
    return scan


def _scan_flat(root: Path) -> PairScan:
    photos: dict[str, Path] = {}
    sketches: dict[str, Path] = {}
    for stem, p in _images_in(root).items():
        for suf in SKETCH_SUFFIXES:
            if stem.lower().endswith(suf):
                sketches[stem[: -len(suf)]] = p
                break
        else:
            photos[stem] = p
    return _pair_by_stem(root, photos, sketches, "flat")


def scan_pairs(root: str | Path, split: str | None = None, check_images: bool = True) -> PairScan:
    """Find photo/sketch pairs under ``root`` and list every problem found."""
    r = Path(root).expanduser()
    if not r.is_dir():
        scan = PairScan(root=r, layout="none")
        scan.problems.append(f"'{r}' is not a folder")
        return scan
    if (r / "photos").is_dir() and (r / "sketches").is_dir():
        scan = _pair_by_stem(r, _images_in(r / "photos"), _images_in(r / "sketches"), "photos+sketches")
    elif (r / "MANIFEST.tsv").is_file():
        scan = _scan_manifest(r, split)
    else:
        scan = _scan_flat(r)
    bad_ext = [p for pair in scan.pairs for p in (pair.photo, pair.sketch)
               if p.suffix.lower() not in IMAGE_SUFFIXES]
    for p in bad_ext:
        scan.problems.append(f"not an image file (extension '{p.suffix}'): {p}")
    if check_images:
        from PIL import Image

        for pair in scan.pairs:
            for p in (pair.photo, pair.sketch):
                if p in bad_ext:
                    continue
                try:
                    with Image.open(p) as im:
                        im.verify()
                except Exception as exc:  # noqa: BLE001 - any failure = unreadable
                    scan.problems.append(f"unreadable image ({type(exc).__name__}): {p}")
    if not scan.pairs and not scan.problems:
        scan.problems.append(
            f"no photo/sketch pairs in '{r}': expected photos/ and sketches/ subfolders with the same "
            "file names, a MANIFEST.tsv, or <name>.jpg next to <name>-sz1.jpg")
    return scan


def data_fingerprint(pairs: list[Pair]) -> str:
    """Content hash of the training set, stored with checkpoints (which data made this model?)."""
    h = hashlib.sha256()
    for pair in pairs:
        for p in (pair.photo, pair.sketch):
            h.update(p.name.encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


class PairedFolder(Dataset):
    """Validated photo/sketch pairs as [-1, 1] tensors of shape (3, size, size).

    Images are decoded once, resized to ``size`` and kept as uint8 (0.2 MB per pair at 256²), so
    epochs after the first cost no decoding and a corrupt file fails before training starts.
    ``transform`` (e.g. face alignment) maps each decoded RGB image before resizing.
    ``exclude_stems``: pairs held out (the validation split); ``scan`` still lists every pair.
    ``margin``: images are kept at ``size + margin`` so :meth:`crop` can cut random ``size`` crops
    (augmentation); indexing returns the centre crop, so callers that do not augment see the
    same framing either way.
    """

    def __init__(self, root: str | Path, size: int = 256, split: str | None = None,
                 transform: Callable[[np.ndarray, str], np.ndarray] | None = None,
                 exclude_stems: Collection[str] = (), margin: int = 0) -> None:
        scan = scan_pairs(root, split)
        held_out = set(exclude_stems)
        self.pairs = [p for p in scan.require_ok("Training") if p.stem not in held_out]
        self.scan, self.size, self.margin = scan, size, margin
        self._cache: list[tuple[np.ndarray, np.ndarray]] = []
        problems: list[str] = []
        for pair in self.pairs:
            imgs = []
            for p, kind in ((pair.photo, "photo"), (pair.sketch, "sketch")):
                try:
                    img = load_image(p)
                    if transform is not None:
                        img = transform(img, kind)
                    imgs.append(resize(img, size + margin, size + margin))
                except (ImageError, SketchStudioError) as exc:
                    problems.append(f"{p}: {exc}")
            if len(imgs) == 2:
                self._cache.append((imgs[0], imgs[1]))
        if problems:
            raise DataError(f"{len(problems)} image(s) in '{scan.root}' cannot be used:\n  "
                            + "\n  ".join(problems[:20]), problems)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.crop(i, self.margin // 2, self.margin // 2)

    def crop(self, i: int, left: int, top: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair ``i`` cut at (left, top), ``size`` square: the same window of photo and sketch."""
        if not (0 <= left <= self.margin and 0 <= top <= self.margin):
            raise ValueError(f"crop offset ({left}, {top}) outside 0..{self.margin}")
        photo, sketch = self._cache[i]
        win = (slice(top, top + self.size), slice(left, left + self.size))
        return array_to_tensor(photo[win]), array_to_tensor(sketch[win])

    def describe(self) -> dict[str, object]:
        return {"root": str(self.scan.root), "layout": self.scan.layout, "n_pairs": len(self),
                "sha256": data_fingerprint(self.pairs)}
