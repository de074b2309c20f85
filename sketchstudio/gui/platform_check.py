"""Before Qt starts: is there a display, and are the system libraries its platform plugin needs there?

Without them Qt aborts the process (SIGABRT) with "could not load the Qt platform plugin 'xcb' …
Reinstalling the application may fix this", which sends users to reinstall SketchStudio when one
system package is missing. Checked here instead, by loading each library the xcb plugin of Qt 6
links to; the message names the packages to install on Debian/Ubuntu and Fedora. No Qt import:
this runs before the QApplication exists.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Mapping

#: library the xcb plugin loads → (Debian/Ubuntu package, Fedora package)
XCB_LIBRARIES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
}
#: platforms that need no display server (tests, headless use)
HEADLESS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def chosen_platform(env: Mapping[str, str]) -> str:
    """The plugin Qt will try: ``QT_QPA_PLATFORM`` (first of a ``a;b`` list), else Wayland in a
    Wayland session, else xcb."""
    wanted = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if wanted:
        return wanted
    return "wayland" if env.get("WAYLAND_DISPLAY") else "xcb"


def missing_xcb_libraries(loads: Callable[[str], bool] = _loads) -> list[str]:
    return [lib for lib in XCB_LIBRARIES if not loads(lib)]


def check_platform(env: Mapping[str, str], platform: str = sys.platform,
                   loads: Callable[[str], bool] = _loads) -> tuple[str | None, dict[str, str]]:
    """(message, environment changes): a message means "do not start Qt, print it, exit 2".

    When the xcb libraries are missing but a Wayland session is there, the app falls back to
    Qt's Wayland plugin (an environment change) instead of failing.
    """
    if not platform.startswith("linux"):
        return None, {}
    name = chosen_platform(env)
    if name in HEADLESS:
        return None, {}
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return ("sketchstudio: no display found (neither DISPLAY nor WAYLAND_DISPLAY is set). Start "
                "it from a desktop session, under `xvfb-run sketchstudio`, or with "
                "QT_QPA_PLATFORM=offscreen for scripted use."), {}
    if name != "xcb":
        return None, {}
    missing = missing_xcb_libraries(loads)
    if not missing:
        return None, {}
    if env.get("WAYLAND_DISPLAY"):
        return None, {"QT_QPA_PLATFORM": "wayland"}
    deb = " ".join(XCB_LIBRARIES[lib][0] for lib in missing)
    rpm = " ".join(XCB_LIBRARIES[lib][1] for lib in missing)
    return (f"sketchstudio: Qt's X11 (xcb) display plugin needs system libraries that are not "
            f"installed: {', '.join(missing)}.\n"
            f"  Debian/Ubuntu:  sudo apt-get install {deb}\n"
            f"  Fedora:         sudo dnf install {rpm}\n"
            "Then start SketchStudio again (nothing needs reinstalling)."), {}
