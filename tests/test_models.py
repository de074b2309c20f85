"""Students and teacher: shapes, parameter count, size checks, weight resolution and errors."""

from __future__ import annotations

import pytest
import torch

from sketchstudio.errors import TeacherUnavailableError
from sketchstudio.imaging import to_tensor
from sketchstudio.models import TAP_NAMES, StudentNet, count_parameters, load_teacher
from sketchstudio.models import teacher as teacher_mod
from tests.conftest import face_like


def test_paper_student_taps_and_parameter_count():
    net = StudentNet(ngf=64, n_blocks=9)
    n = count_parameters(net)
    assert 11.3e6 < n < 11.5e6, n
    # Shapes checked on the meta device: exact, and no 99 GFLOP forward in a unit test.
    with torch.device("meta"):
        meta_net = StudentNet(ngf=64, n_blocks=9)
        out, taps = meta_net(torch.empty(1, 3, 256, 256), return_taps=True)
    assert list(taps) == list(TAP_NAMES)
    shapes = {k: tuple(v.shape[1:]) for k, v in taps.items()}
    assert shapes == {"IC": (64, 256, 256), "DC1": (128, 128, 128), "DC2": (256, 64, 64),
                      "Block": (256, 64, 64), "UC1": (128, 128, 128), "UC2": (64, 256, 256)}
    assert tuple(out.shape) == (1, 3, 256, 256)


def test_student_output_range_and_init():
    torch.manual_seed(0)
    net = StudentNet(ngf=8, n_blocks=2)
    y = net(torch.rand(2, 3, 36, 44) * 2 - 1)
    assert y.shape == (2, 3, 36, 44)
    assert y.min() >= -1 and y.max() <= 1
    w = net.Block[0].body[1].weight
    assert abs(w.std().item() - 0.02) < 0.003  # N(0, 0.02) init


@pytest.mark.parametrize("shape", [(1, 3, 250, 200), (1, 3, 30, 32), (1, 1, 32, 32), (3, 32, 32)])
def test_student_rejects_bad_inputs(shape):
    with pytest.raises(ValueError, match="divisible by 4|Expected"):
        StudentNet(ngf=4, n_blocks=1)(torch.zeros(shape))


def test_teacher_statistics_on_fixed_image(shared_teacher):
    t = load_teacher(shared_teacher)
    assert not any(p.requires_grad for p in t.parameters())
    out = t(to_tensor(face_like(7, 64, 64), 64))
    expected = {"relu1_1": ((64, 64, 64), 27.5447, 53.0031),
                "relu2_1": ((128, 32, 32), 120.0582, 196.7856),
                "relu3_1": ((256, 16, 16), 164.0257, 317.1562)}
    for tap, (shape, mean, std) in expected.items():
        assert tuple(out[tap].shape[1:]) == shape
        assert out[tap].mean().item() == pytest.approx(mean, rel=1e-3)
        assert out[tap].std().item() == pytest.approx(std, rel=1e-3)


def test_teacher_channel_scales_divide_taps(random_teacher):
    t = load_teacher(random_teacher)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    raw = t(x)["relu2_1"]
    t.set_channel_scales({k: torch.full((c,), 4.0) for k, c in
                          (("relu1_1", 64), ("relu2_1", 128), ("relu3_1", 256))})
    assert torch.allclose(t(x)["relu2_1"], raw / 4)


def test_teacher_resolution_order(random_teacher, tmp_path, monkeypatch):
    monkeypatch.setattr(teacher_mod, "_torchvision_cache_file", lambda: tmp_path / "none.pth")
    monkeypatch.setenv("SKETCHSTUDIO_TEACHER", str(random_teacher))
    assert teacher_mod.resolve_teacher_source() == str(random_teacher)
    assert teacher_mod.resolve_teacher_source("explicit.pth") == "explicit.pth"
    monkeypatch.delenv("SKETCHSTUDIO_TEACHER")
    assert teacher_mod.resolve_teacher_source() is None
    cache = tmp_path / teacher_mod.TORCHVISION_FILE
    cache.write_bytes(random_teacher.read_bytes())
    monkeypatch.setattr(teacher_mod, "_torchvision_cache_file", lambda: cache)
    assert teacher_mod.resolve_teacher_source() == str(cache)
    assert load_teacher() is not None


def test_teacher_missing_everywhere_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("SKETCHSTUDIO_TEACHER", raising=False)
    monkeypatch.setattr(teacher_mod, "_torchvision_cache_file", lambda: tmp_path / "none.pth")

    def offline():
        raise OSError("network unreachable")

    monkeypatch.setattr(teacher_mod, "_download_torchvision", offline)
    monkeypatch.setenv("SKETCHSTUDIO_OFFLINE", "0")
    with pytest.raises(TeacherUnavailableError, match="SKETCHSTUDIO_TEACHER") as ei:
        load_teacher()
    assert "download failed" in str(ei.value) and "--teacher" in str(ei.value)


def test_teacher_wrong_shape_and_garbage_files(tmp_path, random_teacher):
    sd = torch.load(random_teacher, weights_only=True)
    sd["features.5.weight"] = torch.zeros(128, 32, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(TeacherUnavailableError, match=r"features\.5\.weight.*\(128, 32, 3, 3\)"):
        load_teacher(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(TeacherUnavailableError, match="not a readable"):
        load_teacher(junk)
    with pytest.raises(TeacherUnavailableError, match="not found"):
        load_teacher(tmp_path / "missing.pth")
    sd["features.5.weight"] = torch.zeros(128, 64, 3, 3)
    del sd["features.10.bias"]
    torch.save(sd, bad)
    with pytest.raises(TeacherUnavailableError, match="lack 'features.10.bias'"):
        load_teacher(bad)


def test_full_vgg_state_dict_is_accepted(tmp_path, random_teacher):
    sd = torch.load(random_teacher, weights_only=True)
    sd["features.28.weight"] = torch.zeros(512, 512, 3, 3)  # deeper layers are ignored
    sd["classifier.0.weight"] = torch.zeros(4, 4)
    p = tmp_path / "full.pth"
    torch.save(sd, p)
    assert load_teacher(p).features[10].weight.shape == (256, 128, 3, 3)
