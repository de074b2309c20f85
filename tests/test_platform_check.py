"""Starting on a desktop that lacks Qt's xcb libraries, or with no display at all (issue 19 §6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sketchstudio.gui.platform_check import XCB_LIBRARIES, check_platform, chosen_platform


def _loads_all_but(*missing: str):
    return lambda lib: lib not in missing


def test_missing_xcb_libraries_name_the_packages_for_debian_and_fedora():
    msg, env = check_platform({"DISPLAY": ":0"}, "linux",
                              _loads_all_but("libxcb-cursor.so.0", "libxcb-icccm.so.4"))
    assert env == {}
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4" in msg
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4" in msg
    assert "sudo dnf install xcb-util-cursor xcb-util-wm" in msg
    assert "reinstall" in msg.lower() and "nothing needs reinstalling" in msg


def test_wayland_session_falls_back_to_the_wayland_plugin():
    msg, env = check_platform({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"},
                              "linux", _loads_all_but("libxcb-cursor.so.0"))
    assert msg is None and env == {"QT_QPA_PLATFORM": "wayland"}


def test_no_display_and_headless_platforms():
    msg, _ = check_platform({}, "linux", _loads_all_but())
    assert msg.startswith("sketchstudio: no display found") and "xvfb-run" in msg
    assert check_platform({"QT_QPA_PLATFORM": "offscreen"}, "linux", _loads_all_but(*XCB_LIBRARIES)) == (None, {})
    assert check_platform({}, "darwin", _loads_all_but()) == (None, {})
    assert check_platform({"DISPLAY": ":1"}, "linux", _loads_all_but()) == (None, {})
    assert chosen_platform({"QT_QPA_PLATFORM": "xcb:foo=1;offscreen"}) == "xcb"


def test_the_app_exits_2_with_one_line_when_there_is_no_display(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).parent.parent)}
    r = subprocess.run([sys.executable, "-m", "sketchstudio.gui.app"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip().splitlines()[0]]
    assert "no display found" in r.stderr
