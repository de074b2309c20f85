"""THE one call from an image to a result: direction -> align -> translate -> finish, with notes.

The GUI's single-image and folder workers and ``sketchstudio-translate`` all call
:func:`translate_face`; none of them re-implements a step, so they cannot drift apart again (they
had: only the GUI fell back to the model's other direction, only the CLI said that several faces
were found). What the pipeline decides, for every caller:

- **Direction.** ``"auto"`` guesses from the image (greyish -> sketch→photo). When the model lacks
  the guessed direction the guess is only a guess, so the model's own direction is used, with a
  note. An *explicit* direction the model lacks is an error (a ConfigError naming what the model
  holds): running the other network would hand back the opposite of what was asked for.
- **Alignment.** The largest face is used; several faces give a note. No face raises
  :class:`~sketchstudio.errors.NoFaceFoundError` (the GUI then asks for the eyes, batches list the
  file). When alignment cannot load at all, the image is translated as it is, with a note.
- **Finish.** Photo→sketch results in pencil grey unless ``grey_sketch=False``; ``paste_back``
  blends the result into the photo; ``portrait`` draws the face with its surroundings
  (:mod:`sketchstudio.portrait`).
- **Device.** A GPU failure during the call (the engine falls back to the CPU) is noted once.

Everything here is Qt-free; progress and cancellation are plain callables. Importing this module
loads neither torch nor OpenCV (the GUI imports it before its window shows); the steps import them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError
from .vocab import DIRECTION_CHOICES, PHOTO2SKETCH, SKETCH2PHOTO, Eyes

__all__ = ["DIRECTION_CHOICES", "DIRECTION_LABELS", "PHOTO2SKETCH", "SKETCH2PHOTO", "Eyes",
           "FaceTranslation", "translate_face"]

log = logging.getLogger(__name__)

DIRECTION_LABELS = {PHOTO2SKETCH: "photo → sketch", SKETCH2PHOTO: "sketch → photo"}
#: (alignment module or None, why it is unavailable) as :func:`load_faces` returns it
FacesBackend = tuple[Any, str]


def load_faces() -> FacesBackend:
    """The face-alignment module, or None and a sentence saying why it cannot be used."""
    try:
        from . import faces
        from .faces import align, paste_back  # noqa: F401 - the contract the pipeline needs
    except Exception as exc:  # noqa: BLE001 - missing module, missing dlib, broken install: same to a user
        return None, (f"Face alignment is not available ({type(exc).__name__}: {exc}); images are "
                      "translated as they are. Use already-aligned face crops for best results.")
    return faces, ""


def guess_direction(img: np.ndarray) -> str:
    """Greyish images (tinted paper included) are sketches, everything else photos."""
    from .imaging import looks_like_sketch

    return SKETCH2PHOTO if looks_like_sketch(img) else PHOTO2SKETCH


def choose_direction(requested: str, guessed: str, available: list[str]) -> tuple[str, list[str]]:
    """(direction to run, notes). See the module docstring for why auto and explicit differ."""
    if requested not in DIRECTION_CHOICES:
        raise ConfigError(f"Unknown direction '{requested}'; use {', '.join(DIRECTION_CHOICES)}.")
    if requested != "auto":
        if requested not in available:
            raise ConfigError(f"This model has no {DIRECTION_LABELS[requested]} network (it holds "
                              f"{', '.join(DIRECTION_LABELS[d] for d in available)}).")
        return requested, []
    if guessed in available:
        return guessed, []
    other = available[0]
    return other, [f"This model has no {DIRECTION_LABELS[guessed]} network; used "
                   f"{DIRECTION_LABELS[other]}."]


def output_kind(direction: str) -> str:
    """What a result is called in file names: "sketch" for photo→sketch, else "photo"."""
    return "sketch" if direction == PHOTO2SKETCH else "photo"


@dataclass
class FaceTranslation:
    """Everything one translation produced, for display (GUI) or saving (batch, CLI)."""

    original: np.ndarray  # the decoded input image
    direction: str  # what ran
    guessed_direction: str  # what the image looked like
    auto: bool  # the direction was guessed, not asked for
    crop: np.ndarray  # what the network saw: the aligned crop, or the image itself
    output: np.ndarray  # the network's result at the crop's size
    matrix: np.ndarray | None = None  # 2×3, original -> crop (None when not aligned)
    eyes: Eyes | None = None  # original coordinates
    crop_eyes: Eyes | None = None  # crop coordinates
    method: str = ""  # how the eyes were found ("dlib", "haar", "manual"; "" when not aligned)
    n_faces: int = 0
    pasted: np.ndarray | None = None  # output blended into the original (paste_back=True)
    portrait: Any = None  # sketchstudio.portrait.Portrait (portrait=...)
    notes: list[str] = field(default_factory=list)
    translation: Any = None  # engine.Translation: taps, input tensor

    @property
    def aligned(self) -> bool:
        return self.matrix is not None

    @property
    def image(self) -> np.ndarray:
        """What a caller saves: the portrait if one was asked for, else the pasted result if
        asked for, else the crop's result."""
        if self.portrait is not None:
            return self.portrait.image
        if self.pasted is not None:
            return self.pasted
        return self.output


