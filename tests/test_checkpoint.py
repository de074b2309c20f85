"""Checkpoint format: round trip, export, and a clear error for every kind of bad file."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from sketchstudio.checkpoint import (
    Checkpoint,
    ModelMeta,
    build_student,
    check_export_target,
    export_model,
    optim_groups,
    read_checkpoint,
    read_header,
    save_checkpoint,
    student_tensors,
    validate_meta,
)
from sketchstudio.errors import CheckpointError, OutputError
from sketchstudio.models import StudentNet


def test_round_trip_and_strict_build(tiny_model):
    ck = read_checkpoint(tiny_model)
    assert ck.directions == ["photo2sketch", "sketch2photo"]
    g = build_student(ck, "photo2sketch")
    assert torch.equal(g.OC[1].weight, ck.tensors["G.OC.1.weight"])


def test_run_folder_resolves_to_its_checkpoint(tiny_model, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(tiny_model.read_bytes())
    assert read_checkpoint(run).path == run / "checkpoint.safetensors"
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(tmp_path / "run" / ".." / "run" / "..")
    assert str(e.value) == (f"Folder '{tmp_path / 'run' / '..' / 'run' / '..'}' holds no "
                            "checkpoint.safetensors or model.safetensors.")


def test_truncated_file(tiny_model, tmp_path):
    bad = tmp_path / "trunc.safetensors"
    bad.write_bytes(tiny_model.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(bad)


def test_pickle_is_refused(tmp_path):
    p = tmp_path / "model.pth"
    torch.save({"a": torch.zeros(1)}, p)
    with pytest.raises(CheckpointError, match="never unpickles"):
        read_checkpoint(p)


def test_other_architecture(tmp_path):
    net = StudentNet(8, 2)
    p = tmp_path / "liar.safetensors"
    save_checkpoint(p, student_tensors("G", net), ModelMeta(ngf=4, n_blocks=1, image_size=32))
    with pytest.raises(CheckpointError, match="does not match.*ngf=4.*wrong shapes|does not match"):
        build_student(read_checkpoint(p), "photo2sketch")
    p2 = tmp_path / "arch.safetensors"
    save_checkpoint(p2, student_tensors("G", net), ModelMeta(arch="pix2pix", ngf=8, n_blocks=2))
    with pytest.raises(CheckpointError, match="architecture 'pix2pix'"):
        read_checkpoint(p2)


def test_nan_weights(tmp_path):
    net = StudentNet(4, 1)
    t = student_tensors("F", net)
    t["F.IC.1.weight"][0, 0, 0, 0] = float("nan")
    p = tmp_path / "nan.safetensors"
    save_checkpoint(p, t, ModelMeta(ngf=4, n_blocks=1))
    with pytest.raises(CheckpointError, match=r"'F\.IC\.1\.weight' contains NaN"):
        read_checkpoint(p)


def test_foreign_safetensors_and_missing_direction(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(p)
    assert str(e.value) == ("'foreign.safetensors' is a safetensors file but not a SketchStudio model "
                            "(no SketchStudio metadata).")
    p2 = tmp_path / "g_only.safetensors"
    save_checkpoint(p2, student_tensors("G", StudentNet(4, 1)), ModelMeta(ngf=4, n_blocks=1))
    with pytest.raises(CheckpointError, match="no sketch2photo network"):
        build_student(read_checkpoint(p2), "sketch2photo")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.safetensors")


def test_export_fp16_keeps_inference_parts_only(tmp_path, tiny_model):
    ck = read_checkpoint(tiny_model)
    tensors = dict(ck.tensors)
    tensors["optim.G.0.exp_avg"] = torch.zeros(3)
    tensors["teacher_scale.relu1_1"] = torch.full((64,), 20.0)
    src = tmp_path / "train.safetensors"
    ck.meta.extra = {"optim_groups": {"G": [{"lr": 2e-4, "betas": [0.5, 0.999]}]}, "ema": {"updates": 3}}
    save_checkpoint(src, tensors, ck.meta)
    out = export_model(src, tmp_path / "model.safetensors", metrics={"photo_fsim": 0.7})
    ex = read_checkpoint(out)
    # provenance replaces the resume-only settings; the rest of extra travels on
    assert ex.meta.extra == {"ema": {"updates": 3}, "exported_from": str(src), "dtype": "float16",
                             "weights": "trained"}
    assert not any(k.startswith("optim.") for k in ex.tensors)
    assert ex.tensors["G.IC.1.weight"].dtype == torch.float16
    assert ex.tensors["teacher_scale.relu1_1"].dtype == torch.float32
    assert list(ex.teacher_scales()) == ["relu1_1"]  # what eval hands the teacher
    assert torch.equal(ex.teacher_scales()["relu1_1"], torch.full((64,), 20.0))
    assert ck.teacher_scales() is None  # none saved: the teacher keeps its own scales
    assert ex.meta.metrics == {"photo_fsim": 0.7}
    g = build_student(ex, "photo2sketch")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    ref = build_student(ck, "photo2sketch")
    assert torch.allclose(g(x), ref(x), atol=2e-2)



def test_export_ema_ships_the_weight_average(tmp_path, tiny_model):
    ck = read_checkpoint(tiny_model)
    tensors = dict(ck.tensors)
    ema = {f"ema.{k}": v + 1.0 for k, v in ck.tensors.items() if k.startswith(("G.", "F."))}
    scale = {"teacher_scale.relu1_1": torch.full((64,), 20.0)}
    src = tmp_path / "train.safetensors"
    save_checkpoint(src, tensors | ema | scale, ck.meta)
    ex = read_checkpoint(export_model(src, tmp_path / "ema.safetensors", dtype=torch.float32, ema=True))
    assert ex.meta.extra["weights"] == "ema" and not any(k.startswith("ema.") for k in ex.tensors)
    assert torch.equal(ex.tensors["teacher_scale.relu1_1"], scale["teacher_scale.relu1_1"])
    assert torch.equal(ex.tensors["G.IC.1.weight"], ck.tensors["G.IC.1.weight"] + 1.0)
    assert set(ex.directions) == {"photo2sketch", "sketch2photo"}
    plain = read_checkpoint(export_model(src, tmp_path / "plain.safetensors", dtype=torch.float32))
    assert plain.meta.extra["weights"] == "trained"
    assert torch.equal(plain.tensors["G.IC.1.weight"], ck.tensors["G.IC.1.weight"])
    with pytest.raises(CheckpointError) as e:
        export_model(tiny_model, tmp_path / "none.safetensors", ema=True)
    assert str(e.value) == (f"'{tiny_model}' holds no weight average; train with --ema-decay "
                            "(e.g. 0.999) to keep one, or export without --ema.")
    assert not (tmp_path / "none.safetensors").exists()

def test_atomic_write_leaves_old_file_on_failure(tiny_model, monkeypatch):
    before = tiny_model.read_bytes()
    import sketchstudio.fsutil as fsutil

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(fsutil.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tiny_model, student_tensors("G", StudentNet(4, 1)), ModelMeta(ngf=4, n_blocks=1))
    assert tiny_model.read_bytes() == before
    assert [p.name for p in tiny_model.parent.iterdir() if p.suffix == ".tmp"] == []


def test_export_target_refuses_the_source_a_training_checkpoint_and_a_folder(tiny_model, tmp_path):
    """Every refusal is the sentence the user reads; a new file, a plain model and a file that is
    not a model may be written."""
    run = tmp_path / "run"
    run.mkdir()
    src = run / "checkpoint.safetensors"
    save_checkpoint(src, read_checkpoint(tiny_model).tensors | {"optim.G.0.exp_avg": torch.zeros(2)},
                    ModelMeta(ngf=4, n_blocks=1, image_size=32))
    with pytest.raises(OutputError) as e:
        check_export_target(run, tmp_path)
    assert str(e.value) == (f"'{tmp_path}' is a folder; give the model's file name, e.g. "
                            f"'{tmp_path / 'model.safetensors'}'.")
    for target in (src, run / ".." / "run" / "checkpoint.safetensors"):
        with pytest.raises(OutputError) as e:
            check_export_target(run, target)  # the run folder resolves to the file being read
        assert str(e.value) == (
            f"Refusing to export '{src}' onto itself: that would replace the training checkpoint "
            "(weights, Adam and RNG state) with the compact model. Choose another output file.")
    with pytest.raises(OutputError) as e:
        check_export_target(tiny_model, src)
    assert str(e.value) == (
        f"'{src}' is a training checkpoint (it holds the optimizer state --resume needs); "
        "exporting onto it would destroy that. Choose another output file.")
    notes = tmp_path / "notes.safetensors"
    notes.write_text("not a model")
    for target in (tmp_path / "new.safetensors", tiny_model, notes):
        assert check_export_target(src, target) is None


# --- metadata rules, one field at a time (before any network is built from them) -----------------
BAD_META = [
    ([1], "has unreadable metadata (a list, not a table)."),
    ({"ngf": True}, "has invalid metadata: ngf must be a whole number, got True."),
    ({"n_blocks": 1.0}, "has invalid metadata: n_blocks must be a whole number, got 1.0."),
    ({"ngf": 0}, "has invalid metadata: ngf=0 is outside 1..256."),
    ({"ngf": 257}, "has invalid metadata: ngf=257 is outside 1..256."),
    ({"n_blocks": -1}, "has invalid metadata: n_blocks=-1 is outside 0..32."),
    ({"n_blocks": 33}, "has invalid metadata: n_blocks=33 is outside 0..32."),
    ({"image_size": 12}, "has invalid metadata: image_size=12 is outside 16..1024."),
    ({"image_size": 1028}, "has invalid metadata: image_size=1028 is outside 16..1024."),
    ({"step": -1}, "has invalid metadata: step=-1 is outside 0..1000000000000."),
    ({"epoch": 10**9 + 1}, "has invalid metadata: epoch=1000000001 is outside 0..1000000000."),
    ({"image_size": 30}, "has invalid metadata: image_size=30 is not divisible by 4 (the student "
                         "halves it twice)."),
    ({"data": []}, "has invalid metadata: data must be a table, got list."),
    ({"extra": "x"}, "has invalid metadata: extra must be a table, got str."),
    ({"arch": 3}, "has invalid metadata: arch must be text, got 3."),
    ({"sketchstudio_version": None}, "has invalid metadata: sketchstudio_version must be text, got None."),
    ({"upsample": "magic"}, "has invalid metadata: upsample='magic'; this SketchStudio knows deconv, resize."),
    ({"upsample": 3}, "has invalid metadata: upsample=3; this SketchStudio knows deconv, resize."),
    ({"block_width": -1}, "has invalid metadata: block_width=-1 is outside 0..1024."),
    ({"block_width": 1025}, "has invalid metadata: block_width=1025 is outside 0..1024."),
    ({"block_width": "8"}, "has invalid metadata: block_width must be a whole number, got '8'."),
]


@pytest.mark.parametrize("meta,message", BAD_META, ids=[m for _, m in BAD_META])
def test_each_bad_metadata_field_is_named_with_its_rule(meta, message):
    with pytest.raises(CheckpointError) as e:
        validate_meta(meta, "m.safetensors")
    assert str(e.value) == f"'m.safetensors' {message}"


def test_metadata_at_the_limits_is_accepted_and_unknown_fields_ignored():
    edge = {"ngf": 256, "n_blocks": 32, "image_size": 1024, "step": 10**12, "epoch": 10**9,
            "upsample": "resize", "arch": "kt-student", "data": {"pairs": 3}, "from_the_future": 1}
    m = validate_meta(edge, "m.safetensors")
    assert (m.ngf, m.n_blocks, m.image_size, m.step, m.epoch, m.upsample, m.data) == (
        256, 32, 1024, 10**12, 10**9, "resize", {"pairs": 3})
    low = validate_meta({"ngf": 1, "n_blocks": 0, "image_size": 16, "step": 0, "epoch": 0}, "m")
    assert (low.ngf, low.n_blocks, low.image_size) == (1, 0, 16)
    assert validate_meta({}, "m") == ModelMeta()  # every field has its default


# --- the header is checked before anything else is read -------------------------------------------
def _raw(path, header: object, payload: bytes = b"", n: int | None = None):
    """A file laid out like safetensors: 8-byte little-endian length, JSON header, payload."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(head) if n is None else n
    path.write_bytes(length.to_bytes(8, "little") + head + payload)
    return path


