"""Issue 19: SketchStudio never destroys a user's file and never crashes on a hostile model file.

Outputs never overwrite an input, each other or a file SketchStudio did not write; an export
never lands on the checkpoint it reads; a full disk is a clear message with the old file intact;
model metadata is validated (types, ranges, tensor shapes) before any network is built; one
training run per run folder, and the temp files of killed writes are cleaned up.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save as st_save

from sketchstudio import cli as translate_cli
from sketchstudio.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    ModelMeta,
    read_checkpoint,
    save_checkpoint,
    student_tensors,
)
from sketchstudio.errors import CheckpointError, ConfigError
from sketchstudio.fsutil import atomic_write_bytes
from sketchstudio.imaging import save_image
from sketchstudio.models import StudentNet
from tests.conftest import face_like, mounted_tmpfs, tiny_config
from trainer import cli as train_cli
from trainer.loop import LOSS_LOG, Trainer

NO_ALIGN = ["--device", "cpu", "--no-align"]
# names this issue added are imported inside the tests, so that each test fails on its own on
# the code from before the fix (instead of the whole module failing to import)


def user_image(path: Path, seed: int = 0) -> Path:
    """An image as a user's camera would write it (no SketchStudio stamp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(face_like(seed)).save(path)
    return path


def translate(tiny_model: Path, *argv: str) -> int:
    return translate_cli.main([*argv, "--model", str(tiny_model), *NO_ALIGN])


# --- 1. outputs never overwrite inputs or each other ------------------------------------------
def test_translating_into_the_inputs_folder_keeps_the_original(tiny_model, tmp_path, capsys):
    from sketchstudio.imaging import is_our_output

    d = tmp_path / "d"
    x = user_image(d / "x.png")
    before = x.read_bytes()
    assert translate(tiny_model, str(x), "-o", str(d)) == 0
    out = capsys.readouterr()
    assert x.read_bytes() == before
    assert (d / "x.sketch.png").is_file() and is_our_output(d / "x.sketch.png")
    assert "1 image(s) written" in out.out and "written as 'x.sketch.png'" in out.err
    # the folder into itself, again: the original stays, the earlier output is not re-translated
    assert translate(tiny_model, str(d), "-o", str(d)) == 0
    out = capsys.readouterr()
    assert x.read_bytes() == before
    assert sorted(p.name for p in d.iterdir()) == ["x.png", "x.sketch.png"]
    assert "1 image(s) written" in out.out and "not translated again" in out.err


