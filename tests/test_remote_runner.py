"""Runners in a child process (issue 23: the app never imports onnxruntime or openvino, whose
import and model compilation hold the GIL and stalled the UI thread 60-132 ms).

Tiny models (ngf=4, 1 block, 32²) keep each child's load to a fraction of a second; the one test
that tunes in a fresh interpreter (to see a clean ``sys.modules``) takes longer, because its
exports run in children that import torch."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sketchstudio.engine import Translator
from sketchstudio.runtime import fastpath, onnx_export, remote
from sketchstudio.runtime.backends import BackendMissing, OpenVinoRunner, OrtRunner
from sketchstudio.runtime.remote import RemoteRunner, RemoteRunnerError

from .conftest import face_like

HAVE_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
HAVE_OV = importlib.util.find_spec("openvino") is not None
pytestmark = pytest.mark.skipif(
    not HAVE_ORT, reason="onnxruntime/onnx not installed (pip install 'sketchstudio[fast]')")
needs_ov = pytest.mark.skipif(not HAVE_OV, reason="openvino not installed")
G = "photo2sketch"
WAIT_S = 300  # a safety net for a hung child, never a speed requirement


@pytest.fixture(autouse=True)
def own_child_registry(monkeypatch):
    """A fresh 'exiting' flag per test (stop_children sets it for good), and no child left over."""
    monkeypatch.setattr(onnx_export, "_STOPPING", threading.Event())
    before = set(onnx_export._CHILDREN)
    yield
    leaked = set(onnx_export._CHILDREN) - before
    for proc in leaked:
        proc.kill()
        onnx_export.forget_child(proc)
    assert not leaked, "a test left a runner child running"


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory) -> Path:
    """A tiny student exported once, in this process (the test process may import onnx)."""
    import torch

    from sketchstudio.models import StudentNet

    torch.manual_seed(0)
    dest = tmp_path_factory.mktemp("export") / "fp32.onnx"
    return onnx_export.export_fp32(StudentNet(4, 1), 32, dest)


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie counts: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def _shadow_runtime(tmp_path: Path, body: str) -> str:
    """A PYTHONPATH folder whose ``onnxruntime`` package runs ``body`` when imported (it comes
    before site-packages on the child's sys.path)."""
    pkg = tmp_path / "shadow" / "onnxruntime"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body)
    return str(pkg.parent)


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [
    ("onnx-fp32", OrtRunner),
    pytest.param("openvino", OpenVinoRunner, marks=needs_ov),
])
def test_remote_output_equals_the_in_process_runner(fp32_model, name, cls):
    """Same export, same runtime, same thread count: the child's answer is bit for bit the
    in-process runner's (the pipes carry the array unchanged), from a child without torch."""
    r = RemoteRunner(name, fp32_model, 1)
    try:
        assert (r.name, r.threads) == (name, 1) and r.pid != os.getpid()
        assert r._proc in onnx_export._CHILDREN  # stop_children() would kill it
        local = cls(name, fp32_model, 1)
        for seed in range(3):
            x = _x(seed)
            y = r(x)
            assert y.dtype == np.float32 and y.shape == (1, 3, 32, 32)
            assert np.array_equal(y, local(x))
        if Path(f"/proc/{r.pid}/maps").is_file():  # the bootstrap keeps torch out of the child
            maps = Path(f"/proc/{r.pid}/maps").read_text()
            assert "libtorch" not in maps
            assert ("onnxruntime" if name.startswith("onnx") else "openvino") in maps
    finally:
        r.close()


def test_concurrent_calls_are_serialised(fp32_model):
    """Four threads share one runner (the Translator is thread-safe): each gets its own answer."""
    r = RemoteRunner("onnx-fp32", fp32_model, 1)
    try:
        expected = {s: r(_x(s)) for s in range(4)}
        got: dict[int, list[np.ndarray]] = {s: [] for s in range(4)}

        def work(seed: int) -> None:
            for _ in range(5):
                got[seed].append(r(_x(seed)))

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        assert all(len(v) == 5 and all(np.array_equal(y, expected[s]) for y in v)
                   for s, v in got.items())
    finally:
        r.close()


def test_a_bad_input_is_an_error_and_the_child_lives_on(fp32_model):
    r = RemoteRunner("onnx-fp32", fp32_model, 1)
    try:
        with pytest.raises(RuntimeError, match="failed in its process"):
            r(np.zeros((1, 3, 8, 8), np.float32))  # the graph is fixed at 32²
        assert r.alive and r(_x()).shape == (1, 3, 32, 32)
    finally:
        r.close()


