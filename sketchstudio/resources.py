"""Where shipped files live: the default model and its card, icons, sample faces, the NLDA projection.

They are package data of ``sketchstudio`` (the folder ``sketchstudio/assets/``), found through
``importlib.resources`` rather than a path relative to a source checkout, so the same lookup works
from a wheel (``pip``/``pipx install``), an editable install (``make run``/``make test``) and a
PyInstaller bundle (which unpacks package data next to its frozen modules). Callers get real
``Path`` objects: torch, safetensors, numpy and Qt all want file names, and every supported install
keeps the package unzipped on disk; a zipped import raises a clear error instead.
"""

from __future__ import annotations

import os
from importlib import resources as _ir
from pathlib import Path

#: the package that holds the assets folder, and the folder's name inside it
PACKAGE = "sketchstudio"
ASSETS_DIR = "assets"
DEFAULT_MODEL_NAME = "kt-cufs.safetensors"
MODEL_CARD_NAME = "MODEL_CARD.md"
NLDA_NAME = "nlda_cufs.npz"
MODEL_ENV = "SKETCHSTUDIO_MODEL"
#: hicolor sizes that have their own PNG next to the 256 px ``sketchstudio.png`` and the SVG
ICON_SIZES = (32, 64, 128, 256)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def assets_dir() -> Path:
    """The installed ``sketchstudio/assets`` folder as a file-system path.

    Raises RuntimeError when the package is imported from somewhere that is not a folder (a zip
    archive): every file here is handed to libraries that need a real file name.
    """
    root = _ir.files(PACKAGE).joinpath(ASSETS_DIR)
    if not isinstance(root, Path):
        raise RuntimeError(f"{PACKAGE} is imported from {root!r}, not from a folder; install it "
                           "unzipped (pip, pipx and the bundle all do)")
    return root


#: kept as a constant for callers that build paths from it (match.spaces.DEFAULT_NLDA_PATH)
RESOURCES = assets_dir()


def shipped_model_path() -> Path | None:
    """The default model installed with the package, or None when this install has none."""
    p = RESOURCES / "models" / DEFAULT_MODEL_NAME
    return p if p.is_file() else None


def default_model_path() -> Path | None:
    """``$SKETCHSTUDIO_MODEL`` if set, else the shipped default model, else None."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    return shipped_model_path()


def model_card_path() -> Path:
    """The shipped model's card (data, training, FSIM numbers, licences)."""
    return RESOURCES / "models" / MODEL_CARD_NAME


def nlda_path() -> Path:
    """The NLDA projection the Match view and ``sketchstudio-match`` use by default."""
    return RESOURCES / "matching" / NLDA_NAME


def sample_images() -> list[Path]:
    """The sample faces shipped for a first try (see assets/samples/README.md)."""
    folder = RESOURCES / "samples"
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def icon_path(name: str = "sketchstudio.png") -> Path:
    """An icon file by name: ``sketchstudio.png`` (256 px), ``sketchstudio-{32,64,128}.png``,
    ``sketchstudio.svg``."""
    return RESOURCES / "icons" / name


def icon_for_size(size: int) -> Path:
    """The PNG drawn for ``size`` px (one of ICON_SIZES); 256 px is the plain ``sketchstudio.png``."""
    if size not in ICON_SIZES:
        raise ValueError(f"no {size} px icon; shipped sizes are {ICON_SIZES}")
    return icon_path("sketchstudio.png" if size == 256 else f"sketchstudio-{size}.png")
