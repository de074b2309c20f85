"""Issue 19: hostile and odd image files through every door — the translate CLI, the GUI's load
path and the match indexer. Each bad file gets a clear message of its own, nothing raises past
the front end, and the good files next to it are still processed.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchstudio import cli as translate_cli
from sketchstudio.errors import ImageError
from sketchstudio.imaging import load_image
from tests.conftest import face_like, header_png


def bomb_png(path: Path, w: int = 20000, h: int = 20000) -> Path:
    """A 60-byte PNG whose header says 20000×20000 (400 MP): Pillow refuses it inside
    ``Image.open`` with ``DecompressionBombError``, before any size check of ours ran."""
    path.write_bytes(header_png(w, h))
    return path


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def make_cases(folder: Path) -> tuple[dict[str, tuple[Path, str]], dict[str, Path]]:
    """({bad case: (file, expected message)}, {good case: file}) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    face = Image.fromarray(face_like(3, 40, 48))
    bad: dict[str, tuple[Path, str]] = {}
    good: dict[str, Path] = {}
    (folder / "zero.png").write_bytes(b"")
    bad["zero-byte"] = (folder / "zero.png", "is empty (0 bytes)")
    buf = io.BytesIO()
    face.save(buf, "JPEG")
    (folder / "cut.jpg").write_bytes(buf.getvalue()[:300])
    bad["truncated"] = (folder / "cut.jpg", "corrupt or truncated")
    (folder / "text.jpg").write_text("this is not an image")
    bad["text-as-jpg"] = (folder / "text.jpg", "not an image file")
    bad["bomb"] = (bomb_png(folder / "bomb.png"), "too large to open")
    (folder / "loop.png").symlink_to("loop.png")
    bad["symlink loop"] = (folder / "loop.png", "symbolic link loop")
    os.mkfifo(folder / "pipe.png")
    bad["fifo"] = (folder / "pipe.png", "FIFO")
    (folder / "dir.png").mkdir()
    bad["directory"] = (folder / "dir.png", "is a folder")
    arr16 = (np.asarray(face.convert("L"), dtype=np.uint16) * 257)
    good["16-bit"] = _save(Image.fromarray(arr16), folder / "deep.png")
    good["cmyk"] = _save(face.convert("CMYK"), folder / "cmyk.jpg")
    good["palette"] = _save(face.convert("P"), folder / "palette.png")
    good["gif"] = _save(face.convert("P"), folder / "anim.gif")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    good["exif-rotated"] = _save(face, folder / "rotated.jpg", exif=exif)
    grey01 = np.asarray(face.convert("L"), dtype=np.float32) / 255.0
    good["float tiff"] = _save(Image.fromarray(grey01, mode="F"), folder / "float.tif")
    good["plain"] = _save(face, folder / "plain.png")
    return bad, good


def test_every_odd_file_has_its_own_message_in_the_loader(tmp_path):
    bad, good = make_cases(tmp_path / "in")
    for path, message in bad.values():
        with pytest.raises(ImageError, match=re.escape(message)):
            load_image(path)
    for case, path in good.items():
        img = load_image(path)
        assert img.dtype == np.uint8 and img.ndim == 3, case
    assert load_image(good["exif-rotated"]).shape == (40, 48, 3)  # 48×40 after the rotation
    floaty = load_image(good["float tiff"])
    assert abs(float(floaty.mean()) - float(load_image(good["plain"]).mean())) < 20  # not black


def test_the_translate_cli_lists_each_bad_file_and_translates_the_rest(tiny_model, tmp_path, capsys):
    bad, good = make_cases(tmp_path / "in")
    out = tmp_path / "out"
    rc = translate_cli.main([str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model),
                             "--device", "cpu", "--no-align"])
    text = capsys.readouterr()
    assert rc == 1
    assert "Traceback" not in text.err
    for case, (path, message) in bad.items():
        assert any(path.name in ln and message in ln for ln in text.err.splitlines()), case
    assert sorted(p.stem for p in out.iterdir()) == sorted(p.stem for p in good.values())
    assert f"{len(good)} image(s) written" in text.out and f"{len(bad)} skipped" in text.out


def test_a_named_symlink_loop_or_fifo_is_not_called_missing(tiny_model, tmp_path, capsys):
    bad, good = make_cases(tmp_path / "in")
    args = [str(bad["symlink loop"][0]), str(bad["fifo"][0]), str(good["plain"])]
    assert translate_cli.main([*args, "-o", str(tmp_path / "o"), "--model", str(tiny_model),
                               "--device", "cpu", "--no-align"]) == 1
    err = capsys.readouterr().err
    assert "symbolic link loop" in err and "FIFO" in err and "no such file" not in err