def translate_face(img: np.ndarray, translator: Any, *, direction: str = "auto",
                   align: bool = True, eyes: Eyes | None = None, grey_sketch: bool = True,
                   paste_back: bool = False, portrait: str | None = None,
                   portrait_scale: float | None = None, portrait_only_for: str | None = None,
                   paper: bool = True,
                   return_taps: bool = False, faces: FacesBackend | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   cancelled: Callable[[], bool] | None = None,
                   before_network: Callable[[], bool] | None = None) -> FaceTranslation | None:
    """Translate one RGB image with ``translator`` (an :class:`~sketchstudio.engine.Translator`).

    ``eyes``: manual eye centres in image pixels (skips detection). ``portrait``: None, "head"
    (head and shoulders) or "full" (the whole photo); needs alignment, and when alignment is
    unavailable the crop result is returned with a note. ``portrait_only_for``: draw the portrait
    only when that direction runs (the app draws portraits of photos, and leaves a sketch that
    "auto" sent through F as a crop). ``faces``: the alignment backend as
    :func:`load_faces` returns it (injected by tests and by the GUI, which loads it once).
    ``progress(done, total)`` and ``cancelled()`` drive a tiled portrait; ``before_network()``
    returning True abandons the call before the network runs (the GUI's superseded requests) and
    makes it return None. Raises NoFaceFoundError, EyePositionError, ConfigError, CancelledError.
    """
    from .faces.geometry import apply_affine
    from .imaging import check_rgb

    original = check_rgb(np.asarray(img))
    guessed = guess_direction(original)
    chosen, notes = choose_direction(direction, guessed, list(translator.directions))
    if portrait is not None and portrait not in ("head", "full"):
        raise ConfigError(f"Portrait mode must be 'head' or 'full', got {portrait!r}.")
    if eyes is not None and not align:
        raise ConfigError("Eye positions need face alignment; turn alignment on.")
    res = FaceTranslation(original=original, direction=chosen, guessed_direction=guessed,
                          auto=direction == "auto", crop=original, output=original, notes=notes)
    mod = None
    if align:
        mod, why = faces if faces is not None else load_faces()
        if mod is None:
            if why:  # a batch says it once, and passes (None, "") for each image
                notes.append(why)
        else:
            ar = mod.align(original, eyes=eyes, kind="photo" if chosen == PHOTO2SKETCH else "sketch")
            res.crop, res.matrix = ar.crop, np.asarray(ar.matrix, np.float64)
            res.eyes = tuple(tuple(float(v) for v in p) for p in ar.eyes)  # type: ignore[assignment]
            ce = apply_affine(res.matrix, ar.eyes)
            res.crop_eyes = ((float(ce[0, 0]), float(ce[0, 1])), (float(ce[1, 0]), float(ce[1, 1])))
            res.method, res.n_faces = str(getattr(ar, "method", "")), int(getattr(ar, "n_faces", 1))
            if res.n_faces > 1:
                notes.append(f"{res.n_faces} faces found; translated the largest.")
    if before_network is not None and before_network():
        return None
    note_before = translator.fallback_note
    translation = translator.translate(res.crop, chosen, return_taps=return_taps,
                                       grey_sketch=grey_sketch)
    res.translation, res.output = translation, translation.output
    if res.aligned and paste_back:
        res.pasted = mod.paste_back(original, res.output, res.matrix)
    if portrait_only_for is not None and chosen != portrait_only_for:
        portrait = None
    if portrait is not None:
        if not res.aligned:
            notes.append("A portrait needs face alignment; wrote the translated image as it is.")
        else:
            from .portrait import DEFAULT_SCALE, render_portrait

            res.portrait = render_portrait(
                original, res.matrix, translator, chosen, mode=portrait,
                scale=portrait_scale or DEFAULT_SCALE, grey=grey_sketch, paper=paper,
                face_input=translation.input_tensor, progress=progress, cancelled=cancelled)
            notes.extend(res.portrait.notes)
    if translator.fallback_note and translator.fallback_note != note_before:
        notes.append(translator.fallback_note)
    return res
