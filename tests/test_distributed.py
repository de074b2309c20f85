"""Data-parallel training under torchrun: 2 gloo ranks on the CPU equal one process at batch 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sketchstudio.checkpoint import read_checkpoint
from trainer.distributed import DistContext

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def four_pairs(tmp_path) -> Path:
    from tests.conftest import make_pairs

    return make_pairs(tmp_path / "pairs4", 4, prefix="q")


def _args(data: Path, out: Path, teacher: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--teacher", str(teacher), "--size", "32",
            "--ngf", "4", "--blocks", "1", "--precision", "fp32", "--device", "cpu",
            "--teacher-norm-samples", "4", "--checkpoint-every", "100", *extra]


def _env() -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _torchrun(args: list[str], nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "trainer.cli", *args]
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


def _single(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.cli", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=240)


def _log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "losses.jsonl").read_text().splitlines() if ln.strip()]


def test_two_ranks_equal_one_process_at_batch_two_and_resume(four_pairs, tmp_path, random_teacher):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    first = _torchrun(_args(four_pairs, ddp, random_teacher, "--epochs", "1"))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "(2 processes)" in first.stdout
    assert [r["step"] for r in _log(ddp)] == [1, 2]  # 4 pairs, 2 ranks × batch 1: 2 steps/epoch
    assert read_checkpoint(ddp / "checkpoint.safetensors").meta.step == 2
    again = _torchrun(_args(four_pairs, ddp, random_teacher, "--epochs", "2", "--resume"))
    assert again.returncode == 0, again.stderr[-3000:]
    one = _single(_args(four_pairs, single, random_teacher, "--epochs", "2", "--batch-size", "2"))
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = _log(ddp), _log(single)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]  # each step logged once
    for ra, rb in zip(a, b, strict=True):
        for k in ("G_tea", "G_stu", "G_rec", "F_tea", "F_stu", "F_rec"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), (ra["step"], k)
    wa = read_checkpoint(ddp / "checkpoint.safetensors").tensors
    wb = read_checkpoint(single / "checkpoint.safetensors").tensors
    for k in ("G.OC.1.weight", "F.IC.1.weight"):
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k


def test_a_killed_rank_stops_the_job_and_leaves_a_loadable_checkpoint(four_pairs, tmp_path,
                                                                      random_teacher):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "trainer.cli", *_args(four_pairs, run, random_teacher, "--epochs", "100000")]
    cmd[cmd.index("--checkpoint-every") + 1] = "2"
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.time() + 180
        while not (run / "checkpoint.safetensors").is_file() and time.time() < deadline:
            time.sleep(0.5)
        assert (run / "checkpoint.safetensors").is_file(), "no checkpoint within 180 s"
        children = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "trainer.cli"],
                                  capture_output=True, text=True).stdout.split()
        assert len(children) == 2, children
        os.kill(int(children[-1]), signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "failed" in err.lower() or "signal" in err.lower()
    ck = read_checkpoint(run / "checkpoint.safetensors")
    assert ck.meta.step >= 2 and ck.meta.step % 2 == 0


def test_shard_splits_and_tops_up_a_global_batch():
    r0, r1 = DistContext(0, 2), DistContext(1, 2)
    perm = [3, 1, 0, 2, 4]
    assert r0.shard([3, 1], perm, 1) == [3] and r1.shard([3, 1], perm, 1) == [1]
    assert r0.shard([4], perm, 1) == [4] and r1.shard([4], perm, 1) == [3]  # padded from the start
    assert DistContext().shard([3, 1], perm, 2) == [3, 1]


def test_torchrun_with_a_missing_gpu_says_so(monkeypatch):
    from sketchstudio.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        DistContext(1, 2, 1).device("cuda")
    assert DistContext(1, 2, 1).device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="needs GPU cuda:1, but this machine has 1"):
        DistContext(1, 2, 1).device("auto")
