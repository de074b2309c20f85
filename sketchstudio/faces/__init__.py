"""Face alignment to the CUFS geometry: detect eyes, warp to 200×250, paste results back.

Modules: ``geometry`` (template, transforms, eye validation; numpy only), ``models`` (lazy dlib
loading), ``detect`` (dlib + fallbacks), ``haar`` (OpenCV fallback), ``alignment`` (align + the warp),
``paste`` (inverse warp with a feathered mask), ``training`` (cached PairedFolder transform).
dlib is imported only when a face is first detected, so importing this package is cheap and
works without the ``align`` extra (manual eyes then still work).
"""

from __future__ import annotations

from .alignment import AlignResult, align, warp_to_template
from .detect import Detection, detect_eyes
from .geometry import (
    MIN_EYE_DISTANCE,
    TEMPLATE_EYES,
    TEMPLATE_SIZE,
    apply_affine,
    invert_affine,
    similarity_to_template,
    validate_eyes,
)
from .models import dlib_status
from .paste import paste_back, paste_mask
from .training import CachedAligner, align_for_training, choose_cache_dir

__all__ = [
    "MIN_EYE_DISTANCE", "TEMPLATE_EYES", "TEMPLATE_SIZE", "AlignResult", "CachedAligner",
    "Detection", "align", "align_for_training", "apply_affine", "choose_cache_dir",
    "detect_eyes", "dlib_status", "invert_affine", "paste_back", "paste_mask",
    "similarity_to_template", "validate_eyes", "warp_to_template",
]
