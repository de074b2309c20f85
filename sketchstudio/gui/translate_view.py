"""Translate view: drop / open / paste a face, see input, aligned crop and result side by side.

The view only collects what the user wants (source, direction, alignment, eye positions) into a
:class:`TranslateRequest` and displays the :class:`TranslateResult` that comes back; decoding,
alignment and the network all run in the compute thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressDialog,
    QPushButton,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from sketchstudio.resources import sample_images

from .context import AppContext
from .image_pane import ImagePane
from .qtimage import from_qimage, to_qimage
from .workers import (
    DIRECTION_LABELS,
    PHOTO2SKETCH,
    SKETCH2PHOTO,
    BatchSummary,
    BatchWorker,
    ModelInfo,
    TranslateRequest,
    TranslateResult,
    start_worker,
)

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff);;All files (*)"
SAVE_FILTERS = {"PNG image (*.png)": ".png", "JPEG image (*.jpg *.jpeg)": ".jpg"}


def _option(text: str, checked: bool, tip: str) -> QCheckBox:
    """A toolbar check box, started from the saved setting it mirrors."""
    box = QCheckBox(text)
    box.setToolTip(tip)
    box.setChecked(checked)
    return box


class EmptyState(QFrame):
    """Shown while no model is loaded: says what to do instead of showing empty panes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("<h2>No model loaded</h2>")
        # explicit line breaks, no word wrap: a wrapped rich-text label in a stacked page gets a
        # wrong height and loses its last lines
        self.text = QLabel(
            "SketchStudio needs a trained model to turn photos into sketches and back.<br><br>"
            "• <b>Open a model</b>: a <tt>.safetensors</tt> checkpoint or a training run folder<br>"
            "&nbsp;&nbsp;&nbsp;(Model ▸ Open model…, Ctrl+Shift+O).<br>"
            "• <b>Train one</b>: in the <b>Train</b> tab, choose a folder with <tt>photos/</tt> and "
            "<tt>sketches/</tt><br>&nbsp;&nbsp;&nbsp;(same file names) and press Start.<br>"
            "• The shipped default model (<tt>sketchstudio/assets/models/kt-cufs.safetensors</tt>) is<br>"
            "&nbsp;&nbsp;&nbsp;loaded automatically once it is installed.")
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.open_button = QPushButton("Open model…")
        self.train_button = QPushButton("Train a model…")
        self.title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.train_button)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addStretch(1)
        lay.addWidget(self.title)
        lay.addWidget(self.text, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addSpacing(12)
        lay.addLayout(buttons)
        lay.addStretch(2)


class TranslateView(QWidget):
    """Photo ↔ sketch for one image at a time, plus folder batches."""

    open_model_requested = Signal()
    train_requested = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setAcceptDrops(True)
        self.result: TranslateResult | None = None
        self._sample_index = -1
        self._source: object = None  # what the next request translates (path, bytes or array)
        self._name = ""
        self._direction = "auto"
        self._eyes = None
        self._pending = 0
        self._batch: tuple[BatchWorker, object, QProgressDialog] | None = None
        self.last_batch: BatchSummary | None = None

        # --- controls ---
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Open a photo or sketch (Ctrl+O)")
        self.paste_button = QPushButton("Paste")
        self.paste_button.setToolTip("Translate the image on the clipboard (Ctrl+V)")
        self.folder_button = QPushButton("Folder…")
        self.folder_button.setToolTip("Translate every image in a folder into another folder")
        self.sample_button = QPushButton("Sample")
        self.sample_button.setToolTip("Try it on a sample photo (NASA portrait, public domain)")
        self.sample_button.setVisible(bool(sample_images()))
        self.p2s_button = QToolButton()
        self.p2s_button.setText("Photo → Sketch")
        self.s2p_button = QToolButton()
        self.s2p_button.setText("Sketch → Photo")
        self.direction_group = QButtonGroup(self)
        for b, d in ((self.p2s_button, PHOTO2SKETCH), (self.s2p_button, SKETCH2PHOTO)):
            b.setCheckable(True)
            b.setProperty("direction", d)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            self.direction_group.addButton(b)
        self.direction_group.setExclusive(True)
        self.auto_label = QLabel("")
        self.auto_label.setStyleSheet("color: palette(mid);")
        self.align_check = _option("Align faces", ctx.settings.align_faces,
                                   "Detect the face and align it by the eyes (untick for crops "
                                   "that are already aligned, such as CUFS)")
        self.portrait_check = _option("Portrait", ctx.settings.portrait,
                                      "Photo → sketch: draw the head and shoulders around the face "
                                      "in one style, in the photo's own orientation, on white "
                                      "paper (needs “Align faces”)")
        self.paste_check = _option("Paste back", ctx.settings.paste_back,
                                   "Replace the face inside the original colour photo with the "
                                   "translated face crop (the rest of the photo stays as it is)")
        self.grey_check = _option("Grey sketch", ctx.settings.grey_sketch,
                                  "Photo → sketch results in pencil grey (untick to see the "
                                  "model's three output channels as they are)")
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save the result as PNG or JPEG (Ctrl+S)")
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the result to the clipboard (Ctrl+C)")

        bar = QHBoxLayout()
        for w in (self.open_button, self.paste_button, self.folder_button, self.sample_button):
            bar.addWidget(w)
        bar.addSpacing(16)
        bar.addWidget(QLabel("Direction:"))
        bar.addWidget(self.p2s_button)
        bar.addWidget(self.s2p_button)
        bar.addWidget(self.auto_label)
        bar.addSpacing(16)
        bar.addWidget(self.align_check)
        bar.addWidget(self.portrait_check)
        bar.addWidget(self.paste_check)
        bar.addWidget(self.grey_check)
        bar.addStretch(1)
        bar.addWidget(self.save_button)
        bar.addWidget(self.copy_button)

        # --- panes ---
        self.input_pane = ImagePane("Input", "Drop a face photo or sketch here\n(or a folder to "
                                    "translate all its images)\n\nCtrl+O to open · Ctrl+V to paste")
        self.crop_pane = ImagePane("Aligned crop", "The aligned face appears here.\nDrag the eye "
                                   "markers to correct the alignment.")
        self.result_pane = ImagePane("Result", "")
        panes = QHBoxLayout()
        panes.setSpacing(8)
        for p in (self.input_pane, self.crop_pane, self.result_pane):
            panes.addWidget(p, 1)
        self.panes = QWidget()
        self.panes.setLayout(panes)
        self.empty = EmptyState()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.panes)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.status)

        # --- wiring ---
        self.open_button.clicked.connect(self.open_dialog)
        self.paste_button.clicked.connect(self.paste_from_clipboard)
        self.folder_button.clicked.connect(self.folder_dialog)
        self.sample_button.clicked.connect(self.open_sample)
        self.direction_group.buttonClicked.connect(self._direction_clicked)
        self.align_check.toggled.connect(self._align_toggled)
        self.paste_check.toggled.connect(self._paste_toggled)
        self.portrait_check.toggled.connect(self._portrait_toggled)
        self.grey_check.toggled.connect(self._grey_toggled)
        self.save_button.clicked.connect(self.save_dialog)
        self.copy_button.clicked.connect(self.copy_result)
        self.empty.open_button.clicked.connect(self.open_model_requested)
        self.empty.train_button.clicked.connect(self.train_requested)
        self.crop_pane.canvas.markers_edited.connect(self._crop_eyes_edited)
        self.input_pane.canvas.points_picked.connect(self._eyes_picked)
        ctx.model_changed.connect(self._model_changed)
        ctx.model_loading.connect(self.status.setText)
        ctx.translated.connect(self._show_result)
        ctx.translate_worker.failed.connect(self._failed)
        ctx.translate_worker.no_face.connect(self._no_face)
        ctx.translate_worker.progress.connect(self._tile_progress)
        self._update_actions()

    # --- model state --------------------------------------------------------------------------
    def _model_changed(self, info: ModelInfo | None) -> None:
        self.stack.setCurrentWidget(self.panes if info is not None else self.empty)
        dirs = info.directions if info else []
        self.p2s_button.setEnabled(PHOTO2SKETCH in dirs)
        self.s2p_button.setEnabled(SKETCH2PHOTO in dirs)
        if info is not None:
            self.status.setText(f"Model {info.name} ready on {info.device_name}.")
            if self._source is not None:
                self.submit()  # show the current image with the new model
        self._update_actions()

    @property
    def has_model(self) -> bool:
        return self.ctx.model is not None or self.ctx.loading

    # --- inputs -------------------------------------------------------------------------------
    def open_sample(self) -> None:
        """Translate the next shipped sample face (cycles when there are several)."""
        samples = sample_images()
        if not samples:
            self.ctx.notify("warning", "No sample images are installed (sketchstudio/assets/samples/).")
            return
        self._sample_index = (self._sample_index + 1) % len(samples)
        p = samples[self._sample_index]
        self.set_source(str(p), f"sample: {p.name}")

    def load_path(self, path: str | Path) -> None:
        """Translate an image file, or batch-translate a folder."""
        p = Path(path)
        if p.is_dir():
            self.translate_folder(p)
            return
        self.ctx.settings.set_last_dir("open", p)
        self.ctx.settings.add_recent("images", p)
        self.set_source(str(p), p.name)

    def set_source(self, source: object, name: str) -> None:
        """A new image: direction back to automatic, manual eye positions forgotten."""
        self._source, self._name = source, name
        self._direction, self._eyes = "auto", None
        self.input_pane.canvas.pick_points(0)
        self.submit()

    def submit(self) -> None:
        """Queue a translation of the current source with the current options."""
        if self._source is None:
            return
        if not self.has_model:
            self.ctx.notify("warning", "No model is loaded yet. Open a model (Model ▸ Open model…) "
                            "or train one in the Train tab.")
            return
        self._pending = self.ctx.next_seq()
        self.ctx.translate(TranslateRequest(seq=self._pending, source=self._source,
                                            direction=self._direction,
                                            align=self.align_check.isChecked(), eyes=self._eyes,
                                            name=self._name,
                                            grey_sketch=self.grey_check.isChecked(),
                                            portrait=self._portrait_mode()))
        self.status.setText(f"Translating {self._name}…")

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a photo or sketch",
                                              self.ctx.settings.last_dir("open"), IMAGE_FILTER)
        if path:
            self.load_path(path)

    def folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Translate all images in a folder",
                                                self.ctx.settings.last_dir("batch"))
        if path:
            self.translate_folder(Path(path))

    def _take_mime(self, mime: QMimeData) -> bool:
        """Use dropped/pasted data: a local file or folder first, else raw image data."""
        for url in mime.urls() if mime.hasUrls() else []:
            if url.isLocalFile():
                self.load_path(url.toLocalFile())
                return True
        if mime.hasImage():
            img = mime.imageData()
            if img is not None and not img.isNull():
                self.set_source(from_qimage(img), "clipboard image")
                return True
        return False

    def paste_from_clipboard(self) -> None:
        if not self._take_mime(QGuiApplication.clipboard().mimeData()):
            self.ctx.notify("info", "The clipboard holds no image or image file.")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        if self._take_mime(event.mimeData()):
            event.acceptProposedAction()

    # --- options ------------------------------------------------------------------------------
    def set_direction(self, direction: str) -> None:
        """Force a direction ("auto" to guess from the image again) and re-run."""
        self._direction = direction
        self.submit()

    def _direction_clicked(self, button: QToolButton) -> None:
        self.set_direction(str(button.property("direction")))

    def _align_toggled(self, on: bool) -> None:
        self.ctx.settings.align_faces = on
        self._eyes = None if not on else self._eyes
        self.submit()

    def _portrait_mode(self) -> str | None:
        """"head" when the Portrait option is on (the workers draw it for photo→sketch only)."""
        if self.portrait_check.isChecked() and self.align_check.isChecked():
            return "head"
        return None

    def _portrait_toggled(self, on: bool) -> None:
        self.ctx.settings.portrait = on
        if on and self.result is not None and self.result.portrait is None \
                and self.result.direction == PHOTO2SKETCH:
            self.submit()
        else:
            self._show_output()

    def _tile_progress(self, seq: int, done: int, total: int) -> None:
        if seq == self._pending and total > 1:
            self.status.setText(f"Drawing the portrait of {self._name}: tile {min(done + 1, total)} "
                                f"of {total}…")

    def _paste_toggled(self, on: bool) -> None:
        self.ctx.settings.paste_back = on
        self._show_output()

    def _grey_toggled(self, on: bool) -> None:
        self.ctx.settings.grey_sketch = on
        if self.result is not None and self.result.direction == PHOTO2SKETCH:
            self.submit()

    def _crop_eyes_edited(self, points: list[tuple[float, float]]) -> None:
        """Eye markers dragged on the crop: map them to the original and align again."""
        r = self.result
        if r is None or r.matrix is None or len(points) != 2:
            return
        from sketchstudio.faces.geometry import apply_affine, invert_affine

        back = apply_affine(invert_affine(r.matrix), points)
        self._eyes = ((float(back[0, 0]), float(back[0, 1])), (float(back[1, 0]), float(back[1, 1])))
        self._source = r.original
        self.submit()

    def _eyes_picked(self, points: list[tuple[float, float]]) -> None:
        self._eyes = (points[0], points[1])
        self.submit()

    # --- results ------------------------------------------------------------------------------
    def _show_result(self, r: TranslateResult) -> None:
        if r.seq != self._pending:
            return
        self.result = r
        self._source = r.original  # re-runs reuse the decoded image
        h, w = r.original.shape[:2]
        self.input_pane.set_image(r.original, f"{r.name} · {w}×{h}")
        self.input_pane.canvas.set_markers(list(r.eyes) if r.eyes else None, draggable=False)
        ch, cw = r.crop.shape[:2]
        if r.aligned:
            self.crop_pane.set_image(r.crop, f"{cw}×{ch} · eyes by {r.align_method or 'alignment'}")
            self.crop_pane.canvas.set_markers(list(r.crop_eyes), draggable=True)
        else:
            self.crop_pane.set_image(r.crop, "not aligned (used as it is)")
            self.crop_pane.canvas.set_markers(None)
        for b in (self.p2s_button, self.s2p_button):
            b.setChecked(b.property("direction") == r.direction)
        self.auto_label.setText("(auto)" if r.auto else "(manual)")
        self.auto_label.setToolTip(f"Guessed from the image: {DIRECTION_LABELS[r.guessed_direction]}")
        self._show_output()
        self.status.setText(f"{r.name}: {DIRECTION_LABELS[r.direction]}"
                            f"{' (chosen automatically)' if r.auto else ''} in {r.elapsed_ms:.0f} ms "
                            f"on {r.device_name}." + ("  " + " ".join(r.notes) if r.notes else "")
                            + ("  Drag the eye markers to pick another face." if r.n_faces > 1
                               else ""))
        self._update_actions()

    def displayed_result(self) -> np.ndarray | None:
        """What Save and Copy take: the result pasted onto the original (Paste back), else the
        portrait (Portrait), else the translated crop."""
        r = self.result
        if r is None:
            return None
        if self.paste_check.isChecked() and r.pasted is not None:
            return r.pasted
        if self.portrait_check.isChecked() and r.portrait is not None:
            return r.portrait
        return r.output

    def _show_output(self) -> None:
        img = self.displayed_result()
        if img is None:
            return
        what = "sketch" if self.result.direction == PHOTO2SKETCH else "photo"
        if img is self.result.pasted:
            what += ", pasted back"
        elif img is self.result.portrait:
            what += " portrait"
        self.result_pane.set_title(f"Result ({what})")
        self.result_pane.set_image(img, f"{img.shape[1]}×{img.shape[0]}")

    def _failed(self, seq: int, message: str, detail: str) -> None:
        if seq != self._pending:
            return
        self.status.setText("Translation failed — see the message above.")
        self.ctx.notify("error", message, detail)

    def _no_face(self, seq: int, original: np.ndarray | None, message: str) -> None:
        if seq != self._pending:
            return
        if original is not None:
            self._source = original
            h, w = original.shape[:2]
            self.input_pane.set_image(original, f"{self._name} · {w}×{h}")
            self.input_pane.canvas.set_markers(None)
        self.crop_pane.set_image(None)
        self.result_pane.set_image(None)
        self.result = None
        self.input_pane.canvas.pick_points(2)
        self.status.setText("No face found: click the two eye centres on the input image.")
        self.ctx.notify("warning", f"{message} Click the centres of the two eyes on the input image "
                        "(the left one first), or untick “Align faces” for an already aligned crop.")
        self._update_actions()

    def _update_actions(self) -> None:
        has = self.result is not None
        self.save_button.setEnabled(has)
        self.copy_button.setEnabled(has)

    # --- outputs ------------------------------------------------------------------------------
    def save_to(self, path: str | Path) -> Path | None:
        """Save the displayed result; the format follows the suffix (PNG or JPEG)."""
        img = self.displayed_result()
        if img is None:
            self.ctx.notify("info", "Nothing to save yet: translate an image first.")
            return None
        from sketchstudio.errors import SketchStudioError
        from sketchstudio.imaging import save_image

        try:
            out = save_image(img, path)
        except SketchStudioError as exc:
            self.ctx.notify("error", str(exc))
            return None
        self.ctx.settings.set_last_dir("save", out)
        self.status.setText(f"Saved {out}.")
        return out

    def suggested_name(self) -> str:
        r = self.result
        stem = Path(r.name).stem if r and r.name else "result"
        what = "sketch" if r is None or r.direction == PHOTO2SKETCH else "photo"
        return f"{stem}_{what}.png"

    def save_dialog(self) -> None:
        if self.result is None:
            return
        start = str(Path(self.ctx.settings.last_dir("save")) / self.suggested_name())
        path, chosen = QFileDialog.getSaveFileName(self, "Save result", start, ";;".join(SAVE_FILTERS))
        if not path:
            return
        if Path(path).suffix.lower() not in (".png", ".jpg", ".jpeg"):
            path += SAVE_FILTERS.get(chosen, ".png")
        self.save_to(path)

    def copy_result(self) -> None:
        img = self.displayed_result()
        if img is not None:
            QGuiApplication.clipboard().setImage(to_qimage(img))
            self.status.setText("Result copied to the clipboard.")

    # --- batch --------------------------------------------------------------------------------
    def translate_folder(self, folder: Path, out_dir: str | None = None) -> None:
        """Translate every image in ``folder`` into an output folder, with a cancellable progress dialog."""
        if self.ctx.translator is None:
            self.ctx.notify("warning", "Load a model before translating a folder.")
            return
        if self._batch is not None:
            self.ctx.notify("info", "A folder is already being translated.")
            return
        from sketchstudio.imaging import is_image_path

        files = sorted(str(p) for p in Path(folder).iterdir() if p.is_file() and is_image_path(p))
        if not files:
            self.ctx.notify("warning", f"'{folder}' holds no images (.png, .jpg, .bmp, .webp, .tif).")
            return
        self.ctx.settings.set_last_dir("batch", folder)
        if out_dir is None:
            suggested = str(Path(folder).parent / f"{Path(folder).name}_sketchstudio")
            out_dir = QFileDialog.getExistingDirectory(
                self, f"Output folder for {len(files)} translated images", suggested)
            if not out_dir:
                return
        paste = self.paste_check.isChecked()
        worker = BatchWorker(self.ctx.translator, files, out_dir, direction=self._direction,
                             align=self.align_check.isChecked(), paste_back=paste,
                             grey_sketch=self.grey_check.isChecked(),
                             portrait=None if paste else self._portrait_mode())
        dialog = QProgressDialog(f"Translating {len(files)} images…", "Cancel", 0, len(files), self)
        dialog.setWindowTitle("Translate folder")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.canceled.connect(worker.cancel)
        worker.progress.connect(self._batch_progress)
        worker.finished.connect(self._batch_done)
        thread = start_worker(worker, "batch", worker.run)
        self._batch = (worker, thread, dialog)
        dialog.show()

    def cancel_batch(self) -> None:
        if self._batch is not None:
            self._batch[0].cancel()

    def shutdown(self) -> None:
        """Window closing: stop a running batch after its current image and wait for it."""
        if self._batch is not None:
            worker, thread, _ = self._batch
            worker.cancel()
            thread.quit()
            thread.wait()

    @property
    def batch_running(self) -> bool:
        return self._batch is not None

    def _batch_progress(self, done: int, total: int, name: str) -> None:
        if self._batch is not None:
            dialog = self._batch[2]
            dialog.setValue(done)
            if name:
                dialog.setLabelText(f"{done + 1} of {total}: {name}")

    def _batch_done(self, summary: BatchSummary) -> None:
        worker, thread, dialog = self._batch
        self._batch = None
        thread.quit()
        thread.wait()
        dialog.close()
        dialog.deleteLater()
        worker.deleteLater()
        thread.deleteLater()
        self.last_batch = summary
        n = len(summary.written)
        text = (f"{'Cancelled: ' if summary.cancelled else ''}{n} of {summary.total} images written "
                f"to {summary.out_dir}" + (f"; {len(summary.problems)} problem(s)." if summary.problems
                                           else "."))
        level = "warning" if summary.problems or summary.cancelled else "info"
        self.ctx.notify(level, text, "\n".join(summary.problems + summary.notes))
        self.status.setText(text)
