"""The one image I/O and preprocessing path, shared by the GUI, CLIs, trainer and tests.

Images live as ``uint8`` RGB arrays of shape (H, W, 3) outside the networks and as float tensors
in [-1, 1] of shape (N, 3, S, S) inside them. Loading validates everything a user can hand us
(missing, non-image, truncated, absurdly large files), honours EXIF orientation and turns grey,
palette and RGBA images into RGB, so that nothing downstream has to care.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, OutputError
from .fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

#: Largest image we decode (pixels). 50 MP covers any phone or scanner; beyond that a file is far
#: more likely a decompression bomb than a face.
MAX_PIXELS = 50_000_000
#: Smallest side we accept; below this there is no face to find.
MIN_SIDE = 16
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
                 ".tif": "TIFF", ".tiff": "TIFF"}


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _open(source: str | os.PathLike[str] | bytes) -> tuple[Image.Image, str]:
    if isinstance(source, bytes | bytearray):
        return Image.open(io.BytesIO(source)), "<image data>"
    path = Path(source)
    if not path.exists():
        raise ImageError(f"Image file not found: '{path}'.")
    if path.is_dir():
        raise ImageError(f"'{path}' is a folder, not an image file.")
    try:
        return Image.open(path), str(path)
    except UnidentifiedImageError as exc:
        raise ImageError(f"'{path}' is not an image file (or its format is not supported).") from exc
    except OSError as exc:
        if exc.errno is None:  # PIL's own parse errors carry no errno
            raise ImageError(f"'{path}' is corrupt or truncated ({exc}).") from exc
        raise ImageError(f"Cannot read '{path}': {exc.strerror or exc}") from exc


def load_image(source: str | os.PathLike[str] | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file (or encoded bytes) as an RGB ``uint8`` array of shape (H, W, 3)."""
    try:
        img, name = _open(source)
    except UnidentifiedImageError as exc:  # bytes input
        raise ImageError("The data is not an image (or its format is not supported).") from exc
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise ImageError(
                f"'{name}' is {w}×{h} = {w * h / 1e6:.0f} MP, larger than the {max_pixels / 1e6:.0f} MP "
                "limit. Scale it down first."
            )
        if min(w, h) < MIN_SIDE:
            raise ImageError(f"'{name}' is only {w}×{h} pixels; at least {MIN_SIDE}×{MIN_SIDE} is needed.")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"'{name}' is corrupt or truncated ({exc}).") from exc
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Grey, palette, 16-bit and CMYK become RGB; transparency is composited onto white paper."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray((arr / hi * 255).astype(np.uint8))
    return img.convert("RGB")


def check_rgb(img: np.ndarray) -> np.ndarray:
    """Validate an in-memory image (the API boundary for arrays handed in by callers)."""
    if not isinstance(img, np.ndarray):
        raise ImageError(f"Expected an image array, got {type(img).__name__}.")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ImageError(f"Expected an H×W×3 RGB image, got shape {tuple(img.shape)}.")
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.dtype != np.uint8:
        raise ImageError(f"Expected uint8 pixels, got {img.dtype}.")
    if min(img.shape[:2]) < MIN_SIDE:
        raise ImageError(f"Image is only {img.shape[1]}×{img.shape[0]} pixels.")
    return img


def save_image(img: np.ndarray, path: str | os.PathLike[str], quality: int = 95) -> Path:
    """Encode and write atomically; the format follows the suffix (.png, .jpg, ...)."""
    dest = Path(path)
    fmt = _SAVE_FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"Cannot save '{dest.name}': unknown image type '{dest.suffix}'. "
            f"Use one of {', '.join(sorted(_SAVE_FORMATS))}."
        )
    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(check_rgb(img)).save(buf, format=fmt, **kwargs)
    atomic_write_bytes(dest, buf.getvalue())
    return dest


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area filter when shrinking (no aliasing), bicubic when enlarging."""
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_CUBIC
    return cv2.resize(img, (width, height), interpolation=interp)


def array_to_tensor(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float tensor (3, H, W) in [-1, 1], no resizing."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
    return t.div_(127.5).sub_(1.0)


def to_tensor(img: np.ndarray, size: int) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float tensor (1, 3, size, size) in [-1, 1]."""
    return array_to_tensor(resize(check_rgb(img), size, size)).unsqueeze(0)


def to_image(t: torch.Tensor, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Tensor (3, H, W) or (1, 3, H, W) in [-1, 1] -> RGB uint8, optionally resized."""
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"to_image takes one image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"Expected a (3, H, W) tensor, got {tuple(t.shape)}")
    arr = ((t.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().byte().cpu()
    img = arr.permute(1, 2, 0).numpy()
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = np.ascontiguousarray(img)
    if width is not None and height is not None:
        img = resize(img, width, height)
    return img


def to_gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(check_rgb(img), cv2.COLOR_RGB2GRAY)


def grey_rgb(img: np.ndarray) -> np.ndarray:
    """RGB with every channel set to the luma (BT.601, as ``to_gray`` and FSIM use).

    A pencil sketch has no colour: G's three output channels differ only by faint tints (most
    visible early in training), which users read as artefacts. Luma keeps exactly what FSIM scores.
    """
    return np.repeat(to_gray(img)[:, :, None], 3, axis=2)


def colourfulness(img: np.ndarray) -> float:
    """Mean HSV saturation in [0, 1]: ~0 for pencil sketches and grey scans, higher for photos."""
    small = resize(check_rgb(img), 64, 64)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    return float(hsv[:, :, 1].mean() / 255.0)


def looks_like_sketch(img: np.ndarray, threshold: float = 0.12) -> bool:
    """Guess the translation direction: greyish images (tinted paper included) are sketches."""
    return colourfulness(img) < threshold
