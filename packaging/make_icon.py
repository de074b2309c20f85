"""Draw the SketchStudio app icon: sketchstudio/assets/icons/sketchstudio.svg and .png (256 px) + 32/64 px.

A face split down the middle: the left half a colour photo, the right half a pencil sketch of the
same face on paper, with a pencil in the corner. The SVG is written by hand here (so the artwork is
reviewable as text) and rendered to PNG with Qt's SVG renderer. Run it again after editing:

    .venv/bin/python packaging/make_icon.py
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("make_icon")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "sketchstudio" / "assets" / "icons"

# Each half is drawn with its own paths (no clip paths: Qt's SVG renderer implements SVG Tiny 1.2,
# which has none). Left half: the colour photo; right half: the pencil sketch on paper.
SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">
  <defs>
    <linearGradient id="bg" x1="0" y1="0" x2="1" y2="1">
      <stop offset="0" stop-color="#27325e"/>
      <stop offset="1" stop-color="#1c7a8c"/>
    </linearGradient>
    <linearGradient id="skin" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="#f6d0ad"/>
      <stop offset="1" stop-color="#d9976d"/>
    </linearGradient>
    <linearGradient id="backdrop" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="#8fc1d8"/>
      <stop offset="1" stop-color="#5d93b3"/>
    </linearGradient>
  </defs>
  <rect x="8" y="8" width="240" height="240" rx="52" fill="url(#bg)"/>
  <rect x="40" y="36" width="176" height="184" rx="14" fill="#fbf9f2"/>
  <!-- photo half -->
  <path d="M128 36 L54 36 Q40 36 40 50 L40 206 Q40 220 54 220 L128 220 Z" fill="url(#backdrop)"/>
  <path d="M112 178 L112 200 L128 200 L128 178 Z" fill="#d48e63"/>
  <path d="M64 220 C76 206 100 202 112 199 L128 199 L128 220 Z" fill="#3d5a80"/>
  <path d="M128 74 C98 74 84 98 84 128 C84 162 104 186 128 186 Z" fill="url(#skin)"/>
  <path d="M128 60 C98 60 76 84 80 124 C81 117 82 110 86 104 C102 100 116 98 128 94 Z" fill="#4a2e1f"/>
  <ellipse cx="110" cy="128" rx="6" ry="4.5" fill="#2b1d14"/>
  <path d="M100 116 Q110 111 119 115" stroke="#4a2e1f" stroke-width="3" fill="none" stroke-linecap="round"/>
  <path d="M124 141 Q121 150 128 152" stroke="#b87552" stroke-width="3" fill="none" stroke-linecap="round"/>
  <path d="M112 164 Q120 170 128 170" stroke="#a4453c" stroke-width="4" fill="none" stroke-linecap="round"/>
  <!-- sketch half -->
  <g fill="none" stroke="#2f2f2f" stroke-linecap="round" stroke-linejoin="round">
    <path d="M128 186 C152 186 172 162 172 128 C172 98 158 74 128 74" stroke-width="3.5"/>
    <path d="M128 60 C160 60 182 84 176 126 C170 104 158 92 142 88 C137 91 132 93 128 94" stroke-width="3"/>
    <path d="M144 180 L144 199 C156 203 180 207 192 220" stroke-width="3"/>
    <path d="M136 66 L168 104 M146 63 L175 98 M156 65 L178 90 M131 72 L158 104" stroke-width="1.6" stroke="#6a6a6a"/>
    <path d="M161 152 L170 142 M157 162 L168 150 M151 171 L163 158" stroke-width="1.4" stroke="#8a8a8a"/>
    <ellipse cx="146" cy="128" rx="6" ry="4.5" stroke-width="2.5"/>
    <circle cx="146" cy="128" r="2" fill="#2f2f2f"/>
    <path d="M137 115 Q146 111 156 116" stroke-width="3"/>
    <path d="M132 141 Q135 150 128 152" stroke-width="2.2"/>
    <path d="M128 170 Q136 170 144 164" stroke-width="2.6"/>
  </g>
  <line x1="128" y1="38" x2="128" y2="218" stroke="#ffffff" stroke-width="3" stroke-dasharray="6 5"/>
  <!-- pencil -->
  <g transform="translate(196 196) rotate(-45)">
    <rect x="-46" y="-9" width="70" height="18" rx="3" fill="#f2b632"/>
    <rect x="-46" y="-9" width="70" height="6" fill="#f7cd5c"/>
    <rect x="-58" y="-9" width="14" height="18" rx="3" fill="#e07a8f"/>
    <rect x="-46" y="-9" width="6" height="18" fill="#b8b8b8"/>
    <path d="M24 -9 L44 0 L24 9 Z" fill="#f3dcb5"/>
    <path d="M37 -3 L44 0 L37 3 Z" fill="#2f2f2f"/>
  </g>
</svg>
"""


def render_png(svg_path: Path, png_path: Path, size: int) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - keeps Qt alive
    renderer = QSvgRenderer(str(svg_path))
    if not renderer.isValid():
        raise RuntimeError(f"Qt cannot parse {svg_path}")
    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(p, QRectF(0, 0, size, size))
    p.end()
    if not img.save(str(png_path)):
        raise RuntimeError(f"cannot write {png_path}")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    OUT.mkdir(parents=True, exist_ok=True)
    svg = OUT / "sketchstudio.svg"
    svg.write_text(SVG)
    render_png(svg, OUT / "sketchstudio.png", 256)
    for size in (32, 64, 128):
        render_png(svg, OUT / f"sketchstudio-{size}.png", size)
    log.info("wrote %s and PNGs (256, 128, 64, 32 px) in %s", svg.name, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
