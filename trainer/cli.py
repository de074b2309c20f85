"""`sketchstudio-train` and `sketchstudio-eval`: thin argparse front ends with progress bars."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from sketchstudio.device import PRECISIONS
from sketchstudio.errors import SketchStudioError

from .config import TrainConfig, parse_loss_weights
from .events import DoneEvent, ErrorEvent, StepEvent, TrainControl, TrainEvent

log = logging.getLogger("sketchstudio")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _size(text: str) -> int:
    v = _positive_int(text)
    if v % 4 or v < 16:
        raise argparse.ArgumentTypeError(f"must be divisible by 4 and at least 16 (e.g. 256), got {v}")
    return v


def stop_on_signals(control: TrainControl) -> TrainControl:
    """Ctrl+C / SIGTERM cancel ``control``: the run stops after its step and writes a checkpoint."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: control.cancel())
    return control


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def train_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="sketchstudio-train",
                                description="Train G (photo→sketch) and F (sketch→photo) by knowledge transfer.")
    p.add_argument("--data", required=True, help="paired folder: photos/ + sketches/ (same file names)")
    p.add_argument("--out", required=True, help="run folder for checkpoint.safetensors, losses.jsonl, config")
    p.add_argument("--config", help="YAML/JSON TrainConfig; flags given explicitly override it")
    p.add_argument("--epochs", type=_positive_int, default=d.epochs)
    p.add_argument("--size", type=_size, default=d.image_size, help="training image size (divisible by 4)")
    p.add_argument("--ngf", type=_positive_int, default=d.ngf, help="student width")
    p.add_argument("--blocks", type=int, default=d.n_blocks, help="SE residual blocks")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | mps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--init-from", help="start from a model's weights with a fresh optimizer")
    p.add_argument("--teacher", help="VGG-19 weights (.pth/.safetensors); else $SKETCHSTUDIO_TEACHER or torchvision's")
    p.add_argument("--teacher-norm", choices=("channel_mean", "none"), default=d.teacher_norm)
    p.add_argument("--loss-weights", default="1,1,1", help="tea-stu,stu-stu,rec weights, e.g. 0,0,1")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay,
                   help="keep an exponential moving average of the weights, e.g. 0.999 (0 = off); "
                        "export it with sketchstudio-export --ema")
    p.add_argument("--checkpoint-every", type=_positive_int, default=d.checkpoint_every)
    p.add_argument("--preview-every", type=_positive_int, default=d.preview_every)
    p.add_argument("--split", help="with a MANIFEST.tsv folder: which rows, e.g. train or train,subset=cuhk")
    p.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    p.add_argument("--align", action="store_true", help="align faces by eye centres (for unaligned sets)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = default)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    base = TrainConfig.load(a.config).to_dict() if a.config else {}
    explicit = {
        "data_dir": a.data, "out_dir": a.out, "epochs": a.epochs, "image_size": a.size, "ngf": a.ngf,
        "n_blocks": a.blocks, "batch_size": a.batch_size, "lr": a.lr, "precision": a.precision,
        "device": a.device, "seed": a.seed, "teacher_path": a.teacher, "teacher_norm": a.teacher_norm,
        "loss_weights": parse_loss_weights(a.loss_weights), "checkpoint_every": a.checkpoint_every,
        "preview_every": a.preview_every, "ema_decay": a.ema_decay, "split": a.split,
        "hflip": not a.no_flip, "align": a.align,
    }
    defaults = vars(train_parser().parse_args(["--data", "x", "--out", "y"]))
    if a.config:  # config file values win over argparse defaults, explicit flags win over both
        argmap = {"epochs": "epochs", "image_size": "size", "ngf": "ngf", "n_blocks": "blocks",
                  "batch_size": "batch_size", "lr": "lr", "precision": "precision", "device": "device",
                  "seed": "seed", "teacher_norm": "teacher_norm", "checkpoint_every": "checkpoint_every",
                  "preview_every": "preview_every", "ema_decay": "ema_decay"}
        for key, flag in argmap.items():
            if getattr(a, flag) == defaults[flag] and key in base:
                explicit[key] = base[key]
    return TrainConfig.from_dict(base | explicit).validate()


class _Progress:
    """tqdm bar fed by training events."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = None

    def __call__(self, e: TrainEvent) -> None:
        if isinstance(e, StepEvent):
            if self.bar is None:
                self.bar = self._tqdm(total=e.total_steps, initial=e.step - 1, unit="step",
                                      dynamic_ncols=True, smoothing=0.1)
            self.bar.update(1)
            if e.step % 5 == 0 or e.step == e.total_steps:
                self.bar.set_postfix(epoch=e.epoch + 1, G=f"{e.losses['G_total']:.3f}",
                                     F=f"{e.losses['F_total']:.3f}")
        elif isinstance(e, DoneEvent | ErrorEvent) and self.bar is not None:
            self.bar.close()


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        cfg = config_from_args(args)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        from .loop import Trainer

        control = stop_on_signals(TrainControl())
        result = Trainer(cfg, on_event=_Progress(), control=control, resume=args.resume,
                         init_from=args.init_from).run()
    except SketchStudioError as exc:
        print(f"sketchstudio-train: error: {exc}", file=sys.stderr)
        return 2
    state = "cancelled" if result.cancelled else "finished"
    print(f"Training {state} at step {result.step}; checkpoint: {result.checkpoint}")
    return 0


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sketchstudio-eval",
                                description="Translate a paired test set both ways and report FSIM.")
    p.add_argument("--model", required=True, help="checkpoint (.safetensors) or run folder")
    p.add_argument("--data", required=True, help="paired folder: photos/ + sketches/")
    p.add_argument("--out", help="write outputs (same stems) and metrics.json here")
    p.add_argument("--split", help="with a MANIFEST.tsv folder: which rows, e.g. test or test,subset=cuhk")
    p.add_argument("--device", default="auto")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def eval_main(argv: list[str] | None = None) -> int:
    args = eval_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from tqdm import tqdm

    from .evaluate import evaluate

    bar = tqdm(unit="pair", dynamic_ncols=True)

    def progress(i: int, n: int) -> None:
        bar.total = n
        bar.update(1)

    try:
        result = evaluate(args.model, args.data, args.out, split=args.split, device=args.device,
                          progress=progress)
    except SketchStudioError as exc:
        bar.close()
        print(f"sketchstudio-eval: error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    print(result.table())
    if args.out:
        print(f"Outputs and metrics.json written to {args.out}")
    return 0


def export_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sketchstudio-export",
                                description="Export a training checkpoint as a compact inference model.")
    p.add_argument("checkpoint", help="training checkpoint or run folder")
    p.add_argument("out", help="output .safetensors file")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16)")
    p.add_argument("--metrics", help="metrics.json from sketchstudio-eval to embed")
    p.add_argument("--ema", action="store_true",
                   help="export the weight average kept by a run trained with --ema-decay")
    args = p.parse_args(argv)
    import json

    import torch

    from sketchstudio.checkpoint import export_model

    try:
        metrics = None
        if args.metrics:
            m = json.loads(Path(args.metrics).read_text())
            metrics = {k: m[k] for k in ("photo_fsim", "sketch_fsim", "input_fsim", "n_pairs", "step") if k in m}
        path = export_model(args.checkpoint, args.out,
                            dtype=torch.float32 if args.fp32 else torch.float16, metrics=metrics,
                            ema=args.ema)
    except (SketchStudioError, OSError, ValueError, KeyError) as exc:
        print(f"sketchstudio-export: error: {exc}", file=sys.stderr)
        return 2
    print(f"Model written to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
