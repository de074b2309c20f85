"""Where shipped files live (default model, icons, sample faces)."""

from __future__ import annotations

import os
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEFAULT_MODEL_NAME = "kt-cufs.safetensors"
MODEL_ENV = "SKETCHSTUDIO_MODEL"


def default_model_path() -> Path | None:
    """``$SKETCHSTUDIO_MODEL`` if set, else the shipped default model, else None."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    p = RESOURCES / "models" / DEFAULT_MODEL_NAME
    return p if p.is_file() else None


def sample_images() -> list[Path]:
    """The sample faces shipped for a first try (see resources/samples/README.md)."""
    folder = RESOURCES / "samples"
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def icon_path(name: str = "sketchstudio.png") -> Path:
    return RESOURCES / "icons" / name
