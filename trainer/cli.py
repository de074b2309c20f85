"""`sketchstudio-train` and `sketchstudio-eval`: thin argparse front ends with progress bars."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from sketchstudio.cliutil import (
    image_size,
    non_negative_int,
    positive_int,
    report_error,
    setup_logging,
)
from sketchstudio.errors import ConfigError, SketchStudioError

from .config import (
    TrainConfig,
    coerce_field,
    coerce_fields,
    field_default,
    field_types,
    read_config_file,
)
from .events import DoneEvent, ErrorEvent, StepEvent, TrainControl, TrainEvent
from .rundir import CONFIG_FILE

log = logging.getLogger("sketchstudio")


#: exit status of a run stopped by Ctrl+C / SIGTERM before its last step
EXIT_CANCELLED = 130


#: argparse value types of the fields whose flags check more than the field's type
_ARG_TYPES: dict[str, Callable[[str], Any]] = {
    "epochs": positive_int, "image_size": image_size, "ngf": positive_int,
    "batch_size": positive_int, "checkpoint_every": positive_int, "preview_every": positive_int,
    "val_every": positive_int,
    "loss_weights": str,  # parsed by TrainConfig.validate, whose message names the three terms
}


def stop_on_signals(control: TrainControl) -> TrainControl:
    """Ctrl+C / SIGTERM cancel ``control``: the run stops after its step and writes a checkpoint."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: control.cancel())
    return control


def _field_type(name: str) -> Callable[[str], Any]:
    """An argparse type that coerces a flag's text exactly as a config file's value is coerced."""
    def parse(text: str) -> Any:
        try:
            return coerce_field(name, text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = name  # argparse names the type in "invalid <name> value"
    return parse


def train_parser() -> argparse.ArgumentParser:
    """``sketchstudio-train``'s flags, one per :class:`TrainConfig` field (``dest`` = the field).

    Defaults come from the dataclass; :func:`parse_train_args` replaces them with a config file's
    values before parsing (timm's ``train.py`` pattern), so flag > file > default for every field.
    """
    p = argparse.ArgumentParser(prog="sketchstudio-train",
                                description="Train G (photo→sketch) and F (sketch→photo) by knowledge transfer.")
    p.add_argument("--config", help="YAML/JSON file of TrainConfig options; flags given explicitly "
                                    "override it (with --resume: the run's own config.yaml)")
    types_ = field_types()
    for f in fields(TrainConfig):
        flag = f.metadata.get("flag")
        if not flag:
            continue
        kw: dict[str, Any] = {"dest": f.name, "default": field_default(f.name),
                              "help": f.metadata.get("help") or None, **f.metadata.get("arg", {})}
        if types_[f.name] is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif "choices" not in kw:
            kw["type"] = _ARG_TYPES.get(f.name, _field_type(f.name))
            kw["metavar"] = flag.lstrip("-").upper().replace("-", "_")
        p.add_argument(flag, **kw)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--init-from", help="start from a model's weights with a fresh optimizer")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="CPU threads for torch (0 = default)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_train_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainConfig]:
    """Parse flags over a config file: flag > file > dataclass default, for every field.

    ``--resume`` without ``--config`` reads the run folder's own ``config.yaml``, so a resumed
    run keeps its settings; a flag that changes one of them is applied and logged.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--out", dest="out_dir")
    pre.add_argument("--resume", action="store_true")
    known, _ = pre.parse_known_args(argv)
    parser = train_parser()
    source = known.config
    if source is None and known.resume and known.out_dir:
        own = Path(known.out_dir) / CONFIG_FILE
        source = str(own) if own.is_file() else None
    file_values: dict[str, Any] = {}
    if source:
        try:
            raw = read_config_file(source)
            TrainConfig.from_dict(raw)  # unknown keys and bad values fail here, naming the key
            file_values = coerce_fields(raw)
        except ConfigError as exc:
            parser.error(str(exc))
        parser.set_defaults(**file_values)
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if "extra" in file_values:
        values["extra"] = file_values["extra"]
    if known.resume and source:
        for k, v in values.items():
            if k in file_values and file_values[k] != v and k not in ("out_dir", "data_dir"):
                log.warning("resume: %s changed from %r (%s) to %r", k, file_values[k], source, v)
    return args, TrainConfig(**values).validate()


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
    setup_logging("-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:]))
    try:
        args, cfg = parse_train_args(argv)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        from . import distributed
        from .loop import Trainer

        ctx = distributed.from_env()  # torchrun sets RANK / WORLD_SIZE; else one process
        control = stop_on_signals(TrainControl())
        try:
            result = Trainer(cfg, on_event=_Progress(), control=control, resume=args.resume,
                             init_from=args.init_from, dist=ctx).run()
        finally:
            distributed.shutdown(ctx)
    except SketchStudioError as exc:
        return report_error("sketchstudio-train", exc)
    if ctx.is_main:
        state = "cancelled" if result.cancelled else "finished"
        ranks = f" ({ctx.world_size} processes)" if ctx.enabled else ""
        where = f"checkpoint: {result.checkpoint}" if result.checkpoint.is_file() else "no checkpoint written"
        print(f"Training {state} at step {result.step}{ranks}; {where}")
    # a script can tell a finished run from an interrupted one (128 + SIGINT, as shells report it)
    return EXIT_CANCELLED if result.cancelled else 0


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
    setup_logging(args.verbose)
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
        return report_error("sketchstudio-eval", exc)
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
        return report_error("sketchstudio-export", exc)
    print(f"Model written to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