def test_a_header_that_fills_the_file_exactly_is_read(tmp_path):
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    p = _raw(tmp_path / "m.safetensors", {"w": entry, "__metadata__": {"format": "x"}}, bytes(8))
    assert read_header(p) == ({"w": entry}, {"format": "x"})
    assert read_header(_raw(tmp_path / "e.safetensors", {})) == ({}, {})  # the smallest: "{}"
    empty = {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]}  # a legal zero-size tensor
    assert read_header(_raw(tmp_path / "z.safetensors", {"z": empty}))[0] == {"z": empty}


@pytest.mark.parametrize("n,extra", [(1, b""), (3, b""), (0, b"")])
def test_a_header_length_outside_the_file_is_truncated(tmp_path, n, extra):
    p = _raw(tmp_path / "m.safetensors", b"{}" + extra, n=n)
    size = p.stat().st_size
    with pytest.raises(CheckpointError) as e:
        read_header(p)
    assert str(e.value) == (f"'m.safetensors' is truncated or not a safetensors model file "
                            f"({size} bytes, header length {n}).")


def test_a_header_longer_than_the_limit_is_refused_unread(tmp_path, monkeypatch):
    import sketchstudio.checkpoint as ck

    p = _raw(tmp_path / "m.safetensors", {"a": {"shape": [], "data_offsets": [0, 0]}})
    monkeypatch.setattr(ck, "MAX_HEADER_BYTES", p.stat().st_size - 9)  # one byte short
    with pytest.raises(CheckpointError, match="truncated or not a safetensors"):
        read_header(p)


