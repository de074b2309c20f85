"""The main window: views as tabs, model picker, device in the status bar, menus and shortcuts.

Views are registered in :data:`VIEWS` as ``(title, factory)`` pairs; a factory takes the shared
:class:`AppContext` and returns a QWidget. Adding a view is one line in that list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from sketchstudio import __version__
from sketchstudio.resources import default_model_path
from sketchstudio.vocab import CHECKPOINT_NAMES

from .context import AppContext
from .feature_view import FeatureView
from .match_view import MatchView
from .message_bar import MessageBar
from .settings import Settings
from .train_panel import TrainPanel
from .translate_view import TranslateView
from .workers import ModelInfo

log = logging.getLogger(__name__)

ViewFactory = Callable[[AppContext], QWidget]

#: The tabs, in order. A new view: ``("Match", MatchView)`` (or a lambda taking the context).
VIEWS: list[tuple[str, ViewFactory]] = [
    ("Translate", TranslateView),
    ("Feature maps", FeatureView),
    ("Train", TrainPanel),
    ("Match", MatchView),
]

MODEL_FILTER = "SketchStudio models (*.safetensors);;All files (*)"
_OPEN = "__open__"

ABOUT_HTML = f"""
<h2>SketchStudio {__version__}</h2>
<p>Face photo ↔ sketch synthesis by knowledge transfer, after <i>Face Photo-Sketch Synthesis via
Knowledge Transfer</i> (IJCAI 2019). Two student networks, G (photo→sketch) and F (sketch→photo),
learn from frozen VGG-19 teachers and from each other.</p>
<p>SketchStudio itself is released under the MIT licence.</p>
<h3>Licences of the data and weights</h3>
<ul>
<li><b>VGG-19 teacher weights</b> — K. Simonyan &amp; A. Zisserman, <i>Very Deep Convolutional
Networks for Large-Scale Image Recognition</i> (Visual Geometry Group, University of Oxford), released
under the Creative Commons Attribution 4.0 licence (CC BY 4.0).</li>
<li><b>CUFS (CUHK Face Sketch database)</b> — © The Chinese University of Hong Kong (CUHK); for
non-commercial research use only. Models trained on it inherit this restriction.</li>
<li><b>AR face database</b> (part of CUFS) — A. M. Martinez &amp; R. Benavente, Computer Vision
Center (CVC), Barcelona; available to researchers under the CVC's terms, research use only, no
redistribution of the images.</li>
<li><b>XM2VTS</b> (part of CUFS) — University of Surrey; licensed under the XM2VTS database licence
agreement for research use; the images may not be redistributed.</li>
</ul>
<p>The shipped default model was trained on CUFS and is provided for research and personal,
non-commercial use.</p>
<p>Built with PyTorch, Qt for Python (PySide6, LGPLv3), pyqtgraph (MIT), OpenCV (Apache 2.0) and
dlib (Boost).</p>
"""


class MainWindow(QMainWindow):
    """Tabs (from :data:`VIEWS`), a model picker, a message bar and the device in the status bar."""

    def __init__(self, settings: Settings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings or Settings()
        self.ctx = AppContext(self.settings, self)
        self._close_after_training = False
        self.about_box: QMessageBox | None = None
        self.setWindowTitle("SketchStudio")
        self.setAcceptDrops(False)

        self.message_bar = MessageBar()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.views: dict[str, QWidget] = {}
        for title, factory in VIEWS:
            view = factory(self.ctx)
            self.views[title] = view
            self.tabs.addTab(view, title)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(6, 6, 6, 0)
        lay.addWidget(self.message_bar)
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self._build_toolbar()
        self._build_menus()
        self.model_label = QLabel("No model")
        self.device_label = QLabel("Device: –")
        #: background start-up work (warm-up, fast-path export): shown until the next message
        self.prepare_label = QLabel("")
        self.statusBar().addPermanentWidget(self.prepare_label)
        self.statusBar().addPermanentWidget(self.model_label)
        self.statusBar().addPermanentWidget(self.device_label)

        self.ctx.message.connect(self.message_bar.show_message)
        self.ctx.model_changed.connect(self._model_changed)
        self.ctx.model_loading.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.ctx.show_view.connect(self.show_view)
        self.ctx.device_changed.connect(self._device_changed)
        self.ctx.preparing.connect(self._preparing)
        self.ctx.engine_changed.connect(self._engine_changed)
        tv = self.translate_view
        if tv is not None:
            tv.open_model_requested.connect(self.open_model_dialog)
            tv.train_requested.connect(lambda: self.show_view("Train"))
        tp = self.train_panel
        if tp is not None:
            tp.training_stopped.connect(self._training_stopped)

        geo = self.settings.geometry()
        if geo is None or not self.restoreGeometry(geo):
            self.resize(1280, 820)
        self.tabs.setCurrentIndex(min(max(self.settings.current_tab(), 0), self.tabs.count() - 1))
        self._refresh_models()

    # --- views --------------------------------------------------------------------------------
    @property
    def translate_view(self) -> TranslateView | None:
        v = self.views.get("Translate")
        return v if isinstance(v, TranslateView) else None

    @property
    def feature_view(self) -> FeatureView | None:
        v = self.views.get("Feature maps")
        return v if isinstance(v, FeatureView) else None

    @property
    def train_panel(self) -> TrainPanel | None:
        v = self.views.get("Train")
        return v if isinstance(v, TrainPanel) else None

    def show_view(self, title: str) -> None:
        if title in self.views:
            self.tabs.setCurrentWidget(self.views[title])

    def start(self, model: str | None = None, image: str | None = None) -> None:
        """After the window is shown: load a model (this is when torch gets imported)."""
        if model:
            self.ctx.load_model(model)
        else:
            self.ctx.start()
        if image and self.translate_view is not None:
            self.show_view("Translate")
            self.translate_view.load_path(image)

    # --- toolbar, menus -----------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        tb = QToolBar("Model")
        tb.setObjectName("model_toolbar")
        tb.setMovable(False)
        tb.addWidget(QLabel(" Model: "))
        self.model_combo = QComboBox()
        self.model_combo.setMinimumContentsLength(28)
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setToolTip("The model used for translating: the shipped default, a recent "
                                    "one, or any checkpoint / run folder")
        self.model_combo.activated.connect(self._model_combo_activated)
        tb.addWidget(self.model_combo)
        self.model_info = QLabel("")
        self.model_info.setStyleSheet("color: palette(mid); padding-left: 8px;")
        tb.addWidget(self.model_info)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)

    def _action(self, menu, text: str, slot, shortcut: QKeySequence | str | None = None,
                checkable: bool = False) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        a.setCheckable(checkable)
        (a.toggled if checkable else a.triggered).connect(slot)
        menu.addAction(a)
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.open_action = self._action(f, "&Open image…", self._open_image, QKeySequence.StandardKey.Open)
        self.paste_action = self._action(f, "&Paste image", self._paste, QKeySequence.StandardKey.Paste)
        self.folder_action = self._action(f, "Translate &folder…", self._folder)
        self.recent_images_menu = f.addMenu("Recent &images")
        self.recent_images_menu.aboutToShow.connect(self._fill_recent_images)
        f.addSeparator()
        self.save_action = self._action(f, "&Save result…", self._save, QKeySequence.StandardKey.Save)
        self.copy_action = self._action(f, "&Copy result", self._copy, QKeySequence.StandardKey.Copy)
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        m = mb.addMenu("&Model")
        self._action(m, "&Open model…", self.open_model_dialog, "Ctrl+Shift+O")
        self.default_action = self._action(m, "Use the &default model", lambda: self.ctx.load_model(None))
        self.recent_menu = m.addMenu("&Recent models")
        m.addSeparator()
        self.cpu_action = self._action(m, "Force &CPU", self._force_cpu_toggled, checkable=True)
        self.cpu_action.blockSignals(True)
        self.cpu_action.setChecked(self.settings.force_cpu)
        self.cpu_action.blockSignals(False)
        self._action(m, "&Teacher file (VGG-19)…", self.teacher_dialog)

        v = mb.addMenu("&View")
        self.next_tab_action = self._action(v, "&Next view", lambda: self._cycle(1), "Ctrl+Tab")
        self.prev_tab_action = self._action(v, "&Previous view", lambda: self._cycle(-1), "Ctrl+Shift+Tab")

        h = mb.addMenu("&Help")
        self._action(h, "&About SketchStudio", self.show_about)

    def _cycle(self, delta: int) -> None:
        self.tabs.setCurrentIndex((self.tabs.currentIndex() + delta) % self.tabs.count())

    def _fill_recent_images(self) -> None:
        menu = self.recent_images_menu
        menu.clear()
        for p in self.settings.recent("images"):
            a = menu.addAction(Path(p).name)
            a.setToolTip(p)
            a.triggered.connect(lambda _=False, p=p: self._open_recent_image(p))
        if menu.isEmpty():
            menu.addAction("(none yet)").setEnabled(False)

    def _open_recent_image(self, path: str) -> None:
        if self.translate_view is not None:
            self.show_view("Translate")
            self.translate_view.load_path(path)

    def _open_image(self) -> None:
        if self.translate_view is not None:
            self.show_view("Translate")
            self.translate_view.open_dialog()

    def _paste(self) -> None:
        if self.translate_view is not None:
            self.show_view("Translate")
            self.translate_view.paste_from_clipboard()

    def _folder(self) -> None:
        if self.translate_view is not None:
            self.translate_view.folder_dialog()

    def _save(self) -> None:
        if self.translate_view is not None:
            self.translate_view.save_dialog()

    def _copy(self) -> None:
        if self.translate_view is not None:
            self.translate_view.copy_result()

    # --- model & device -----------------------------------------------------------------------
    def open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a SketchStudio model",
                                              self.settings.last_dir("models"), MODEL_FILTER)
        if path:
            self.settings.set_last_dir("models", path)
            self.ctx.load_model(path)

    def teacher_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "VGG-19 teacher weights",
                                              self.settings.teacher_path or str(Path.home()),
                                              "Weights (*.pth *.safetensors);;All files (*)")
        if path:
            self.ctx.set_teacher_path(path)
            if self.train_panel is not None:
                self.train_panel.teacher_field.set_text(path, emit=False)
            if self.feature_view is not None:
                self.feature_view.refresh()

    def _force_cpu_toggled(self, on: bool) -> None:
        self.settings.force_cpu = on
        self.device_label.setText("Device: CPU (forced)" if on else "Device: switching…")
        self.ctx.reload_model()

    def _model_combo_activated(self, index: int) -> None:
        data = self.model_combo.itemData(index)
        if data == _OPEN:
            self._refresh_models()  # put the selection back on the current model
            self.open_model_dialog()
        elif data == "":
            self.ctx.load_model(None)
        elif data:
            self.ctx.load_model(str(data))

    def _refresh_models(self) -> None:
        """Rebuild the model picker and the recent-models menu."""
        current = self.ctx.model
        combo = self.model_combo
        combo.blockSignals(True)
        combo.clear()
        if default_model_path() is not None:
            combo.addItem("Default model (kt-cufs)", "")
        recent = self.settings.recent("models")
        if current is not None and not current.is_default and current.path not in recent:
            recent = [current.path, *recent]
        for p in recent:
            combo.addItem(_short_model_name(p), p)
            combo.setItemData(combo.count() - 1, p, Qt.ItemDataRole.ToolTipRole)
        if current is None:
            combo.insertItem(0, "No model loaded", None)
        combo.insertSeparator(combo.count())
        combo.addItem("Open model…", _OPEN)
        want = None if current is None else ("" if current.is_default else current.path)
        idx = combo.findData(want) if want is not None else 0
        combo.setCurrentIndex(max(idx, 0))
        combo.blockSignals(False)
        self.default_action.setEnabled(default_model_path() is not None)
        self.recent_menu.clear()
        for p in self.settings.recent("models"):
            a = self.recent_menu.addAction(_short_model_name(p))
            a.setToolTip(p)
            a.triggered.connect(lambda _=False, p=p: self.ctx.load_model(p))
        self.recent_menu.setEnabled(bool(self.settings.recent("models")))

    def _model_changed(self, info: ModelInfo | None) -> None:
        self._refresh_models()
        if info is None:
            self.setWindowTitle("SketchStudio")
            self.model_label.setText("No model")
            self.model_info.setText("open a checkpoint or train one")
            self.model_info.setToolTip("")
            self.device_label.setText("Device: –")
            return
        name = _short_model_name(info.path)
        self.setWindowTitle(f"SketchStudio — {name}")
        self.model_label.setText(f"Model: {name}")
        dirs = " + ".join("G" if d == "photo2sketch" else "F" for d in info.directions)
        self.model_info.setText(f"{dirs} · width {info.ngf} · {info.n_blocks} blocks · "
                                f"{info.image_size}² · step {info.step}")
        self.model_info.setToolTip(info.quality())
        forced = " (forced)" if self.settings.force_cpu else ""
        note = f" — {info.fallback_note}" if info.fallback_note else ""
        self.device_label.setText(f"Device: {info.device_name}{forced}")
        self.device_label.setToolTip(note.strip(" —"))
        self.statusBar().showMessage(f"Loaded {info.path} in {info.load_ms:.0f} ms{note}", 8000)

    def _preparing(self, text: str) -> None:
        self.prepare_label.setText(text)
        self.statusBar().showMessage(text, 10000)

    def _engine_changed(self, describe: str, note: str) -> None:
        forced = " (forced)" if self.settings.force_cpu else ""
        self.device_label.setText(f"Device: {describe}{forced}")
        self._preparing(f"Fast path: {note}" if note else "Fast path decided.")

    def _device_changed(self, name: str, note: str) -> None:
        self.device_label.setText(f"Device: {name} (fallback)")
        self.device_label.setToolTip(note)

    # --- about, close -------------------------------------------------------------------------
    def show_about(self) -> None:
        """A non-modal About box with the licences of the data and the weights."""
        box = QMessageBox(self)
        box.setWindowTitle("About SketchStudio")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(ABOUT_HTML)
        box.setIconPixmap(self.windowIcon().pixmap(96, 96))
        box.setStandardButtons(QMessageBox.StandardButton.Close)
        box.setModal(False)
        box.show()
        self.about_box = box

    def _training_stopped(self) -> None:
        if self._close_after_training:
            self.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        tp = self.train_panel
        if tp is not None and tp.is_training:
            event.ignore()
            if self._close_after_training:
                return  # already cancelling; the window closes when the checkpoint is written
            answer = QMessageBox.question(
                self, "Training is running",
                "A training run is in progress. Stop it and close SketchStudio?\n\nA checkpoint "
                "is saved first, so the run can be resumed later (Train ▸ Resume a run…).",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No)
            if answer == QMessageBox.StandardButton.Yes:
                self._close_after_training = True
                tp.cancel()
                self.message_bar.show_message("info", "Saving a checkpoint before closing…")
            return
        for view in self.views.values():  # views stop their own worker threads
            stop = getattr(view, "shutdown", None)
            if callable(stop):
                stop()
        self.settings.set_geometry(self.saveGeometry())
        self.settings.set_current_tab(self.tabs.currentIndex())
        self.settings.sync()
        self.ctx.shutdown()
        event.accept()


def _short_model_name(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.name in CHECKPOINT_NAMES else p.name
