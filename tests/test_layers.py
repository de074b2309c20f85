"""Architecture contract: the core and the trainer never import Qt (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
for name in ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6"):
    sys.modules[name] = None  # any import of these now raises ImportError
import importlib, pkgutil, sketchstudio, trainer
skip = ("sketchstudio.gui",)
for pkg in (sketchstudio, trainer):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if not m.name.startswith(skip):
            importlib.import_module(m.name)
print("ok")
"""


def test_core_and_trainer_import_without_qt():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")
