"""Reproducible screenshots of every view, for the README and for reviewing the layout.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python packaging/screenshots.py

Writes docs/screenshots/*.png. Uses the shipped default model (what users see), else the model in
runs/kt-cufs, else a tiny untrained one (``--run-model`` prefers the training run); the CUFS test
images from ../shared/data/cufs/test, the shipped sample photo for the alignment shot; and the
teacher from ../shared/teacher. Nothing from
CUFS is copied into the repository: the training screenshot trains on links to a few CUFS pairs in
a temporary folder. Runs with the ``offscreen`` platform too (fonts may then differ).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
CUFS_TEST = SHARED / "data" / "cufs" / "test"
CUFS_TRAIN = SHARED / "data" / "cufs" / "train"
TEACHER = SHARED / "teacher" / "vgg19_relu3_1.pth"
RUN_MODEL = ROOT / "runs" / "kt-cufs" / "checkpoint.safetensors"
OUT = ROOT / "docs" / "screenshots"
SIZE = (1440, 900)

log = logging.getLogger("screenshots")
SECTIONS = ("empty", "translate", "features", "train", "match", "about")


def wait_until(app, cond, timeout: float = 300.0, what: str = "") -> None:
    t0 = time.monotonic()
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out waiting for {what}")
    for _ in range(5):
        app.processEvents()


def pick_model(tmp: Path, prefer_run: bool = False) -> Path | None:
    from sketchstudio.resources import default_model_path

    if RUN_MODEL.is_file() and (prefer_run or default_model_path() is None):
        return RUN_MODEL
    if default_model_path() is not None:
        return None  # the app loads the default itself
    import torch

    from sketchstudio.checkpoint import ModelMeta, save_checkpoint, student_tensors
    from sketchstudio.models import StudentNet

    torch.manual_seed(0)
    path = tmp / "tiny.safetensors"
    save_checkpoint(path, student_tensors("G", StudentNet(8, 1)) | student_tensors("F", StudentNet(8, 1)),
                    ModelMeta(ngf=8, n_blocks=1, image_size=64))
    return path


def tilt(img, angle: float = 9.0, scale: float = 1.2):
    """Rotate and scale an aligned crop onto a larger canvas: a stand-in for a casual snapshot."""
    import cv2

    h, w = img.shape[:2]
    out_w, out_h = 360, 400
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += ((out_w - w) / 2, (out_h - h) / 2)
    return cv2.warpAffine(img, m, (out_w, out_h), borderMode=cv2.BORDER_REPLICATE)


def shoot(widget, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    if not widget.grab().save(str(path)):
        raise RuntimeError(f"cannot write {path}")
    log.info("wrote %s", path.relative_to(ROOT))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-steps", type=int, default=60, help="steps before the Train screenshot")
    ap.add_argument("--run-model", action="store_true",
                    help="show runs/kt-cufs's checkpoint instead of the shipped default model")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                    help="take only these screenshots")
    args = ap.parse_args()

    def want(section: str) -> bool:
        return section in args.only

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not CUFS_TEST.is_dir():
        log.error("CUFS test images not found at %s", CUFS_TEST)
        return 2
    os.environ.setdefault("SKETCHSTUDIO_OFFLINE", "1")
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from sketchstudio.gui import context as gui_context
    from sketchstudio.gui import main_window as gui_main
    from sketchstudio.gui.main_window import MainWindow
    from sketchstudio.gui.settings import Settings
    from sketchstudio.imaging import load_image, save_image
    from sketchstudio.resources import icon_path

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("SketchStudio")
    app.setWindowIcon(QIcon(str(icon_path())))
    tmp = Path(tempfile.mkdtemp(prefix="sketchstudio-shots-"))

    # 1. empty state: what a fresh machine shows before a model is installed
    if want("empty"):
        real_default = gui_context.default_model_path
        gui_context.default_model_path = gui_main.default_model_path = lambda: None
        w = MainWindow(Settings.at(tmp / "empty.ini"))
        w.resize(*SIZE)
        w.show()
        w.start()
        wait_until(app, lambda: w.ctx.model is None and not w.ctx.loading, what="empty state")
        shoot(w, "translate-empty.png")
        w.close()
        gui_context.default_model_path = gui_main.default_model_path = real_default

    # 2. translate views with a real model
    settings = Settings.at(tmp / "app.ini")
    if TEACHER.is_file():
        settings.teacher_path = str(TEACHER)
    settings.align_faces = False  # CUFS crops are already aligned
    w = MainWindow(settings)
    w.resize(*SIZE)
    w.show()
    model = pick_model(tmp, prefer_run=args.run_model)
    w.start(model=str(model) if model else None)
    wait_until(app, lambda: w.ctx.model is not None, what="model load")
    tv = w.translate_view
    photo = sorted((CUFS_TEST / "photos").iterdir())[0]
    sketch = CUFS_TEST / "sketches" / photo.name
    if not sketch.is_file():
        sketch = sorted((CUFS_TEST / "sketches").iterdir())[0]
    def translate(path: Path, what: str) -> None:
        tv.load_path(path)
        seq = tv._pending
        wait_until(app, lambda: tv.result is not None and tv.result.seq == seq, what=what)

    if want("translate"):
        translate(photo, "photo→sketch")
        shoot(w, "translate-photo2sketch.png")
        translate(sketch, "sketch→photo")
        shoot(w, "translate-sketch2photo.png")

        # an unaligned photo (the shipped sample, else a CUFS photo tilted and scaled onto a larger
        # canvas): detection, the aligned crop with its draggable eye markers, pasted back
        from sketchstudio.resources import sample_images

        snapshot = next(iter(sample_images()), None)
        if snapshot is None:
            snapshot = tmp / "snapshot.png"
            save_image(tilt(load_image(CUFS_TEST / "photos" / photo.name)), snapshot)
        tv.align_check.setChecked(True)
        tv.paste_check.setChecked(True)
        translate(snapshot, "aligned photo→sketch")
        shoot(w, "translate-aligned-pasted.png")
        tv.align_check.setChecked(False)
        tv.paste_check.setChecked(False)

    # 3. feature maps of the photo
    if want("features"):
        translate(photo, "photo again")
        fv = w.feature_view
        fv.set_layer("DC1")
        shown: list = []
        fv.maps_shown.connect(shown.append)
        w.show_view("Feature maps")
        wait_until(app, lambda: shown and shown[-1].layer == "DC1", what="DC1 maps")
        shoot(w, "features-dc1.png")
        fv.set_layer("Block")
        wait_until(app, lambda: shown[-1].layer == "Block", what="Block maps")
        shoot(w, "features-block.png")

    # 4. training: a small, fast configuration on links to a few CUFS pairs, paused mid-run
    if want("train"):
        data = tmp / "pairs"
        (data / "photos").mkdir(parents=True)
        (data / "sketches").mkdir()
        for p in sorted((CUFS_TRAIN / "photos").iterdir())[:8]:
            s = CUFS_TRAIN / "sketches" / p.name
            if s.is_file():
                (data / "photos" / p.name).symlink_to(p)
                (data / "sketches" / p.name).symlink_to(s)
        tp = w.train_panel
        w.show_view("Train")
        from trainer.config import TrainConfig

        val = tmp / "val.txt"  # two of the eight pairs held out: the validation plot fills in
        val.write_text("".join(p.stem + "\n" for p in sorted((data / "photos").iterdir())[:2]))
        tp.set_config(TrainConfig(data_dir=str(data), out_dir=str(tmp / "run"), epochs=50,
                                  image_size=64, ngf=8, n_blocks=2, precision="fp32",
                                  preview_every=5, checkpoint_every=1000, val=str(val), val_every=5,
                                  upsample="resize", rec_loss="l1",
                                  teacher_path=str(TEACHER) if TEACHER.is_file() else None))
        tp.data_field.set_text(str(data))  # emits: scan the folder as a user's choice would
        wait_until(app, lambda: tp.scan is not None, what="folder scan")
        if not tp.start():
            log.error("training did not start: %s", w.message_bar.text.text())
            return 1
        wait_until(app, lambda: tp.step >= args.train_steps and tp.previews_seen > 0
                   and len(tp.val_history["sketch"]) >= 3, timeout=900, what="training steps")
        tp.toggle_pause()
        wait_until(app, lambda: tp.state == "paused", what="pause")
        tp._redraw_plot(force=True)
        w.message_bar.hide()
        shoot(w, "train.png")
        tp.cancel()
        wait_until(app, lambda: not tp.is_training, what="cancel")

    # 5. matching: a CUFS test sketch searched among the 100 CUFS test photos
    if want("match"):
        mv = w.views["Match"]
        w.show_view("Match")
        mv.aligned_check.setChecked(True)  # CUFS crops are aligned already
        mv.set_gallery(CUFS_TEST / "photos")
        wait_until(app, lambda: mv.summary is not None, what="gallery index")
        query = sorted((CUFS_TEST / "sketches").iterdir())[2]
        mv.set_query(query)
        wait_until(app, lambda: mv.results is not None, what="match query")
        w.message_bar.hide()
        shoot(w, "match.png")

    # 6. About box
    if want("about"):
        w.show_about()
        wait_until(app, lambda: w.about_box.isVisible(), what="about box")
        shoot(w.about_box, "about.png")
        w.about_box.close()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
