"""`sketchstudio-translate`: translate image files or folders from the command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from .device import PRECISIONS
from .errors import ConfigError, NoFaceFoundError, SketchStudioError
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
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 where the hardware does it natively (≈2× faster), else fp32")
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="output image type")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                   help="find the face and align it by the eye centres to the 200×250 CUFS crop the "
                        "models expect (default); --no-align for crops that are already aligned. "
                        "Images without a detectable face are listed as skipped")
    p.add_argument("--paste-back", action="store_true",
                   help="write the result pasted into the whole original image instead of the crop")
    p.add_argument("--eyes", metavar="X1,Y1,X2,Y2",
                   help="eye centres in pixels (one input image only): skips face detection")
    p.add_argument("--grey", action=argparse.BooleanOptionalAction, default=True,
                   help="write sketches in pencil grey (default); --no-grey keeps the model's "
                        "three output channels as they are")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_eyes(text: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """'X1,Y1,X2,Y2' -> ((x1, y1), (x2, y2)); range checks happen in faces.align."""
    try:
        v = [float(t) for t in text.replace(";", ",").split(",")]
    except ValueError:
        v = []
    if len(v) != 4:
        raise ConfigError(f"--eyes needs four numbers X1,Y1,X2,Y2 (pixels), got '{text}'.")
    return (v[0], v[1]), (v[2], v[3])


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.paste_back and not args.align:
        p.error("--paste-back needs face alignment; drop --no-align")
    if args.eyes and not args.align:
        p.error("--eyes needs face alignment; drop --no-align")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    from tqdm import tqdm

    from .engine import PHOTO2SKETCH, SKETCH2PHOTO, Translator
    from .faces import align, paste_back

    try:
        eyes = parse_eyes(args.eyes) if args.eyes else None
        files, problems = expand_inputs(args.inputs)
        if not files:
            raise ConfigError("nothing to translate: " + "; ".join(problems))
        if eyes is not None and len(files) != 1:
            raise ConfigError(f"--eyes applies to one image, but {len(files)} were given.")
        created_out = not Path(args.out).exists()
        out_dir = ensure_writable_dir(args.out)
        translator = Translator(args.model, device=args.device, precision=args.precision)
    except SketchStudioError as exc:
        print(f"sketchstudio-translate: error: {exc}", file=sys.stderr)
        return 2
    written = no_face = 0
    notes: list[str] = []
    for f in tqdm(files, unit="img", disable=len(files) < 2):
        try:
            img = load_image(f)
            direction = args.direction
            if direction == "auto":
                direction = SKETCH2PHOTO if looks_like_sketch(img) else PHOTO2SKETCH
            aligned = None
            if args.align:
                aligned = align(img, eyes=eyes, kind="sketch" if direction == SKETCH2PHOTO else "photo")
                if aligned.n_faces > 1:
                    notes.append(f"{f}: {aligned.n_faces} faces found; translated the largest")
            result = translator.translate(aligned.crop if aligned else img, direction,
                                          grey_sketch=args.grey)
            out = result.output
            if aligned is not None and args.paste_back:
                out = paste_back(img, out, aligned.matrix)
            save_image(out, out_dir / f"{f.stem}.{args.format}")
            written += 1
        except NoFaceFoundError as exc:
            no_face += 1
            problems.append(f"{f}: {exc}")
        except SketchStudioError as exc:
            problems.append(f"{f}: {exc}")
    for msg in problems:
        print(f"skipped: {msg}", file=sys.stderr)
    for msg in notes:
        print(f"note: {msg}", file=sys.stderr)
    if no_face:
        print(f"note: no face found in {no_face} image(s); give the eye centres of one image with "
              "--eyes X1,Y1,X2,Y2, or use --no-align for crops that are already aligned.",
              file=sys.stderr)
    if translator.fallback_note:
        print(f"note: {translator.fallback_note}", file=sys.stderr)
    if not written and created_out:
        # Leave no trace of a run that wrote nothing (the folder was made for it and is empty).
        with contextlib.suppress(OSError):
            out_dir.rmdir()
    print(f"{written} image(s) written to {out_dir}" + (f", {len(problems)} skipped" if problems else ""))
    return 0 if not problems else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
