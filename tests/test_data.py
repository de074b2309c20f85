"""Paired dataset layouts: subfolders, manifest, flat CUFS naming; the real CUFS split."""

from __future__ import annotations

import pytest

from sketchstudio.errors import DataError
from sketchstudio.imaging import save_image
from tests.conftest import face_like
from trainer.data import PairedFolder, scan_pairs


def test_flat_folder_with_cufs_suffixes(tmp_path):
    for i, suf in enumerate(["-sz1", "_sketch", "-sketch"]):
        save_image(face_like(i), tmp_path / f"f{i}.jpg")
        save_image(face_like(i, sketch=True), tmp_path / f"f{i}{suf}.jpg")
    scan = scan_pairs(tmp_path)
    assert scan.layout == "flat" and scan.ok
    assert [p.stem for p in scan.pairs] == ["f0", "f1", "f2"]
    ds = PairedFolder(tmp_path, size=32)
    x, y = ds[0]
    assert x.shape == y.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1


def test_manifest_with_split(tmp_path):
    (tmp_path / "a").mkdir()
    rows = ["split\tstem\tphoto\tsketch"]
    for i, split in enumerate(["train", "train", "test"]):
        save_image(face_like(i), tmp_path / "a" / f"p{i}.png")
        save_image(face_like(i, sketch=True), tmp_path / "a" / f"s{i}.png")
        rows.append(f"{split}\tid{i}\ta/p{i}.png\ta/s{i}.png")
    rows.append("train\tid9\ta/p9.png\ta/s9.png")
    (tmp_path / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    scan = scan_pairs(tmp_path, split="test")
    assert [p.stem for p in scan.pairs] == ["id2"] and scan.ok
    bad = scan_pairs(tmp_path, split="train")
    assert len(bad.pairs) == 2 and "line 5: missing" in bad.problems[0]


def test_manifest_column_filters(tmp_path):
    (tmp_path / "a").mkdir()
    rows = ["split\tsubset\tstem\tphoto\tsketch"]
    for i, (split, subset) in enumerate([("train", "cuhk"), ("train", "ar"), ("test", "cuhk")]):
        save_image(face_like(i), tmp_path / "a" / f"p{i}.png")
        save_image(face_like(i, sketch=True), tmp_path / "a" / f"s{i}.png")
        rows.append(f"{split}\t{subset}\tid{i}\ta/p{i}.png\ta/s{i}.png")
    (tmp_path / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    assert [p.stem for p in scan_pairs(tmp_path, split="train,subset=cuhk").pairs] == ["id0"]
    assert [p.stem for p in scan_pairs(tmp_path, split="subset=cuhk").pairs] == ["id0", "id2"]
    unknown = scan_pairs(tmp_path, split="train,source=xm")
    assert not unknown.ok and "no column 'source'" in unknown.problems[0]
    with pytest.raises(DataError, match="bad split filter"):
        scan_pairs(tmp_path, split="subset=")


def test_empty_and_missing_folders(tmp_path):
    assert "no photo/sketch pairs" in scan_pairs(tmp_path).problems[0]
    assert "is not a folder" in scan_pairs(tmp_path / "nope").problems[0]
    with pytest.raises(DataError, match="problem"):
        PairedFolder(tmp_path)


def test_cufs_layouts(cufs):
    train = scan_pairs(cufs / "train", check_images=False)
    assert train.ok and len(train.pairs) == 268 and train.layout == "photos+sketches"
    test = scan_pairs(cufs, split="test", check_images=False)
    assert test.ok and len(test.pairs) == 100 and test.layout == "manifest"
    cuhk = scan_pairs(cufs, split="train,subset=cuhk", check_images=False)
    assert cuhk.ok and len(cuhk.pairs) == 88  # the paper's CUHK-only training set