def test_pickles_of_every_protocol_and_zipped_torch_files_are_refused(tmp_path):
    for proto in (2, 3, 4, 5):
        p = tmp_path / f"p{proto}.pth"
        p.write_bytes(pickle.dumps({"w": [0.0] * 4}, protocol=proto))
        with pytest.raises(CheckpointError) as e:
            read_header(p)
        assert str(e.value) == (
            f"'{p.name}' is a pickled PyTorch file. SketchStudio never unpickles model files "
            "(they can run code); convert it to a .safetensors checkpoint.")
    z = tmp_path / "z.pt"
    torch.save({"w": torch.zeros(1)}, z)
    with pytest.raises(CheckpointError, match="is a pickled PyTorch file"):
        read_header(z)


@pytest.mark.parametrize("header,message", [
    (b"{not json", "is truncated or not a safetensors model file (unreadable header: "),
    (b"[1, 2]", "is not a safetensors model file (its header is not a table)."),
    (b'{"__metadata__": [1]}', "has unreadable metadata (not a table)."),
    (b'{"w": 3}', "is damaged: the header entry of tensor 'w' is malformed."),
    (b'{"w": {"shape": 2, "data_offsets": [0, 0]}}', "is damaged: the header entry of tensor 'w' is malformed."),
    (b'{"w": {"shape": [-1], "data_offsets": [0, 0]}}', "is damaged: the header entry of tensor 'w' is malformed."),
    (b'{"w": {"shape": [1.5], "data_offsets": [0, 0]}}', "is damaged: the header entry of tensor 'w' is malformed."),
    (b'{"w": {"shape": [2], "data_offsets": 0}}', "is damaged: the header entry of tensor 'w' is malformed."),
    (b'{"w": {"shape": [2], "data_offsets": [0]}}', "is damaged: the header entry of tensor 'w' is malformed."),
    (b'{"w": {"shape": [2], "data_offsets": [0, 8.0]}}', "is damaged: the header entry of tensor 'w' is malformed."),
])
def test_each_kind_of_bad_header_has_its_sentence(tmp_path, header, message):
    p = _raw(tmp_path / "m.safetensors", header)
    with pytest.raises(CheckpointError) as e:
        read_header(p)
    assert str(e.value).startswith(f"'m.safetensors' {message}")


