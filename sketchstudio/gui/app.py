"""Entry point of the desktop app (`sketchstudio`, `make run`).

Start-up order matters for how fast the window appears: Qt first, the window shown, and only then
the model load, which is when torch gets imported (in the compute thread). Nothing imported by
this module at import time pulls in torch; a test checks it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sketchstudio import __version__
from sketchstudio.resources import icon_path

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sketchstudio",
                                description="SketchStudio: face photo ↔ sketch desktop app.")
    p.add_argument("image", nargs="?", help="an image (or folder) to open at start")
    p.add_argument("--model", help="a checkpoint (.safetensors or run folder) instead of the default")
    p.add_argument("--settings", help="use this INI file for settings (portable mode, tests)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.add_argument("--version", action="version", version=f"SketchStudio {__version__}")
    # for benchmarks/bench_gui.py: print a line once the window is shown, then quit
    p.add_argument("--exit-when-shown", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from .settings import APPLICATION, ORGANIZATION, Settings

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("SketchStudio")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("sketchstudio")
    icon = icon_path()
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))

    from .main_window import MainWindow

    settings = Settings.at(args.settings) if args.settings else Settings()
    window = MainWindow(settings)
    window.show()
    if args.exit_when_shown:
        def report() -> None:
            sys.stdout.write(f"shown torch_loaded={'torch' in sys.modules}\n")
            sys.stdout.flush()
            window.close()
            app.quit()

        QTimer.singleShot(0, report)
    else:
        QTimer.singleShot(0, lambda: window.start(model=args.model, image=args.image))
    return app.exec()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
