"""The one image I/O and preprocessing path, shared by the GUI, CLIs, trainer and tests.

Images live as ``uint8`` RGB arrays of shape (H, W, 3) outside the networks and as float tensors
in [-1, 1] of shape (N, 3, S, S) inside them. Loading validates everything a user can hand us
(missing, non-image, truncated, absurdly large files), honours EXIF orientation and turns grey,
palette and RGBA images into RGB, so that nothing downstream has to care.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import ImageError, OutputError
from .fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

#: Largest image we decode (pixels). 50 MP covers any phone or scanner; beyond that a file is far
#: more likely a decompression bomb than a face.
MAX_PIXELS = 50_000_000
#: Smallest side we accept; below this there is no face to find.
MIN_SIDE = 16
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
#: stamped into the images SketchStudio writes (PNG "Software" text, JPEG comment, TIFF Software)
OUTPUT_MARKER = "SketchStudio"
_TIFF_SOFTWARE = 305
_SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
                 ".tif": "TIFF", ".tiff": "TIFF"}


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def check_image_file(path: str | os.PathLike[str]) -> Path:
    """Raise :class:`ImageError` saying exactly why ``path`` cannot be read as an image file.

    ``Path.exists()`` is False for a symlink loop and a FIFO would block ``open()`` forever, so both
    used to surface as "no such file" or a hang; every kind of non-file gets its own sentence.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError(f"'{p}' is a symbolic link loop (it points back at itself).") from exc
        if exc.errno == errno.ENOENT:
            if p.is_symlink():
                raise ImageError(f"'{p}' is a broken symbolic link (its target does not exist).") from exc
            raise ImageError(f"Image file not found: '{p}'.") from exc
        raise ImageError(f"Cannot read '{p}': {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"'{p}' is a folder, not an image file.")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else \
            "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        raise ImageError(f"'{p}' is {kind}, not an image file.")
    if st.st_size == 0:
        raise ImageError(f"'{p}' is empty (0 bytes), not an image.")
    return p


def _too_large(name: str, exc: Exception, max_pixels: int) -> ImageError:
    return ImageError(f"'{name}' is too large to open ({exc}); the limit is {max_pixels / 1e6:.0f} MP. "
                      "Scale it down first.")


def _open(source: str | os.PathLike[str] | bytes, max_pixels: int = MAX_PIXELS
          ) -> tuple[Image.Image, str]:
    if isinstance(source, bytes | bytearray):
        try:
            return Image.open(io.BytesIO(source)), "<image data>"
        except Image.DecompressionBombError as exc:
            raise _too_large("<image data>", exc, max_pixels) from exc
    path = check_image_file(source)
    try:
        return Image.open(path), str(path)
    except Image.DecompressionBombError as exc:  # Pillow refuses > 2× its own limit at open time
        raise _too_large(str(path), exc, max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"'{path}' is not an image file (or its format is not supported).") from exc
    except OSError as exc:
        if exc.errno is None:  # PIL's own parse errors carry no errno
            raise ImageError(f"'{path}' is corrupt or truncated ({exc}).") from exc
        raise ImageError(f"Cannot read '{path}': {exc.strerror or exc}") from exc


def load_image(source: str | os.PathLike[str] | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file (or encoded bytes) as an RGB ``uint8`` array of shape (H, W, 3)."""
    try:
        img, name = _open(source, max_pixels)
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
                rgb = _to_rgb(img, name)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise _too_large(name, exc, max_pixels) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"'{name}' is corrupt or truncated ({exc}).") from exc
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    """Grey, palette, 16-bit, float and CMYK become RGB; transparency is composited onto white paper."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray((arr / hi * 255).astype(np.uint8))
    elif img.mode == "F":
        img = Image.fromarray(_float_to_uint8(np.asarray(img, dtype=np.float64), name))
    return img.convert("RGB")


def _float_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """Scale a float image to 0..255. ``convert("RGB")`` clips floats, so a 0..1 scan (the usual
    convention) came out all black; 0..1 and 0..255 data keep their meaning, anything else is
    stretched from its minimum to its maximum."""
    if not np.isfinite(arr).all():
        raise ImageError(f"'{name}' is a floating-point image with NaN or infinite pixels.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0:
        arr = arr * 255.0
    elif lo < 0.0 or hi > 255.0:
        arr = (arr - lo) / ((hi - lo) or 1.0) * 255.0
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


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


def _marker_kwargs(fmt: str) -> dict[str, object]:
    """Pillow save options that stamp a file as written by SketchStudio (see :func:`is_our_output`)."""
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", OUTPUT_MARKER)
        return {"pnginfo": info}
    if fmt == "JPEG":
        return {"comment": OUTPUT_MARKER}
    if fmt == "TIFF":
        return {"tiffinfo": {_TIFF_SOFTWARE: OUTPUT_MARKER}}
    return {}


def is_our_output(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an image SketchStudio wrote (its :data:`OUTPUT_MARKER` stamp).

    Batch outputs may replace such a file (a rerun refreshes its own results) but never anything
    else: a user's photo that happens to have the output's name is not ours. Reads the header only.
    """
    try:
        with Image.open(path) as im:
            tags = getattr(im, "tag_v2", None)
            stamp = (im.info.get("Software") or im.info.get("comment")
                     or (tags.get(_TIFF_SOFTWARE) if tags is not None else None))
    except Exception:  # noqa: BLE001 - unreadable, not an image, a bomb: not ours either way
        return False
    if isinstance(stamp, bytes):
        stamp = stamp.decode("latin-1", "replace")
    return isinstance(stamp, str) and stamp.startswith(OUTPUT_MARKER)


def save_image(img: np.ndarray, path: str | os.PathLike[str], quality: int = 95) -> Path:
    """Encode and write atomically; the format follows the suffix (.png, .jpg, ...).

    PNG, JPEG and TIFF files carry the :data:`OUTPUT_MARKER` stamp (see :func:`is_our_output`).
    """
    dest = Path(path)
    fmt = _SAVE_FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"Cannot save '{dest.name}': unknown image type '{dest.suffix}'. "
            f"Use one of {', '.join(sorted(_SAVE_FORMATS))}."
        )
    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(check_rgb(img)).save(buf, format=fmt, **kwargs, **_marker_kwargs(fmt))
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
    """RGB uint8 (H, W, 3) -> float tensor (3, H, W) in [-1, 1], no resizing.

    In numpy, not torch: the same float32 operations (bit-identical), but torch runs each of these
    small element-wise ops as an OpenMP parallel region, and on a busy 2-core machine every region
    waits for a descheduled team thread: 89 ms instead of 0.6 ms for a 256² crop (issue 23)."""
    a = np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1), dtype=np.float32)
    a /= np.float32(127.5)
    a -= np.float32(1.0)
    return torch.from_numpy(a)


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
    # numpy, for the reason array_to_tensor gives (69 ms -> 12 ms on a busy machine); the same
    # float32 arithmetic and round-half-to-even as torch's clamp/round/byte, bit for bit
    a = np.clip(t.detach().float().cpu().numpy(), -1.0, 1.0)
    img = np.round((a + np.float32(1.0)) * np.float32(127.5)).astype(np.uint8).transpose(1, 2, 0)
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