# ------------------------------------------------------------------------------------------------
def test_a_killed_child_is_a_runtime_error(fp32_model):
    r = RemoteRunner("onnx-fp32", fp32_model, 1)
    os.kill(r.pid, signal.SIGKILL)
    r._proc.wait(WAIT_S)
    assert issubclass(RemoteRunnerError, RuntimeError)  # what the tuner and the engine catch
    with pytest.raises(RemoteRunnerError, match=r"onnx-fp32 runner process exited \(status -?\d+\)"):
        r(_x())
    with pytest.raises(RuntimeError, match="runner process"):  # and again, at once
        r(_x())
    r.close()
    assert r._proc not in onnx_export._CHILDREN


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX job control")
def test_a_child_that_hangs_in_a_call_is_killed_and_the_call_fails(fp32_model, monkeypatch):
    """A reply that never comes (the child frozen mid-call) ends in a RuntimeError, not a hang."""
    monkeypatch.setattr(remote, "CALL_TIMEOUT_S", 2.0)
    r = RemoteRunner("onnx-fp32", fp32_model, 1)
    os.kill(r.pid, signal.SIGSTOP)
    with pytest.raises(RemoteRunnerError, match="killed after 2 s without an answer while running"):
        r(_x())
    assert r._proc.poll() is not None
    r.close()


def test_a_dead_child_sends_the_translator_back_to_torch(tiny_model, tmp_path, monkeypatch):
    """The app's case: its runner child dies (a runtime crash, the OOM killer). The translation
    still returns a result, from torch, with a note; the fast path is off and its child reaped."""
    monkeypatch.setattr(fastpath, "ISOLATE_EXPORTS", False)  # export here: quicker; runners remote
    tr = Translator(tiny_model, device="cpu", fast="onnx-fp32", fast_cache_dir=tmp_path / "cache")
    img = face_like(3)
    torch_out = tr.translate(img, G, return_taps=True).output  # taps: always torch
    assert tr.prepare_fast_paths([G])[G].result(timeout=WAIT_S).backend == "onnx-fp32"
    runner = tr.fast.runner(G)
    assert isinstance(runner, RemoteRunner) and runner.alive
    assert tr.translate(img, G).output.shape == img.shape  # runs in the child
    os.kill(runner.pid, signal.SIGKILL)
    runner._proc.wait(WAIT_S)

    out = tr.translate(img, G)
    assert np.array_equal(out.output, torch_out)
    assert tr.fast.runner(G) is None and tr.fast.status(G) == "failed"
    assert "onnx-fp32 failed" in (tr.fallback_note or "") and "runner process" in tr.fallback_note
    assert tr.fast.notes[-1] == tr.fallback_note
    assert runner._proc not in onnx_export._CHILDREN


def test_thread_count_variants_are_children_and_replaced(tiny_model, tmp_path, monkeypatch):
    """The app's thread budget while training: the ready runner is loaded again at that count in
    another child; a third count replaces (and ends) that variant, never the runner itself; going
    back to torch ends them all."""
    monkeypatch.setattr(fastpath, "ISOLATE_EXPORTS", False)
    tr = Translator(tiny_model, device="cpu", fast="onnx-fp32", fast_cache_dir=tmp_path / "cache")
    assert tr.prepare_fast_paths([G])[G].result(timeout=WAIT_S).backend == "onnx-fp32"
    main = tr.fast.runner(G)
    two = tr.fast.runner(G, threads=main.threads + 1)
    assert isinstance(two, RemoteRunner) and two is not main and two.threads == main.threads + 1
    assert tr.fast.runner(G, threads=main.threads + 1) is two  # loaded once
    assert np.array_equal(two(_x()), main(_x()))
    three = tr.fast.runner(G, threads=main.threads + 2)
    assert three.alive and not two.alive and main.alive
    assert tr.fast.runner(G, threads=main.threads) is main
    tr.fast.disable(G, RuntimeError("test"))
    assert not main.alive and not three.alive
    assert not {main._proc, three._proc} & onnx_export._CHILDREN


def test_tuning_closes_the_runners_it_does_not_keep(tiny_model, tmp_path, monkeypatch):
    """Each candidate is loaded in a child to be measured; only the chosen one stays running."""
    from sketchstudio.checkpoint import build_student, read_checkpoint

    monkeypatch.setattr(fastpath, "ISOLATE_EXPORTS", False)
    started: list[RemoteRunner] = []
    real_init = RemoteRunner.__init__

    def spy(self, *a, **k):
        real_init(self, *a, **k)
        started.append(self)

    monkeypatch.setattr(RemoteRunner, "__init__", spy)
    ckpt = read_checkpoint(tiny_model)
    t = fastpath.Tuner(ckpt, G, build_student(ckpt, G), cache_root=tmp_path, threads=1,
                       candidates=["onnx-fp32", "onnx-int8"])
    t.torch_forward = lambda x: (time.sleep(0.05), t.net(x))[1]  # torch slow: a path wins
    decision, runner = t.run()
    assert decision.backend in ("onnx-fp32", "onnx-int8"), decision.note
    assert len(started) == 2 and runner in started
    assert runner.alive and not any(r.alive for r in started if r is not runner)
    runner.close()


