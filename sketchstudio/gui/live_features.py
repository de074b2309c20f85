"""Live feature maps while training: one student layer next to the teacher layer it imitates.

The trainer renders the grids itself (``Trainer(preview_features=True)``, see
:func:`sketchstudio.features.transfer_pairs`) for the fixed preview pair at every preview, so this
widget only picks which of the 12 pairs to show; switching layers needs no computation.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from sketchstudio.features import TapPair
from sketchstudio.vocab import TAP_NAMES

from .image_pane import ImagePane

_NETWORKS = (("G", "G (photo → sketch)"), ("F", "F (sketch → photo)"))
_FED = {"P": "the photo", "S": "the sketch"}


class LiveFeatures(QGroupBox):
    """Student vs teacher channel grids from the latest training preview."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Feature maps (preview pair)", parent)
        self.pairs: dict[tuple[str, str], TapPair] = {}
        self.step: int | None = None
        self.network_combo = QComboBox()
        for key, label in _NETWORKS:
            self.network_combo.addItem(label, key)
        self.layer_combo = QComboBox()
        for name in TAP_NAMES:
            self.layer_combo.addItem(name, name)
        self.layer_combo.setCurrentIndex(TAP_NAMES.index("DC1"))
        self.student_pane = ImagePane("Student", "Starts with the first preview", smooth=False)
        self.teacher_pane = ImagePane("Teacher", "", smooth=False)
        for p in (self.student_pane, self.teacher_pane):
            p.canvas.setMinimumSize(120, 120)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(mid);")

        top = QHBoxLayout()
        top.addWidget(self.network_combo, 1)
        top.addWidget(QLabel("Layer:"))
        top.addWidget(self.layer_combo)
        panes = QHBoxLayout()
        panes.addWidget(self.student_pane)
        panes.addWidget(self.teacher_pane)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(panes, 1)
        lay.addWidget(self.note)
        self.network_combo.currentIndexChanged.connect(lambda _: self._show())
        self.layer_combo.currentIndexChanged.connect(lambda _: self._show())

    @property
    def selected(self) -> tuple[str, str]:
        return str(self.network_combo.currentData()), str(self.layer_combo.currentData())

    def select(self, network: str, layer: str) -> None:
        self.network_combo.setCurrentIndex(self.network_combo.findData(network))
        self.layer_combo.setCurrentIndex(self.layer_combo.findData(layer))

    def show_pairs(self, step: int, pairs: Sequence[TapPair]) -> None:
        """Keep the grids of one preview and show the selected pair."""
        self.step = step
        self.pairs = {(p.network, p.layer): p for p in pairs}
        self._show()

    def clear(self) -> None:
        self.pairs, self.step = {}, None
        self._show()

    def _show(self) -> None:
        p = self.pairs.get(self.selected)
        if p is None:
            self.student_pane.set_title("Student")
            self.teacher_pane.set_title("Teacher")
            self.student_pane.set_image(None)
            self.teacher_pane.set_image(None)
            self.note.setText("")
            return
        c, h, w = p.student_shape
        tc, th, tw = p.teacher_shape
        self.student_pane.set_title(f"{p.network} · {p.layer}")
        self.student_pane.set_image(p.student, f"{c} ch × {h}×{w}")
        self.teacher_pane.set_title(f"Teacher-{p.teacher_side} · {p.teacher_tap}")
        self.teacher_pane.set_image(p.teacher, f"{tc} ch × {th}×{tw}")
        self.note.setText(f"Step {self.step}: the strongest channels of {p.network}'s {p.layer} and "
                          f"of the VGG-19 {p.teacher_tap} it learns from, fed {_FED[p.teacher_side]}.")
