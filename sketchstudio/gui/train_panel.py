"""Train view: choose a paired folder, set the options, watch losses and previews, steer the run.

The run itself is :class:`trainer.loop.Trainer` in a :class:`TrainWorker` thread; this panel only
builds the :class:`TrainConfig`, forwards pause/resume/cancel to the trainer's thread-safe control
and draws the events it emits. pyqtgraph is imported when the panel is first shown (it costs most
of a second), so it never delays the window.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from sketchstudio.vocab import CHECKPOINT_FILE
from trainer.choices import LR_SCHEDULES, REC_LOSSES, STU_COMPARES, TAP_COMPARES, UPSAMPLE_MODES
from trainer.events import (
    CheckpointEvent,
    DoneEvent,
    PreviewEvent,
    StartEvent,
    StateEvent,
    StepEvent,
    TrainEvent,
    ValEvent,
)

from .context import AppContext
from .image_pane import ImagePane
from .live_features import LiveFeatures
from .workers import ScanReport, ScanWorker, TrainWorker, start_worker

log = logging.getLogger(__name__)

LOSS_TERMS = ("G_tea", "G_stu", "G_rec", "F_tea", "F_stu", "F_rec", "total")
VAL_TERMS = ("photo", "sketch")
_VAL_COLORS = {"photo": "#1f77b4", "sketch": "#d62728"}
_COLORS = {"G_tea": "#1f77b4", "G_stu": "#17becf", "G_rec": "#2ca02c", "F_tea": "#d62728",
           "F_stu": "#ff7f0e", "F_rec": "#9467bd", "total": "#444444"}
PREVIEW_KEYS = ("photo", "G(photo)", "sketch", "F(sketch)")


def format_duration(seconds: float) -> str:
    """'45 s', '12 min 05 s', '3 h 07 min' — enough precision for an ETA."""
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class PathField(QWidget):
    """A line edit with a Browse… button (folder or file)."""

    changed = Signal(str)

    def __init__(self, placeholder: str, pick_folder: bool = True, file_filter: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.button = QPushButton("Browse…")
        self.pick_folder, self.file_filter = pick_folder, file_filter
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit, 1)
        lay.addWidget(self.button)
        self.button.clicked.connect(self._browse)
        self.edit.editingFinished.connect(lambda: self.changed.emit(self.text()))

    def text(self) -> str:
        return self.edit.text().strip()

    def set_text(self, text: str, emit: bool = True) -> None:
        self.edit.setText(text)
        if emit:
            self.changed.emit(self.text())

    def _browse(self) -> None:
        start = self.text() or str(Path.home())
        if self.pick_folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", start, self.file_filter)
        if path:
            self.set_text(path)


class TrainPanel(QWidget):
    """Paired folder → KT training with live curves, previews and pause/resume/cancel."""

    #: the run stopped (finished, cancelled or failed); the main window may be waiting to close
    training_stopped = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._base_config: Any = None  # the resumed run's TrainConfig (see set_config)
        self.ctx = ctx
        self.worker: TrainWorker | None = None
        self.thread: Any = None
        self.scan: ScanReport | None = None
        self._scan_job: tuple[ScanWorker, Any] | None = None
        self._scan_seq = 0
        self._scan_threads: dict[int, tuple[ScanWorker, Any]] = {}
        self.state = "idle"  # idle | starting | running | pausing | paused | cancelling | finished | cancelled | failed
        self.step = 0
        self.total_steps = 0
        self._steps_per_epoch = 1
        self.last_checkpoint: str | None = None
        self.last_run_resumed = False  # whether the current/last run was started as a resume
        self.history: dict[str, list[tuple[int, float]]] = {k: [] for k in LOSS_TERMS}
        #: validation FSIM by step ("photo" = F's, "sketch" = G's), from ValEvents / val.jsonl
        self.val_history: dict[str, list[tuple[int, float]]] = {k: [] for k in VAL_TERMS}
        self._val_plot: Any = None
        self._val_curves: dict[str, Any] = {}
        self.previews_seen = 0
        self._plot: Any = None
        self._curves: dict[str, Any] = {}
        self._plot_dirty = False
        self._build()
        self._plot_timer = QTimer(self)
        self._plot_timer.setInterval(250)
        self._plot_timer.timeout.connect(self._redraw_plot)
        self._set_state("idle")

    # --- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.ctx.settings
        # data
        self.data_field = PathField("folder with photos/ and sketches/ (same file names)")
        self.data_field.set_text(str(s.value("train/data", "") or ""), emit=False)
        self.check_faces = QCheckBox("Align faces (check every image for a face)")
        self.data_summary = QLabel("Choose a paired folder.")
        self.data_summary.setWordWrap(True)
        self.problems = QListWidget()
        self.problems.setMaximumHeight(110)
        self.problems.hide()
        data_box = QGroupBox("Training data")
        dl = QVBoxLayout(data_box)
        dl.addWidget(self.data_field)
        dl.addWidget(self.check_faces)
        dl.addWidget(self.data_summary)
        dl.addWidget(self.problems)

        # options
        self.epochs = _spin(1, 100000, 200)
        self.image_size = _spin(16, 1024, 256, step=16)
        self.image_size.setSuffix(" px")
        self.ngf = _spin(1, 256, 64)
        self.n_blocks = _spin(0, 32, 9)
        self.precision = QComboBox()
        self.precision.addItems(["auto", "fp32", "bf16", "fp16"])
        self.precision.setToolTip("auto: bf16 on GPUs and on CPUs with native bf16, else fp32")
        self.w_tea, self.w_stu, self.w_rec = (_dspin(1.0) for _ in range(3))
        weights = QHBoxLayout()
        weights.setSpacing(4)
        for label, w in (("tea-stu", self.w_tea), ("stu-stu", self.w_stu), ("rec", self.w_rec)):
            w.setToolTip(f"weight of L_{label} (0 switches the term off, as in the paper's ablation)")
            weights.addWidget(QLabel(label))
            weights.addWidget(w)
        weights.addStretch(1)
        self.preview_every = _spin(1, 100000, 50)
        self.checkpoint_every = _spin(1, 100000, 200)
        self.ema_decay = QDoubleSpinBox()
        self.ema_decay.setRange(0.0, 0.9999)
        self.ema_decay.setDecimals(4)
        self.ema_decay.setSingleStep(0.001)
        self.ema_decay.setSpecialValueText("off")  # shown at 0
        self.ema_decay.setToolTip(
            "Keep a moving average of the weights in the checkpoint (e.g. 0.999 ≈ the last 1,000 "
            "steps): steadier than the last step's weights with batch size 1. Export it with "
            "sketchstudio-export --ema.")
        self.out_field = PathField("folder for checkpoint.safetensors, losses.jsonl, config.yaml")
        self.out_field.set_text(str(s.value("train/out", "") or ""), emit=False)
        self.teacher_field = PathField("VGG-19 weights (vgg19_relu3_1.pth); empty = automatic",
                                       pick_folder=False, file_filter="Weights (*.pth *.safetensors)")
        self.teacher_field.set_text(s.teacher_path, emit=False)
        opts = _form_box("Options", (
            ("Epochs", self.epochs), ("Image size", self.image_size), ("Width (ngf)", self.ngf),
            ("Residual blocks", self.n_blocks), ("Precision", self.precision),
            ("Loss weights", weights), ("Preview every", self.preview_every),
            ("Checkpoint every", self.checkpoint_every), ("Weight average", self.ema_decay),
            ("Output folder", self.out_field), ("Teacher file", self.teacher_field)))

        # recipe and validation (issue 16's options; defaults = the paper's formula)
        self.tap_compare = _combo(TAP_COMPARES, "How student taps are compared with the teacher's: "
                                  "mse (the paper's), standardised (where channels fire, not how "
                                  "strongly), cosine, regressor (a learnt 1×1 conv per tap)")
        self.stu_compare = _combo(STU_COMPARES, "How G's and F's taps are compared with each other")
        self.upsample = _combo(UPSAMPLE_MODES, "deconv: the paper's transposed convolutions; resize: "
                               "nearest ×2 then a convolution (no checkerboard pattern)")
        self.rec_loss = _combo(REC_LOSSES, "Reconstruction distance: l2 (the paper's) or l1")
        self.lr_schedule = _combo(LR_SCHEDULES, "constant, or linear: constant for the first half "
                                  "of the run, then linear decay to 0")
        self.style_weight, self.perceptual_weight, self.gan_weight = _dspin(0.0), _dspin(0.0), _dspin(0.0)
        for w in (self.style_weight, self.perceptual_weight, self.gan_weight):
            w.setDecimals(3)
            w.setSingleStep(0.01)
        self.style_weight.setToolTip("Gram-matrix (texture) loss between the teacher's features of "
                                     "the output and of the target (0 = off)")
        self.perceptual_weight.setToolTip("Teacher feature distance between output and target (0 = off)")
        texture = QHBoxLayout()
        texture.setSpacing(4)
        self.gan_weight.setToolTip("Adversarial term: a PatchGAN per student judges whether patches "
                                   "of its output look drawn (0 = off)")
        for label, w in (("style", self.style_weight), ("perceptual", self.perceptual_weight),
                         ("GAN", self.gan_weight)):
            texture.addWidget(QLabel(label))
            texture.addWidget(w)
        texture.addStretch(1)
        self.val_field = PathField("validation stems file, or cufs; empty = none", pick_folder=False,
                                   file_filter="Stems (*.txt)")
        self.val_field.setToolTip("Pairs held out of training and scored (FSIM both ways) every N "
                                  "steps; best.safetensors keeps the best. 'cufs' = the shipped split.")
        self.val_every = _spin(1, 100000, 200)
        self.augment = QCheckBox("Random crops and photo colour jitter")
        self.augment.setToolTip("Each step sees a random crop of a 1/8 larger resize (the same for "
                                "photo and sketch) and a photo with ±10 % brightness, contrast and "
                                "saturation: more variety from a small paired set")
        recipe = _form_box("Recipe and validation", (
            ("Tap comparison", self.tap_compare), ("Student comparison", self.stu_compare),
            ("Upsampling", self.upsample), ("Reconstruction", self.rec_loss),
            ("Texture weights", texture), ("Learning rate", self.lr_schedule),
            ("Augmentation", self.augment), ("Validation split", self.val_field),
            ("Validate every", self.val_every)))

        # buttons
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        self.resume_run_button = QPushButton("Resume a run…")
        self.resume_run_button.setToolTip("Continue an interrupted run from its output folder")
        self.load_button = QPushButton("Load into Translate")
        self.load_button.setToolTip("Use the trained model in the Translate view")
        row1 = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.cancel_button):
            row1.addWidget(b)
        row2 = QHBoxLayout()
        row2.addWidget(self.resume_run_button)
        row2.addWidget(self.load_button)
        self.load_button.setText("Load into Translate")

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(data_box)
        ll.addWidget(opts)
        ll.addWidget(recipe)
        ll.addLayout(row1)
        ll.addLayout(row2)
        self.live_features = LiveFeatures()
        ll.addWidget(self.live_features, 1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(left.sizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)

        # progress side
        self.state_label = QLabel()
        self.step_label = QLabel("–")
        self.epoch_label = QLabel("–")
        self.eta_label = QLabel("–")
        self.speed_label = QLabel("–")
        self.device_label = QLabel("–")
        self.device_label.setWordWrap(True)
        self.ckpt_label = QLabel("–")
        self.ckpt_label.setWordWrap(True)
        self.ckpt_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        info = QGridLayout()
        for r, (name, w) in enumerate((("State", self.state_label), ("Step", self.step_label),
                                       ("Epoch", self.epoch_label), ("ETA", self.eta_label))):
            info.addWidget(QLabel(f"<b>{name}</b>"), r, 0)
            info.addWidget(w, r, 1)
        self.best_label = QLabel("–")
        self.best_label.setToolTip("Best mean validation FSIM so far (kept as best.safetensors)")
        for r, (name, w) in enumerate((("Speed", self.speed_label), ("Device", self.device_label),
                                       ("Checkpoint", self.ckpt_label), ("Best val", self.best_label))):
            info.addWidget(QLabel(f"<b>{name}</b>"), r, 2)
            info.addWidget(w, r, 3)
        info.setColumnStretch(1, 1)
        info.setColumnStretch(3, 2)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m steps (%p%)")
        self.plot_holder = QVBoxLayout()
        self.plot_box = QGroupBox("Losses (per term, log scale)")
        self.plot_box.setLayout(self.plot_holder)
        # the legend is a row under the plot: inside the plot it would hide the curves
        self.legend = QLabel("  ".join(
            f"<span style='color:{_COLORS[k]}; font-weight:bold'>{'╍╍' if k.startswith('F_') else '━━'}"
            f"</span> {k}" for k in LOSS_TERMS))
        self.legend.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.plot_holder.addWidget(self.legend)
        self.previews = {k: ImagePane(k, "", smooth=True) for k in PREVIEW_KEYS}
        prev_box = QGroupBox("Preview (fixed pair)")
        pl = QHBoxLayout(prev_box)
        for p in self.previews.values():
            p.canvas.setMinimumSize(90, 90)
            pl.addWidget(p)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.addLayout(info)
        rl.addWidget(self.progress)
        rl.addWidget(self.plot_box, 3)
        rl.addWidget(prev_box, 2)

        split = QSplitter()
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([420, 800])
        lay = QVBoxLayout(self)
        lay.addWidget(split)

        self.data_field.changed.connect(self.validate_data)
        self.check_faces.toggled.connect(lambda _: self.validate_data(self.data_field.text()))
        self.teacher_field.changed.connect(self.ctx.set_teacher_path)
        self.start_button.clicked.connect(self._start_clicked)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_run_button.clicked.connect(self._resume_clicked)
        self.load_button.clicked.connect(self.load_into_translate)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self.ensure_plot()
        if self.scan is None and self.data_field.text() and self._scan_job is None:
            self.validate_data(self.data_field.text())

    def shutdown(self) -> None:
        """Window closing: stop a folder scan (training itself is handled by the main window)."""
        for worker, thread in self._scan_threads.values():
            worker.cancel()
            thread.quit()
            thread.wait()
        self._scan_threads.clear()
        self._scan_job = None

    def ensure_plot(self) -> None:
        """Create the pyqtgraph plot on first need (its import is slow)."""
        if self._plot is not None:
            return
        import pyqtgraph as pg

        pg.setConfigOptions(antialias=True, background="w", foreground="k")
        plot = pg.PlotWidget()
        plot.setLogMode(y=True)
        plot.showGrid(x=True, y=True, alpha=0.25)
        plot.setLabel("bottom", "step")
        plot.setLabel("left", "loss")
        for k in LOSS_TERMS:
            width = 2.5 if k == "total" else 1.5
            # F's terms dashed: G's and F's student-student terms are equal by definition and
            # their teacher terms close, so solid lines would hide G's curves
            style = Qt.PenStyle.DashLine if k.startswith("F_") else Qt.PenStyle.SolidLine
            self._curves[k] = plot.plot([], [], name=k, pen=pg.mkPen(_COLORS[k], width=width,
                                                                      style=style))
        self.plot_holder.insertWidget(0, plot, 1)
        self._plot = plot
        val = pg.PlotWidget()
        val.showGrid(x=True, y=True, alpha=0.25)
        val.setLabel("bottom", "step")
        val.setLabel("left", "held-out FSIM")
        val.getAxis("left").enableAutoSIPrefix(False)  # FSIM is 0..1: no "(x0.001)" rescaling
        val.setMaximumHeight(150)
        val.addLegend(offset=(-10, 10))
        for k in VAL_TERMS:
            self._val_curves[k] = val.plot([], [], name=f"{k} (held-out)", symbol="o", symbolSize=5,
                                           pen=pg.mkPen(_VAL_COLORS[k], width=2),
                                           symbolBrush=_VAL_COLORS[k])
        self.plot_holder.addWidget(val, 0)  # under the loss curves' legend row
        self._val_plot = val
        self._redraw_plot(force=True)

    # --- data validation ----------------------------------------------------------------------
    def validate_data(self, root: str) -> None:
        """Scan the folder in a worker; problems (unpaired, unreadable, no face) are listed."""
        self.ctx.settings.set_value("train/data", root)
        if self._scan_job is not None:
            self._scan_job[0].cancel()
        if not root:
            return
        self._scan_seq += 1
        worker = ScanWorker(root, check_faces=self.check_faces.isChecked(), job=self._scan_seq)
        worker.progress.connect(self._scan_progress)
        worker.finished.connect(self._scan_done)
        thread = start_worker(worker, "scan", worker.run)
        self._scan_threads[self._scan_seq] = (worker, thread)
        self._scan_job = (worker, thread)
        self.data_summary.setText(f"Checking {root}…")

    def _scan_progress(self, job: int, done: int, total: int) -> None:
        if job == self._scan_seq:
            self.data_summary.setText(f"Looking for faces: {done + 1} of {total} images…")

    def _scan_done(self, report: ScanReport) -> None:
        worker, thread = self._scan_threads.pop(report.job)
        thread.quit()
        thread.wait()
        worker.deleteLater()
        thread.deleteLater()
        if report.job != self._scan_seq:
            return  # a newer scan replaced this one
        self._scan_job = None
        self.scan = report
        self.problems.clear()
        self.problems.addItems(report.problems[:500])
        self.problems.setVisible(bool(report.problems))
        ok = report.n_pairs > 0 and not report.problems
        faces = ", faces checked" if report.faces_checked else ""
        self.data_summary.setText(
            f"✔ {report.n_pairs} pairs ({report.layout}{faces})." if ok else
             f"✖ {report.n_pairs} usable pairs, {len(report.problems)} problem(s):")
        self.data_summary.setStyleSheet("color: #1b7a1b;" if ok else "color: #a01818;")

    # --- config -------------------------------------------------------------------------------
    def config(self) -> Any:
        """The TrainConfig the form describes (raises ConfigError with a readable message)."""
        from trainer.config import TrainConfig

        out = self.out_field.text()
        if not out:
            from sketchstudio.errors import ConfigError

            raise ConfigError("Choose an output folder for the run.")
        # options the form does not show (flips, tap comparison, texture weights, …) keep the
        # values of the run being resumed, or the dataclass defaults
        base = self._base_config if self._base_config is not None else TrainConfig()
        cfg = replace(
            base, data_dir=self.data_field.text(), out_dir=out, epochs=self.epochs.value(),
            image_size=self.image_size.value(), ngf=self.ngf.value(), n_blocks=self.n_blocks.value(),
            precision=self.precision.currentText(),
            loss_weights=(self.w_tea.value(), self.w_stu.value(), self.w_rec.value()),
            device=self.ctx.settings.device, teacher_path=self.teacher_field.text() or None,
            preview_every=self.preview_every.value(), checkpoint_every=self.checkpoint_every.value(),
            ema_decay=round(self.ema_decay.value(), 4), align=self.check_faces.isChecked(),
            tap_compare=self.tap_compare.currentText(), stu_compare=self.stu_compare.currentText(),
            upsample=self.upsample.currentText(), rec_loss=self.rec_loss.currentText(),
            lr_schedule=self.lr_schedule.currentText(), style_weight=self.style_weight.value(),
            perceptual_weight=self.perceptual_weight.value(), val=self.val_field.text() or None,
            val_every=self.val_every.value(), augment=self.augment.isChecked(),
            gan_weight=self.gan_weight.value())
        return cfg.validate()

    def set_config(self, cfg: Any) -> None:
        """Fill the form from a TrainConfig (used when resuming a run); options the form does
        not show are kept and reach :meth:`config` unchanged."""
        self._base_config = replace(cfg)
        self.data_field.set_text(str(cfg.data_dir), emit=False)
        self.out_field.set_text(str(cfg.out_dir), emit=False)
        self.epochs.setValue(int(cfg.epochs))
        self.image_size.setValue(int(cfg.image_size))
        self.ngf.setValue(int(cfg.ngf))
        self.n_blocks.setValue(int(cfg.n_blocks))
        self.precision.setCurrentText(str(cfg.precision))
        for w, v in zip((self.w_tea, self.w_stu, self.w_rec), cfg.loss_weights, strict=True):
            w.setValue(float(v))
        self.preview_every.setValue(int(cfg.preview_every))
        self.checkpoint_every.setValue(int(cfg.checkpoint_every))
        self.ema_decay.setValue(float(cfg.ema_decay))
        for combo, value in ((self.tap_compare, cfg.tap_compare), (self.stu_compare, cfg.stu_compare),
                             (self.upsample, cfg.upsample), (self.rec_loss, cfg.rec_loss),
                             (self.lr_schedule, cfg.lr_schedule)):
            combo.setCurrentText(str(value))
        self.style_weight.setValue(float(cfg.style_weight))
        self.perceptual_weight.setValue(float(cfg.perceptual_weight))
        self.val_field.set_text(str(cfg.val or ""), emit=False)
        self.val_every.setValue(int(cfg.val_every))
        self.augment.setChecked(bool(cfg.augment))
        self.gan_weight.setValue(float(cfg.gan_weight))
        self.teacher_field.set_text(str(cfg.teacher_path or ""), emit=False)
        self.check_faces.blockSignals(True)
        self.check_faces.setChecked(bool(cfg.align))
        self.check_faces.blockSignals(False)

    # --- run control --------------------------------------------------------------------------
    @property
    def is_training(self) -> bool:
        return self.worker is not None

    def _start_clicked(self) -> None:
        out = Path(self.out_field.text()) if self.out_field.text() else None
        resume = False
        if out is not None and (out / CHECKPOINT_FILE).is_file():
            answer = QMessageBox.question(
                self, "Resume training?",
                f"'{out}' already holds a training run. Resume it where it stopped?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Yes:
                return
            resume = True
        self.start(resume=resume)

    def start(self, resume: bool = False) -> bool:
        """Start (or resume) a run with the form's settings; False if the settings are unusable."""
        if self.is_training:
            return False
        from sketchstudio.errors import SketchStudioError

        try:
            cfg = self.config()
        except SketchStudioError as exc:
            self.ctx.notify("error", f"Cannot start training: {exc}")
            return False
        s = self.ctx.settings
        s.set_value("train/data", cfg.data_dir)
        s.set_value("train/out", cfg.out_dir)
        if cfg.teacher_path:
            self.ctx.set_teacher_path(cfg.teacher_path)
        self.history = {k: [] for k in LOSS_TERMS}
        self.val_history = {k: [] for k in VAL_TERMS}
        self.best_label.setText("–")
        self.previews_seen = 0
        self.step, self.total_steps = 0, 0
        self.last_checkpoint = None
        self.ensure_plot()
        self._redraw_plot(force=True)
        for p in self.previews.values():
            p.set_image(None)
        self.live_features.clear()
        self.last_run_resumed = resume
        self.worker = TrainWorker(cfg, resume=resume, threads=self.ctx.training_started())
        self.worker.event.connect(self._on_event)
        self.worker.failed.connect(self._on_failed)
        self.worker.finished.connect(self._on_finished)
        self.thread = start_worker(self.worker, "train", self.worker.run)
        self._plot_timer.start()
        self._set_state("starting")
        self.ckpt_label.setText("–")
        return True

    def resume_run(self, folder: str | Path) -> bool:
        """Continue an interrupted run: read its config.yaml and start with resume=True."""
        from sketchstudio.errors import SketchStudioError
        from trainer.config import TrainConfig

        run = Path(folder)
        try:
            if not (run / CHECKPOINT_FILE).is_file():
                raise SketchStudioError(f"'{run}' holds no {CHECKPOINT_FILE}; nothing to resume.")
            cfg = TrainConfig.load(run / "config.yaml")
        except SketchStudioError as exc:
            self.ctx.notify("error", f"Cannot resume: {exc}")
            return False
        cfg.out_dir = str(run)
        self.set_config(cfg)
        self.validate_data(str(cfg.data_dir))
        return self.start(resume=True)

    def _resume_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose the folder of an interrupted run",
                                                self.out_field.text() or str(Path.home()))
        if path:
            self.resume_run(path)

    def toggle_pause(self) -> None:
        if self.worker is None:
            return
        if self.state in ("paused", "pausing"):
            self.worker.resume_training()
            self._set_state("running")
        else:
            self.worker.pause()
            self._set_state("pausing")

    def cancel(self) -> None:
        """Stop after the current step; the trainer writes a checkpoint before it returns."""
        if self.worker is not None:
            self.worker.cancel()
            self._set_state("cancelling")

    def load_into_translate(self) -> None:
        path = self.last_checkpoint or (str(Path(self.out_field.text()) / CHECKPOINT_FILE)
                                        if self.out_field.text() else "")
        if not path or not Path(path).is_file():
            self.ctx.notify("info", "No checkpoint yet: start a run first.")
            return
        self.ctx.load_model(path)
        self.ctx.show_view.emit("Translate")

    # --- events -------------------------------------------------------------------------------
    def _on_event(self, e: TrainEvent) -> None:
        """Hand a trainer event to its handler, chosen by the event's type (the nearest class in
        its MRO that has one), so a renamed or subclassed event cannot silently fall through."""
        for cls in type(e).__mro__:
            handler = self._EVENT_HANDLERS.get(cls)
            if handler is not None:
                handler(self, e)
                return
        log.debug("no handler for %s", type(e).__name__)

    def _on_start(self, e: StartEvent) -> None:
        self.total_steps = e.total_steps
        self.step = e.step
        self.progress.setRange(0, max(1, e.total_steps))
        self.progress.setValue(e.step)
        self.device_label.setText(e.device)
        self._steps_per_epoch = max(1, e.steps_per_epoch)
        self._load_history_from_log()
        if self.state == "starting":
            self._set_state("running")
        if e.resumed:
            self.ctx.notify("info", f"Resumed training at step {e.step} of {e.total_steps}.")

    def _on_step(self, e: StepEvent) -> None:
        self.step = e.step
        self.progress.setValue(e.step)
        self.step_label.setText(f"{e.step} / {e.total_steps}")
        epochs = math.ceil(e.total_steps / self._steps_per_epoch)
        self.epoch_label.setText(f"{e.epoch + 1} / {epochs}")
        self.eta_label.setText(format_duration(e.eta_s))
        self.speed_label.setText(f"{e.sec_per_step:.2f} s/step")
        for k in LOSS_TERMS:
            if k in e.losses:
                self.history[k].append((e.step, float(e.losses[k])))
        self._plot_dirty = True

    def _on_preview(self, e: PreviewEvent) -> None:
        self.previews_seen += 1
        for k, pane in self.previews.items():
            if k in e.images:
                pane.set_image(e.images[k], f"step {e.step}")
        if e.features:
            self.live_features.show_pairs(e.step, e.features)

    def _on_val(self, e: ValEvent) -> None:
        self.val_history["photo"].append((e.step, float(e.photo_fsim)))
        self.val_history["sketch"].append((e.step, float(e.sketch_fsim)))
        if e.best:
            self.best_label.setText(f"step {e.step}: {e.mean_fsim:.4f} (photo {e.photo_fsim:.4f}, "
                                    f"sketch {e.sketch_fsim:.4f})")
        self._plot_dirty = True

    def _on_checkpoint(self, e: CheckpointEvent) -> None:
        self.last_checkpoint = e.path
        self.ckpt_label.setText(f"step {e.step}: {e.path}")
        self._set_state(self.state)  # "Load into Translate" works from the first checkpoint on

    def _on_state(self, e: StateEvent) -> None:
        if e.state == "paused" and self.state in ("pausing", "paused"):
            self._set_state("paused")
        elif e.state == "running" and self.state not in ("cancelling",):
            self._set_state("running")

    def _on_done(self, e: DoneEvent) -> None:
        self.last_checkpoint = e.path
        self._set_state("cancelled" if e.cancelled else "finished")
        state = "cancelled" if e.cancelled else "finished"
        if Path(e.path).is_file():
            self.ctx.notify("info", f"Training {state} at step {e.step}; checkpoint saved to "
                            f"{e.path}. Use “Load into Translate” to try it.")
        else:  # cancelled before its first step: nothing was written
            self.ctx.notify("info", f"Training {state} before its first step; nothing was saved.")

    _EVENT_HANDLERS: dict[type, Any] = {
        StartEvent: _on_start,
        StepEvent: _on_step,
        PreviewEvent: _on_preview,
        ValEvent: _on_val,
        CheckpointEvent: _on_checkpoint,
        StateEvent: _on_state,
        DoneEvent: _on_done,
    }

    def _load_history_from_log(self) -> None:
        """On resume, show the curves of the steps done before (losses.jsonl, val.jsonl), read
        the one way the run folder is read (rows torn by a crash are skipped)."""
        from trainer.rundir import LOSS_LOG, VAL_LOG, read_rows

        run = Path(self.out_field.text())
        try:
            for d in read_rows(run / LOSS_LOG):
                for k in LOSS_TERMS:
                    if k in d and d.get("step", 0) <= self.step:
                        self.history[k].append((int(d["step"]), float(d[k])))
            rows = [d for d in read_rows(run / VAL_LOG) if d.get("step", 0) <= self.step]
            for d in rows:
                self.val_history["photo"].append((int(d["step"]), float(d["photo_fsim"])))
                self.val_history["sketch"].append((int(d["step"]), float(d["sketch_fsim"])))
            best = max(rows, key=lambda d: d["mean_fsim"], default=None)
            if best:
                self.best_label.setText(f"step {best['step']}: {best['mean_fsim']:.4f}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cannot read the logs of %s: %s", run, exc)
        self._plot_dirty = True

    def _on_failed(self, message: str, detail: str) -> None:
        self._set_state("failed")
        self.ctx.notify("error", f"Training stopped: {message}", detail)

    def _on_finished(self) -> None:
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait()
            self.thread.deleteLater()
        if self.worker is not None:
            self.worker.deleteLater()
        self.worker, self.thread = None, None
        if self.state not in ("finished", "cancelled", "failed"):
            self._set_state("cancelled")
        self._plot_timer.stop()
        self._redraw_plot(force=True)
        self._set_state(self.state)
        self.ctx.training_stopped()
        self.training_stopped.emit()

    def _set_state(self, state: str) -> None:
        self.state = state
        running = self.worker is not None
        labels = {"idle": "Not started", "starting": "Starting (loading data and teacher)…",
                  "running": "Training", "pausing": "Pausing after this step…", "paused": "Paused",
                  "cancelling": "Cancelling — saving a checkpoint…", "finished": "Finished",
                  "cancelled": "Cancelled (checkpoint saved)", "failed": "Failed"}
        self.state_label.setText(labels.get(state, state))
        self.start_button.setEnabled(not running)
        self.resume_run_button.setEnabled(not running)
        self.pause_button.setEnabled(running and state in ("running", "paused", "pausing"))
        self.pause_button.setText("Resume" if state in ("paused", "pausing") else "Pause")
        self.cancel_button.setEnabled(running and state != "cancelling")
        has_ckpt = bool(self.last_checkpoint) and Path(self.last_checkpoint).is_file()
        self.load_button.setEnabled(has_ckpt)
        for w in (self.data_field, self.out_field, self.teacher_field, self.epochs, self.image_size,
                  self.ngf, self.n_blocks, self.precision, self.w_tea, self.w_stu, self.w_rec,
                  self.preview_every, self.checkpoint_every, self.ema_decay, self.check_faces,
                  self.tap_compare, self.stu_compare, self.upsample, self.rec_loss, self.lr_schedule,
                  self.style_weight, self.perceptual_weight, self.val_field, self.val_every,
                  self.augment, self.gan_weight):
            w.setEnabled(not running)

    def _redraw_plot(self, force: bool = False) -> None:
        if self._plot is None or not (self._plot_dirty or force):
            return
        self._plot_dirty = False
        for k, curve in self._curves.items():
            pts = [(s, v) for s, v in self.history[k] if v > 0]  # log axis: drop zeros
            curve.setData([p[0] for p in pts], [p[1] for p in pts])
        for k, curve in self._val_curves.items():
            curve.setData([p[0] for p in self.val_history[k]], [p[1] for p in self.val_history[k]])


def _form_box(title: str, rows: tuple[tuple[str, Any], ...]) -> QGroupBox:
    """A titled group of labelled rows (a widget or a layout each)."""
    box = QGroupBox(title)
    form = QFormLayout(box)
    for label, field in rows:
        form.addRow(label, field)
    return box


def _combo(items: tuple[str, ...], tip: str) -> QComboBox:
    w = QComboBox()
    w.addItems(list(items))
    w.setToolTip(tip)
    return w


def _spin(lo: int, hi: int, value: int, step: int = 1) -> QSpinBox:
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setValue(value)
    return w


def _dspin(value: float) -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setMaximumWidth(72)
    w.setRange(0.0, 1000.0)
    w.setDecimals(2)
    w.setSingleStep(0.1)
    w.setValue(value)
    return w
