"""Model-card figures: loss curves from losses.jsonl and a grid of example translations.

``python -m research.report --run runs/kt-cufs --model M --data ../shared/data/cufs/test --out DIR``
writes ``loss_curves.png``, ``val_curves.png`` (for a run trained with ``--val``) and
``examples.jpg`` (needs matplotlib, in the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sketchstudio.cliutil import positive_int
from sketchstudio.engine import PHOTO2SKETCH, SKETCH2PHOTO, Translator
from sketchstudio.fsutil import atomic_write_bytes
from sketchstudio.imaging import load_image, save_image
from trainer.data import scan_pairs
from trainer.rundir import LOSS_LOG, VAL_LOG, read_rows
from trainer.rundir import read_columns as read_loss_log

TERMS = ("tea", "stu", "rec", "total")


def _smooth(v: np.ndarray, k: int) -> np.ndarray:
    if len(v) < k or k < 2:
        return v
    return np.convolve(v, np.ones(k) / k, mode="valid")


def auto_window(n_steps: int) -> int:
    """Moving-average width: per-face losses vary more than they fall over a few hundred steps, so
    long runs need a wider window (about 1/30 of the run, 25 to 200 steps) to show the trend."""
    return int(np.clip(n_steps // 30, 25, 200))


def lr_changes(d: dict[str, np.ndarray], marks: Sequence[tuple[float, str]] = ()
               ) -> list[tuple[float, str]]:
    """(step, label) wherever the logged learning rate changes after the log's first row.

    Rows written before the trainer logged ``lr`` have none; the first row that has one after such
    rows counts as a change too, so a resume at a new rate shows even on an older log, unless the
    latest of the explicit ``marks`` before it already names that rate (then nothing changed)."""
    if "lr" not in d:
        return []
    out: list[tuple[float, str]] = []
    ordered = sorted(marks)
    for i in range(1, len(d["lr"])):
        now, before, step = d["lr"][i], d["lr"][i - 1], float(d["step"][i])
        if np.isfinite(now) and now != before:
            label = f"lr {np.format_float_scientific(now, trim='-', exp_digits=1)}"
            earlier = [lab for s, lab in ordered if s <= step]
            if not np.isfinite(before) and earlier and earlier[-1] == label:
                continue
            out.append((step, label))
    return out


def plot_losses(log_path: str | Path, out: str | Path, smooth: int | None = None,
                marks: Sequence[tuple[float, str]] = ()) -> Path:
    """Four log-scale panels (tea-stu, stu-stu, rec, total) of G and F, smoothed; dotted lines
    at ``marks`` and wherever the logged learning rate changes, labelled in the first panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = read_loss_log(log_path)
    if "step" not in d or not len(d["step"]):
        raise ValueError(f"'{log_path}' holds no loss rows")
    smooth = smooth or auto_window(len(d["step"]))
    all_marks = sorted([*marks, *lr_changes(d, marks)])
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, term in zip(axes, TERMS, strict=True):
        for step, _ in all_marks:
            ax.axvline(step, color="grey", linestyle=":", linewidth=1)
        for net, colour in (("G", "tab:blue"), ("F", "tab:orange")):
            key = f"{net}_{term}"
            if key in d and np.isfinite(d[key]).any():
                y = _smooth(d[key], smooth)
                ax.plot(d["step"][len(d["step"]) - len(y):], y, colour, label=net)
        ax.set_title({"tea": "teacher-student", "stu": "student-student", "rec": "reconstruction",
                      "total": "total"}[term])
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    for step, label in all_marks:
        axes[0].annotate(label, (step, 0.02), xycoords=("data", "axes fraction"), xytext=(2, 0),
                         textcoords="offset points", va="bottom", rotation=90, fontsize=8,
                         color="dimgrey")
    fig.suptitle(f"KT losses ({smooth}-step moving average)")
    return _save_png(fig, out)


def _save_png(fig, out: str | Path) -> Path:
    """Write a matplotlib figure as PNG atomically (a plot is never left half-written)."""
    import io

    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)