def test_two_inputs_with_one_stem_give_two_outputs(tiny_model, tmp_path, capsys):
    a, b = user_image(tmp_path / "a" / "face.jpg", 0), user_image(tmp_path / "b" / "face.png", 1)
    out = tmp_path / "o"
    assert translate(tiny_model, str(a), str(b), "-o", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["face.png", "face.sketch.png"]
    assert "2 image(s) written" in capsys.readouterr().out


def test_an_input_given_twice_is_translated_and_counted_once(tiny_model, tmp_path, capsys):
    x = user_image(tmp_path / "x.png")
    out = tmp_path / "o"
    assert translate(tiny_model, str(x), str(x), str(tmp_path / "." / "x.png"), "-o", str(out)) == 0
    text = capsys.readouterr()
    assert "1 image(s) written" in text.out and "given more than once" in text.err
    assert [p.name for p in out.iterdir()] == ["x.png"]


def test_a_users_file_with_the_output_name_is_kept_but_an_earlier_output_is_refreshed(
        tiny_model, tmp_path, capsys):
    x = user_image(tmp_path / "in" / "face.jpg")
    out = tmp_path / "o"
    mine = user_image(out / "face.png", 7)  # the user's own photo, not a SketchStudio output
    before = mine.read_bytes()
    assert translate(tiny_model, str(x), "-o", str(out)) == 0
    assert mine.read_bytes() == before
    assert "was not written by SketchStudio" in capsys.readouterr().err
    first = (out / "face.sketch.png").read_bytes()
    # a rerun replaces its own earlier result instead of piling up face-2.sketch.png …
    (out / "face.sketch.png").write_bytes(first)  # same content, new mtime
    assert translate(tiny_model, str(x), "-o", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["face.png", "face.sketch.png"]


def test_gui_batch_into_its_own_folder_keeps_the_originals(tiny_model, tmp_path):
    pytest.importorskip("PySide6")
    from sketchstudio.engine import Translator
    from sketchstudio.gui.workers import BatchWorker

    src = tmp_path / "src"
    files = [user_image(src / f"f{i}.png", i) for i in range(2)]
    before = [f.read_bytes() for f in files]
    w = BatchWorker(Translator(tiny_model, device="cpu"), [str(f) for f in files], str(src),
                    align=False)
    got = []
    w.finished.connect(got.append)
    w.run()
    s = got[0]
    assert [f.read_bytes() for f in files] == before
    assert len(s.written) == 2 and len(set(s.written)) == 2 and not s.problems
    assert sorted(p.name for p in src.iterdir()) == ["f0.png", "f0.sketch.png", "f1.png",
                                                     "f1.sketch.png"]
    assert any("distinct name" in n for n in s.notes)


def _training_checkpoint(path: Path) -> Path:
    g, f = StudentNet(4, 1), StudentNet(4, 1)
    tensors = student_tensors("G", g) | student_tensors("F", f) | {
        "optim.G.0.exp_avg": torch.zeros(3), "optim.F.0.exp_avg": torch.zeros(3)}
    groups = {k: [{"lr": 2e-4, "betas": [0.5, 0.999]}] for k in ("G", "F")}
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, tensors, ModelMeta(ngf=4, n_blocks=1, image_size=32,
                                                    extra={"optim_groups": groups}))


@pytest.mark.parametrize("via_folder", [True, False])
def test_export_onto_the_checkpoint_being_read_is_refused(tmp_path, capsys, via_folder):
    ckpt = _training_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    before = ckpt.read_bytes()
    src = ckpt.parent if via_folder else ckpt
    assert train_cli.export_main([str(src), str(ckpt)]) == 2
    assert "onto itself" in capsys.readouterr().err
    assert ckpt.read_bytes() == before
    assert "optim.G.0.exp_avg" in read_checkpoint(ckpt).tensors


def test_export_onto_another_training_checkpoint_or_a_folder_is_refused(tmp_path, capsys):
    src = _training_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    other = _training_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    before = other.read_bytes()
    assert train_cli.export_main([str(src), str(other)]) == 2
    assert "is a training checkpoint" in capsys.readouterr().err and other.read_bytes() == before
    assert train_cli.export_main([str(src), str(tmp_path / "b")]) == 2
    assert "is a folder" in capsys.readouterr().err
    # an earlier export (no optimizer state) may be replaced
    assert train_cli.export_main([str(src), str(tmp_path / "m.safetensors")]) == 0
    assert train_cli.export_main([str(src), str(tmp_path / "m.safetensors")]) == 0


# --- 2. a full disk -----------------------------------------------------------------------------
def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_says_where_and_how_much_and_keeps_the_old_file(tmp_path, monkeypatch):
    import sketchstudio.fsutil as fsutil
    from sketchstudio.errors import DiskFullError

    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")
    monkeypatch.setattr(fsutil.os, "fsync", _enospc)
    with pytest.raises(DiskFullError, match=r"No space left on .*: 3\.0 MB needed, .* free"):
        atomic_write_bytes(target, b"x" * 3_000_000)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    with pytest.raises(DiskFullError):  # the checkpoint writer says the same
        save_checkpoint(target, student_tensors("G", StudentNet(4, 1)), ModelMeta(ngf=4, n_blocks=1))
    assert target.read_bytes() == b"previous"


def test_a_full_disk_stops_the_translate_batch_cleanly(tiny_model, tmp_path, monkeypatch, capsys):
    import sketchstudio.fsutil as fsutil

    files = [str(user_image(tmp_path / "in" / f"f{i}.png", i)) for i in range(3)]
    monkeypatch.setattr(fsutil.os, "fsync", _enospc)
    out = tmp_path / "o"
    assert translate(tiny_model, *files, "-o", str(out)) == 1
    text = capsys.readouterr()
    assert "No space left on" in text.err and "Stopped; 2 image(s) not translated" in text.err
    assert "Traceback" not in text.err and "0 image(s) written" in text.out
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture
def small_fs(tmp_path):
    """A real 256 kB tmpfs (needs root and mount); skips elsewhere, the injected tests still run."""
    with mounted_tmpfs(tmp_path / "small", "256k") as mnt:
        yield mnt


def test_a_real_full_filesystem_gives_the_message_not_a_traceback(small_fs, tiny_model, tmp_path,
                                                                  capsys):
    from sketchstudio.errors import DiskFullError

    with (small_fs / "filler").open("wb", buffering=0) as fh, pytest.raises(OSError):
        while True:  # fill it to the last page
            fh.write(b"\1" * 4096)
    prev = small_fs / "keep.png"
    big = (np.random.default_rng(0).integers(0, 255, (200, 200, 3))).astype(np.uint8)
    try:
        save_image(big, prev)
    except DiskFullError as exc:
        msg = str(exc)
    else:  # pragma: no cover - the filesystem was not full after all
        pytest.fail("no DiskFullError on a full tmpfs")
    assert msg.startswith(f"No space left on {small_fs}") and "needed" in msg
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]  # no temp file left
    src = user_image(tmp_path / "in" / "big.png")
    Image.fromarray(big).save(src)
    assert translate(tiny_model, str(src), "-o", str(small_fs)) == 1
    err = capsys.readouterr().err
    assert "No space left on" in err and "Traceback" not in err
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]