def test_a_header_describing_more_bytes_than_the_file_is_truncated(tmp_path):
    table = {"a": {"shape": [1], "data_offsets": [0, 4]}, "b": {"shape": [2], "data_offsets": [4, 12]}}
    head = json.dumps(table).encode()
    p = _raw(tmp_path / "m.safetensors", head, bytes(11))  # the last tensor ends at 12
    with pytest.raises(CheckpointError) as e:
        read_header(p)
    assert str(e.value) == (f"'m.safetensors' is truncated: its header describes {8 + len(head) + 12} "
                            f"bytes, the file has {8 + len(head) + 11}.")
    assert read_header(_raw(p, head, bytes(12)))[0] == table


def test_an_unreadable_file_says_why(tmp_path):
    with pytest.raises(CheckpointError) as e:
        read_header(tmp_path)  # a folder: open() fails
    assert str(e.value) == f"Cannot read '{tmp_path}': Is a directory"


@pytest.mark.parametrize("groups", [None, [], {"F": [{"lr": 1e-3, "betas": [0.5, 0.9]}]}, {"G": []},
                                    {"G": [{"lr": 1e-3}]}, {"G": [{"betas": [0.5, 0.9]}]}, {"G": ["x"]}])
def test_optimizer_state_without_usable_settings_cannot_be_resumed(tiny_model, groups):
    ck = read_checkpoint(tiny_model)
    if groups is not None:
        ck.meta.extra["optim_groups"] = groups
    with pytest.raises(CheckpointError) as e:
        optim_groups(ck, "G")
    assert str(e.value) == (
        f"'{tiny_model}' holds optimizer state for G but not its settings (optim_groups), so it "
        "cannot be resumed. Start a new run from its weights with --init-from instead.")