# ------------------------------------------------------------------------------------------------
def test_stop_children_kills_runner_children_and_refuses_new_ones(fp32_model):
    """What the app's exit (fastpath._finish_tuning) runs first: runner children die with the
    export children, and a call or a load afterwards is an error, not a new process."""
    r = RemoteRunner("onnx-fp32", fp32_model, 1)
    onnx_export.stop_children()
    assert r._proc.wait(30) != 0  # killed, not a clean exit
    with pytest.raises(RuntimeError, match="exiting"):
        r(_x())
    with pytest.raises(onnx_export.ExportError, match="exiting"):
        RemoteRunner("onnx-fp32", fp32_model, 1)
    r.close()


def test_close_ends_the_child_at_the_end_of_its_input(fp32_model):
    """close() closes the child's stdin and the child exits by itself (status 0), as it does when
    the parent dies; the runner then refuses calls. Closing twice is fine."""
    r = RemoteRunner("onnx-fp32", fp32_model, 1)
    r.close()
    assert r._proc.returncode == 0 and not r.alive
    assert r._proc not in onnx_export._CHILDREN
    with pytest.raises(RuntimeError, match="closed"):
        r(_x())
    r.close()


def test_an_unknown_backend_is_refused_before_any_child_starts(fp32_model):
    with pytest.raises(ValueError, match="unknown fast-path backend 'tensorrt'"):
        RemoteRunner("tensorrt", fp32_model, 1)


def test_a_runtime_missing_in_the_child_is_backend_missing(fp32_model, tmp_path, monkeypatch):
    """An onnxruntime that fails to import in the child (here a shadow package) is reported by the
    child before the constructor returns, as BackendMissing (the tuner's 'not installed' note)."""
    monkeypatch.setenv("PYTHONPATH", _shadow_runtime(tmp_path, "raise ImportError('no wheel')\n"))
    with pytest.raises(BackendMissing, match="onnxruntime is not installed"):
        RemoteRunner("onnx-fp32", fp32_model, 1)


def test_a_broken_model_is_a_clear_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(remote, "LOAD_TIMEOUT_S", 60.0)  # a hang fails the test instead
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"half a model")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"onnx-fp32 could not load broken\.onnx: .*[Pp]rotobuf"):
        RemoteRunner("onnx-fp32", bad, 1)
    assert time.monotonic() - t0 < 60


def test_a_child_that_dies_while_loading_reports_its_last_words(fp32_model, tmp_path, monkeypatch):
    """A runtime that crashes the process (not an exception): its exit status and the last line
    of its stderr are in the error."""
    monkeypatch.setenv("PYTHONPATH", _shadow_runtime(
        tmp_path, "import os, sys\nsys.stderr.write('libfoo.so: illegal instruction\\n')\n"
                  "sys.stderr.flush()\nos._exit(3)\n"))
    with pytest.raises(RuntimeError, match=r"exited \(status 3\) while loading fp32\.onnx: "
                                           r"libfoo\.so: illegal instruction"):
        RemoteRunner("onnx-fp32", fp32_model, 1)


def test_a_child_that_never_answers_is_killed(fp32_model, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", _shadow_runtime(tmp_path, "import time\ntime.sleep(600)\n"))
    monkeypatch.setattr(remote, "LOAD_TIMEOUT_S", 3.0)
    with pytest.raises(RuntimeError, match="killed after 3 s without an answer"):
        RemoteRunner("onnx-fp32", fp32_model, 1)


# ------------------------------------------------------------------------------------------------
def test_tuning_in_the_app_never_imports_a_runtime_and_children_die_with_it(tiny_model, tmp_path):
    """A full tuning run as the app does it (exports in children, every installed runtime loaded
    in a child and measured), in a fresh interpreter whose sys.modules is not the test run's:
    onnx, onnxruntime and openvino were never imported there (each holds the GIL for long
    stretches: UI stalls of 2.8 s for onnx, 60-132 ms for the runtimes). Then that process dies
    without any clean-up (os._exit): its runner child sees its stdin end and exits too."""
    candidates = ["onnx-fp32", "onnx-int8"] + (["openvino", "openvino-int8"] if HAVE_OV else [])
    script = f"""
import os, sys
from sketchstudio.checkpoint import build_student, read_checkpoint
from sketchstudio.runtime.fastpath import Tuner
from sketchstudio.runtime.remote import RemoteRunner
ckpt = read_checkpoint({str(tiny_model)!r})
t = Tuner(ckpt, "photo2sketch", build_student(ckpt, "photo2sketch"), cache_root={str(tmp_path)!r},
          threads=1, candidates={candidates!r})
d, runner = t.run()
assert all(c["ms"] is not None for c in d.candidates.values()), d.candidates
bad = sorted(m for m in sys.modules
             if m.split(".")[0] in ("onnx", "onnxruntime", "openvino", "ml_dtypes"))
assert not bad, bad
kept = runner if runner is not None else t.load("onnx-fp32")
assert isinstance(kept, RemoteRunner), kept
print("ok", sorted(p.name for p in t.artifacts.glob("*.onnx")), flush=True)
print("child", kept.pid, flush=True)
os._exit(0)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=WAIT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fp32.onnx" in proc.stdout and "int8" in proc.stdout
    pid = int(proc.stdout.split("child", 1)[1].split()[0])
    deadline = time.monotonic() + 30
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid), "the runner child outlived the app process"
