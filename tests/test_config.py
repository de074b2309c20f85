"""The one config path: TrainConfig fields → flags, files and defaults, flag > file > default."""

from __future__ import annotations

import logging
from dataclasses import fields

import pytest
import yaml

from sketchstudio.errors import ConfigError
from trainer import cli
from trainer.config import TrainConfig, coerce_field, field_default

#: a non-default value for every field that has a flag (a new field must be added here)
NON_DEFAULT = {
    "data_dir": "pairs", "out_dir": "runs/x", "epochs": 7, "max_steps": 40, "image_size": 64, "ngf": 8, "n_blocks": 2,
    "upsample": "resize", "batch_size": 2, "lr": 1e-4, "lr_schedule": "linear", "beta1": 0.6,
    "beta2": 0.99, "loss_weights": (0.0, 0.0, 1.0), "tap_compare": "standardised",
    "stu_compare": "cosine", "rec_loss": "l1", "style_weight": 0.5, "perceptual_weight": 0.25, "gan_weight": 0.1,
    "precision": "fp32", "device": "cpu", "prefetch": False, "keep_host_memory": False,
    "seed": 5, "teacher_path": "/t/vgg.pth",
    "teacher_norm": "none", "teacher_norm_samples": 3, "hflip": False, "augment": True, "ema_decay": 0.99,
    "checkpoint_every": 9, "preview_every": 11, "val": "cufs", "val_every": 13, "align": True,
    "split": "train",
}


def test_every_field_is_a_flag_or_declared_not_one():
    flagged = {f.name for f in fields(TrainConfig) if f.metadata.get("flag")}
    assert flagged == set(NON_DEFAULT)
    assert {f.name for f in fields(TrainConfig)} - flagged == {"extra"}
    for name, value in NON_DEFAULT.items():
        assert value != field_default(name), name


def test_every_field_given_only_in_a_file_reaches_the_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v
                                    for k, v in NON_DEFAULT.items()}))
    _, cfg = cli.parse_train_args(["--config", str(path)])
    for name, value in NON_DEFAULT.items():
        assert getattr(cfg, name) == value, name