def test_saved_optimizer_settings_are_returned_per_network(tiny_model):
    ck = read_checkpoint(tiny_model)
    g = [{"lr": 1e-3, "betas": [0.5, 0.9]}, {"lr": 2e-3, "betas": [0.0, 0.99]}]
    ck.meta.extra["optim_groups"] = {"G": g, "F": [{"lr": 5e-4, "betas": [0.5, 0.999]}]}
    assert optim_groups(ck, "G") == g
    assert optim_groups(ck, "F")[0]["lr"] == 5e-4


# --- read_checkpoint: the file as a whole ------------------------------------------------------
def _write(path, tensors, meta: str | None = '{"ngf": 4, "n_blocks": 1}', version: str = "1"):
    """A safetensors file with SketchStudio's header fields, whatever they say."""
    from safetensors.torch import save as st_save

    md = {"format": "sketchstudio", "format_version": version} | ({"meta": meta} if meta else {})
    path.write_bytes(st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=md))
    return path


@pytest.mark.parametrize("version,meta,tensors,message", [
    ("2", '{"ngf": 4}', "G", "has format version '2'; this SketchStudio reads version 1. Update the app."),
    ("1", None, "G", "has unreadable metadata ('meta')."),
    ("1", '{"ngf": 0}', "G", "has invalid metadata: ngf=0 is outside 1..256."),
    ("1", "{bad", "G", "has unreadable metadata (Expecting property name enclosed in double quotes: "
                       "line 1 column 2 (char 1))."),
    ("1", '{"ngf": 4, "n_blocks": 1}', "scales", "holds neither G (photo→sketch) nor F (sketch→photo) "
                                                 "weights."),
])
def test_each_unusable_model_file_has_its_sentence(tmp_path, version, meta, tensors, message):
    t = (student_tensors("G", StudentNet(4, 1)) if tensors == "G"
         else {"teacher_scale.relu1_1": torch.ones(64)})
    p = _write(tmp_path / "m.safetensors", t, meta, version)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(p)
    assert str(e.value) == f"'m.safetensors' {message}"


def test_an_oversized_file_is_refused_by_its_size(tiny_model, monkeypatch):
    import sketchstudio.checkpoint as ck

    size = tiny_model.stat().st_size
    monkeypatch.setattr(ck, "MAX_FILE_BYTES", size)
    assert read_checkpoint(tiny_model).directions  # at the limit: read
    monkeypatch.setattr(ck, "MAX_FILE_BYTES", size - 1)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(tiny_model)
    assert str(e.value) == f"'tiny.safetensors' is {size / 2**30:.1f} GB, too large to be a SketchStudio model."
    big = tiny_model.with_name("big.safetensors")
    with big.open("wb") as fh:
        fh.truncate(5 << 30)  # sparse: 5 GiB long, nothing written
    monkeypatch.undo()
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(big)
    assert str(e.value) == "'big.safetensors' is 5.0 GB, too large to be a SketchStudio model."


def test_nan_weights_load_when_the_finite_check_is_off(tmp_path):
    t = student_tensors("G", StudentNet(4, 1))
    t["G.IC.1.weight"][0, 0, 0, 0] = float("nan")
    ck = read_checkpoint(_write(tmp_path / "m.safetensors", t), check_finite=False)
    assert torch.isnan(ck.tensors["G.IC.1.weight"][0, 0, 0, 0])


