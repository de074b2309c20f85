"""The structure DESIGN.md promises: layers, one vocabulary, research tools outside the wheel.

The layer check is import-linter's (``.importlinter``, also run by ``make lint``): it reads every
import statement of ``sketchstudio``, ``trainer`` and ``research`` statically, so an upward import
inside a function (the lazy imports the GUI uses for start-up speed) counts too, which an
import-time check would miss. A second test plants one upward import of each kind in a copy of the
sources and checks that the contracts report every one: a contract that cannot fail checks nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("sketchstudio", "trainer", "research")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra: "
                                               "pip install -e '.[dev]'")
    env = dict(os.environ, PYTHONPATH=str(cwd))  # the packages of ``cwd``, not an installed copy
    return subprocess.run([str(LINT), "--config", str(cwd / ".importlinter"), "--no-cache"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_no_import_runs_upwards() -> None:
    """No Qt below sketchstudio.gui; the core never imports trainer/gui/research; metrics never
    imports match/gui; nothing imports research; the trainer never imports the GUI."""
    r = _lint(REPO)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout and "4 kept" in r.stdout, r.stdout[-2000:]


#: (file planted in a copy of the sources, its one line, the import the linter must report)
VIOLATIONS = [
    ("sketchstudio/bad_gui.py", "import sketchstudio.gui.app\n", "sketchstudio.bad_gui -> sketchstudio.gui.app"),
    ("sketchstudio/bad_trainer.py", "import trainer.loop\n", "sketchstudio.bad_trainer -> trainer.loop"),
    ("sketchstudio/faces/bad_qt.py", "import PySide6\n", "sketchstudio.faces.bad_qt -> PySide6"),
    ("trainer/bad_qt.py", "def f():\n    import PySide6.QtCore\n", "trainer.bad_qt -> PySide6"),
    ("trainer/bad_up.py", "import research.report\n", "trainer.bad_up -> research.report"),
    ("sketchstudio/metrics/bad.py", "from ..match import Matcher\n", "sketchstudio.metrics.bad -> sketchstudio.match"),
]


def test_the_contracts_report_every_kind_of_upward_import(tmp_path: Path) -> None:
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=lambda d, names: [
            n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir())
            or n == "__pycache__"])
    shutil.copy2(REPO / ".importlinter", tmp_path / ".importlinter")
    for rel, line, _ in VIOLATIONS:
        (tmp_path / rel).write_text(line)
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "4 broken" in r.stdout, r.stdout[-3000:]
    for _, _, reported in VIOLATIONS:
        assert reported in r.stdout, (reported, r.stdout[-3000:])


# -------------------------------------------------------------------------------- research/
def test_the_wheel_installs_no_research_module(tmp_path: Path) -> None:
    """A wheel built from a checkout that holds research/ carries sketchstudio and trainer only."""
    src = tmp_path / "src"
    src.mkdir()
    big = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.safetensors", "*.npz",
                                 "*.jpg", "*.png")  # what the wheel holds is not at issue here
    for name in ("pyproject.toml", "README.md", *PACKAGES):
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=big)
        else:
            shutil.copy2(p, src / name)
    out = tmp_path / "wheel"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = out.glob("sketchstudio-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"sketchstudio", "trainer"}, tops
    top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    if top_level:
        assert "research" not in zipfile.ZipFile(wheel).read(top_level[0]).decode().split()


def test_research_tools_run_from_a_checkout() -> None:
    code = ("import importlib, sys\n"
            "for m in ('alignment_eval', 'nlda_fit', 'recognition_eval', 'fsim_calibration', 'report'):\n"
            "    try:\n"
            "        importlib.import_module('research.' + m).main(['--help'])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, (m, e.code)\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    for prog in ("research.alignment_eval", "research.nlda_fit", "research.recognition_eval",
                 "research.fsim_calibration", "research.report"):
        assert f"python -m {prog}" in r.stdout
    assert r.stdout.strip().endswith("ok")


# ------------------------------------------------------------------------------- vocabulary
def test_vocabulary_imports_without_torch() -> None:
    """The GUI's forms and the run-folder readers need these names before torch is loaded."""
    code = ("import sys\nsys.modules['torch'] = None\n"
            "import sketchstudio.vocab, trainer.rundir\nprint('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_every_module_uses_the_one_vocabulary() -> None:
    from sketchstudio import checkpoint, vocab
    from sketchstudio.faces import geometry
    from sketchstudio.models import student, teacher
    from trainer import losses, rundir, validation

    assert losses.G_TEACHER_PAIRS is vocab.G_TEACHER_PAIRS
    assert losses.F_TEACHER_PAIRS is vocab.F_TEACHER_PAIRS
    assert losses.STUDENT_PAIRS is vocab.STUDENT_PAIRS
    assert student.TAP_NAMES is vocab.TAP_NAMES and teacher.TEACHER_TAPS is vocab.TEACHER_TAPS
    assert checkpoint.DIRECTIONS is vocab.DIRECTION_NET
    assert checkpoint.CHECKPOINT_NAMES[0] == rundir.CHECKPOINT_FILE == vocab.CHECKPOINT_FILE
    assert geometry.Eyes is vocab.Eyes
    assert validation.VAL_LOG is rundir.VAL_LOG and validation.BEST_FILE is rundir.BEST_FILE
    from sketchstudio import engine, pipeline
    from sketchstudio.gui import train_panel

    assert engine.PHOTO2SKETCH is vocab.PHOTO2SKETCH and pipeline.SKETCH2PHOTO is vocab.SKETCH2PHOTO
    assert pipeline.DIRECTION_CHOICES is vocab.DIRECTION_CHOICES and pipeline.Eyes is vocab.Eyes
    assert train_panel.CHECKPOINT_FILE is vocab.CHECKPOINT_FILE
    # every tap a table names exists, and each student tap is paired with exactly one teacher
    for table in (vocab.G_TEACHER_PAIRS, vocab.F_TEACHER_PAIRS):
        assert sorted(t for _, _, t in table) == sorted(vocab.TAP_NAMES)
        assert {tt for _, tt, _ in table} == set(vocab.TEACHER_TAPS)
    assert set(vocab.TAP_WIDTHS) == set(vocab.TAP_NAMES)
    assert set(vocab.TEACHER_PAIRS) == set(vocab.DIRECTIONS) == set(vocab.DIRECTION_NET)


def test_run_logs_skip_a_torn_row_and_truncate_to_a_step(tmp_path: Path) -> None:
    from trainer import rundir

    log = tmp_path / rundir.LOSS_LOG
    assert rundir.read_rows(log) == []
    with open(log, "a") as fh:
        for step in (1, 2, 3):
            rundir.append_row(fh, {"step": step, "total": step / 10}, log)
    with open(log, "a") as fh:
        fh.write('{"step": 4, "tot')  # a crash mid-row
    assert [r["step"] for r in rundir.read_rows(log)] == [1, 2, 3]
    cols = rundir.read_columns(log)
    assert cols["step"].tolist() == [1, 2, 3] and cols["total"].tolist() == [0.1, 0.2, 0.3]
    rundir.truncate_log(log, 2)
    assert log.read_text() == '{"step": 1, "total": 0.1}\n{"step": 2, "total": 0.2}\n'


# ------------------------------------------------------------------------- dlib model files
def test_the_embedding_finds_its_landmarks_where_detection_does(monkeypatch, tmp_path: Path) -> None:
    """One lookup: $SKETCHSTUDIO_LANDMARKS reaches the matcher's dlib embedding too."""
    from sketchstudio.errors import ConfigError
    from sketchstudio.faces import models

    wheel = tmp_path / "wheel"
    wheel.mkdir()
    for name in (models.LANDMARKS_FILE, models.RECOGNITION_FILE):
        (wheel / name).write_bytes(b"x")
    monkeypatch.setattr(models, "packaged_model", lambda name: wheel / name)
    monkeypatch.delenv(models.LANDMARKS_ENV, raising=False)
    assert models.embedding_model_paths() == (wheel / models.LANDMARKS_FILE,
                                              wheel / models.RECOGNITION_FILE)
    own = tmp_path / "my_landmarks.dat"
    own.write_bytes(b"y")
    monkeypatch.setenv(models.LANDMARKS_ENV, str(own))
    assert models.landmarks_path() == own
    assert models.embedding_model_paths() == (own, wheel / models.RECOGNITION_FILE)
    # a folder given explicitly (the match CLI's --features) holds both files
    assert models.embedding_model_paths(wheel) == (wheel / models.LANDMARKS_FILE,
                                                   wheel / models.RECOGNITION_FILE)
    with pytest.raises(ConfigError, match=models.RECOGNITION_FILE):
        models.embedding_model_paths(tmp_path / "empty")
    monkeypatch.setattr(models, "packaged_model", lambda name: None)
    with pytest.raises(models.DlibUnavailable, match="face recognition model"):
        models.embedding_model_paths()