def test_a_flag_beats_the_file_even_when_it_equals_the_default(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data_dir: d\nout_dir: o\nlr: 1e-4\nseed: 5\nhflip: false\nloss_weights: [0, 0, 1]\n")
    _, cfg = cli.parse_train_args(["--config", str(path), "--lr", "0.0002", "--seed", "0", "--flip",
                                   "--loss-weights", "1,1,1"])
    assert (cfg.lr, cfg.seed, cfg.hflip, cfg.loss_weights) == (2e-4, 0, True, (1.0, 1.0, 1.0))
    _, cfg = cli.parse_train_args(["--config", str(path)])
    assert (cfg.lr, cfg.seed, cfg.hflip, cfg.loss_weights) == (1e-4, 5, False, (0.0, 0.0, 1.0))


@pytest.mark.parametrize("text,key,value", [
    ("lr: 1e-4", "lr", 1e-4),              # YAML 1.1 reads this as the string "1e-4"
    ('image_size: "64"', "image_size", 64),
    ('loss_weights: "0,0.5,1"', "loss_weights", (0.0, 0.5, 1.0)),
    ("hflip: no", "hflip", False),
    ("teacher_path: null", "teacher_path", None),
])
def test_file_values_are_coerced_by_field_type(tmp_path, text, key, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"data_dir: d\nout_dir: o\n{text}\n")
    assert getattr(TrainConfig.load(path).validate(), key) == value


@pytest.mark.parametrize("text,msg", [
    ("ngf: null", "ngf must be a whole number"),
    ("epochs: 2.5", "epochs must be a whole number"),
    ("lr: fast", "lr must be a number"),
    ("lr: .nan", "lr must be a finite number"),
    ("loss_weights: [1, 1]", "loss_weights takes three numbers"),
    ("hflip: maybe", "hflip must be true or false"),
    ("ngf: true", "ngf must be a whole number"),
    ("upsample: bilinear", "upsample must be one of deconv, resize"),
    ("colour: red", "Unknown config keys: colour"),
])
def test_bad_file_values_name_the_key(tmp_path, capsys, text, msg):
    path = tmp_path / "c.yaml"
    path.write_text(f"data_dir: d\nout_dir: o\n{text}\n")
    with pytest.raises(ConfigError, match=msg):
        TrainConfig.load(path).validate()
    assert _exit_code(["--config", str(path)]) == 2  # the CLI stops with the same message
    assert msg in capsys.readouterr().err


def _exit_code(argv: list[str]) -> int:
    """train_main's status, whether argparse (SystemExit) or the config check (return) stopped it."""
    try:
        return cli.train_main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_bad_file_value_exits_2_with_the_message(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("data_dir: d\nout_dir: o\nngf: null\n")
    with pytest.raises(SystemExit) as ei:
        cli.train_main(["--config", str(path)])
    assert ei.value.code == 2
    assert "ngf must be a whole number" in capsys.readouterr().err


def test_values_set_in_code_are_checked_too():
    with pytest.raises(ConfigError, match="ngf must be a whole number"):
        TrainConfig(data_dir="d", out_dir="o", ngf="wide").validate()  # type: ignore[arg-type]
    assert TrainConfig(data_dir="d", out_dir="o", lr="2e-4").validate().lr == 2e-4  # type: ignore[arg-type]
    assert coerce_field("loss_weights", [1, 0, "1"]) == (1.0, 0.0, 1.0)


def test_no_output_folder_is_an_error(capsys):
    assert cli.train_main(["--data", "x"]) == 2
    assert "No run folder given (--out DIR)" in capsys.readouterr().err


def test_resume_keeps_the_runs_settings(tiny_pairs, tmp_path, random_teacher, caplog):
    run = tmp_path / "run"
    first = ["--data", str(tiny_pairs), "--out", str(run), "--teacher", str(random_teacher),
             "--size", "32", "--ngf", "4", "--blocks", "1", "--epochs", "1", "--precision", "fp32",
             "--device", "cpu", "--no-flip", "--loss-weights", "0,1,1", "--teacher-norm", "none",
             "--ema-decay", "0.5", "--rec-loss", "l1", "--upsample", "resize"]
    assert cli.train_main(first) == 0
    with caplog.at_level(logging.WARNING, logger="sketchstudio"):
        _, cfg = cli.parse_train_args(["--out", str(run), "--resume", "--epochs", "2"])
    assert (cfg.hflip, cfg.loss_weights, cfg.teacher_norm, cfg.ema_decay, cfg.rec_loss,
            cfg.upsample, cfg.ngf, cfg.data_dir) == (False, (0.0, 1.0, 1.0), "none", 0.5, "l1",
                                                    "resize", 4, str(tiny_pairs))
    assert cfg.epochs == 2
    assert "resume: epochs changed from 1" in caplog.text
    assert cli.train_main(["--out", str(run), "--resume", "--epochs", "2"]) == 0
    saved = TrainConfig.load(run / "config.yaml")
    assert (saved.hflip, saved.loss_weights, saved.ema_decay, saved.epochs) == (False, (0.0, 1.0, 1.0),
                                                                                0.5, 2)


def test_gui_form_keeps_options_it_does_not_show(qtbot, tmp_path):
    from sketchstudio.gui.context import AppContext
    from sketchstudio.gui.settings import Settings
    from sketchstudio.gui.train_panel import TrainPanel

    ctx = AppContext(Settings.at(tmp_path / "s.ini"))
    tp = TrainPanel(ctx)
    qtbot.addWidget(tp)
    try:
        _check_hidden_options_kept(tp, tmp_path)
    finally:
        ctx.shutdown()


def _check_hidden_options_kept(tp, tmp_path) -> None:
    cfg = TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path / "run"), hflip=False,
                      tap_compare="cosine", style_weight=0.3, split="train", ngf=8)
    tp.set_config(cfg)  # as when resuming a run from its config.yaml
    back = tp.config()
    assert (back.hflip, back.tap_compare, back.style_weight, back.split, back.ngf) == (
        False, "cosine", 0.3, "train", 8)


# --- exact behaviour of the file reader (mutation testing, issue 17) ------------------------------
def test_json_files_are_parsed_as_json(tmp_path):
    """A .json file is read by the JSON parser, so its errors point at JSON syntax (YAML would
    quietly accept ``epochs: 3`` or a trailing comma and hide the user's typo elsewhere)."""
    from trainer.config import read_config_file

    good = tmp_path / "c.json"
    good.write_text('{"epochs": 3, "lr": 1e-3}')
    assert read_config_file(good) == {"epochs": 3, "lr": 0.001}  # JSON's 1e-3 is a number
    bad = tmp_path / "bad.json"
    bad.write_text("epochs: 3\n")  # valid YAML, not JSON
    with pytest.raises(ConfigError) as e:
        read_config_file(bad)
    assert str(e.value) == f"Cannot read config '{bad}': Expecting value: line 1 column 1 (char 0)"
    as_yaml = tmp_path / "c.yaml"
    as_yaml.write_text("lr: 1e-3\n")
    assert read_config_file(as_yaml) == {"lr": "1e-3"}  # YAML 1.1: a string, coerced later


