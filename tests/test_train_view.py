"""The Train view's recipe/validation options and its validation plot (pytest-qt, offscreen)."""

from __future__ import annotations

import gc
import json

import pytest

WAIT = 60_000


@pytest.fixture
def panel(qtbot, tmp_path):
    from sketchstudio.gui.context import AppContext
    from sketchstudio.gui.settings import Settings
    from sketchstudio.gui.train_panel import TrainPanel

    settings = Settings.at(tmp_path / "s.ini")
    settings.force_cpu = True
    ctx = AppContext(settings)
    tp = TrainPanel(ctx)
    qtbot.addWidget(tp)
    tp.show()
    yield tp
    if tp.is_training:
        tp.cancel()
        qtbot.waitUntil(lambda: not tp.is_training, timeout=WAIT)
    tp.shutdown()
    ctx.shutdown()
    gc.collect()  # in the GUI thread (see test_gui.collect_qt_garbage)


def test_recipe_fields_reach_the_config_and_come_back(panel, tmp_path):
    from trainer.config import TrainConfig

    cfg = TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path / "r"), tap_compare="regressor",
                      stu_compare="cosine", upsample="resize", rec_loss="l1", lr_schedule="linear",
                      style_weight=0.5, perceptual_weight=0.02, val="cufs", val_every=7,
                      augment=True, gan_weight=0.25)
    panel.set_config(cfg)
    assert panel.upsample.currentText() == "resize" and panel.val_field.text() == "cufs"
    panel._base_config = None  # the form alone must carry these options
    back = panel.config()
    for name in ("tap_compare", "stu_compare", "upsample", "rec_loss", "lr_schedule", "style_weight",
                 "perceptual_weight", "val", "val_every", "augment", "gan_weight"):
        assert getattr(back, name) == getattr(cfg, name), name
    panel.val_field.set_text("", emit=False)
    assert panel.config().val is None


def test_training_with_validation_plots_it_and_shows_the_best(qtbot, panel, tiny_pairs, random_teacher,
                                                              tmp_path):
    (tmp_path / "val.txt").write_text("p1\n")
    panel.data_field.set_text(str(tiny_pairs))
    panel.out_field.set_text(str(tmp_path / "run"), emit=False)
    panel.teacher_field.set_text(str(random_teacher), emit=False)
    panel.epochs.setValue(2)
    panel.image_size.setValue(32)
    panel.ngf.setValue(4)
    panel.n_blocks.setValue(1)
    panel.precision.setCurrentText("fp32")
    panel.val_field.set_text(str(tmp_path / "val.txt"), emit=False)
    panel.val_every.setValue(1)
    qtbot.waitUntil(lambda: panel.scan is not None, timeout=WAIT)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.state == "finished", timeout=WAIT)
    qtbot.waitUntil(lambda: not panel.is_training, timeout=WAIT)
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "val.jsonl").read_text().splitlines()]
    assert [s for s, _ in panel.val_history["sketch"]] == [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [v for _, v in panel.val_history["photo"]] == pytest.approx([r["photo_fsim"] for r in rows])
    best = max(rows, key=lambda r: r["mean_fsim"])
    assert panel.best_label.text().startswith(f"step {best['step']}: {best['mean_fsim']:.4f}")
    xs, ys = panel._val_curves["sketch"].getData()
    assert list(xs) == [1, 2, 3, 4] and list(ys) == pytest.approx([r["sketch_fsim"] for r in rows])
