"""Issue 19 §5: the match cache under two processes, and a gallery with nothing to search in.

Two processes indexing one gallery used to write their index.json + features pairs over each
other (11 of 50 concurrent rounds left an index.json naming a deleted array). Now an update holds
the cache folder's lock (``sketchstudio.filelock.FileLock``), the second process waits and starts
from the first one's saved index, and a reader that loses a race with a save reads again.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchstudio.match import cli as match_cli
from sketchstudio.match.index import LOCK_NAME, GalleryIndex, IndexCancelled
from tests.conftest import face_like

SETTINGS = {"method": "test"}


def make_gallery(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(face_like(i)).save(folder / f"p{i}.png")
    return folder


def feature(path: Path) -> np.ndarray:
    """A row that says which file it came from (so a row of the wrong file shows)."""
    return np.array([float(path.stem[1:]), 1.0], np.float32)


def slow_feature(path: Path) -> np.ndarray:
    time.sleep(0.01)  # a real extractor takes ~ms per face: keeps two updates overlapping
    return feature(path)


def assert_consistent(gallery: Path, cache: Path, n: int, caplog) -> None:
    """The saved pair loads as it is (no rebuild) and every row belongs to its file."""
    caplog.clear()
    idx = GalleryIndex.open(gallery, SETTINGS, cache_root=cache)
    assert "rebuilding" not in caplog.text and "Ignoring" not in caplog.text
    assert len(idx.entries) == n and len(idx.paths()) == n
    assert [row[0] for row in idx.features] == [float(p.stem[1:]) for p in idx.paths()]
    doc = json.loads(idx._json.read_text())
    assert sorted(p.name for p in idx.cache_dir.iterdir()) == sorted(["index.json", doc["features_file"]])


# --- two real processes -------------------------------------------------------------------------
def _index_in_child(gallery: str, cache: str, barrier, results) -> None:
    try:
        idx = GalleryIndex.open(gallery, SETTINGS, cache_root=cache)
        idx.save_every = 2  # many saves (and clean-ups of superseded arrays) per update
        barrier.wait(timeout=60)
        stats = idx.update(slow_feature)
        results.put(("ok", stats.computed, stats.reused))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", repr(exc), 0))


def test_two_processes_indexing_one_gallery_leave_one_consistent_cache(tmp_path, caplog):
    """Rounds of two forked processes updating one index at the same moment (both opened the
    empty cache first), a reader opening it all the while: every saved state loads, the final
    pair is whole, and the work is done once (the second process reuses the first one's)."""
    caplog.set_level(logging.INFO, logger="sketchstudio.match.index")
    ctx = multiprocessing.get_context("fork")  # starts at once: the parent has imported it all
    n = 8
    for r in range(5):
        gallery = make_gallery(tmp_path / f"g{r}", n)
        cache = tmp_path / f"c{r}"
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_index_in_child, args=(str(gallery), str(cache), barrier,
                                                            results)) for _ in range(2)]
        for p in procs:
            p.start()
        caplog.clear()
        deadline = time.monotonic() + 120  # bounds a hang (a forked child stuck on a lock)
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            GalleryIndex.open(gallery, SETTINGS, cache_root=cache)  # a reader without the lock
            time.sleep(0.005)
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        assert "Ignoring" not in caplog.text and "keeps changing" not in caplog.text, r
        out = [results.get(timeout=5) for _ in procs]
        assert [o[0] for o in out] == ["ok", "ok"], out
        assert sum(o[1] for o in out) == n, f"round {r}: the work was done twice: {out}"
        assert_consistent(gallery, cache, n, caplog)


# --- the same logic, deterministically ----------------------------------------------------------
def test_an_update_waits_for_the_lock_holder_then_starts_from_its_index(tmp_path, caplog):
    """Another process holds the lock and saves its index; our update (opened before that save)
    waits until the lock is released, then reuses the saved rows instead of writing its own."""
    from sketchstudio.filelock import FileLock

    gallery = make_gallery(tmp_path / "g", 3)
    ours = GalleryIndex.open(gallery, SETTINGS, cache_root=tmp_path / "c")  # empty cache
    other = GalleryIndex.open(gallery, SETTINGS, cache_root=tmp_path / "c")
    other._make_cache_dir()
    holder = FileLock(other.cache_dir / LOCK_NAME)
    holder.acquire()
    other._update(feature, None, None)  # the holder's own update, saved under its lock
    calls: list[Path] = []
    done: dict = {}

    def run() -> None:
        done["stats"] = ours.update(lambda p: calls.append(p) or feature(p))

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while "being updated by another process" not in caplog.text and t.is_alive() \
            and time.monotonic() < deadline:  # until the update says it is waiting
        time.sleep(0.01)
    assert "being updated by another process" in caplog.text, "it did not wait for the holder"
    assert t.is_alive() and not calls
    holder.release()
    t.join(10)
    assert not t.is_alive()
    assert calls == [] and (done["stats"].computed, done["stats"].reused) == (0, 3)
    assert [row[0] for row in ours.features] == [0.0, 1.0, 2.0]
    assert not (other.cache_dir / LOCK_NAME).exists()  # released with its file


