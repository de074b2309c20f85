"""Recipe study: named variants at an equal budget, scored on validation. ``python -m trainer.study``.

A study file (YAML) holds a ``base`` (TrainConfig options every variant shares: data, validation
split, size, budget, seed) and ``variants`` (name → the options that variant changes)::

    out: runs/study-texture
    test: {data_dir: ../shared/data/cufs/test}     # optional: reported, never chosen on
    base: {data_dir: ../shared/data/cufs/train, val: cufs, image_size: 256, ngf: 32, n_blocks: 3,
           max_steps: 300, epochs: 200, seed: 0, teacher_path: ../shared/teacher/vgg19_relu3_1.pth}
    variants:
      rec: {loss_weights: [0, 0, 1]}
      texture: {loss_weights: [0, 0, 1], upsample: resize, style_weight: 50, perceptual_weight: 0.05}

The budget keys (size, steps, epochs, seed, data, split, validation split, batch size) may only be
set in ``base``, so the variants really differ only in their recipe. Each variant is an ordinary
run folder under ``out/`` and is resumed, not restarted, when the study runs again; a variant with a
``study.json`` is not trained or scored again. Written: ``study.md`` / ``study.json`` (validation
FSIM both ways and per subset, G's stroke energy relative to the drawings, the grid-frequency peak
of G's raw outputs, seconds per step, best validation step, optional test FSIM) and ``grid.png``
(the same validation faces from every variant).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sketchstudio.cliutil import finish_resumable, report_error, set_threads, setup_logging
from sketchstudio.errors import ConfigError, SketchStudioError
from sketchstudio.fsutil import atomic_write, atomic_write_json, ensure_writable_dir

from .config import TrainConfig, read_config_file
from .events import StepEvent, TrainControl, TrainEvent

log = logging.getLogger(__name__)

#: options that set the budget or the data: shared by every variant, or the comparison is unfair
BUDGET_KEYS = ("image_size", "epochs", "max_steps", "seed", "data_dir", "split", "val", "batch_size")
RESULT_FILE = "study.json"


@dataclass
class StudyConfig:
    out_dir: str
    base: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    test: dict[str, Any] = field(default_factory=dict)
    grid_faces: int = 4

    @classmethod
    def load(cls, path: str | Path, out_dir: str | None = None) -> StudyConfig:
        d = read_config_file(path)
        unknown = sorted(set(d) - {"out", "base", "variants", "test", "grid_faces"})
        if unknown:
            raise ConfigError(f"Study '{path}': unknown keys {', '.join(unknown)} (use out, base, "
                              "variants, test, grid_faces).")
        if not isinstance(d.get("variants"), dict) or not d["variants"]:
            raise ConfigError(f"Study '{path}' names no variants (variants: {{name: {{option: value}}}}).")
        out = out_dir or d.get("out")
        if not out:
            raise ConfigError(f"Study '{path}' has no output folder (out: DIR, or --out).")
        cfg = cls(out_dir=str(out), base=dict(d.get("base") or {}),
                  variants={str(k): dict(v or {}) for k, v in d["variants"].items()},
                  test=dict(d.get("test") or {}), grid_faces=int(d.get("grid_faces", 4)))
        cfg.check()
        return cfg

    def subset(self, names: list[str]) -> StudyConfig:
        """The same study restricted to ``names`` (in the file's order)."""
        unknown = [n for n in names if n not in self.variants]
        if unknown:
            raise ConfigError(f"unknown variant(s) {', '.join(unknown)}; the study has "
                              f"{', '.join(self.variants)}.")
        return StudyConfig(out_dir=self.out_dir, base=self.base, test=self.test,
                           grid_faces=self.grid_faces,
                           variants={k: v for k, v in self.variants.items() if k in names})

    def check(self) -> None:
        """Every variant must be a valid TrainConfig and change nothing but its recipe."""
        for name, over in self.variants.items():
            if not name.replace("-", "").replace("_", "").replace("+", "").isalnum():
                raise ConfigError(f"variant name '{name}' must be letters, digits, - _ or + "
                                  "(it names a folder).")
            budget = sorted(set(over) & set(BUDGET_KEYS))
            if budget:
                raise ConfigError(f"variant '{name}' changes {', '.join(budget)}: budget and data "
                                  "options belong in base, so every variant gets the same.")
            try:
                self.train_config(name)
            except ConfigError as exc:
                raise ConfigError(f"variant '{name}': {exc}") from None

    def train_config(self, name: str) -> TrainConfig:
        d = self.base | self.variants[name] | {"out_dir": str(Path(self.out_dir) / name)}
        d.setdefault("preview_every", 10**9)
        return TrainConfig.from_dict(d).validate()


def _val_pairs(tcfg: TrainConfig):
    from .data import scan_pairs
    from .validation import read_stems, split_pairs

    if not tcfg.val:
        raise ConfigError("A study needs a validation split in base (val: cufs or a stems file): "
                          "variants are compared on it, never on the test set.")
    stems = read_stems(tcfg.val)
    return split_pairs(scan_pairs(tcfg.data_dir, tcfg.split).pairs, stems, tcfg.val).val


def _raw_outputs(ckpt_path: Path, pairs, n: int) -> list[np.ndarray]:
    """G's outputs at the network's own resolution (for the grid-frequency measure and the grid)."""
    import torch

    from sketchstudio.checkpoint import build_student, read_checkpoint
    from sketchstudio.imaging import load_image, to_image, to_tensor

    ckpt = read_checkpoint(ckpt_path)
    g = build_student(ckpt, "photo2sketch")
    size = int(ckpt.meta.image_size)
    outs = []
    with torch.no_grad():
        for pair in pairs[:n]:
            x = to_tensor(load_image(pair.photo), size)
            outs.append(to_image(g(x)))
    return outs


def _score(name: str, tcfg: TrainConfig, sec_per_step: float | None, test: dict[str, Any]) -> dict:
    from sketchstudio.metrics.texture import grid_peak_ratio

    from .evaluate import evaluate
    from .loop import CHECKPOINT_FILE
    from .rundir import LOSS_LOG, VAL_LOG, read_rows

    run = Path(tcfg.out_dir)
    pairs = _val_pairs(tcfg)
    res = evaluate(run / CHECKPOINT_FILE, None, pairs=pairs, device=tcfg.device)
    per = res.per_image.values()
    row: dict[str, Any] = {
        "variant": name, "steps": res.step, "sec_per_step": sec_per_step,
        "val": {"photo_fsim": res.photo_fsim, "sketch_fsim": res.sketch_fsim, "mean_fsim": res.mean_fsim,
                "input_fsim": res.input_fsim, "n": res.n_pairs, "subsets": res.subsets(),
                "sketch_grad_ratio": statistics.fmean(v["sketch_grad_ratio"] for v in per)},
        "grid_peak": grid_peak_ratio(_raw_outputs(run / CHECKPOINT_FILE, pairs, len(pairs))),
    }
    if sec_per_step is None:  # scored in a later process than the one that trained it
        secs = [r["sec"] for r in read_rows(run / LOSS_LOG) if "sec" in r]
        sec_per_step = statistics.median(secs) if secs else None
        row["sec_per_step"] = sec_per_step
    rows = read_rows(run / VAL_LOG)
    if rows:
        top = max(rows, key=lambda r: r["mean_fsim"])
        row["best_val"] = {"step": top["step"], "mean_fsim": top["mean_fsim"]}
    if test.get("data_dir"):
        t = evaluate(run / CHECKPOINT_FILE, test["data_dir"], split=test.get("split"), device=tcfg.device)
        row["test"] = {"photo_fsim": t.photo_fsim, "sketch_fsim": t.sketch_fsim, "n": t.n_pairs,
                       "subsets": t.subsets(),
                       "sketch_grad_ratio": statistics.fmean(v["sketch_grad_ratio"]
                                                             for v in t.per_image.values())}
    return row


def run_study(cfg: StudyConfig, on_event: Callable[[str, TrainEvent], None] | None = None,
              control: TrainControl | None = None) -> dict:
    """Train and score every variant (resuming finished work); writes the table and the grid."""
    from .loop import CHECKPOINT_FILE, Trainer

    out = ensure_writable_dir(cfg.out_dir)
    rows: dict[str, dict] = {}
    for name in cfg.variants:
        tcfg = cfg.train_config(name)
        result_path = Path(tcfg.out_dir) / RESULT_FILE
        if result_path.is_file():
            log.info("%s: already scored, reusing %s", name, result_path)
            rows[name] = json.loads(result_path.read_text())
            continue
        secs: list[float] = []

        def listen(e: TrainEvent, n: str = name, secs: list[float] = secs) -> None:
            if isinstance(e, StepEvent):
                secs.append(e.sec_per_step)
            if on_event:
                on_event(n, e)

        t0 = time.perf_counter()
        result = Trainer(tcfg, on_event=listen, control=control,
                         resume=(Path(tcfg.out_dir) / CHECKPOINT_FILE).is_file()).run()
        if result.cancelled:
            log.warning("study stopped during %s at step %d; run it again to resume", name, result.step)
            break
        log.info("%s: trained to step %d in %.0f s", name, result.step, time.perf_counter() - t0)
        row = _score(name, tcfg, secs[-1] if secs else None, cfg.test)
        row["changes"] = cfg.variants[name]
        atomic_write_json(result_path, row)
        rows[name] = row
    table = {"base": cfg.base, "variants": rows}
    if len(rows) == len(cfg.variants):
        atomic_write_json(out / "study.json", table)
        with atomic_write(out / "study.md", "w") as fh:
            fh.write(markdown(table) + "\n")
        write_grid(cfg, out / "grid.png")
    return table


def write_grid(cfg: StudyConfig, path: Path) -> Path:
    """Photo and drawing of the first validation faces, then each variant's G output, one row each."""
    from sketchstudio.imaging import load_image, resize, save_image

    from .loop import CHECKPOINT_FILE

    first = cfg.train_config(next(iter(cfg.variants)))
    pairs = _val_pairs(first)[: cfg.grid_faces]
    size = first.image_size
    rows = [[resize(load_image(p.photo), size, size) for p in pairs],
            [resize(load_image(p.sketch), size, size) for p in pairs]]
    for name in cfg.variants:
        rows.append(_raw_outputs(Path(cfg.train_config(name).out_dir) / CHECKPOINT_FILE, pairs, len(pairs)))
    grid = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    save_image(grid, path)
    return path


def _f(v: float | None, nd: int = 4) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def markdown(table: dict) -> str:
    """The study as a markdown table: validation first (what recipes are chosen on), then test."""
    rows = table["variants"]
    b = table["base"]
    subsets = sorted({s for r in rows.values() for s in r["val"]["subsets"]})
    lines = [f"Equal budget: {b.get('max_steps') or '?'} steps at {b.get('image_size', '?')}², ngf "
             f"{b.get('ngf', 64)}, {b.get('n_blocks', 9)} blocks, seed {b.get('seed', 0)}; validation "
             f"split '{b.get('val')}'. Rows of the grid image: photo, drawing, then the variants in "
             "this order.", "",
             "| variant | changes | steps | s/step | val photo | val sketch | val mean | "
             + " | ".join(f"sketch {s}" for s in subsets)
             + " | G stroke ratio | grid peak | best val (step) | test photo | test sketch |",
             "| --- " * (12 + len(subsets)) + "|"]
    for name, r in rows.items():
        v = r["val"]
        changes = ", ".join(f"{k}={val}" for k, val in r.get("changes", {}).items()) or "—"
        per = " | ".join(_f(v["subsets"].get(s, {}).get("sketch_fsim")) for s in subsets)
        best = r.get("best_val")
        t = r.get("test", {})
        lines.append(f"| {name} | {changes} | {r['steps']} | {_f(r.get('sec_per_step'), 1)} | "
                     f"{_f(v['photo_fsim'])} | {_f(v['sketch_fsim'])} | {_f(v['mean_fsim'])} | {per} | "
                     f"{_f(v['sketch_grad_ratio'], 2)} | {_f(r.get('grid_peak'), 1)} | "
                     f"{_f(best['mean_fsim']) + ' (' + str(best['step']) + ')' if best else '—'} | "
                     f"{_f(t.get('photo_fsim'))} | {_f(t.get('sketch_fsim'))} |")
    floor = next(iter(rows.values()))["val"]["input_fsim"] if rows else None
    lines += ["", f"Input-as-output floor on the validation pairs: {_f(floor)}. G stroke ratio: "
              "gradient energy of G's sketches / the drawings' (1 = as much detail). Grid peak: "
              "power at the stride-2/4 frequencies of G's raw outputs over its neighbourhood "
              "(≈1 or below: no checkerboard)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.study", description=__doc__.splitlines()[0])
    p.add_argument("study", help="study YAML (base, variants, out, test)")
    p.add_argument("--out", help="output folder (overrides the file's out)")
    p.add_argument("--variants", help="only these variants (comma-separated), e.g. to finish "
                                      "and tabulate part of a study within a time budget")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = default)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    set_threads(a.threads)
    from .cli import stop_on_signals

    try:
        cfg = StudyConfig.load(a.study, a.out)
        if a.variants:
            cfg = cfg.subset([v.strip() for v in a.variants.split(",") if v.strip()])
        table = run_study(cfg, control=stop_on_signals(TrainControl()))
    except SketchStudioError as exc:
        return report_error("study", exc)
    return finish_resumable(table, len(cfg.variants), "Study", markdown(table))


if __name__ == "__main__":
    sys.exit(main())
