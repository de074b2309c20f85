"""Issue 19 §2 on a real full file system: training into a folder on a filled tmpfs.

The issue's reproduction was a 5 MB tmpfs as ``--out``: the last line of losses.jsonl was torn, no
checkpoint was written, and the folder could then neither resume nor restart. Here a real tmpfs
(root and ``mount`` needed; skipped elsewhere, where tests/test_recipe.py and tests/test_safety.py
inject ENOSPC instead) is filled after a first run, to the last page or to all but a few pages
(so the small files still fit and the checkpoint does not).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import mounted_tmpfs
from tests.test_cli import _train_args
from trainer import cli


@pytest.fixture
def tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "small", "2m") as mnt:
        yield mnt


def fill(mnt, leave: int) -> None:
    """Fill ``mnt`` to the last page, then give back ``leave`` bytes."""
    filler = mnt / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\1" * 4096)
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave))


@pytest.mark.parametrize("leave", [0, 64 * 1024], ids=["full", "checkpoint does not fit"])
def test_training_onto_a_full_disk_stops_with_the_message_and_the_folder_resumes(
        tiny_pairs, tmp_path, random_teacher, capsys, tmpfs, leave):
    run = tmpfs / "run"
    assert cli.train_main(_train_args(tiny_pairs, run, random_teacher)) == 0
    before = (run / "checkpoint.safetensors").read_bytes()
    assert len(before) > leave  # the next checkpoint cannot fit in what is left
    capsys.readouterr()
    fill(tmpfs, leave)
    args = _train_args(tiny_pairs, run, random_teacher, "--epochs", "3", "--resume")
    code = cli.train_main(args)
    err = capsys.readouterr().err
    assert code != 0 and f"No space left on {tmpfs}" in err and "Traceback" not in err
    if leave:  # the small files fitted: the checkpoint is what did not, and it says how much
        assert "checkpoint.safetensors'): 0.5 MB needed, " in err
    assert (run / "checkpoint.safetensors").read_bytes() == before  # the previous one, intact
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    for line in (run / "losses.jsonl").read_text().splitlines()[:-1]:
        json.loads(line)  # at most the last row may be torn
    (tmpfs / "filler").unlink()  # space again: the same command resumes
    assert cli.train_main(args) == 0
    rows = [json.loads(ln) for ln in (run / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 10))
