"""Loading's exact refusals (issue 17 mutation pass): every kind of non-file, bytes input, the
size limits at their boundaries and Pillow's decompression-bomb error and warning."""

from __future__ import annotations

import errno
import io
import os
import socket
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchstudio import imaging
from sketchstudio.errors import ImageError
from sketchstudio.imaging import check_image_file, load_image
from tests.conftest import header_png, png_chunk


def _pattern(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 7 % 256, y * 11 % 256, (x + y) * 5 % 256], axis=2).astype(np.uint8)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _message(call, *args, **kwargs) -> tuple[str, BaseException | None]:
    with pytest.raises(ImageError) as ei:
        call(*args, **kwargs)
    return str(ei.value), ei.value.__cause__


# -- check_image_file: one sentence per kind of non-file ------------------------------------------

def test_broken_symlink_is_named_as_such(tmp_path):
    link = tmp_path / "gone.png"
    link.symlink_to(tmp_path / "missing.png")
    expected = f"'{link}' is a broken symbolic link (its target does not exist)."
    assert _message(check_image_file, link)[0] == expected
    assert _message(load_image, link)[0] == expected


def test_other_stat_errors_give_the_os_reason(tmp_path):
    (tmp_path / "plain.txt").write_text("x")
    p = tmp_path / "plain.txt" / "face.png"  # a path under a regular file: ENOTDIR
    msg, cause = _message(check_image_file, p)
    assert msg == f"Cannot read '{p}': Not a directory"
    assert isinstance(cause, OSError) and cause.errno == errno.ENOTDIR


def test_fifo_socket_and_device_each_have_their_sentence(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert _message(check_image_file, fifo)[0] == f"'{fifo}' is a FIFO (named pipe), not an image file."
    sock_path = tmp_path / "s.png"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(sock_path))
        assert _message(check_image_file, sock_path)[0] == f"'{sock_path}' is a socket, not an image file."
        assert _message(load_image, sock_path)[0] == f"'{sock_path}' is a socket, not an image file."
    finally:
        sock.close()
    assert _message(check_image_file, "/dev/null")[0] == "'/dev/null' is a device, not an image file."
    assert _message(load_image, Path("/dev/null"))[0] == "'/dev/null' is a device, not an image file."


# -- bytes input -----------------------------------------------------------------------------------

def test_encoded_bytes_load_like_the_file(tmp_path):
    arr = _pattern(24, 20)
    data = _png(arr)
    (tmp_path / "f.png").write_bytes(data)
    from_file = load_image(tmp_path / "f.png")
    from_bytes = load_image(data)
    np.testing.assert_array_equal(from_file, arr)
    np.testing.assert_array_equal(from_bytes, arr)
    np.testing.assert_array_equal(load_image(bytearray(data)), arr)


def test_bytes_that_are_not_an_image():
    msg, cause = _message(load_image, b"this is plain text, not any image format at all\n" * 4)
    assert msg == "The data is not an image (or its format is not supported)."
    assert cause is not None


def test_bytes_are_called_image_data_in_messages():
    assert _message(load_image, header_png(15, 40))[0] == \
        "'<image data>' is only 15×40 pixels; at least 16×16 is needed."
    assert _message(load_image, header_png(3500, 1000), max_pixels=1_500_000)[0] == \
        "'<image data>' is 3500×1000 = 4 MP, larger than the 2 MP limit. Scale it down first."


def test_bomb_bytes_too_large_with_the_limit():
    data = header_png(20000, 20000)  # 400 MP: Pillow refuses it inside Image.open
    msg, cause = _message(load_image, data)
    assert isinstance(cause, Image.DecompressionBombError) and "exceeds limit" in str(cause)
    assert msg == f"'<image data>' is too large to open ({cause}); the limit is 50 MP. Scale it down first."
    msg, cause = _message(load_image, data, max_pixels=1_500_000)
    assert msg == f"'<image data>' is too large to open ({cause}); the limit is 2 MP. Scale it down first."