def test_waiting_for_the_lock_can_be_cancelled_and_changes_nothing(tmp_path, caplog):
    from sketchstudio.filelock import FileLock

    gallery = make_gallery(tmp_path / "g", 2)
    idx = GalleryIndex.open(gallery, SETTINGS, cache_root=tmp_path / "c")
    idx._make_cache_dir()
    holder = FileLock(idx.cache_dir / LOCK_NAME)
    holder.acquire()
    t0 = time.monotonic()
    with pytest.raises(IndexCancelled, match="while another process was indexing"):
        idx.update(feature, cancel=lambda: time.monotonic() - t0 > 0.3)
    assert f"PID {os.getpid()}" in caplog.text  # the user is told whom we wait for
    assert not idx._json.exists()
    holder.release()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sketchstudio.match.index")
    gallery = make_gallery(tmp_path / "g", 2)
    idx = GalleryIndex.open(gallery, SETTINGS, cache_root=tmp_path / "c")
    idx._make_cache_dir()
    (idx.cache_dir / LOCK_NAME).write_text("PID 999999 on elsewhere, since 2026-01-01\n")
    stats = idx.update(feature)
    assert stats.computed == 2 and "took over the lock" in caplog.text
    assert "PID 999999" in caplog.text and not (idx.cache_dir / LOCK_NAME).exists()


def test_a_read_that_races_with_a_save_reads_again(tmp_path, monkeypatch, caplog):
    """A reader read index.json, then another process saved and deleted the array it names:
    the reader sees index.json has changed and reads the new pair (not "rebuilding")."""
    import sketchstudio.match.index as index_mod

    gallery = make_gallery(tmp_path / "g", 3)
    writer = GalleryIndex.open(gallery, SETTINGS, cache_root=tmp_path / "c")
    writer.update(feature)
    real_load = np.load
    raced = []

    def load_during_a_save(path, *a, **k):
        if not raced:  # the first array a reader opens is superseded right now
            raced.append(path)
            writer.features = writer.features * 1.0  # same rows, saved under a new name
            writer.save()
        return real_load(path, *a, **k)

    monkeypatch.setattr(index_mod.np, "load", load_during_a_save)
    reader = GalleryIndex.open(gallery, SETTINGS, cache_root=tmp_path / "c")
    assert raced and not Path(raced[0]).exists()
    assert "Ignoring" not in caplog.text and len(reader.paths()) == 3


def test_the_stale_temp_files_of_a_killed_writer_are_removed_under_the_lock(tmp_path):
    gallery = make_gallery(tmp_path / "g", 2)
    idx = GalleryIndex.open(gallery, SETTINGS, cache_root=tmp_path / "c")
    idx.update(feature)
    left = [idx.cache_dir / ".index.json.ab12cd34.tmp", idx.cache_dir / ".features-1.npy.0f0f0f0f.tmp"]
    for p in left:
        p.write_bytes(b"half")
    (gallery / "p9.png").write_bytes((gallery / "p0.png").read_bytes() + b"x")  # a change
    idx.update(feature)
    assert not any(p.exists() for p in left)


# --- the core lock itself -----------------------------------------------------------------------
def test_the_file_lock_names_its_holder_and_refuses_a_second_taker(tmp_path):
    from sketchstudio.filelock import FileLock, LockBusyError

    a, b = FileLock(tmp_path / "x.lock"), FileLock(tmp_path / "x.lock")
    assert a.acquire() == "" and a.held
    with pytest.raises(LockBusyError) as err:
        b.acquire()
    assert err.value.holder.startswith(f"PID {os.getpid()} on ")
    assert not b.held
    a.release()
    a.release()  # idempotent
    assert not (tmp_path / "x.lock").exists()
    with b:
        assert b.held
    assert not b.held


def test_a_full_disk_does_not_stop_the_lock(tmp_path, monkeypatch):
    """Writing the holder's name needs a data block that a full disk refuses; the flock itself
    does not, so the lock is still taken (and the caller's own write reports the full disk)."""
    import errno

    import sketchstudio.filelock as filelock

    def enospc(*_a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(filelock.os, "pwrite", enospc)
    lock = filelock.FileLock(tmp_path / "x.lock")
    assert lock.acquire() == "" and lock.held
    with pytest.raises(filelock.LockBusyError):
        filelock.FileLock(tmp_path / "x.lock").acquire()
    lock.release()


# --- an empty gallery ---------------------------------------------------------------------------
def _cli(tmp_path: Path, gallery: Path, query: Path) -> int:
    return match_cli.main(["--gallery", str(gallery), str(query), "--aligned", "--compare", "raw",
                           "--method", "nlda", "--cache-dir", str(tmp_path / "cache")])


@pytest.fixture
def query(tmp_path) -> Path:
    q = tmp_path / "q.png"
    Image.fromarray(face_like(1, 200, 250)).save(q)
    return q


def test_the_cli_refuses_an_empty_gallery_folder(tmp_path, query, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    assert _cli(tmp_path, tmp_path / "empty", query) == 2
    err = capsys.readouterr().err
    assert err.startswith("sketchstudio-match: error: The gallery folder ")
    assert "holds no images" in err and ".png" in err and "Traceback" not in err


def test_the_cli_refuses_a_gallery_without_a_usable_image(tmp_path, query, capsys):
    g = tmp_path / "bad"
    g.mkdir()
    (g / "a.jpg").write_text("not an image")
    (g / "b.png").write_bytes(b"")
    assert _cli(tmp_path, g, query) == 2
    out, err = capsys.readouterr()
    assert "sketchstudio-match: error: None of the 2 image(s) in the gallery folder" in err
    assert "2 unreadable, 0 without a face" in err
    assert "a.jpg" in out and "b.png" in out  # each file is listed with its reason


def test_require_faces_passes_a_gallery_with_a_face(tmp_path):
    gallery = make_gallery(tmp_path / "g", 1)
    idx = GalleryIndex.open(gallery, SETTINGS, cache_root=tmp_path / "c")
    idx.update(feature)
    idx.require_faces()