def test_the_gui_load_path_reports_each_bad_file_without_unexpected_errors(tiny_model, tmp_path):
    pytest.importorskip("PySide6")
    from sketchstudio.engine import Translator
    from sketchstudio.gui.workers import TranslateRequest, TranslateWorker

    bad, good = make_cases(tmp_path / "in")
    w = TranslateWorker()
    w.translator = Translator(tiny_model, device="cpu")
    failed: dict[int, str] = {}
    done: set[int] = set()
    w.failed.connect(lambda seq, msg, _detail: failed.__setitem__(seq, msg))
    w.result_ready.connect(lambda res: done.add(res.seq))
    cases = [*bad.items(), *((c, (p, None)) for c, p in good.items())]
    for seq, (_case, (path, _msg)) in enumerate(cases, start=1):
        w.latest_seq = seq
        w.translate(TranslateRequest(seq=seq, source=str(path), align=False))
    for seq, (case, (_path, message)) in enumerate(cases, start=1):
        if message is None:
            assert seq in done, case
        else:
            assert message in failed[seq] and "Unexpected error" not in failed[seq], case


def test_the_gui_survives_a_dropped_symlink_loop(tmp_path):
    pytest.importorskip("PySide6")
    from sketchstudio.gui.settings import Settings

    loop = tmp_path / "loop.png"
    loop.symlink_to("loop.png")
    s = Settings.at(tmp_path / "s.ini")
    assert s.add_recent("images", loop)[0].endswith("loop.png")


def test_the_match_indexer_lists_bad_files_and_indexes_the_rest(tmp_path):
    from sketchstudio.match.index import OK, UNREADABLE, GalleryIndex

    bad, good = make_cases(tmp_path / "gallery")

    def extract(path: Path) -> np.ndarray:
        return load_image(path).reshape(-1, 3).mean(0).astype(np.float32)

    for _ in range(2):  # a rerun over the same bad files must work as well
        idx = GalleryIndex.open(tmp_path / "gallery", {"method": "test"}, cache_root=tmp_path / "c")
        idx.update(extract)
        status = {Path(k).name: (e.status, e.message) for k, e in idx.entries.items()}
        for case, (path, message) in bad.items():
            if case == "directory":  # a folder is walked into, not indexed
                continue
            assert status[path.name][0] == UNREADABLE and message in status[path.name][1], case
        assert all(status[p.name][0] == OK for p in good.values())
        assert len(idx.paths()) == len(good)


def _built_index(tmp_path: Path):
    from sketchstudio.match.index import GalleryIndex

    gallery = tmp_path / "g"
    gallery.mkdir()
    for i in range(3):
        Image.fromarray(face_like(i)).save(gallery / f"p{i}.png")
    idx = GalleryIndex.open(gallery, {"method": "test"}, cache_root=tmp_path / "c")
    idx.update(lambda p: np.array([float(p.stem[1:]), 1.0], np.float32))
    return gallery, idx


@pytest.mark.parametrize("damage", ["null", "list", "nan rows", "shuffled rows", "path escape"])
def test_a_damaged_match_cache_is_rebuilt_not_trusted(tmp_path, damage, caplog):
    from sketchstudio.match.index import GalleryIndex

    gallery, idx = _built_index(tmp_path)
    doc = json.loads(idx._json.read_text())
    feats_path = idx.cache_dir / doc["features_file"]
    feats = np.load(feats_path)
    if damage == "null":
        idx._json.write_text("null")
    elif damage == "list":
        idx._json.write_text("[]")
    elif damage == "nan rows":
        feats[1] = np.nan
        np.save(feats_path, feats)
    elif damage == "shuffled rows":
        np.save(feats_path, feats[::-1].copy())
    else:
        np.save(idx.cache_dir.parent.parent / "features-evil.npy", feats)  # a real file, outside
        doc["features_file"] = "../../features-evil.npy"
        idx._json.write_text(json.dumps(doc))
    again = GalleryIndex.open(gallery, {"method": "test"}, cache_root=tmp_path / "c")
    assert again.entries == {} and "rebuilding" in caplog.text
    stats = again.update(lambda p: np.array([float(p.stem[1:]), 1.0], np.float32))
    assert stats.computed == 3 and np.isfinite(again.features).all()
    assert [row[0] for row in again.features] == [0.0, 1.0, 2.0]


def test_the_match_cache_is_private(tmp_path):
    _, idx = _built_index(tmp_path)
    assert idx.cache_dir.stat().st_mode & 0o777 == 0o700
    assert idx.cache_dir.parent.stat().st_mode & 0o777 == 0o700
    for f in idx.cache_dir.iterdir():
        assert f.stat().st_mode & 0o777 == 0o600, f.name


def test_recognition_eval_cache_is_per_user(monkeypatch, tmp_path):
    from research import recognition_eval

    monkeypatch.setenv("SKETCHSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    seen = {}

    def fake_evaluate(data, translator, cache, spaces, aligned):
        seen["cache"] = cache
        raise recognition_eval.ConfigError("stop here")

    monkeypatch.setattr(recognition_eval, "evaluate", fake_evaluate)
    monkeypatch.setattr("sketchstudio.engine.Translator", lambda *a, **k: object())
    monkeypatch.setitem(recognition_eval.SPACE_MAKERS, "nlda", lambda _p: object())
    assert recognition_eval.main(["--spaces", "nlda"]) == 2
    assert seen["cache"] == tmp_path / "cache" / "eval-cache"
