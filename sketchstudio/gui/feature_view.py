"""Feature maps: a student layer next to the teacher layer it learned from, for the current image.

The pairing is METHOD.md's (``G_TEACHER_PAIRS`` / ``F_TEACHER_PAIRS``): e.g. G's DC1 was trained to
match Teacher-P's relu2_1 on the photo; G's UC1 to match Teacher-S's relu2_1 on the sketch. For one
input image the input feeds its own side's teacher and the model's output stands in for the other
side. Maps are computed in the compute thread only while this view is visible.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from sketchstudio.vocab import TAP_NAMES

from .context import AppContext
from .image_pane import ImagePane
from .workers import PHOTO2SKETCH, FeatureMaps, FeatureRequest, TranslateResult

_SIDE_NAME = {"P": "Teacher-P (photo)", "S": "Teacher-S (sketch)"}
_LAYER_HELP = {
    "IC": "first conv, full resolution", "DC1": "down-conv, ½ resolution",
    "DC2": "down-conv, ¼ resolution", "Block": "9 SE-ResBlocks, ¼ resolution",
    "UC1": "up-conv, ½ resolution", "UC2": "up-conv, full resolution",
}


class FeatureView(QWidget):
    """Layer picker, top-k channel grids, PCA-to-RGB and heat maps for student and teacher."""

    #: new maps are on screen (FeatureMaps)
    maps_shown = Signal(object)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.result: TranslateResult | None = None
        self.maps: FeatureMaps | None = None
        self._dirty = False
        self._pending = 0

        self.layer_combo = QComboBox()
        for name in TAP_NAMES:
            self.layer_combo.addItem(f"{name} — {_LAYER_HELP[name]}", name)
        self.layer_combo.setCurrentIndex(TAP_NAMES.index("DC1"))
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 64)
        self.k_spin.setValue(16)
        self.k_spin.setToolTip("How many channels to show, strongest (highest mean activation) first")
        self.explain = QLabel("")
        self.explain.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Layer:"))
        top.addWidget(self.layer_combo)
        top.addSpacing(12)
        top.addWidget(QLabel("Top channels:"))
        top.addWidget(self.k_spin)
        top.addStretch(1)

        self.student_grid = ImagePane("Student", "", smooth=False)
        self.student_pca = ImagePane("PCA → RGB", "", smooth=False)
        self.student_heat = ImagePane("Activity", "", smooth=False)
        self.teacher_grid = ImagePane("Teacher", "", smooth=False)
        self.teacher_pca = ImagePane("PCA → RGB", "", smooth=False)
        self.teacher_heat = ImagePane("Activity", "", smooth=False)
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.addWidget(self.student_grid, 0, 0, 1, 2)
        grid.addWidget(self.student_pca, 1, 0)
        grid.addWidget(self.student_heat, 1, 1)
        grid.addWidget(self.teacher_grid, 0, 2, 1, 2)
        grid.addWidget(self.teacher_pca, 1, 2)
        grid.addWidget(self.teacher_heat, 1, 3)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        body = QWidget()
        body_lay = QVBoxLayout(body)
        body_lay.setContentsMargins(0, 0, 0, 0)
        body_lay.addLayout(grid, 1)
        body_lay.addWidget(self.explain)

        self.empty = QLabel("Translate an image in the <b>Translate</b> tab to see what the student "
                            "network computes at each layer, next to the teacher layer it learned from.")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(body)
        self.status = QLabel("")

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.status)

        self.layer_combo.currentIndexChanged.connect(lambda _: self.refresh())
        self.k_spin.valueChanged.connect(lambda _: self.refresh())
        ctx.translated.connect(self._new_result)
        ctx.feature_worker.maps_ready.connect(self._show_maps)
        ctx.feature_worker.failed.connect(self._failed)

    @property
    def layer(self) -> str:
        return str(self.layer_combo.currentData())

    def set_layer(self, layer: str) -> None:
        self.layer_combo.setCurrentIndex(TAP_NAMES.index(layer))

    def _new_result(self, r: TranslateResult) -> None:
        self.result = r
        self._dirty = True
        if self.isVisible():
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if self._dirty:
            self.refresh()

    def refresh(self) -> None:
        """Ask the compute thread for the maps of the current layer (only when visible)."""
        if self.result is None:
            return
        if not self.isVisible():
            self._dirty = True
            return
        self._dirty = False
        self._pending = self.ctx.next_seq()
        self.status.setText(f"Computing {self.layer} feature maps…")
        self.ctx.compute_features(FeatureRequest(self._pending, self.result, self.layer,
                                                 self.k_spin.value()))

    def _show_maps(self, m: FeatureMaps) -> None:
        if m.seq != self._pending:
            return
        self.maps = m
        self.stack.setCurrentIndex(1)
        c, h, w = m.student_shape
        net = "G (photo → sketch)" if m.network == "G" else "F (sketch → photo)"
        self.student_grid.set_title(f"Student {m.network} · {m.layer}")
        self.student_grid.set_image(m.student_grid, f"{c} channels × {h}×{w}; top {len(m.student_channels)} "
                                    f"by mean activation: {_short(m.student_channels)}")
        self.student_pca.set_image(m.student_pca, "first 3 principal components as R, G, B")
        self.student_heat.set_image(m.student_heat, "mean |activation|")
        fed = _fed(m, self.result)
        self.teacher_grid.set_title(f"{_SIDE_NAME[m.teacher_side]} · {m.teacher_tap}")
        if m.teacher_error:
            self.teacher_grid.canvas.placeholder = (
                "No teacher (VGG-19) weights available, so only the student side is shown.\n\n"
                + m.teacher_error)
            for pane in (self.teacher_grid, self.teacher_pca, self.teacher_heat):
                pane.set_image(None, "")
            self.teacher_grid.caption.setText("Set the file in Model ▸ Teacher file…")
        else:
            tc, th, tw = m.teacher_shape
            self.teacher_grid.set_image(m.teacher_grid, f"{tc} channels × {th}×{tw}, fed {fed}; top "
                                        f"{len(m.teacher_channels)}: {_short(m.teacher_channels)}")
            self.teacher_pca.set_image(m.teacher_pca, "first 3 principal components as R, G, B")
            self.teacher_heat.set_image(m.teacher_heat, "mean |activation|")
        self.explain.setText(
            f"<b>{net}</b>, layer <b>{m.layer}</b> was trained to imitate <b>{_SIDE_NAME[m.teacher_side]}"
            f" {m.teacher_tap}</b> (METHOD.md pairing). The teacher here sees {fed}. Each tile is one "
            "channel, scaled on its own; similar structure on both sides is the transferred knowledge.")
        self.status.setText(f"{m.layer}: computed in {m.elapsed_ms:.0f} ms.")
        self.maps_shown.emit(m)

    def _failed(self, seq: int, message: str, detail: str) -> None:
        if seq == self._pending:
            self.status.setText("Feature maps failed — see the message above.")
            self.ctx.notify("error", f"Feature maps: {message}", detail)


def _short(channels: list[int], n: int = 8) -> str:
    s = ", ".join(str(c) for c in channels[:n])
    return s + ("…" if len(channels) > n else "")


def _fed(m: FeatureMaps, r: TranslateResult | None) -> str:
    if r is None:
        return ""
    input_kind = "photo" if r.direction == PHOTO2SKETCH else "sketch"
    output_kind = "sketch" if r.direction == PHOTO2SKETCH else "photo"
    return (f"the input {input_kind}" if m.teacher_role == "input"
            else f"the model's output {output_kind}")
