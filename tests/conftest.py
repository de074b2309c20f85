"""Shared fixtures: tiny models and images made on the fly, and ../shared when it is there."""

from __future__ import annotations

import contextlib
import gc
import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SKETCHSTUDIO_OFFLINE", "1")  # tests never touch the network
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO.parent / "shared").resolve()
CUFS = SHARED / "data" / "cufs"
TEACHER_FILE = SHARED / "teacher" / "vgg19_relu3_1.pth"


@pytest.fixture
def collect_qt_garbage():
    """Collect each test's leftover Qt wrappers here, in the GUI thread. Otherwise Python's cyclic
    GC may free them later from whichever thread allocates next, e.g. the compute thread loading
    a model in the next test, and a QWidget destroyed off the GUI thread segfaults (seen in about
    1 of 20 runs: a GC pass inside build_student on the compute thread). The GUI test modules use
    it for every test (``pytest.mark.usefixtures``)."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def cufs() -> Path:
    if not (CUFS / "test" / "photos").is_dir():
        pytest.skip(f"CUFS data not found at {CUFS} (only in the project's CI and dev checkouts)")
    return CUFS


@pytest.fixture(scope="session")
def shared_teacher() -> Path:
    if not TEACHER_FILE.is_file():
        pytest.skip(f"VGG-19 teacher file not found at {TEACHER_FILE} (only in CI/dev checkouts)")
    return TEACHER_FILE


@pytest.fixture(scope="session")
def random_teacher(tmp_path_factory) -> Path:
    """A VGG-19 (to relu3_1) file with random weights: right shapes, no download, no ../shared."""
    from sketchstudio.models.teacher import VGGTeacher

    torch.manual_seed(1)
    t = VGGTeacher()
    sd = {f"features.{k}": v for k, v in t.features.state_dict().items()}
    path = tmp_path_factory.mktemp("teacher") / "vgg_random.pth"
    torch.save(sd, path)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk (length, type, data, CRC), for hand-built test files."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_png(w: int, h: int) -> bytes:
    """A PNG whose header says w×h but holds almost no pixel data: cheap for every check that
    runs before decoding (Pillow's bomb limit at open time, our MP limit and minimum side)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + png_chunk(b"IEND", b""))


def face_like(seed: int, w: int = 40, h: int = 48, sketch: bool = False) -> np.ndarray:
    """A small synthetic image: smooth gradient background + blobs (not a real face)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 / w), (yy * 255 / h), np.full_like(xx, 128)], -1)
    base = base * rng.uniform(0.4, 1.0, size=3)
    for _ in range(3):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 10)
        base[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, size=3)
    img = base.clip(0, 255).astype(np.uint8)
    if sketch:
        g = img.mean(axis=2, keepdims=True).astype(np.uint8)
        img = np.repeat(g, 3, axis=2)
    return img


def make_pairs(root: Path, n: int, prefix: str = "p") -> Path:
    """A paired folder of ``n`` synthetic photo/sketch pairs (photos/ + sketches/) at ``root``."""
    from sketchstudio.imaging import save_image

    (root / "photos").mkdir(parents=True)
    (root / "sketches").mkdir()
    for i in range(n):
        save_image(face_like(i), root / "photos" / f"{prefix}{i}.png")
        save_image(face_like(i, sketch=True), root / "sketches" / f"{prefix}{i}.png")
    return root


@pytest.fixture
def tiny_pairs(tmp_path) -> Path:
    """A paired folder with 3 synthetic photo/sketch pairs (photos/ + sketches/)."""
    return make_pairs(tmp_path / "pairs", 3)


def tiny_config(data: Path, out: Path, teacher: Path, **kw):
    from trainer.config import TrainConfig

    base = dict(data_dir=str(data), out_dir=str(out), epochs=1, image_size=32, ngf=4, n_blocks=1,
                precision="fp32", device="cpu", teacher_path=str(teacher), checkpoint_every=100,
                preview_every=1, teacher_norm_samples=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def tiny_model(tmp_path, random_teacher) -> Path:
    """A real (tiny, untrained) checkpoint with G and F: ngf=4, 1 block, 32²."""
    from sketchstudio.checkpoint import ModelMeta, save_checkpoint, student_tensors
    from sketchstudio.models import StudentNet

    torch.manual_seed(0)
    g, f = StudentNet(4, 1), StudentNet(4, 1)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, student_tensors("G", g) | student_tensors("F", f),
                    ModelMeta(ngf=4, n_blocks=1, image_size=32))
    return path


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str):
    """A real tmpfs of ``size`` (e.g. "256k", "2m") at ``where``, for disk-full tests on a real
    file system; skips the test where mounting is not possible (not root, no mount rights)."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