def test_empty_and_non_mapping_config_files(tmp_path):
    from trainer.config import read_config_file

    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set yet\n")
    assert read_config_file(empty) == {}
    listing = tmp_path / "list.yaml"
    listing.write_text("- epochs\n- 3\n")
    with pytest.raises(ConfigError) as e:
        read_config_file(listing)
    assert str(e.value) == f"Config '{listing}' must be a mapping of option: value."
    with pytest.raises(ConfigError) as e:
        read_config_file(tmp_path / "missing.yaml")
    assert str(e.value).startswith(f"Cannot read config '{tmp_path / 'missing.yaml'}': ")


def test_unknown_keys_are_all_named_sorted():
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"epochz": 1, "bach_size": 2, "lr": 0.1})
    assert str(e.value) == "Unknown config keys: bach_size, epochz."


def test_field_default_of_a_factory_field_is_a_fresh_value():
    assert field_default("extra") == {}
    assert field_default("extra") is not field_default("extra")
    assert field_default("epochs") == 200 and field_default("val") is None


def _checked(**kw) -> TrainConfig:
    return TrainConfig(**{"data_dir": "pairs", "out_dir": "runs/x", **kw}).validate()


@pytest.mark.parametrize("field, ok", [
    ("epochs", (1,)), ("image_size", (16, 20, 1024)), ("ngf", (1, 256)), ("n_blocks", (0, 32)),
    ("batch_size", (1,)), ("lr", (1e-9, 0.999)), ("beta1", (0.0, 0.999)), ("beta2", (0.0, 0.999)),
    ("loss_weights", ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0))),
    ("ema_decay", (0.0, 0.9999)), ("teacher_norm_samples", (0, 1)), ("max_steps", (0,)),
    ("checkpoint_every", (1,)), ("style_weight", (0.0,)),
])
def test_limits_accept_their_boundaries(field, ok):
    for value in ok:
        assert getattr(_checked(**{field: value}), field) == value


@pytest.mark.parametrize("kw, msg", [
    ({"data_dir": ""}, "No training data folder given (--data DIR)."),
    ({"out_dir": ""}, "No run folder given (--out DIR)."),
    ({"epochs": 0}, "epochs must be a positive whole number, got 0."),
    ({"image_size": 12}, "image size must be divisible by 4 and at least 16 (e.g. 256), got 12."),
    ({"image_size": 18}, "image size must be divisible by 4 and at least 16 (e.g. 256), got 18."),
    ({"image_size": 1028}, "image size 1028 is too large (max 1024)."),
    ({"ngf": 0}, "width (ngf) must be between 1 and 256, got 0."),
    ({"ngf": 257}, "width (ngf) must be between 1 and 256, got 257."),
    ({"n_blocks": -1}, "residual blocks must be between 0 and 32, got -1."),
    ({"n_blocks": 33}, "residual blocks must be between 0 and 32, got 33."),
    ({"batch_size": 0}, "batch size must be at least 1, got 0."),
    ({"lr": 0}, "learning rate must be in (0, 1), got 0.0."),
    ({"lr": 1}, "learning rate must be in (0, 1), got 1.0."),
    ({"beta1": 1}, "Adam betas must be in [0, 1), got 1.0, 0.999."),
    ({"beta2": 1}, "Adam betas must be in [0, 1), got 0.5, 1.0."),
    ({"beta1": -0.1}, "Adam betas must be in [0, 1), got -0.1, 0.999."),
    ({"loss_weights": (-1, 1, 1)}, "loss weights must be three non-negative numbers (tea-stu, "
                                   "stu-stu, rec), got (-1.0, 1.0, 1.0)."),
    ({"loss_weights": (0, 0, 0)}, "at least one loss weight must be positive."),
    ({"style_weight": -1}, "style_weight must be ≥ 0 (0 = off), got -1.0."),
    ({"gan_weight": -0.5}, "gan_weight must be ≥ 0 (0 = off), got -0.5."),
    ({"ema_decay": 1}, "EMA decay must be in [0, 1) (0 = off; e.g. 0.999), got 1.0."),
    ({"ema_decay": -0.1}, "EMA decay must be in [0, 1) (0 = off; e.g. 0.999), got -0.1."),
    ({"checkpoint_every": 0}, "checkpoint, preview and validation intervals must be at least 1 step."),
    ({"preview_every": 0}, "checkpoint, preview and validation intervals must be at least 1 step."),
    ({"val_every": 0}, "checkpoint, preview and validation intervals must be at least 1 step."),
    ({"max_steps": -1}, "max_steps must be ≥ 0 (0 = run all epochs), got -1."),
    ({"teacher_norm_samples": -1}, "teacher_norm_samples must be ≥ 0."),
])
def test_limits_refuse_just_beyond_with_the_exact_message(kw, msg):
    with pytest.raises(ConfigError) as e:
        _checked(**kw)
    assert str(e.value) == msg


