"""Non-modal messages: a coloured bar above the views, with the full detail one click away.

Modal dialogs stop a user mid-task and block tests; a bar says what happened, keeps the app usable
and offers the technical detail (paths, tracebacks) only to those who want it.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout

log = logging.getLogger(__name__)

_STYLE = {
    "info": ("#e8f1fb", "#1d4f91", "ℹ"),
    "warning": ("#fff4d6", "#7a5300", "⚠"),
    "error": ("#fde7e7", "#8a1c1c", "✖"),
}


class MessageBar(QFrame):
    """One message at a time; a newer message replaces the older one."""

    closed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("MessageBar")
        self.level = "info"
        self._icon = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_button = QPushButton("Details…")
        self.details_button.setCheckable(True)
        self.details_button.setFlat(True)
        self.close_button = QPushButton("✕")
        self.close_button.setFlat(True)
        self.close_button.setFixedWidth(28)
        self.close_button.setToolTip("Dismiss")
        self.detail = QPlainTextEdit()
        self.detail.setReadOnly(True)
        self.detail.setMaximumHeight(140)
        self.detail.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self._icon)
        row.addWidget(self.text, 1)
        row.addWidget(self.details_button)
        row.addWidget(self.close_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.addLayout(row)
        lay.addWidget(self.detail)
        self.details_button.toggled.connect(self.detail.setVisible)
        self.close_button.clicked.connect(self.dismiss)
        self.hide()

    def show_message(self, level: str, text: str, detail: str = "") -> None:
        """Show ``text`` (for people) with an optional ``detail`` (for bug reports)."""
        bg, fg, icon = _STYLE.get(level, _STYLE["info"])
        self.level = level
        self.setStyleSheet(f"#MessageBar {{ background: {bg}; border: 1px solid {fg}; border-radius: 4px; }}"
                           f"#MessageBar QLabel {{ color: {fg}; }}")
        self._icon.setText(icon)
        self.text.setText(text)
        self.detail.setPlainText(detail)
        self.details_button.setChecked(False)
        self.details_button.setVisible(bool(detail))
        self.show()
        getattr(log, "error" if level == "error" else "warning" if level == "warning" else "info")(
            "%s%s", text, f" | {detail.splitlines()[0]}" if detail else "")

    def dismiss(self) -> None:
        self.hide()
        self.closed.emit()
