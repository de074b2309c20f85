"""Desktop integration on freedesktop systems (Linux, BSD): menu entry, icons, AppStream metainfo.

``sketchstudio --install-desktop`` writes, under the user's ``$XDG_DATA_HOME`` (``~/.local/share``
by default), what a desktop needs to list the app in its menu, show its icon and offer it for
image files, and what a software centre needs to describe it:

    applications/org.sketchstudio.SketchStudio.desktop
    icons/hicolor/{32x32,64x64,128x128,256x256}/apps/org.sketchstudio.SketchStudio.png
    icons/hicolor/scalable/apps/org.sketchstudio.SketchStudio.svg
    metainfo/org.sketchstudio.SketchStudio.metainfo.xml

``--uninstall-desktop`` removes exactly those files. Nothing here needs Qt (it runs before a
QApplication exists, and without a display); the files are rendered from this module alone, so
the entry, the icons and the metainfo can never disagree about the app's id. A pip/pipx install
cannot write these itself (wheels have no post-install step), hence the explicit command.

The id is reverse-DNS as AppStream and the Desktop Entry spec ask; the GUI passes the same id to
``QGuiApplication.setDesktopFileName`` so Wayland compositors match windows to the entry.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from . import __version__
from .resources import ICON_SIZES, icon_for_size, icon_path

log = logging.getLogger(__name__)

APP_ID = "org.sketchstudio.SketchStudio"
#: X11 WM_CLASS class that Qt sets: the application name (gui.settings.APPLICATION)
WM_CLASS = "SketchStudio"
#: where the project is published; the metainfo's homepage, and the screenshots' base URL
#: (AppStream wants web URLs for screenshots, never file paths). Change both if it moves.
PROJECT_URL = "https://github.com/sketchstudio/sketchstudio"
SCREENSHOT_BASE_URL = "https://raw.githubusercontent.com/sketchstudio/sketchstudio/main/docs/screenshots"
#: (file in docs/screenshots, caption); the first is the default one
SCREENSHOTS = (
    ("translate-photo2sketch.png", "Translate: a photo turned into a pencil sketch"),
    ("translate-aligned-pasted.png", "The aligned face and the sketch pasted back onto the photo"),
    ("features-dc1.png", "Feature maps of the student next to the VGG-19 layer it learned from"),
    ("train.png", "Training on your own photo/sketch pairs with live losses and previews"),
    ("match.png", "Forensic matching: a sketch ranked against a gallery of photos"),
)
#: image types the app opens (Translate view); the entry offers it for these in file managers
MIME_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/webp", "image/tiff")
#: "MIT" for the code; the shipped weights and NLDA projection are derived from CUFS, whose
#: terms allow non-commercial research use only, which SPDX has no identifier for
PROJECT_LICENSE = "MIT AND LicenseRef-proprietary"
RELEASE_DATE = "2026-12-01"


class DesktopIntegrationError(RuntimeError):
    """The desktop files cannot be installed here (another OS, no writable data folder)."""


@dataclass(frozen=True)
class DesktopFiles:
    """Where each file goes under one data home (``$XDG_DATA_HOME``)."""

    data_home: Path

    @property
    def desktop_entry(self) -> Path:
        return self.data_home / "applications" / f"{APP_ID}.desktop"

    @property
    def metainfo(self) -> Path:
        return self.data_home / "metainfo" / f"{APP_ID}.metainfo.xml"

    def icon(self, size: int | None) -> Path:
        """The hicolor PNG for ``size`` px, or the scalable SVG for ``size=None``."""
        hicolor = self.data_home / "icons" / "hicolor"
        if size is None:
            return hicolor / "scalable" / "apps" / f"{APP_ID}.svg"
        return hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png"

    def all(self) -> list[Path]:
        return [self.desktop_entry, self.metainfo, *(self.icon(s) for s in (*ICON_SIZES, None))]


def xdg_data_home() -> Path:
    """``$XDG_DATA_HOME`` when it is an absolute path (the spec says to ignore relative ones),
    else ``~/.local/share``."""
    env = os.environ.get("XDG_DATA_HOME", "")
    if env and os.path.isabs(env):
        return Path(env)
    return Path.home() / ".local" / "share"


def launcher_command() -> list[str]:
    """The command that starts this very installation of the GUI.

    A bundle starts its own executable; a pip/pipx/venv install its ``sketchstudio`` script
    (next to the interpreter, so the entry keeps working without the venv on PATH); a bare
    checkout falls back to ``python -m sketchstudio.gui.app``.
    """
    if getattr(sys, "frozen", False):
        return [str(Path(sys.executable).resolve())]
    script = Path(sys.executable).parent / ("sketchstudio.exe" if os.name == "nt" else "sketchstudio")
    if script.is_file():
        return [str(script)]
    found = shutil.which("sketchstudio")
    if found:
        return [str(Path(found).resolve())]
    return [str(Path(sys.executable).resolve()), "-m", "sketchstudio.gui.app"]


_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def _exec_arg(arg: str) -> str:
    """Quote one Exec argument as the Desktop Entry spec says (quoting, then %-escaping; the
    value-level backslash escape is applied by :func:`_entry_value`)."""
    arg = arg.replace("%", "%%")
    if not any(c in _EXEC_RESERVED for c in arg):
        return arg
    inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{inner}"'


def _entry_value(text: str) -> str:
    """Escape a string value of a .desktop key (backslash, newline, tab)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def desktop_entry(command: list[str] | None = None) -> str:
    """The text of the .desktop file; ``%f`` hands the app one image file to open."""
    cmd = command or launcher_command()
    exec_line = " ".join(_exec_arg(a) for a in cmd) + " %f"
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        "Name=SketchStudio",
        "GenericName=Photo and Sketch Translator",
        "Comment=Turn face photos into pencil sketches and sketches into photos; train your own models",
        f"Exec={_entry_value(exec_line)}",
        f"TryExec={_entry_value(cmd[0])}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=Graphics;2DGraphics;RasterGraphics;Qt;",
        "MimeType=" + "".join(f"{m};" for m in MIME_TYPES),
        "Keywords=sketch;face;portrait;forensic;photo;pencil;",
        f"StartupWMClass={WM_CLASS}",
        "StartupNotify=true",
        "",
    ]
    return "\n".join(lines)


