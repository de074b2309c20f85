"""Entry point of the desktop app (`sketchstudio`, `make run`).

Start-up order matters for how fast the window appears: Qt first, the window shown, and only then
the model load, which is when torch gets imported (in the compute thread). Nothing imported by
this module at import time pulls in torch; a test checks it.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
from pathlib import Path

from sketchstudio import __version__
from sketchstudio.resources import icon_path

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: log file kept per user (see user_dirs); rotated so a long-lived install cannot fill the disk
LOG_FILE_BYTES, LOG_FILE_COUNT = 1 << 20, 3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sketchstudio",
                                description="SketchStudio: face photo ↔ sketch desktop app.")
    p.add_argument("image", nargs="?", help="an image (or folder) to open at start")
    p.add_argument("--model", help="a checkpoint (.safetensors or run folder) instead of the default")
    p.add_argument("--settings", help="use this INI file for settings (portable mode, tests)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    desk = p.add_mutually_exclusive_group()
    desk.add_argument("--install-desktop", action="store_true",
                      help="add SketchStudio to the desktop's menu (entry, icons, AppStream "
                           "metainfo under $XDG_DATA_HOME) and quit")
    desk.add_argument("--uninstall-desktop", action="store_true",
                      help="remove what --install-desktop wrote and quit")
    p.add_argument("--self-test", metavar="OUT", type=Path,
                   help="check this installation: load the model, translate the sample photo in "
                        "the window, save the result to OUT (PNG/JPEG), print a JSON line, quit "
                        "(exit code 0 = it worked)")
    p.add_argument("--version", action="version", version=f"SketchStudio {__version__}")
    # for benchmarks/bench_gui.py: print a line once the window is shown, then quit
    p.add_argument("--exit-when-shown", action="store_true", help=argparse.SUPPRESS)
    return p


def desktop_command(install: bool) -> int:
    """``--install-desktop`` / ``--uninstall-desktop``: no Qt, no display needed."""
    from sketchstudio import desktop

    try:
        paths = desktop.install() if install else desktop.uninstall()
    except desktop.DesktopIntegrationError as exc:
        sys.stderr.write(f"sketchstudio: {exc}\n")
        return 1
    verb = "wrote" if install else "removed"
    sys.stdout.write(f"{verb} {len(paths)} file(s)" + "".join(f"\n  {p}" for p in paths) + "\n")
    return 0


def user_dirs() -> dict[str, Path]:
    """Per-user folders where QStandardPaths puts them on this OS: settings (QSettings' native
    store, not a path here), caches, logs. The core's caches (gallery indexes) follow through
    ``$SKETCHSTUDIO_CACHE_DIR`` unless the user set it; logs go to the state folder (Qt's
    StateLocation, ``~/.local/state/...`` on Linux)."""
    from PySide6.QtCore import QStandardPaths

    loc = QStandardPaths.StandardLocation
    cache = Path(QStandardPaths.writableLocation(loc.CacheLocation))
    state = Path(QStandardPaths.writableLocation(loc.StateLocation))
    return {"cache": cache, "logs": state / "logs"}


def _log_to_file(folder: Path, level: int) -> Path | None:
    """A rotating log file: an app started from the desktop menu has no terminal for stderr."""
    path = folder / "sketchstudio.log"
    root = logging.getLogger()
    if any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        return path  # main() ran before in this process (tests)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_FILE_BYTES,
                                                       backupCount=LOG_FILE_COUNT, encoding="utf-8",
                                                       delay=True)
    except OSError as exc:
        log.warning("no log file in %s: %s", folder, exc)
        return None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(level)
    root.addHandler(handler)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    level = logging.INFO if args.verbose or args.self_test else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT)
    if args.install_desktop or args.uninstall_desktop:
        return desktop_command(args.install_desktop)
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:  # Qt would abort on a missing display or xcb library
        from .platform_check import check_platform

        problem, env = check_platform(os.environ)
        if problem:
            sys.stderr.write(problem + "\n")
            return 2
        for key, value in env.items():
            log.warning("X11 libraries missing; using Qt's %s plugin (%s=%s)", value, key, value)
            os.environ[key] = value

    from sketchstudio.desktop import APP_ID

    from .settings import APPLICATION, ORGANIZATION, Settings

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("SketchStudio")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APP_ID)  # Wayland: matches the window to --install-desktop's entry
    dirs = user_dirs()
    os.environ.setdefault("SKETCHSTUDIO_CACHE_DIR", str(dirs["cache"]))
    log_file = _log_to_file(dirs["logs"], level)
    log.info("SketchStudio %s; log file %s; caches in %s", __version__, log_file,
             os.environ["SKETCHSTUDIO_CACHE_DIR"])
    icon = icon_path()
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    else:
        log.warning("application icon %s is missing (incomplete installation?)", icon)

    from .main_window import MainWindow

    settings = Settings.at(args.settings) if args.settings else Settings()
    window = MainWindow(settings)
    window.show()
    if args.self_test:
        from .selftest import SelfTest

        test = SelfTest(app, window, args.self_test, args.model)
        QTimer.singleShot(0, test.start)
    elif args.exit_when_shown:
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