def plot_validation(val_path: str | Path, out: str | Path) -> Path:
    """Validation FSIM by step (photo = F's, sketch = G's, and their mean), the best step marked,
    with the input-as-output floor dotted: what checkpoints are chosen by."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(val_path)
    if not rows:
        raise ValueError(f"'{val_path}' holds no validation rows")
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for key, colour, label in (("photo_fsim", "tab:blue", "photo (F)"), ("sketch_fsim", "tab:red",
                                                                       "sketch (G)"),
                               ("mean_fsim", "black", "mean")):
        ax.plot(steps, [r[key] for r in rows], "o-", color=colour, label=label, markersize=3)
    best = max(rows, key=lambda r: r["mean_fsim"])
    ax.axvline(best["step"], color="grey", linestyle="--", linewidth=1)
    ax.annotate(f"best: step {best['step']}", (best["step"], 0.02), xycoords=("data", "axes fraction"),
                xytext=(3, 0), textcoords="offset points", fontsize=8, color="dimgrey")
    if "input_fsim" in rows[0]:
        ax.axhline(rows[0]["input_fsim"], color="grey", linestyle=":", linewidth=1, label="input as output")
    ax.set_xlabel("step")
    ax.set_ylabel("validation FSIM")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save_png(fig, out)


def example_grid(model: str | Path | Translator, data_dir: str | Path, out: str | Path,
                 n: int = 6) -> Path:
    """Rows of: photo | G(photo) | true sketch || sketch | F(sketch) | true photo."""
    tr = model if isinstance(model, Translator) else Translator(model, precision="fp32")
    pairs = scan_pairs(data_dir, check_images=False).pairs
    pick = [pairs[i] for i in np.linspace(0, len(pairs) - 1, n).round().astype(int)]
    tiles = []
    for pair in pick:
        photo, sketch = load_image(pair.photo), load_image(pair.sketch)
        row = [photo, tr.translate(photo, PHOTO2SKETCH).output, sketch,
               sketch, tr.translate(sketch, SKETCH2PHOTO).output, photo]
        tiles.append(row)
    h, w = tiles[0][0].shape[:2]
    gap, head = 8, 24
    canvas = Image.new("RGB", (6 * w + 7 * gap, n * h + (n + 1) * gap + head), "white")
    draw = ImageDraw.Draw(canvas)
    labels = ["photo", "ours G(photo)", "true sketch", "sketch", "ours F(sketch)", "true photo"]
    for c, lab in enumerate(labels):
        draw.text((gap + c * (w + gap) + 4, 6), lab, fill="black")
    for r, row in enumerate(tiles):
        for c, img in enumerate(row):
            canvas.paste(Image.fromarray(img).resize((w, h)), (gap + c * (w + gap), head + gap + r * (h + gap)))
    save_image(np.asarray(canvas), out)
    return Path(out)


def parse_mark(text: str) -> tuple[float, str]:
    """``"2844=lr 5e-5"`` → ``(2844.0, "lr 5e-5")``."""
    step, sep, label = text.partition("=")
    try:
        value = float(step) if sep else None
    except ValueError:
        value = None
    if value is None:
        raise ValueError(f"--mark wants STEP=LABEL, e.g. 2844='lr 5e-5'; got {text!r}")
    return value, label.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.report")
    p.add_argument("--run", help="run folder with losses.jsonl")
    p.add_argument("--model", help="model for the example grid")
    p.add_argument("--data", help="paired test folder for the example grid")
    p.add_argument("--out", required=True)
    p.add_argument("--smooth", type=positive_int, default=None, metavar="STEPS",
                   help="moving-average width of the loss plot (default: about 1/30 of the log; "
                        "one epoch's steps averages every training face once)")
    p.add_argument("--mark", action="append", default=[], metavar="STEP=LABEL",
                   help="a dotted line on the loss plot (repeatable), e.g. 2844='lr 5e-5' for logs "
                        "written before the trainer recorded the learning rate")
    a = p.parse_args(argv)
    try:
        marks = [parse_mark(m) for m in a.mark]
    except ValueError as exc:
        p.error(str(exc))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.run:
        print(plot_losses(Path(a.run) / LOSS_LOG, out / "loss_curves.png", smooth=a.smooth,
                          marks=marks))
        if (Path(a.run) / VAL_LOG).is_file():
            print(plot_validation(Path(a.run) / VAL_LOG, out / "val_curves.png"))
    if a.model and a.data:
        print(example_grid(a.model, a.data, out / "examples.jpg"))  # JPEG: ~0.35 MB vs 1.8 MB
    return 0


if __name__ == "__main__":
    sys.exit(main())