def metainfo_xml() -> str:
    """The AppStream metainfo: what a software centre shows (summary, description, screenshots,
    licence, release)."""
    shots = []
    for i, (name, caption) in enumerate(SCREENSHOTS):
        kind = ' type="default"' if i == 0 else ""
        shots.append(f"    <screenshot{kind}>\n"
                     f"      <caption>{escape(caption)}</caption>\n"
                     f"      <image>{escape(SCREENSHOT_BASE_URL)}/{escape(name)}</image>\n"
                     f"    </screenshot>")
    mediatypes = "\n".join(f"    <mediatype>{m}</mediatype>" for m in MIME_TYPES)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<component type="desktop-application">
  <id>{APP_ID}</id>
  <metadata_license>MIT</metadata_license>
  <project_license>{PROJECT_LICENSE}</project_license>
  <name>SketchStudio</name>
  <summary>Turn face photos into pencil sketches and sketches back into photos</summary>
  <description>
    <p>
      SketchStudio translates face photos into pencil sketches and hand-drawn sketches into
      photo-like faces, with the knowledge-transfer method of IJCAI 2019. Drop in a selfie to get
      a sketch portrait, or a forensic sketch to get a face and rank a folder of mugshots.
    </p>
    <ul>
      <li>Translate: faces are found and aligned by the eyes, translated and pasted back</li>
      <li>Match: rank a gallery of photos against a sketch, or of sketches against a photo</li>
      <li>Train: train your own models on paired photos and sketches, with live previews</li>
      <li>Feature maps: see what the network learned from its VGG-19 teacher</li>
    </ul>
    <p>
      The code is MIT-licensed. The shipped model and matching projection were trained on the
      CUFS database and inherit its terms: non-commercial research use only.
    </p>
  </description>
  <launchable type="desktop-id">{APP_ID}.desktop</launchable>
  <url type="homepage">{escape(PROJECT_URL)}</url>
  <url type="bugtracker">{escape(PROJECT_URL)}/issues</url>
  <developer_name>SketchStudio developers</developer_name>
  <screenshots>
{chr(10).join(shots)}
  </screenshots>
  <provides>
    <binary>sketchstudio</binary>
{mediatypes}
  </provides>
  <categories>
    <category>Graphics</category>
    <category>Science</category>
  </categories>
  <content_rating type="oars-1.1"/>
  <releases>
    <release version="{__version__}" date="{RELEASE_DATE}"/>
  </releases>
</component>
"""


def _check_platform() -> None:
    if sys.platform == "win32" or sys.platform == "darwin":
        raise DesktopIntegrationError(
            "--install-desktop writes freedesktop (Linux/BSD) menu entries; on Windows and macOS "
            "start SketchStudio from its bundle or make a shortcut to the 'sketchstudio' command")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _refresh(data_home: Path) -> None:
    """Update the MIME and icon caches where the tools exist; desktops also notice new files by
    themselves, so a missing tool only delays the change."""
    for tool, arg in (("update-desktop-database", data_home / "applications"),
                      ("gtk-update-icon-cache", data_home / "icons" / "hicolor")):
        exe = shutil.which(tool)
        if exe is None or not arg.is_dir():
            continue
        extra = ["-q", "-t", "-f"] if tool == "gtk-update-icon-cache" else ["-q"]
        try:
            subprocess.run([exe, *extra, str(arg)], check=False, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("%s failed: %s", tool, exc)


def install(data_home: Path | None = None, command: list[str] | None = None) -> list[Path]:
    """Write the entry, icons and metainfo; returns the files written (idempotent)."""
    _check_platform()
    files = DesktopFiles(data_home or xdg_data_home())
    try:
        _write(files.desktop_entry, desktop_entry(command).encode("utf-8"))
        _write(files.metainfo, metainfo_xml().encode("utf-8"))
        for size in ICON_SIZES:
            _write(files.icon(size), icon_for_size(size).read_bytes())
        _write(files.icon(None), icon_path("sketchstudio.svg").read_bytes())
    except OSError as exc:
        raise DesktopIntegrationError(f"cannot write the desktop files under {files.data_home}: "
                                      f"{exc}") from exc
    _refresh(files.data_home)
    log.info("desktop integration installed under %s", files.data_home)
    return files.all()


def uninstall(data_home: Path | None = None) -> list[Path]:
    """Remove what :func:`install` wrote; returns the files that were there."""
    _check_platform()
    files = DesktopFiles(data_home or xdg_data_home())
    removed = []
    for p in files.all():
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        removed.append(p)
    _refresh(files.data_home)
    return removed
