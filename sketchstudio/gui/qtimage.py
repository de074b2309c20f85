"""numpy RGB arrays <-> QImage, without going through torch or a file.

numpy is imported inside the functions: this module sits on the start-up path, and the window
should be on screen before the heavy imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QImage

if TYPE_CHECKING:
    import numpy as np


def to_qimage(arr: np.ndarray) -> QImage:
    """RGB (H, W, 3) or grey (H, W) ``uint8`` -> a QImage that owns its pixels (a deep copy)."""
    import numpy as np

    a = np.ascontiguousarray(arr)
    if a.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        h, w = a.shape
        return QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")
    h, w, c = a.shape
    fmt = QImage.Format.Format_RGB888 if c == 3 else QImage.Format.Format_RGBA8888
    return QImage(a.data, w, h, c * w, fmt).copy()


def from_qimage(img: QImage) -> np.ndarray:
    """Any QImage -> RGB (H, W, 3) ``uint8`` (alpha composited onto white, like imaging.load_image)."""
    import numpy as np

    if img.hasAlphaChannel():
        rgba = img.convertToFormat(QImage.Format.Format_RGBA8888)
        w, h = rgba.width(), rgba.height()
        a = np.frombuffer(rgba.constBits(), np.uint8).reshape(h, rgba.bytesPerLine())[:, :w * 4]
        a = a.reshape(h, w, 4).astype(np.float32)
        alpha = a[:, :, 3:4] / 255.0
        rgb = a[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(rgb.round().astype(np.uint8))
    rgb = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h = rgb.width(), rgb.height()
    a = np.frombuffer(rgb.constBits(), np.uint8).reshape(h, rgb.bytesPerLine())[:, :w * 3]
    return np.ascontiguousarray(a.reshape(h, w, 3))
