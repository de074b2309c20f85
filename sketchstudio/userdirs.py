"""Per-user folders of the Qt-free core (caches of the CLIs and of the library), per OS.

The same conventions as the ``platformdirs`` package (and as ``QStandardPaths``, which the GUI
uses): the XDG base directories on Linux/BSD, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%``
on Windows. Written out here instead of adding a dependency for three branches; the core must
not import Qt, so it cannot ask ``QStandardPaths`` itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_DIR_NAME = "sketchstudio"
#: Windows and macOS folders carry the display name, as their own apps' folders do
APP_DISPLAY_NAME = "SketchStudio"
CACHE_ENV = "SKETCHSTUDIO_CACHE_DIR"


def _xdg(var: str, default: Path) -> Path:
    """An XDG base directory: the variable when it is an absolute path (the spec says relative
    ones are invalid and ignored), else the default."""
    value = os.environ.get(var, "")
    return Path(value) if value and os.path.isabs(value) else default


def user_cache_dir() -> Path:
    """Where the core keeps rebuildable data (gallery indexes): ``$SKETCHSTUDIO_CACHE_DIR``, else

    - Linux/BSD: ``$XDG_CACHE_HOME/sketchstudio`` (``~/.cache/sketchstudio``)
    - macOS: ``~/Library/Caches/SketchStudio``
    - Windows: ``%LOCALAPPDATA%\\SketchStudio\\Cache``

    The GUI sets ``$SKETCHSTUDIO_CACHE_DIR`` to QStandardPaths' cache location at start-up.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / APP_DISPLAY_NAME / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / APP_DISPLAY_NAME
    return _xdg("XDG_CACHE_HOME", home / ".cache") / APP_DIR_NAME
