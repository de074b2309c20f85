"""Feature spaces for matching faces: NLDA on grey pixels, dlib's deep face embedding, or both.

``fusion`` (the default) scores a gallery face by ``w·cos(NLDA) + (1 − w)·cos(embedding)``: the
two spaces fail on different people (NLDA on XM2VTS faces, the photo-trained embedding on pencil
sketches), and in identity-disjoint cross-validation on the CUFS training identities the fused
score found the right photo first for 98 % of held-out sketches with face detection, against
96 % for NLDA alone (docs/matching_eval.md). ``w`` is fitted inside the training folds only
(``python -m research.match_cv --fit-fusion``) and shipped next to the projection.

All take the same input, an aligned 200×250 template crop (eyes at (75,125) and (125,125)), and
return a 1-D float32 vector; similarity is the cosine of two vectors (higher = more alike). A
feature space has a ``fingerprint`` that changes whenever its output would change (another
projection file, another model file, other settings), so gallery caches know when to recompute.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import ConfigError
from ..faces.geometry import TEMPLATE_SIZE
from ..faces.models import DlibUnavailable, embedding_model_paths
from ..fsutil import file_digest
from ..imaging import check_rgb, resize, to_gray
from ..resources import RESOURCES
from .nlda import NLDAProjection

log = logging.getLogger(__name__)

METHODS = ("fusion", "nlda", "embed")
DEFAULT_METHOD = "fusion"
DEFAULT_NLDA_PATH = RESOURCES / "matching" / "nlda_cufs.npz"
DEFAULT_FUSION_PATH = RESOURCES / "matching" / "fusion_cufs.json"
FUSION_FORMAT = "sketchstudio-fusion/1"


class FeatureSpace(Protocol):
    name: str

    @property
    def fingerprint(self) -> str: ...

    def extract(self, crop: np.ndarray) -> np.ndarray: ...


def as_template(crop: np.ndarray) -> np.ndarray:
    """Validate an aligned crop and bring it to the template size (``faces.TEMPLATE_SIZE``,
    200×250; a no-op for CUFS crops)."""
    crop = check_rgb(crop)
    w, h = TEMPLATE_SIZE
    if crop.shape[:2] != (h, w):
        crop = resize(crop, w, h)
    return crop


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PixelPrep:
    """How an aligned crop becomes the pixel vector NLDA sees (stored with the projection).

    The default keeps the face from the brows to the chin and cheek to cheek (dropping most of the
    background and hair, which differ most between photo and drawing), shrinks it 2.5× (fine
    pencil texture is noise for identity) and standardises brightness and contrast per image.
    """

    box: tuple[int, int, int, int] = (25, 45, 175, 245)  # x0, y0, x1, y1 in the 200×250 template
    size: tuple[int, int] = (60, 80)  # width, height after resizing
    standardise: bool = True

    @property
    def dim(self) -> int:
        return self.size[0] * self.size[1]

    def to_dict(self) -> dict:
        return {"box": list(self.box), "size": list(self.size), "standardise": self.standardise}

    @classmethod
    def from_dict(cls, d: dict) -> PixelPrep:
        return cls(box=tuple(d["box"]), size=tuple(d["size"]), standardise=bool(d["standardise"]))

    def vector(self, crop: np.ndarray) -> np.ndarray:
        g = to_gray(as_template(crop))
        x0, y0, x1, y1 = self.box
        g = cv2.resize(g[y0:y1, x0:x1], self.size, interpolation=cv2.INTER_AREA)
        v = g.astype(np.float32).ravel()
        if self.standardise:
            v = (v - v.mean()) / (v.std() + 1e-6)
        return v


class NLDAFeatures:
    """Grey pixels of the crop projected by a fitted NLDA (see :mod:`sketchstudio.match.nlda`)."""

    name = "nlda"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else DEFAULT_NLDA_PATH
        if not self.path.is_file():
            raise ConfigError(
                f"NLDA projection '{self.path}' not found. Fit one with "
                "`python -m research.nlda_fit` in a source checkout, or use --method embed.")
        self.projection = NLDAProjection.load(self.path)
        self.prep = PixelPrep.from_dict(self.projection.info["prep"])
        self._fingerprint = "nlda:" + file_digest(self.path)[:16]

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def extract(self, crop: np.ndarray) -> np.ndarray:
        return self.projection.transform(self.prep.vector(crop))


# --------------------------------------------------------------------------------------------
class DlibEmbedding:
    """dlib's 128-D face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``).

    On an aligned template crop no detection is needed: the 5-point landmark model runs inside a
    fixed box (the median dlib detection on CUFS crops), and dlib cuts its own 150×150 chip from
    those landmarks. The 5-point model is used, not the 68-point one, whose training data
    (iBUG 300-W) excludes commercial use. ``gray`` feeds grey images (sketch and photo then differ
    less); measured in docs/matching_eval.md.
    """

    name = "embed"
    #: left, top, right, bottom in the 200×250 template
    FACE_BOX = (42, 94, 157, 209)

    def __init__(self, gray: bool = False, model_dir: str | os.PathLike[str] | None = None) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise ConfigError("The 'embed' method needs dlib: pip install 'sketchstudio[align]'."
                              ) from exc
        try:  # the one model-file lookup, shared with face detection (faces.models)
            sp, rec = embedding_model_paths(model_dir)
        except DlibUnavailable as exc:
            raise ConfigError(f"The 'embed' method cannot run: {exc}.") from exc
        self._rect = dlib.rectangle(*self.FACE_BOX)
        self._sp = dlib.shape_predictor(str(sp))
        self._rec = dlib.face_recognition_model_v1(str(rec))
        self.gray = gray
        self._lock = threading.Lock()  # dlib objects are not documented as thread-safe
        self._fingerprint = (f"embed:{rec.stat().st_size}:{sp.stat().st_size}:"
                             f"dlib{dlib.__version__}:gray{int(gray)}")

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def extract(self, crop: np.ndarray) -> np.ndarray:
        img = as_template(crop)
        if self.gray:
            img = np.repeat(to_gray(img)[:, :, None], 3, axis=2)
        img = np.ascontiguousarray(img)
        with self._lock:
            shape = self._sp(img, self._rect)
            return np.asarray(self._rec.compute_face_descriptor(img, shape), dtype=np.float32)


# --------------------------------------------------------------------------------------------
def read_fusion_weight(path: str | os.PathLike[str] | None = None) -> float:
    """The NLDA weight of the shipped (or given) fusion file, checked to lie in [0, 1]."""
    p = Path(path) if path else DEFAULT_FUSION_PATH
    try:
        doc = json.loads(p.read_text())
        w = float(doc["nlda_weight"])
        if doc.get("format") != FUSION_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"Cannot read the fusion weights '{p}' ({exc}). Refit them with "
                          "`python -m research.match_cv --fit-fusion` or use --method nlda."
                          ) from exc
    if not 0.0 <= w <= 1.0:
        raise ConfigError(f"Fusion weight {w} in '{p}' is outside [0, 1].")
    return w


class FusedFeatures:
    """NLDA and dlib's embedding in one vector whose cosine is the weighted sum of theirs.

    Each part is scaled to unit length and then by ``sqrt(w)`` and ``sqrt(1 - w)``; the
    concatenation has unit length, so its cosine with another one is exactly
    ``w·cos_nlda + (1 − w)·cos_embed``. Score-level fusion thus fits the gallery index and the
    ranking unchanged (one row per face, one cosine), and the weight is measured, not guessed
    (see the module docstring). Indexing pays for the ResNet (about 6 faces/s on 2 CPU cores).
    """

    name = "fusion"

    def __init__(self, nlda_path: str | os.PathLike[str] | None = None,
                 weight: float | None = None,
                 fusion_path: str | os.PathLike[str] | None = None,
                 parts: tuple[FeatureSpace, FeatureSpace] | None = None) -> None:
        # ``parts`` (pixel space, embedding) replaces the two models, for tests and research
        self.nlda, self.embed = parts or (NLDAFeatures(nlda_path), DlibEmbedding())
        self.weight = read_fusion_weight(fusion_path) if weight is None else float(weight)
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"Fusion weight {self.weight} is outside [0, 1].")
        self._scale = (np.float32(np.sqrt(self.weight)), np.float32(np.sqrt(1.0 - self.weight)))
        self._fingerprint = (f"fusion:{self.weight:.4f}:{self.nlda.fingerprint}:"
                             f"{self.embed.fingerprint}")

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def extract(self, crop: np.ndarray) -> np.ndarray:
        a, b = self.nlda.extract(crop), self.embed.extract(crop)
        a = a / max(float(np.linalg.norm(a)), 1e-12) * self._scale[0]
        b = b / max(float(np.linalg.norm(b)), 1e-12) * self._scale[1]
        return np.concatenate([a, b]).astype(np.float32)


def make_feature_space(method: str = DEFAULT_METHOD,
                       path: str | os.PathLike[str] | None = None) -> FeatureSpace:
    """``fusion`` or ``nlda`` (``path`` = projection .npz, default the shipped one), or ``embed``
    (``path`` = dlib model folder)."""
    if method == "fusion":
        return FusedFeatures(path)
    if method == "nlda":
        return NLDAFeatures(path)
    if method == "embed":
        return DlibEmbedding(model_dir=path)
    raise ConfigError(f"Unknown matching method '{method}'; use {' or '.join(METHODS)}.")