def test_a_torn_last_loss_log_line_is_dropped_on_resume(tiny_pairs, tmp_path, random_teacher, caplog):
    cfg = tiny_config(tiny_pairs, tmp_path / "run", random_teacher)
    Trainer(cfg).run()
    log_path = tmp_path / "run" / LOSS_LOG
    rows = log_path.read_text().splitlines()
    with log_path.open("a") as fh:
        fh.write('{"step": 4, "G_rec": 0.1')  # what ENOSPC mid-append leaves
    result = Trainer(tiny_config(tiny_pairs, tmp_path / "run", random_teacher, epochs=2),
                     resume=True).run()
    lines = log_path.read_text().splitlines()
    assert lines[:len(rows)] == rows
    assert [json.loads(ln)["step"] for ln in lines] == list(range(1, result.step + 1))
    assert "unreadable" in caplog.text


# --- 4. model files are checked before they are trusted -----------------------------------------
def _hostile(path: Path, meta_json: str, ngf: int = 4, n_blocks: int = 1) -> Path:
    tensors = {k: v.contiguous() for k, v in student_tensors("G", StudentNet(ngf, n_blocks)).items()}
    path.write_bytes(st_save(tensors, metadata={"format": FORMAT, "format_version": FORMAT_VERSION,
                                                "meta": meta_json}))
    return path


