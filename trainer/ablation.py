"""Loss ablation: does knowledge transfer help? ``python -m trainer.ablation`` / ``sketchstudio-ablation``.

The paper's question (METHOD.md, ablation): train the same students with equal steps and the same
seed under three losses, then score FSIM on the test set both ways:

- ``rec``:          reconstruction only (weights 0,0,1) — a plain encoder/decoder translator;
- ``rec+tea``:      + teacher→student feature loss (1,0,1);
- ``full``:         + student↔student loss (1,1,1), the method as shipped.

Each variant is an ordinary run folder under ``out/`` (checkpoint, losses.jsonl, config.yaml) and
is resumed, not restarted, when the command is run again, so a long ablation survives being stopped;
a variant whose ``metrics.json`` exists is not trained or scored again. The table (``ablation.md``,
``ablation.json``) reports each variant's FSIM and the change against ``rec``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sketchstudio.cliutil import (
    finish_resumable,
    image_size,
    positive_int,
    report_error,
    set_threads,
    setup_logging,
)
from sketchstudio.errors import SketchStudioError
from sketchstudio.fsutil import atomic_write, atomic_write_json, ensure_writable_dir

from .cli import stop_on_signals
from .config import TrainConfig
from .events import TrainControl, TrainEvent

log = logging.getLogger(__name__)

#: name → (w_tea-stu, w_stu-stu, w_rec), in the order they are trained and reported
VARIANTS: dict[str, tuple[float, float, float]] = {
    "rec": (0.0, 0.0, 1.0),
    "rec+tea": (1.0, 0.0, 1.0),
    "full": (1.0, 1.0, 1.0),
}
LABELS = {"rec": "reconstruction only", "rec+tea": "+ teacher-student",
          "full": "+ student-student (full KT)"}


@dataclass
class AblationConfig:
    """Everything but the loss weights is shared by the variants, so only the loss differs."""

    data_dir: str
    test_dir: str
    out_dir: str
    split: str | None = None
    test_split: str | None = None
    image_size: int = 128
    ngf: int = 64
    n_blocks: int = 9
    epochs: int = 4
    seed: int = 0
    teacher_path: str | None = None
    device: str = "auto"
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))

    def train_config(self, variant: str) -> TrainConfig:
        return TrainConfig(data_dir=self.data_dir, split=self.split, out_dir=str(Path(self.out_dir) / variant),
                           image_size=self.image_size, ngf=self.ngf, n_blocks=self.n_blocks,
                           epochs=self.epochs, seed=self.seed, teacher_path=self.teacher_path,
                           device=self.device, loss_weights=VARIANTS[variant],
                           checkpoint_every=50, preview_every=10**9)


def run_ablation(cfg: AblationConfig, on_event: Callable[[str, TrainEvent], None] | None = None,
                 control: TrainControl | None = None) -> dict:
    """Train and score every variant (resuming finished work); returns and writes the table."""
    from .evaluate import evaluate
    from .loop import CHECKPOINT_FILE, Trainer

    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown:
        raise SketchStudioError(f"unknown ablation variant(s) {unknown}; choose from {list(VARIANTS)}")
    out = ensure_writable_dir(cfg.out_dir)
    rows: dict[str, dict] = {}
    for name in cfg.variants:
        run_dir = out / name
        metrics_path = run_dir / "eval" / "metrics.json"
        if metrics_path.is_file():
            log.info("%s: already scored, reusing %s", name, metrics_path)
        else:
            tcfg = cfg.train_config(name)
            t0 = time.perf_counter()
            result = Trainer(tcfg, on_event=(lambda e, n=name: on_event(n, e)) if on_event else None,
                             control=control, resume=(run_dir / CHECKPOINT_FILE).is_file()).run()
            if result.cancelled:
                log.warning("ablation cancelled during %s at step %d", name, result.step)
                break
            log.info("%s: trained %d steps in %.0f s", name, result.step, time.perf_counter() - t0)
            evaluate(run_dir, cfg.test_dir, run_dir / "eval", split=cfg.test_split, device=cfg.device)
        m = json.loads(metrics_path.read_text())
        rows[name] = {"loss_weights": list(VARIANTS[name]), "photo_fsim": m["photo_fsim"],
                      "sketch_fsim": m["sketch_fsim"], "steps": m["step"], "n_test": m["n_pairs"]}
    table = {"config": asdict(cfg), "variants": rows}
    if len(rows) == len(cfg.variants):
        atomic_write_json(out / "ablation.json", table)
        with atomic_write(out / "ablation.md", "w") as fh:
            fh.write(markdown(table) + "\n")
    return table


def _delta(row: dict, base: dict | None, key: str) -> str:
    return "—" if base is None or row is base else f"{row[key] - base[key]:+.4f}"


def markdown(table: dict) -> str:
    """The ablation as a markdown table, with each variant's change against reconstruction only."""
    rows = table["variants"]
    base = rows.get("rec")
    c = table["config"]
    lines = [f"Equal budget: {c['epochs']} epochs at {c['image_size']}², ngf {c['ngf']}, "
             f"{c['n_blocks']} blocks, seed {c['seed']}.", "",
             "| loss | weights (tea, stu, rec) | steps | photo FSIM (F) | Δ vs rec | sketch FSIM (G) | Δ vs rec |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        w = ", ".join(f"{x:g}" for x in r["loss_weights"])
        lines.append(f"| {LABELS[name]} | {w} | {r['steps']} | {r['photo_fsim']:.4f} | "
                     f"{_delta(r, base, 'photo_fsim')} | {r['sketch_fsim']:.4f} | "
                     f"{_delta(r, base, 'sketch_fsim')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sketchstudio-ablation", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="training pairs (folder or MANIFEST.tsv folder)")
    p.add_argument("--split", help="MANIFEST filter, e.g. 'train,subset=cuhk'")
    p.add_argument("--test", required=True, help="test pairs to score FSIM on")
    p.add_argument("--test-split", help="MANIFEST filter for the test pairs")
    p.add_argument("--out", required=True, help="folder for one run per variant and the table")
    p.add_argument("--epochs", type=positive_int, default=AblationConfig.epochs)
    p.add_argument("--size", type=image_size, default=AblationConfig.image_size)
    p.add_argument("--ngf", type=positive_int, default=AblationConfig.ngf)
    p.add_argument("--blocks", type=int, default=AblationConfig.n_blocks)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher", help="VGG-19 weights; else $SKETCHSTUDIO_TEACHER or torchvision's")
    p.add_argument("--device", default="auto")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = default)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    set_threads(a.threads)
    cfg = AblationConfig(data_dir=a.data, split=a.split, test_dir=a.test, test_split=a.test_split,
                         out_dir=a.out, epochs=a.epochs, image_size=a.size, ngf=a.ngf,
                         n_blocks=a.blocks, seed=a.seed, teacher_path=a.teacher, device=a.device,
                         variants=[v.strip() for v in a.variants.split(",") if v.strip()])
    try:
        # Ctrl+C / SIGTERM checkpoint the running variant; the same command resumes it
        table = run_ablation(cfg, control=stop_on_signals(TrainControl()))
    except SketchStudioError as exc:
        return report_error("sketchstudio-ablation", exc)
    return finish_resumable(table, len(cfg.variants), "Ablation", markdown(table))


if __name__ == "__main__":
    sys.exit(main())
