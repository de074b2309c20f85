"""`sketchstudio-translate`: translate image files or folders from the command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .device import PRECISIONS
from .errors import ConfigError, DiskFullError, ImageError, NoFaceFoundError, SketchStudioError
from .fsutil import output_dir
from .imaging import check_image_file, is_image_path, load_image, save_image
from .outputs import OutputNamer, split_earlier_outputs
from .pipeline import DIRECTION_CHOICES, Eyes, output_kind, translate_face

if TYPE_CHECKING:  # the engine pulls in torch; the CLI imports it only once its flags are valid
    from .engine import Translator



def expand_inputs(inputs: list[str], out_dir: str | Path | None = None
                  ) -> tuple[list[Path], list[str], list[str]]:
    """Files as given, folders expanded to their images (sorted); returns (files, problems, notes).

    A file given twice (or reached through two folders or a link) is translated once. Images in a
    folder that is also the output folder and that SketchStudio wrote there earlier are not
    translated again (naming such a file explicitly still translates it).
    """
    files: list[Path] = []
    problems: list[str] = []
    notes: list[str] = []
    seen: set[str] = set()

    def add(q: Path) -> None:
        key = os.path.normcase(os.path.realpath(q))
        if key in seen:
            notes.append(f"{q}: given more than once; translated once")
            return
        seen.add(key)
        files.append(q)

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            entries = sorted(q for q in p.iterdir() if is_image_path(q))
            found: list[Path] = []
            for q in entries:
                try:
                    check_image_file(q)
                except ImageError as exc:
                    problems.append(f"{q}: {exc}")
                    continue
                found.append(q)
            if out_dir is not None:
                found, earlier = split_earlier_outputs(found, out_dir)
                if earlier:
                    notes.append(f"{p}: {len(earlier)} image(s) written there earlier by SketchStudio "
                                 "were not translated again (name them to translate them)")
            if not found and not entries:
                problems.append(f"{p}: folder holds no images")
            for q in found:
                add(q)
            continue
        try:
            check_image_file(p)
        except ImageError as exc:
            msg = str(exc)
            problems.append(f"{p}: no such file or folder" if "not found" in msg else f"{p}: {msg}")
            continue
        add(p)
    return files, problems, notes


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
    p.add_argument("--fast", choices=("cached", "auto", "off"), default="cached",
                   help="exported fast runtime (ONNX Runtime / OpenVINO): cached (default) uses one "
                        "the app measured on this machine before; auto measures and exports one "
                        "(≈ 30 s, pays off for large folders); off: PyTorch only")
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="output image type")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                   help="find the face and align it by the eye centres to the 200×250 CUFS crop the "
                        "models expect (default); --no-align for crops that are already aligned. "
                        "Images without a detectable face are listed as skipped")
    p.add_argument("--paste-back", action="store_true",
                   help="write the result pasted into the whole original image instead of the crop "
                        "(the face replaced inside the colour photo)")
    p.add_argument("--portrait", nargs="?", const="head", choices=("head", "full"),
                   help="draw a portrait: the face with its surroundings, head and shoulders "
                        "('head', the default when the flag is given alone) or the whole photo "
                        "('full'), at the face's trained scale, in the photo's own orientation, "
                        "on white paper")
    p.add_argument("--portrait-scale", type=float, default=2.0, metavar="X",
                   help="portrait pixels per template pixel (default 2: the face at twice the "
                        "200×250 crop's resolution)")
    p.add_argument("--eyes", metavar="X1,Y1,X2,Y2",
                   help="eye centres in pixels (one input image only): skips face detection")
    p.add_argument("--grey", action=argparse.BooleanOptionalAction, default=True,
                   help="write sketches in pencil grey (default); --no-grey keeps the model's "
                        "three output channels as they are")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_eyes(text: str) -> Eyes:
    """'X1,Y1,X2,Y2' -> ((x1, y1), (x2, y2)); range checks happen in faces.align."""
    try:
        v = [float(t) for t in text.replace(";", ",").split(",")]
    except ValueError:
        v = []
    if len(v) != 4:
        raise ConfigError(f"--eyes needs four numbers X1,Y1,X2,Y2 (pixels), got '{text}'.")
    return (v[0], v[1]), (v[2], v[3])


def _translate_each(files: list[Path], out_dir: Path, translator: Translator,
                    args: argparse.Namespace, eyes: Eyes | None,
                    problems: list[str]) -> tuple[int, int, list[str], list[str]]:
    """Translate and save each file through :func:`sketchstudio.pipeline.translate_face`; a file
    that fails is added to ``problems`` and the rest go on, except when the disk is full: then the
    batch stops (every further write would fail too). Outputs get distinct names that never
    replace an input or a file SketchStudio did not write
    (:class:`~sketchstudio.outputs.OutputNamer`). Returns (images written, images without a face,
    the pipeline's notes as "file: note", notes about renamed outputs)."""
    from tqdm import tqdm

    written = no_face = 0
    notes: list[str] = []
    renamed: list[str] = []
    namer = OutputNamer(out_dir, files)
    for i, f in enumerate(tqdm(files, unit="img", disable=len(files) < 2)):
        try:
            ft = translate_face(load_image(f), translator, direction=args.direction,
                                align=args.align, eyes=eyes, grey_sketch=args.grey,
                                paste_back=args.paste_back, portrait=args.portrait,
                                portrait_scale=args.portrait_scale)
            notes.extend(f"{f}: {n}" for n in ft.notes)
            claim = namer.claim(f, output_kind(ft.direction), args.format)
            save_image(ft.image, claim.path)
            written += 1
            if claim.note:
                renamed.append(claim.note)
        except NoFaceFoundError as exc:
            no_face += 1
            problems.append(f"{f}: {exc}")
        except DiskFullError as exc:
            left = len(files) - i - 1
            problems.append(f"{f}: {exc}" + (f" Stopped; {left} image(s) not translated." if left else ""))
            break
        except SketchStudioError as exc:
            problems.append(f"{f}: {exc}")
    return written, no_face, notes, renamed


#: renamed outputs listed one by one up to this many; beyond it, a count
MAX_RENAME_NOTES = 5


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.paste_back and not args.align:
        p.error("--paste-back needs face alignment; drop --no-align")
    if args.eyes and not args.align:
        p.error("--eyes needs face alignment; drop --no-align")
    if args.portrait and not args.align:
        p.error("--portrait needs face alignment; drop --no-align")
    if args.portrait and args.paste_back:
        p.error("--portrait and --paste-back are two kinds of output; choose one")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    from .engine import Translator

    with contextlib.ExitStack() as stack:
        try:
            eyes = parse_eyes(args.eyes) if args.eyes else None
            files, problems, input_notes = expand_inputs(args.inputs, args.out)
            if not files:
                raise ConfigError("nothing to translate: " + "; ".join(problems + input_notes))
            if eyes is not None and len(files) != 1:
                raise ConfigError(f"--eyes applies to one image, but {len(files)} were given.")
            out_dir = stack.enter_context(output_dir(args.out))
            translator = Translator(args.model, device=args.device, precision=args.precision,
                                    fast=args.fast)
        except SketchStudioError as exc:
            print(f"sketchstudio-translate: error: {exc}", file=sys.stderr)
            return 2
        written, no_face, notes, renamed = _translate_each(files, out_dir, translator, args, eyes,
                                                           problems)
    for msg in problems:
        print(f"skipped: {msg}", file=sys.stderr)
    for msg in [*input_notes, *notes, *renamed[:MAX_RENAME_NOTES]]:
        print(f"note: {msg}", file=sys.stderr)
    if len(renamed) > MAX_RENAME_NOTES:
        print(f"note: … and {len(renamed) - MAX_RENAME_NOTES} more output(s) written under a "
              "distinct name so that nothing is overwritten", file=sys.stderr)
    if no_face:
        print(f"note: no face found in {no_face} image(s); give the eye centres of one image with "
              "--eyes X1,Y1,X2,Y2, or use --no-align for crops that are already aligned.",
              file=sys.stderr)
    print(f"{written} image(s) written to {out_dir}" + (f", {len(problems)} skipped" if problems else ""))
    return 0 if not problems else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
