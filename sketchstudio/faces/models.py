"""Finding and loading dlib's face detector and 5-point landmark model, once per process.

dlib is an optional extra (``pip install "sketchstudio[align]"``): importing this module never
imports dlib; :func:`get_dlib` does, on first use, behind a lock so that the GUI's worker thread
and a batch job never load the 9 MB predictor twice. When dlib or the model file is missing the
caller gets a :class:`DlibUnavailable` reason instead of an exception, so detection can go on to
the OpenCV fallback and manual eyes keep working.

The model files are looked up here and nowhere else: detection and the matcher's dlib face
embedding (:class:`sketchstudio.match.spaces.DlibEmbedding`) both use :func:`landmarks_path`, so
``$SKETCHSTUDIO_LANDMARKS`` means the same file for both.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sketchstudio.errors import ConfigError

log = logging.getLogger(__name__)

LANDMARKS_ENV = "SKETCHSTUDIO_LANDMARKS"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
#: dlib's 128-D face recognition ResNet, used by the matcher's ``embed`` feature space
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL_HINT = 'pip install "sketchstudio[align]"'


@dataclass
class DlibModels:
    """dlib's HOG frontal face detector and 5-point shape predictor, with a lock for calls.

    dlib does not document its Python objects as thread-safe, so calls go through ``lock``.
    """

    detector: Any
    predictor: Any
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)


class DlibUnavailable(Exception):
    """dlib or its landmark model cannot be used; ``str()`` says why and how to fix it."""


_lock = threading.Lock()
_cache: dict[str, DlibModels] = {}


def packaged_model(name: str) -> Path | None:
    """``name`` in the models folder of the ``face-recognition-models`` wheel, found without
    importing the package (its ``__init__`` runs ``pkg_resources``, removed from new setuptools);
    None when the package is not installed."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "models" / name


def landmarks_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the 5-point model: explicit path > ``$SKETCHSTUDIO_LANDMARKS`` > installed package.

    An explicit path or environment variable that names a missing file is a configuration
    mistake and raises :class:`ConfigError`; a missing package raises :class:`DlibUnavailable`.
    """
    for given, origin in ((explicit, "the landmarks path"), (os.environ.get(LANDMARKS_ENV), f"${LANDMARKS_ENV}")):
        if given:
            p = Path(given).expanduser()
            if not p.is_file():
                raise ConfigError(f"The face landmark model given by {origin} ('{p}') does not exist. "
                                  f"Point it at {LANDMARKS_FILE} or unset it.")
            return p
    p = packaged_model(LANDMARKS_FILE)
    if p is None or not p.is_file():
        raise DlibUnavailable(f"the face landmark model ({LANDMARKS_FILE}) is not installed; "
                              f"install it with: {INSTALL_HINT}")
    return p


def embedding_model_paths(folder: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """(5-point landmarks, face recognition ResNet) files for the dlib face embedding.

    ``folder`` (the match CLI's ``--features``) must hold both. Without it the landmarks resolve
    exactly as for detection (:func:`landmarks_path`, ``$SKETCHSTUDIO_LANDMARKS`` included) and
    the ResNet comes from the installed wheel. A missing file in a given folder is a
    :class:`ConfigError`; a missing package raises :class:`DlibUnavailable`.
    """
    if folder:
        d = Path(folder).expanduser()
        files = (d / LANDMARKS_FILE, d / RECOGNITION_FILE)
        for f in files:
            if not f.is_file():
                raise ConfigError(f"dlib model file '{f}' is missing; point --features at a "
                                  f"folder holding {LANDMARKS_FILE} and {RECOGNITION_FILE}.")
        return files
    rec = packaged_model(RECOGNITION_FILE)
    if rec is None or not rec.is_file():
        raise DlibUnavailable(f"the face recognition model ({RECOGNITION_FILE}) is not installed; "
                              f"install it with: {INSTALL_HINT}")
    return landmarks_path(), rec


def get_dlib(explicit_path: str | os.PathLike[str] | None = None) -> DlibModels:
    """The loaded models (cached per model file); raises DlibUnavailable or ConfigError."""
    path = landmarks_path(explicit_path)
    key = str(path.resolve())
    models = _cache.get(key)
    if models is not None:
        return models
    with _lock:
        models = _cache.get(key)
        if models is None:
            try:
                import dlib
            except ImportError as exc:
                raise DlibUnavailable(f"dlib is not installed; install it with: {INSTALL_HINT}") from exc
            try:
                predictor = dlib.shape_predictor(str(path))
            except RuntimeError as exc:
                raise ConfigError(f"'{path}' is not a dlib shape predictor file ({exc}).") from exc
            models = DlibModels(dlib.get_frontal_face_detector(), predictor, path)
            _cache[key] = models
            log.info("Loaded dlib %s face detector and landmarks from %s",
                     getattr(dlib, "__version__", "?"), path)
    return models


def dlib_status(explicit_path: str | os.PathLike[str] | None = None) -> str:
    """'' when dlib detection works, else a sentence saying why not (for About boxes, logs)."""
    try:
        get_dlib(explicit_path)
    except (DlibUnavailable, ConfigError) as exc:
        return str(exc)
    return ""
