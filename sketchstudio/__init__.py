"""SketchStudio core: face photo <-> sketch synthesis via knowledge transfer.

The core package never imports Qt; the GUI lives in :mod:`sketchstudio.gui`.
"""

__version__ = "0.1.0"