def test_bomb_file_too_large_names_the_path(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(header_png(20000, 20000))
    msg, cause = _message(load_image, p)
    assert isinstance(cause, Image.DecompressionBombError) and "exceeds limit" in str(cause)
    assert msg == f"'{p}' is too large to open ({cause}); the limit is 50 MP. Scale it down first."
    msg, cause = _message(load_image, str(p), max_pixels=1_500_000)
    assert msg == f"'{p}' is too large to open ({cause}); the limit is 2 MP. Scale it down first."


# -- our own limits --------------------------------------------------------------------------------

def test_max_pixels_boundary_loads_exactly_at_the_limit(tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (3000, 2000), 90).save(big, compress_level=1)
    out = load_image(big, max_pixels=6_000_000)  # w*h == max_pixels: allowed
    assert out.shape == (2000, 3000, 3) and (out == 90).all()
    small = _pattern(20, 20)
    np.testing.assert_array_equal(load_image(_png(small), max_pixels=400), small)
    p = tmp_path / "over.png"
    p.write_bytes(header_png(3001, 2000))
    assert _message(load_image, p, max_pixels=6_000_000)[0] == \
        f"'{p}' is 3001×2000 = 6 MP, larger than the 6 MP limit. Scale it down first."


def test_larger_than_message_rounds_exactly(tmp_path):
    p = tmp_path / "wide.png"
    p.write_bytes(header_png(3500, 1000))  # 3.5 MP -> "4"; limit 1.5 MP -> "2" (half to even)
    assert _message(load_image, p, max_pixels=1_500_000)[0] == \
        f"'{p}' is 3500×1000 = 4 MP, larger than the 2 MP limit. Scale it down first."
    q = tmp_path / "half.png"
    q.write_bytes(header_png(2500, 1000))  # 2.5 MP formats as "2"
    assert f"{2.5:.0f}" == "2"
    assert _message(load_image, q, max_pixels=1_500_000)[0] == \
        f"'{q}' is 2500×1000 = 2 MP, larger than the 2 MP limit. Scale it down first."


def test_min_side_boundary(tmp_path):
    arr = _pattern(16, 16)
    np.testing.assert_array_equal(load_image(_png(arr)), arr)
    p = tmp_path / "thin.png"
    p.write_bytes(header_png(15, 40))
    assert _message(load_image, p)[0] == f"'{p}' is only 15×40 pixels; at least 16×16 is needed."


# -- Pillow's warning during decode, other warnings, corrupt files, OS errors -----------------------

def _icns_32() -> bytes:
    """An .icns holding one 32×32 PNG ('icp5'): Pillow checks its size again while *decoding*,
    so a DecompressionBombWarning fires inside load_image's warning filter."""
    png = _png(_pattern(32, 32))
    entry = b"icp5" + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(entry)) + entry


def test_icns_fixture_is_a_valid_image():
    np.testing.assert_array_equal(load_image(_icns_32()), _pattern(32, 32))


def test_bomb_warning_while_decoding_is_too_large(tmp_path, monkeypatch):
    p = tmp_path / "icon.icns"
    p.write_bytes(_icns_32())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1024 px: warning, not error (> 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the one at open time
        msg, cause = _message(load_image, p)
        assert isinstance(cause, Image.DecompressionBombWarning) and "1024 pixels" in str(cause)
        assert msg == f"'{p}' is too large to open ({cause}); the limit is 50 MP. Scale it down first."
        msg, cause = _message(load_image, p, max_pixels=1_500_000)
        assert msg == f"'{p}' is too large to open ({cause}); the limit is 2 MP. Scale it down first."


def test_other_pillow_warnings_while_decoding_do_not_refuse_the_image():
    arr = _pattern(20, 20)
    raw = b"".join(b"\0" + arr[y].tobytes() for y in range(20))
    # an invalid APNG control chunk after the pixel data: Pillow warns during load() and shows
    # the default image; only bomb warnings are turned into errors
    png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20, 20, 8, 2, 0, 0, 0))
           + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"acTL", struct.pack(">II", 0, 0))
           + png_chunk(b"IEND", b""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_array_equal(load_image(png), arr)


def test_truncated_file_is_corrupt_or_truncated(tmp_path):
    rng = np.random.default_rng(0)
    data = _png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    p = tmp_path / "cut.png"
    p.write_bytes(data[: len(data) // 2])
    msg, cause = _message(load_image, p)
    assert msg.startswith(f"'{p}' is corrupt or truncated (")
    assert isinstance(cause, OSError | SyntaxError | ValueError)
    assert msg == f"'{p}' is corrupt or truncated ({cause})."


def test_os_error_with_errno_from_open(tmp_path, monkeypatch):
    p = tmp_path / "f.png"
    p.write_bytes(_png(_pattern(20, 20)))

    def failing_open(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(imaging.Image, "open", failing_open)
    msg, cause = _message(load_image, p)
    assert msg == f"Cannot read '{p}': Input/output error"
    assert isinstance(cause, OSError) and cause.errno == errno.EIO


def test_result_is_c_contiguous_uint8(tmp_path):
    im = Image.fromarray(_pattern(40, 20))
    exif = im.getexif()
    exif[0x0112] = 6  # rotated on display: the transpose must still come back contiguous
    im.save(tmp_path / "r.png", exif=exif)
    out = load_image(tmp_path / "r.png")
    assert out.dtype == np.uint8 and out.flags.c_contiguous and out.shape == (40, 20, 3)
    np.testing.assert_array_equal(out, np.rot90(_pattern(40, 20), -1))
