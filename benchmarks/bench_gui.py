"""GUI benchmarks: launch → window shown, and drop → result latency (CPU).

- start-up: `python -m sketchstudio.gui.app --exit-when-shown` in a fresh process (offscreen Qt),
  timed from launch until the window reports it is shown; the median of a few runs. The app also
  reports whether torch was imported by then (it must not be).
- drop → result: an in-process window with a full-size student (ngf 64, 9 blocks, 256²: the same
  compute as the shipped model; untrained weights unless the default model is installed) gets a
  real drop event for a 200×250 face (a CUFS test photo when ../shared is there); timed until the
  result pane shows the output. Face alignment off, so this is the network + I/O + display path.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CUFS_PHOTOS = ROOT.parent / "shared" / "data" / "cufs" / "test" / "photos"


def _startup_rows(reps: int = 3) -> list[dict]:
    times, torch_loaded = [], None
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=tmp)
        cmd = [sys.executable, "-m", "sketchstudio.gui.app", "--exit-when-shown",
               "--settings", str(Path(tmp) / "bench.ini")]
        for _ in range(reps + 1):  # the first run warms the OS file cache
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
            line = proc.stdout.readline()
            t1 = time.perf_counter()
            proc.wait(timeout=60)
            if not line.startswith("shown"):
                raise RuntimeError(f"the app did not report a shown window (got {line!r})")
            torch_loaded = "torch_loaded=True" in line
            times.append((t1 - t0) * 1e3)
    return [{"name": "GUI launch → window shown (subprocess, offscreen)",
             "ms": statistics.median(times[1:]), "runs": reps, "torch_loaded": torch_loaded}]


def _drop_rows(reps: int = 5) -> list[dict]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    import torch
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent
    from PySide6.QtWidgets import QApplication

    from sketchstudio.checkpoint import ModelMeta, save_checkpoint, student_tensors
    from sketchstudio.gui.main_window import MainWindow
    from sketchstudio.gui.settings import Settings
    from sketchstudio.imaging import save_image
    from sketchstudio.models import StudentNet
    from sketchstudio.resources import default_model_path

    app = QApplication.instance() or QApplication([sys.argv[0]])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        model = default_model_path()
        note = "shipped model"
        if model is None:
            torch.manual_seed(0)
            model = tmpdir / "full.safetensors"
            save_checkpoint(model, student_tensors("G", StudentNet()) | student_tensors("F", StudentNet()),
                            ModelMeta())
            note = "untrained ngf=64 model"
        photos = sorted(CUFS_PHOTOS.iterdir()) if CUFS_PHOTOS.is_dir() else []
        if photos:
            image = photos[0]
        else:
            rng = np.random.default_rng(0)
            image = tmpdir / "face.png"
            save_image(rng.integers(0, 255, (250, 200, 3), dtype=np.uint8), image)
        settings = Settings.at(tmpdir / "bench.ini")
        settings.force_cpu = True
        settings.align_faces = False
        w = MainWindow(settings)
        w.show()
        loaded: list = []
        w.ctx.model_changed.connect(loaded.append)
        t0 = time.perf_counter()
        w.ctx.load_model(str(model))
        _spin(app, lambda: loaded, 300)
        load_ms = (time.perf_counter() - t0) * 1e3
        tv = w.translate_view

        def drops() -> list[float]:
            times = []
            for _ in range(reps + 1):  # the first drop warms up (oneDNN kernels, dlib models)
                mime = QMimeData()
                mime.setUrls([QUrl.fromLocalFile(str(image))])
                ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
                t0 = time.perf_counter()
                tv.event(ev)
                want = tv._pending
                _spin(app, lambda want=want: tv.result is not None and tv.result.seq == want, 120)
                times.append((time.perf_counter() - t0) * 1e3)
            return times

        plain = drops()
        dev = w.ctx.model.device_name
        rows.append({"name": "GUI model load (compute thread)", "ms": load_ms, "model": note,
                     "device": dev})
        rows.append({"name": "GUI drop → result shown (200×250, 256² net)",
                     "ms": statistics.median(plain[1:]), "first_ms": round(plain[0]), "runs": reps,
                     "model": note, "device": dev, "torch_threads": torch.get_num_threads()})
        tv.align_check.setChecked(True)
        aligned = drops()
        if tv.result is not None and tv.result.aligned:
            rows.append({"name": "GUI drop → result shown, with face alignment",
                         "ms": statistics.median(aligned[1:]), "first_ms": round(aligned[0]),
                         "runs": reps, "method": tv.result.align_method, "device": dev})
        w.close()
    return rows


def _spin(app, cond, timeout_s: float) -> None:
    t0 = time.perf_counter()
    while not cond():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError("GUI benchmark timed out")


def run() -> list[dict]:
    return _startup_rows() + _drop_rows()


if __name__ == "__main__":
    for row in run():
        print(row)
