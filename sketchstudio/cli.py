"""`sketchstudio-translate`: translate image files or folders from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import SketchStudioError
from .fsutil import ensure_writable_dir
from .imaging import is_image_path, load_image, looks_like_sketch, save_image

DIRECTION_CHOICES = ("auto", "photo2sketch", "sketch2photo")


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files as given, folders expanded to their images (sorted); returns (files, problems)."""
    files: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and is_image_path(q))
            if not found:
                problems.append(f"{p}: folder holds no images")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            problems.append(f"{p}: no such file or folder")
    return files, problems


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sketchstudio-translate",
                                description="Turn face photos into sketches and sketches into photos.")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--direction", choices=DIRECTION_CHOICES, default="auto",
                   help="auto picks sketch→photo for greyish images, photo→sketch otherwise")
    p.add_argument("--model", help="checkpoint (.safetensors or run folder); default: the shipped model")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="output image type")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    from tqdm import tqdm

    from .engine import PHOTO2SKETCH, SKETCH2PHOTO, Translator

    try:
        files, problems = expand_inputs(args.inputs)
        out_dir = ensure_writable_dir(args.out)
        translator = Translator(args.model, device=args.device)
    except SketchStudioError as exc:
        print(f"sketchstudio-translate: error: {exc}", file=sys.stderr)
        return 2
    written = 0
    for f in tqdm(files, unit="img", disable=len(files) < 2):
        try:
            img = load_image(f)
            direction = args.direction
            if direction == "auto":
                direction = SKETCH2PHOTO if looks_like_sketch(img) else PHOTO2SKETCH
            result = translator.translate(img, direction)
            save_image(result.output, out_dir / f"{f.stem}.{args.format}")
            written += 1
        except SketchStudioError as exc:
            problems.append(f"{f}: {exc}")
    for msg in problems:
        print(f"skipped: {msg}", file=sys.stderr)
    if translator.fallback_note:
        print(f"note: {translator.fallback_note}", file=sys.stderr)
    print(f"{written} image(s) written to {out_dir}" + (f", {len(problems)} skipped" if problems else ""))
    return 0 if not problems else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