HOSTILE = {
    "huge ngf": ('{"ngf": 1500, "n_blocks": 1}', "ngf=1500 is outside 1..256"),
    "huge image": ('{"ngf": 4, "n_blocks": 1, "image_size": 20000}', "image_size=20000 is outside"),
    "zero image": ('{"ngf": 4, "n_blocks": 1, "image_size": 0}', "image_size=0 is outside"),
    "odd image": ('{"ngf": 4, "n_blocks": 1, "image_size": 30}', "not divisible by 4"),
    "text ngf": ('{"ngf": "abc", "n_blocks": 1}', "ngf must be a whole number"),
    "bool ngf": ('{"ngf": true, "n_blocks": 1}', "ngf must be a whole number"),
    "float blocks": ('{"ngf": 4, "n_blocks": 1.5}', "n_blocks must be a whole number"),
    "many blocks": ('{"ngf": 4, "n_blocks": 33}', "n_blocks=33 is outside 0..32"),
    "list meta": ("[1, 2, 3]", "not a table"),
    "null meta": ("null", "not a table"),
    "list config": ('{"ngf": 4, "n_blocks": 1, "train_config": []}', "train_config must be a table"),
    "bad upsample": ('{"ngf": 4, "n_blocks": 1, "upsample": "magic"}', "upsample='magic'"),
    "liar": ('{"ngf": 8, "n_blocks": 1}', "does not match"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_metadata_is_refused_before_any_network_is_built(tmp_path, monkeypatch, case):
    meta_json, message = HOSTILE[case]
    p = _hostile(tmp_path / "m.safetensors", meta_json)
    import sketchstudio.checkpoint as ck

    def no_tensors(*_a, **_k):
        raise AssertionError("tensors read before the metadata was checked")

    monkeypatch.setattr(ck, "st_load_file", no_tensors, raising=False)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_checkpoint(p)


def test_hostile_model_through_the_translate_cli_is_a_message(tmp_path, capsys):
    p = _hostile(tmp_path / "m.safetensors", '{"ngf": 1500, "n_blocks": 1}')
    x = user_image(tmp_path / "x.png")
    assert translate_cli.main([str(x), "-o", str(tmp_path / "o"), "--model", str(p), *NO_ALIGN]) == 2
    err = capsys.readouterr().err
    assert "ngf=1500 is outside 1..256" in err and "Traceback" not in err


def test_the_header_is_read_without_the_tensors(tmp_path, monkeypatch):
    """A file whose header promises more data than it holds is refused from its header alone."""
    from sketchstudio.checkpoint import read_header

    p = _hostile(tmp_path / "m.safetensors", '{"ngf": 4, "n_blocks": 1}')
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read the whole file"))
    with pytest.raises(CheckpointError, match="truncated"):
        read_header(p)
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(p)


def test_optimizer_state_without_its_groups_is_named(tmp_path):
    from sketchstudio.checkpoint import optim_groups

    p = tmp_path / "c.safetensors"
    save_checkpoint(p, student_tensors("G", StudentNet(4, 1)) | {"optim.G.0.exp_avg": torch.zeros(2)},
                    ModelMeta(ngf=4, n_blocks=1, image_size=32))
    ckpt = read_checkpoint(p)  # still a usable model
    with pytest.raises(CheckpointError, match="optim_groups.*--init-from"):
        optim_groups(ckpt, "G")
    ok = read_checkpoint(_training_checkpoint(tmp_path / "t.safetensors"))
    assert optim_groups(ok, "F")[0]["lr"] == 2e-4


# --- 5. one run per folder; stale temp files ----------------------------------------------------
def test_a_second_run_into_a_busy_folder_is_refused(tiny_pairs, tmp_path, random_teacher):
    from trainer.runlock import LOCK_NAME

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from trainer.runlock import claim_run_folder
        class Owner: pass
        o = Owner(); claim_run_folder(o, {str(run)!r}); print("locked", flush=True); time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"in use by another training run \(PID {holder.pid} "):
            Trainer(tiny_config(tiny_pairs, run, random_teacher)).run()
        assert not (run / "checkpoint.safetensors").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed, not cleaned up): its lock file is stale and is taken over
    assert (run / LOCK_NAME).is_file()
    Trainer(tiny_config(tiny_pairs, run, random_teacher)).run()
    assert (run / "checkpoint.safetensors").is_file()


def test_stale_temp_files_of_a_killed_write_are_removed_on_restart(tiny_pairs, tmp_path,
                                                                    random_teacher):
    run = tmp_path / "run"
    cfg = tiny_config(tiny_pairs, run, random_teacher)
    Trainer(cfg).run()
    stale = [run / ".checkpoint.safetensors.k9x2ab7q.tmp", run / ".losses.jsonl.0a1b2c3d.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    (run / "notes.tmp").write_text("mine")  # not an atomic-write temp name: kept
    time.sleep(0.01)
    Trainer(tiny_config(tiny_pairs, run, random_teacher, epochs=2), resume=True).run()
    assert not any(p.exists() for p in stale)
    assert (run / "notes.tmp").read_text() == "mine"


# --- 7. hardening ----------------------------------------------------------------------------
def test_atomic_write_never_changes_the_process_umask(tmp_path, monkeypatch):
    """Reading the umask meant setting it for a moment, a race with the GUI's other threads; the
    kernel applies it by itself when the temp file is created with the wanted mode."""
    import sketchstudio.fsutil as fsutil

    mask = os.umask(0o027)
    os.umask(mask)
    monkeypatch.setattr(fsutil.os, "umask", lambda *_: pytest.fail("os.umask called"))
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_bytes(tmp_path / "private.bin", b"x", file_mode=0o600)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "private.bin").stat().st_mode & 0o777 == 0o600
