"""An image display that scales to fit, with draggable markers and click-to-pick points.

Used for the input / aligned crop / result panes (eye markers you can drag to fix an alignment,
or click when no face was found), for training previews and for feature maps (nearest-neighbour
scaling so that an 8×8 map stays a readable 8×8 grid, not a blur).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from .qtimage import to_qimage

if TYPE_CHECKING:
    import numpy as np

Point = tuple[float, float]
_MARKER_RADIUS = 7.0
_GRAB_RADIUS = 14.0
MARKER_COLORS = (QColor("#00c2ff"), QColor("#ff3d7f"))  # left eye, right eye


class ImageCanvas(QWidget):
    """Paints one image, letter-boxed; maps between widget and image pixel coordinates."""

    #: markers moved by dragging, in image coordinates, emitted once on mouse release
    markers_edited = Signal(list)
    #: the requested number of points was clicked (image coordinates), see :meth:`pick_points`
    points_picked = Signal(list)

    def __init__(self, parent: QWidget | None = None, smooth: bool = True,
                 placeholder: str = "") -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)
        self.setMouseTracking(True)
        self.smooth = smooth
        self.placeholder = placeholder
        self._image: QImage | None = None
        self.markers: list[Point] = []
        self.markers_draggable = False
        self._drag: int | None = None
        self._pick_n = 0
        self._picked: list[Point] = []

    # --- content ------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray | QImage | None) -> None:
        if image is None:
            self._image = None
        else:
            self._image = image if isinstance(image, QImage) else to_qimage(image)
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def image_size(self) -> QSize:
        return self._image.size() if self._image is not None else QSize(0, 0)

    def set_markers(self, points: list[Point] | None, draggable: bool = False) -> None:
        self.markers = [(float(x), float(y)) for x, y in (points or [])]
        self.markers_draggable = draggable
        self.update()

    def pick_points(self, n: int) -> None:
        """Collect the next ``n`` clicks on the image (e.g. the two eye centres)."""
        self._pick_n, self._picked = n, []
        self.setCursor(Qt.CursorShape.CrossCursor if n else Qt.CursorShape.ArrowCursor)
        self.update()

    @property
    def picking(self) -> bool:
        return self._pick_n > 0

    # --- geometry -----------------------------------------------------------------------------
    def image_rect(self) -> QRectF:
        """Where the image is drawn in widget coordinates (aspect kept, centred)."""
        if self._image is None or self._image.isNull():
            return QRectF()
        iw, ih = self._image.width(), self._image.height()
        s = min(self.width() / iw, self.height() / ih)
        w, h = iw * s, ih * s
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def to_image_coords(self, pos: QPointF) -> Point:
        r = self.image_rect()
        s = r.width() / self._image.width() if self._image is not None and r.width() else 1.0
        return ((pos.x() - r.x()) / s, (pos.y() - r.y()) / s)

    def to_widget_coords(self, pt: Point) -> QPointF:
        r = self.image_rect()
        s = r.width() / self._image.width() if self._image is not None and r.width() else 1.0
        return QPointF(r.x() + pt[0] * s, r.y() + pt[1] * s)

    def _clamp(self, pt: Point) -> Point:
        sz = self.image_size()
        return (min(max(pt[0], 0.0), sz.width() - 1.0), min(max(pt[1], 0.0), sz.height() - 1.0))

    # --- painting -----------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        # a neutral letter-box, so that white paper (sketches) stands out from the empty area
        p.fillRect(self.rect(), self.palette().window().color().darker(108))
        if self._image is None:
            p.setPen(self.palette().placeholderText().color())
            p.drawText(self.rect().adjusted(12, 12, -12, -12),
                       Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.smooth)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.drawImage(self.image_rect(), self._image)
        p.setPen(QPen(self.palette().mid().color(), 1))
        p.drawRect(self.image_rect().adjusted(-0.5, -0.5, 0.5, 0.5))
        shown = self.markers if not self.picking else self._picked
        for i, pt in enumerate(shown):
            c = MARKER_COLORS[i % len(MARKER_COLORS)]
            centre = self.to_widget_coords(pt)
            p.setPen(QPen(QColor("white"), 3))
            p.drawEllipse(centre, _MARKER_RADIUS, _MARKER_RADIUS)
            p.setPen(QPen(c, 2))
            p.drawEllipse(centre, _MARKER_RADIUS, _MARKER_RADIUS)
            p.drawLine(centre + QPointF(-3, 0), centre + QPointF(3, 0))
            p.drawLine(centre + QPointF(0, -3), centre + QPointF(0, 3))
        if self.picking:
            p.setPen(QColor("#ff3d7f"))
            which = ("left", "right")[len(self._picked)] if len(self._picked) < 2 else ""
            p.drawText(self.rect().adjusted(6, 6, -6, -6), Qt.AlignmentFlag.AlignTop
                       | Qt.AlignmentFlag.AlignHCenter,
                       f"Click the {which} eye centre ({len(self._picked) + 1} of {self._pick_n})")

    # --- interaction --------------------------------------------------------------------------
    def _marker_at(self, pos: QPointF) -> int | None:
        best, best_d = None, _GRAB_RADIUS
        for i, pt in enumerate(self.markers):
            d = (self.to_widget_coords(pt) - pos).manhattanLength()
            if d <= best_d:
                best, best_d = i, d
        return best

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._image is None or event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        pos = event.position()
        if self.picking:
            if self.image_rect().contains(pos):
                self._picked.append(self._clamp(self.to_image_coords(pos)))
                if len(self._picked) >= self._pick_n:
                    picked = list(self._picked)
                    self.pick_points(0)
                    self.points_picked.emit(picked)
                self.update()
            return None
        if self.markers_draggable:
            self._drag = self._marker_at(pos)
        return None

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        pos = event.position()
        if self._drag is not None:
            self.markers[self._drag] = self._clamp(self.to_image_coords(pos))
            self.update()
        elif self.markers_draggable and not self.picking:
            self.setCursor(Qt.CursorShape.OpenHandCursor if self._marker_at(pos) is not None
                           else Qt.CursorShape.ArrowCursor)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._drag is not None:
            self._drag = None
            self.markers_edited.emit(list(self.markers))


class ImagePane(QWidget):
    """A titled :class:`ImageCanvas` with a caption line under it."""

    def __init__(self, title: str, placeholder: str = "", smooth: bool = True,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel(f"<b>{title}</b>")
        self.title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.canvas = ImageCanvas(self, smooth=smooth, placeholder=placeholder)
        self.caption = QLabel("")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("color: palette(mid);")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(3)
        lay.addWidget(self.title)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.caption)

    def set_title(self, title: str) -> None:
        self.title.setText(f"<b>{title}</b>")

    def set_image(self, image: np.ndarray | QImage | None, caption: str = "") -> None:
        self.canvas.set_image(image)
        self.caption.setText(caption)

    def has_image(self) -> bool:
        return self.canvas.image() is not None