def test_the_saved_config_lists_its_keys_sorted():
    """config.yaml in a run folder diffs cleanly between runs: keys in sorted order."""
    text = _checked().dump_yaml()
    keys = [line.split(":", 1)[0] for line in text.splitlines() if line and line[0] not in " -"]
    assert keys == sorted(keys) and set(keys) == {f.name for f in fields(TrainConfig)}


def test_every_flag_has_help_text_and_shows_its_default(capsys):
    """`sketchstudio-train --help` explains every option; none is a bare flag name."""
    for f in fields(TrainConfig):
        if f.metadata.get("flag"):
            assert f.metadata["help"].strip(), f.name
    with pytest.raises(SystemExit):
        cli.train_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE pairs per step (the paper: 1)" in text
    assert "--upsample {deconv,resize}" in text  # choices are listed (and checked by argparse)


@pytest.mark.parametrize("text, value", [
    ("true", True), ("yes", True), ("on", True), ("1", True),
    ("false", False), ("no", False), ("off", False), ("0", False),
    (" TRUE ", True), ("Yes", True), ("ON", True), ("False", False), ("NO", False), ("Off", False),
])
def test_every_spelling_of_a_switch_in_a_file(text, value):
    assert coerce_field("hflip", text) is value


@pytest.mark.parametrize("bad", ["maybe", "2", "", "y", 2, -1, 0.5, None])
def test_anything_else_is_not_a_switch(bad):
    with pytest.raises(ConfigError) as e:
        coerce_field("hflip", bad)
    assert str(e.value) == f"hflip must be true or false, got {bad!r}."


@pytest.mark.parametrize("key, value, want", [
    ("epochs", 3.0, 3), ("epochs", " 7 ", 7), ("lr", "1e-3", 0.001), ("lr", 2, 2.0),
    ("hflip", 0, False), ("hflip", 1, True), ("val", "", None), ("val", None, None),
    ("val", "cufs", "cufs"), ("loss_weights", "1, 0.5,0", (1.0, 0.5, 0.0)),
    ("extra", {"a": 1}, {"a": 1}),
])
def test_values_are_coerced_to_the_fields_type(key, value, want):
    got = coerce_field(key, value)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("key, value, msg", [
    ("nope", 1, "Unknown config key: nope."),
    ("lr", True, "lr must be a number, got True."),
    ("lr", [1], "lr must be a number, got [1]."),
    ("lr", "fast", "lr must be a number, got 'fast'."),
    ("lr", "inf", "lr must be a finite number, got 'inf'."),
    ("epochs", 2.5, "epochs must be a whole number, got 2.5."),
    ("epochs", True, "epochs must be a whole number, got True."),
    ("hflip", 2, "hflip must be true or false, got 2."),
    ("data_dir", 3, "data_dir must be text, got 3."),
    ("loss_weights", "1,x,1", "loss_weights must be a number, got 'x'."),
    ("loss_weights", "1,1", "loss_weights takes three numbers (tea-stu, stu-stu, rec) like 1,1,1; "
                            "got '1,1'."),
    ("extra", 3, "extra must be a mapping, got 3."),
])
def test_values_that_do_not_fit_name_the_key(key, value, msg):
    with pytest.raises(ConfigError) as e:
        coerce_field(key, value)
    assert str(e.value) == msg
