"""Model-card figures: loss curves from losses.jsonl and a grid of example translations.

``python -m trainer.report --run runs/kt-cufs --model M --data ../shared/data/cufs/test --out DIR``
writes ``loss_curves.png`` and ``examples.jpg`` (needs matplotlib, in the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sketchstudio.engine import PHOTO2SKETCH, SKETCH2PHOTO, Translator
from sketchstudio.fsutil import atomic_write_bytes
from sketchstudio.imaging import load_image, save_image

from .data import scan_pairs

TERMS = ("tea", "stu", "rec", "total")


def read_loss_log(path: str | Path) -> dict[str, np.ndarray]:
    rows = [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
    keys = sorted({k for r in rows for k in r})
    return {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in keys}


def _smooth(v: np.ndarray, k: int) -> np.ndarray:
    if len(v) < k or k < 2:
        return v
    return np.convolve(v, np.ones(k) / k, mode="valid")


def auto_window(n_steps: int) -> int:
    """Moving-average width: per-face losses vary more than they fall over a few hundred steps, so
    long runs need a wider window (about 1/30 of the run, 25 to 200 steps) to show the trend."""
    return int(np.clip(n_steps // 30, 25, 200))


def plot_losses(log_path: str | Path, out: str | Path, smooth: int | None = None) -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = read_loss_log(log_path)
    if "step" not in d or not len(d["step"]):
        raise ValueError(f"'{log_path}' holds no loss rows")
    smooth = smooth or auto_window(len(d["step"]))
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, term in zip(axes, TERMS, strict=True):
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
    fig.suptitle(f"KT losses ({smooth}-step moving average)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.report")
    p.add_argument("--run", help="run folder with losses.jsonl")
    p.add_argument("--model", help="model for the example grid")
    p.add_argument("--data", help="paired test folder for the example grid")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.run:
        print(plot_losses(Path(a.run) / "losses.jsonl", out / "loss_curves.png"))
    if a.model and a.data:
        print(example_grid(a.model, a.data, out / "examples.jpg"))  # JPEG: ~0.35 MB vs 1.8 MB
    return 0


if __name__ == "__main__":
    sys.exit(main())