def test_shape_mismatches_list_three_of_each_kind(tmp_path):
    """The message names up to three missing, unexpected and wrong-shaped weights, "…" after a
    third, for G, F and their weight averages alike."""
    good = student_tensors("G", StudentNet(4, 1))
    names = sorted(good)
    t = {k: v for k, v in good.items() if k not in names[:3]}  # three missing: no "…"
    t |= {f"G.extra.w{i}": torch.zeros(1) for i in range(4)}  # four unexpected: "…"
    t[names[5]] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(_write(tmp_path / "m.safetensors", t))
    short = [n.removeprefix("G.") for n in names]
    assert str(e.value) == (
        "'m.safetensors' does not match the kt-student architecture with ngf=4, n_blocks=1, "
        f"upsample=deconv its metadata describes (G weights: missing {', '.join(short[:3])}; "
        "unexpected extra.w0, extra.w1, extra.w2…; "
        f"wrong shapes {short[5]}: (1,) vs {tuple(good[names[5]].shape)}). "
        "It was made by another model or version.")
    ema = good | {f"ema.{k}": v.clone() for k, v in good.items() if k not in names[:4]}
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(_write(tmp_path / "e.safetensors", ema))
    assert f"(ema.G weights: missing {', '.join(short[:3])}…)" in str(e.value)


def test_build_student_names_what_is_wrong(tiny_model):
    ck = read_checkpoint(tiny_model)
    with pytest.raises(CheckpointError) as e:
        build_student(ck, "photo2photo")
    assert str(e.value) == "Unknown direction 'photo2photo'; use one of photo2sketch, sketch2photo."
    g_only = Checkpoint({k: v for k, v in ck.tensors.items() if k.startswith("G.")}, ck.meta, tiny_model)
    with pytest.raises(CheckpointError) as e:
        build_student(g_only, "sketch2photo")
    assert str(e.value) == f"Model '{tiny_model}' has no sketch2photo network (it holds: photo2sketch)."
    # an in-memory checkpoint (the trainer's) is not shape-checked on reading: build_student is
    t = student_tensors("G", StudentNet(4, 1, upsample="resize"))
    want = tuple(t["G.OC.1.weight"].shape)
    t = {k: v for k, v in t.items() if k != "G.OC.1.bias"} | {"G.x": torch.zeros(1),
                                                              "G.OC.1.weight": torch.zeros(1)}
    bad = Checkpoint(t, ModelMeta(ngf=4, n_blocks=1, upsample="resize"), tiny_model)
    with pytest.raises(CheckpointError) as e:
        build_student(bad, "photo2sketch")
    assert str(e.value) == (
        f"'{tiny_model}' does not match the kt-student architecture with ngf=4, n_blocks=1, "
        f"upsample=resize (missing OC.1.bias; unexpected x; wrong shapes OC.1.weight: (1,) vs {want}). "
        "It was made by another model or version.")


def test_a_narrow_block_student_round_trips_and_a_wrong_width_is_named(tmp_path):
    """block_width (the lite students' inner residual width) is stored, checked against the
    tensors on reading, and rebuilt exactly; a file whose metadata says another width fails with
    the width in the message."""
    torch.manual_seed(4)
    net = StudentNet(4, 2, block_width=5)
    assert tuple(net.Block[1].body[1].weight.shape) == (5, 16, 3, 3)  # 5 out of 4·ngf in
    assert tuple(net.Block[1].body[5].weight.shape) == (16, 5, 3, 3)  # 5 in, 4·ngf out
    p = save_checkpoint(tmp_path / "lite.safetensors", student_tensors("G", net),
                        ModelMeta(ngf=4, n_blocks=2, image_size=32, block_width=5))
    ck = read_checkpoint(p)
    assert ck.meta.block_width == 5
    g = build_student(ck, "photo2sketch")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(g(x), net.eval()(x))
    wrong = save_checkpoint(tmp_path / "wrong.safetensors", student_tensors("G", net),
                            ModelMeta(ngf=4, n_blocks=2, image_size=32, block_width=6))
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(wrong)
    assert "with ngf=4, n_blocks=2, upsample=deconv, block_width=6 its metadata describes" in str(e.value)
    assert "wrong shapes Block.0.body.1.weight: (5, 16, 3, 3) vs (6, 16, 3, 3)" in str(e.value)
    full = save_checkpoint(tmp_path / "full.safetensors", student_tensors("G", net),
                           ModelMeta(ngf=4, n_blocks=2, image_size=32))
    with pytest.raises(CheckpointError, match="upsample=deconv its metadata describes"):
        read_checkpoint(full)  # 0 means 4·ngf = 16 inside, not the file's 5


