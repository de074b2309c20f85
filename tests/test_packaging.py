"""Installing SketchStudio like a desktop app: a complete wheel, desktop files, the bundle.

The wheel tests build from a copy of the sources (so a stale ``build/`` in the checkout cannot
smuggle files into the wheel) and run the installed copy from a folder outside the checkout, with
``PYTHONPATH`` pointing at a ``pip install --target`` folder and the venv's dependencies, so only
what the wheel carries can be found. The bundle test runs where ``make bundle`` has built one.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from sketchstudio import desktop, resources, userdirs

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "sketchstudio", "trainer")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")
WHEEL_ASSETS = [
    "sketchstudio/assets/models/kt-cufs.safetensors",
    "sketchstudio/assets/models/kt-cufs.lite.safetensors",
    "sketchstudio/assets/models/MODEL_CARD.md",
    "sketchstudio/assets/icons/sketchstudio.svg",
    "sketchstudio/assets/icons/sketchstudio.png",
    *(f"sketchstudio/assets/icons/sketchstudio-{s}.png" for s in (32, 64, 128)),
    "sketchstudio/assets/samples/astronaut.jpg",
    "sketchstudio/assets/samples/README.md",
    "sketchstudio/assets/matching/nlda_cufs.npz",
    "sketchstudio/assets/matching/README.md",
]
BUNDLE = Path(os.environ.get("SKETCHSTUDIO_BUNDLE", REPO / "dist" / "sketchstudio" / "sketchstudio"))


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """An environment that cannot see the checkout: no SKETCHSTUDIO_* overrides, per-user folders
    in ``tmp``, offscreen Qt, one thread (the machine is shared)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SKETCHSTUDIO_") and k != "PYTHONPATH"}
    env.update(QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1", HOME=str(tmp / "home"),
               XDG_CACHE_HOME=str(tmp / "cache"), XDG_STATE_HOME=str(tmp / "state"),
               XDG_CONFIG_HOME=str(tmp / "config"), XDG_DATA_HOME=str(tmp / "data"),
               SKETCHSTUDIO_OFFLINE="1", **extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline with the venv's setuptools from a fresh copy of the sources."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=IGNORE)
        else:
            shutil.copy2(p, src / name)
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = list(out.glob("sketchstudio-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed with ``pip install --no-deps --target``: packages and scripts only."""
    target = tmp_path_factory.mktemp("target")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                        "--target", str(target), str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return target


# --- package data (from the checkout) -------------------------------------------------------------
def test_assets_are_found_through_importlib_resources() -> None:
    from importlib.resources import files

    assert files("sketchstudio") / "assets" == resources.RESOURCES
    assert resources.shipped_model_path() == resources.RESOURCES / "models" / "kt-cufs.safetensors"
    for p in (resources.shipped_model_path(), resources.model_card_path(), resources.nlda_path(),
              *resources.sample_images(), *(resources.icon_for_size(s) for s in resources.ICON_SIZES),
              resources.icon_path("sketchstudio.svg")):
        assert p is not None and p.is_file(), p
    from sketchstudio.match.spaces import DEFAULT_NLDA_PATH

    assert resources.nlda_path() == DEFAULT_NLDA_PATH
    with pytest.raises(ValueError):
        resources.icon_for_size(48)


def test_model_env_overrides_the_shipped_model(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(resources.MODEL_ENV, str(tmp_path / "m.safetensors"))
    assert resources.default_model_path() == tmp_path / "m.safetensors"
    assert resources.shipped_model_path() is not None


# --- the wheel ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_wheel_contains_model_card_icons_samples_and_nlda(wheel) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in WHEEL_ASSETS:
            assert name in names, f"{name} missing from {wheel.name}"
            # the same bytes as the checkout's file, not a Git LFS pointer or a truncated copy
            assert zf.getinfo(name).file_size == (REPO / name).stat().st_size, name
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    ep = configparser.ConfigParser()
    ep.read_string(entry_points.decode())
    assert ep["gui_scripts"]["sketchstudio"] == "sketchstudio.gui.app:main"
    assert ep["console_scripts"]["sketchstudio-translate"] == "sketchstudio.cli:main"
    assert not any(n.startswith(("tests/", "benchmarks/", "packaging/")) for n in names)


@pytest.mark.slow
@pytest.mark.gui
def test_installed_wheel_finds_model_translates_and_shows_window(installed, tmp_path) -> None:
    """From outside the checkout: the default model, the CLI translating the sample, and the
    window translating and saving it (``--self-test``), all from the installed copy."""
    pytest.importorskip("PySide6")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = _clean_env(tmp_path, PYTHONPATH=str(installed))
    probe = ("import json, sketchstudio; from sketchstudio import resources as r; "
             "print(json.dumps({'pkg': sketchstudio.__file__, 'model': str(r.default_model_path()),"
             " 'samples': [str(p) for p in r.sample_images()], 'nlda': str(r.nlda_path()),"
             " 'icon': str(r.icon_path())}))")
    r = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    for key in ("pkg", "model", "nlda", "icon"):
        assert Path(found[key]).is_relative_to(installed), (key, found[key])
        assert Path(found[key]).is_file(), found[key]
    assert found["samples"] and Path(found["samples"][0]).is_relative_to(installed)

    # the console script pip wrote, with the default model and the shipped sample
    out = tmp_path / "out"
    script = installed / "bin" / "sketchstudio-translate"
    r = subprocess.run([str(script), found["samples"][0], "-o", str(out), "--device", "cpu"],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p.suffix for p in out.iterdir()] == [".png"], list(out.iterdir())

    # the window: loads the default model, translates the sample, saves it through the view
    saved = tmp_path / "gui-result.png"
    r = subprocess.run([sys.executable, "-m", "sketchstudio.gui.app", "--self-test", str(saved),
                        "--settings", str(tmp_path / "s.ini")],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["model_is_default"], report
    assert Path(report["package"]).is_relative_to(installed)
    assert Path(report["model"]).is_relative_to(installed)
    assert report["direction"] == "photo2sketch" and report["aligned"]
    assert saved.is_file() and saved.stat().st_size > 1000
    # per-user files where QStandardPaths says (the XDG folders given above), none in the checkout
    logs = list((tmp_path / "state").rglob("sketchstudio.log"))
    assert logs and "SketchStudio" in logs[0].read_text(), logs


# --- desktop integration ------------------------------------------------------------------------
def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_install_desktop_writes_entry_icons_metainfo_and_uninstall_removes_them(
        tmp_path, monkeypatch, capsys) -> None:
    from sketchstudio.gui.app import main

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert main(["--install-desktop"]) == 0
    files = desktop.DesktopFiles(tmp_path / "share")
    assert all(p.is_file() for p in files.all())
    assert str(files.desktop_entry) in capsys.readouterr().out

    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(files.desktop_entry, encoding="utf-8")
    de = entry["Desktop Entry"]
    assert de["Icon"] == desktop.APP_ID and de["Type"] == "Application"
    assert de["Exec"].endswith(" %f")
    assert {"image/jpeg", "image/png"} <= set(de["MimeType"].split(";"))
    launcher = desktop.launcher_command()
    assert de["TryExec"] == launcher[0] and Path(launcher[0]).exists()

    for size in resources.ICON_SIZES:
        assert _png_size(files.icon(size)) == (size, size)
    assert files.icon(None).read_bytes() == resources.icon_path("sketchstudio.svg").read_bytes()

    root = ET.parse(files.metainfo).getroot()
    assert root.findtext("id") == desktop.APP_ID
    assert root.findtext("launchable") == files.desktop_entry.name
    assert root.findtext("project_license").startswith("MIT")
    images = [e.text for e in root.iter("image")]
    assert len(images) == len(desktop.SCREENSHOTS)
    for url in images:  # each screenshot URL names a screenshot the repository has
        assert url.startswith("https://")
        assert (REPO / "docs" / "screenshots" / url.rsplit("/", 1)[1]).is_file(), url

    assert main(["--uninstall-desktop"]) == 0
    assert not any(p.exists() for p in files.all())
    assert desktop.uninstall(tmp_path / "share") == []


def test_desktop_entry_quotes_an_exec_path_with_spaces_and_dollars() -> None:
    text = desktop.desktop_entry(["/opt/My Apps/sketch$tudio", "--flag"])
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    # spec: quoted argument, $ escaped inside quotes, then the backslash escaped as a string value
    assert exec_line == 'Exec="/opt/My Apps/sketch\\\\$tudio" --flag %f'
    assert desktop._exec_arg("100%") == "100%%"


def test_install_desktop_refused_on_windows_and_macos(monkeypatch, tmp_path) -> None:
    for platform in ("win32", "darwin"):
        monkeypatch.setattr(sys, "platform", platform)
        with pytest.raises(desktop.DesktopIntegrationError):
            desktop.install(tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("tool,args", [("desktop-file-validate", []),
                                       ("appstreamcli", ["validate", "--no-net"])])
def test_generated_desktop_files_pass_the_freedesktop_validators(tmp_path, tool, args) -> None:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed (Debian: apt-get install desktop-file-utils appstream)")
    files = desktop.DesktopFiles(tmp_path)
    # a launcher path that needs quoting, as a bundle unpacked under "My Apps" would have
    desktop.install(tmp_path, command=["/opt/My Apps/SketchStudio/sketchstudio"])
    target = files.desktop_entry if tool == "desktop-file-validate" else files.metainfo
    r = subprocess.run([exe, *args, str(target)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    if tool == "desktop-file-validate":
        assert r.stdout.strip() == "", r.stdout  # no warnings or hints either


def test_xdg_data_home_relative_value_is_ignored(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/share")
    assert desktop.xdg_data_home() == tmp_path / ".local" / "share"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "abs"))
    assert desktop.xdg_data_home() == tmp_path / "abs"


# --- per-user folders ---------------------------------------------------------------------------
@pytest.mark.parametrize("platform,expected", [
    ("linux", "{xdg}/sketchstudio"),
    ("darwin", "{home}/Library/Caches/SketchStudio"),
    ("win32", "{local}/SketchStudio/Cache"),
])
def test_core_cache_dir_follows_the_os(monkeypatch, tmp_path, platform, expected) -> None:
    from sketchstudio.match.index import default_cache_dir

    monkeypatch.delenv(userdirs.CACHE_ENV, raising=False)
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    want = Path(expected.format(xdg=tmp_path / "xdg", home=tmp_path, local=tmp_path / "local"))
    assert default_cache_dir() == userdirs.user_cache_dir() == want
    monkeypatch.setenv(userdirs.CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


@pytest.mark.gui
def test_gui_user_dirs_come_from_qstandardpaths(qapp) -> None:
    from PySide6.QtCore import QStandardPaths

    from sketchstudio.gui.app import user_dirs

    d = user_dirs()
    loc = QStandardPaths.StandardLocation
    assert d["cache"] == Path(QStandardPaths.writableLocation(loc.CacheLocation))
    assert d["logs"].parent == Path(QStandardPaths.writableLocation(loc.StateLocation))


# --- the standalone bundle ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.gui
def test_bundle_starts_translates_the_sample_and_saves(tmp_path) -> None:
    """Runs where `make bundle` built dist/sketchstudio (or $SKETCHSTUDIO_BUNDLE names one)."""
    if not BUNDLE.is_file():
        pytest.skip(f"no bundle at {BUNDLE}: run `make bundle` first (takes minutes)")
    saved = tmp_path / "bundle-result.png"
    env = _clean_env(tmp_path)
    env["PATH"] = "/usr/bin:/bin"  # no venv, no python of ours on the PATH
    r = subprocess.run([str(BUNDLE), "--self-test", str(saved), "--settings",
                        str(tmp_path / "s.ini")], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["frozen"] and report["model_is_default"], report
    assert saved.is_file() and saved.stat().st_size > 1000