def test_build_student_loads_half_precision_weights_in_eval_mode(tiny_model, tmp_path):
    torch.manual_seed(3)
    net = StudentNet(4, 1, upsample="resize")
    p = tmp_path / "r.safetensors"
    save_checkpoint(p, student_tensors("F", net, torch.float16),
                    ModelMeta(ngf=4, n_blocks=1, image_size=32, upsample="resize"))
    f = build_student(read_checkpoint(p), "sketch2photo")
    assert not f.training
    assert f.OC[1].weight.dtype == torch.float32
    assert torch.equal(f.OC[1].weight, net.OC[1].weight.half().float())


def test_mismatch_lists_up_to_three_of_each_kind_and_nothing_when_all_match():
    from sketchstudio.checkpoint import _mismatch

    want = {k: (1,) for k in "abcdef"}
    assert _mismatch(dict(want), want) == ""
    assert _mismatch({"e": (1,), "f": (1,)}, want) == "missing a, b, c…"  # four missing
    assert _mismatch(want | {"x": (1,), "y": (1,), "z": (1,)}, want) == "unexpected x, y, z"
    assert _mismatch({k: (2,) for k in "abcdef"}, want) == (
        "wrong shapes a: (2,) vs (1,), b: (2,) vs (1,), c: (2,) vs (1,)")
    assert _mismatch({"a": (2,), "b": (1,), "c": (1,), "d": (1,), "w": (1,)},
                     {k: (1,) for k in "abcde"}) == "missing e; unexpected w; wrong shapes a: (2,) vs (1,)"


def test_an_export_is_stamped_when_it_is_made(tiny_model, tmp_path):
    ck = read_checkpoint(tiny_model)
    ck.meta.created = "2020-01-01T00:00:00+00:00"
    src = save_checkpoint(tmp_path / "old.safetensors", ck.tensors, ck.meta)
    made = read_checkpoint(export_model(src, tmp_path / "m.safetensors")).meta.created
    from datetime import datetime

    assert made != "2020-01-01T00:00:00+00:00" and datetime.fromisoformat(made).year >= 2024
    assert made.endswith("+00:00")  # UTC, with its offset: comparable across machines


@pytest.mark.parametrize("length", [0x180, 0x300, 0x5880])
def test_header_lengths_whose_bytes_look_like_pickle_magic_are_read(tmp_path, length):
    """Only 0x80 followed by a protocol number (2-5) is a pickle: headers of 0x180 bytes (80 01),
    0x300 (00 03) and 0x5880 (80 58) make ordinary safetensors files."""
    entry = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    base = len(json.dumps({"w": entry, "__metadata__": {"pad": ""}}).encode())
    header = {"w": entry, "__metadata__": {"pad": "x" * (length - base)}}
    p = _raw(tmp_path / "m.safetensors", header, bytes(4))
    assert p.read_bytes()[:2] == length.to_bytes(2, "little")
    assert read_header(p)[0] == {"w": entry}


def test_a_file_shorter_than_the_length_field_is_truncated(tmp_path):
    p = tmp_path / "m.safetensors"
    p.write_bytes(b"abcde")
    with pytest.raises(CheckpointError) as e:
        read_header(p)
    assert str(e.value) == ("'m.safetensors' is truncated or not a safetensors model file "
                            "(5 bytes, header length 0).")


def test_tensors_safetensors_cannot_load_are_a_checkpoint_error(tmp_path):
    md = {"format": "sketchstudio", "format_version": "1", "meta": '{"ngf": 4, "n_blocks": 1}'}
    p = _raw(tmp_path / "m.safetensors",
             {"w": {"dtype": "NOPE", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": md}, bytes(4))
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(p)
    assert str(e.value).startswith("'m.safetensors' is truncated or not a safetensors model file (Error ")


def test_f_weights_are_shape_checked_on_reading_too(tmp_path):
    t = student_tensors("G", StudentNet(4, 1)) | student_tensors("F", StudentNet(8, 1))
    with pytest.raises(CheckpointError, match=r"\(F weights: wrong shapes "):
        read_checkpoint(_write(tmp_path / "m.safetensors", t))
