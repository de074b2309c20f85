"""Translator precision: bf16 autocast where the hardware has it, fp32 for evaluation."""

from __future__ import annotations

import numpy as np
import pytest

import sketchstudio.device as device_mod
from sketchstudio.engine import PHOTO2SKETCH, SKETCH2PHOTO, Translator
from sketchstudio.errors import ConfigError
from sketchstudio.imaging import load_image
from sketchstudio.resources import default_model_path
from tests.conftest import face_like


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu(monkeypatch, tiny_model, native, expected):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: native)
    tr = Translator(tiny_model, device="cpu")
    assert tr.precision == expected
    assert tr.describe.endswith(f", {expected}") and tr.describe.startswith("CPU")
    assert Translator(tiny_model, device="cpu", precision="fp32").precision == "fp32"


def test_fp16_needs_cuda(tiny_model):
    with pytest.raises(ConfigError, match="fp16 precision needs a CUDA GPU"):
        Translator(tiny_model, device="cpu", precision="fp16")


def test_bf16_output_is_close_to_fp32_and_uint8(tiny_model):
    img = face_like(1, 40, 48)
    a = Translator(tiny_model, device="cpu", precision="fp32").translate(img, PHOTO2SKETCH, return_taps=True)
    b = Translator(tiny_model, device="cpu", precision="bf16").translate(img, PHOTO2SKETCH, return_taps=True)
    assert b.output.dtype == np.uint8 and b.output.shape == img.shape
    diff = np.abs(a.output.astype(int) - b.output.astype(int))
    assert diff.mean() < 2.0 and diff.max() <= 24
    assert all(t.dtype.is_floating_point and t.dtype.itemsize == 4 for t in b.taps.values())


@pytest.mark.shared
def test_shipped_model_bf16_matches_fp32(cufs):
    """On a real test sketch the shipped F gives nearly the same photo in bf16 and fp32."""
    model = default_model_path()
    if model is None:
        pytest.skip("no shipped default model")
    if not device_mod.cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16: emulated bf16 at 256² takes minutes, and the app "
                    "uses fp32 here anyway (the tiny-model bf16 test still runs)")
    sketch = load_image(sorted((cufs / "test" / "sketches").iterdir())[0])
    a = Translator(model, device="cpu", precision="fp32").translate(sketch, SKETCH2PHOTO).output
    b = Translator(model, device="cpu", precision="bf16").translate(sketch, SKETCH2PHOTO).output
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.mean() < 2.0, diff.mean()


@pytest.mark.parametrize("threads, text", [(1, "CPU (1 thread)"), (2, "CPU (2 threads)")])
def test_cpu_description_counts_threads(monkeypatch, threads, text):
    monkeypatch.setattr(device_mod.torch, "get_num_threads", lambda: threads)
    assert device_mod.describe_device(device_mod.torch.device("cpu")) == text


def fake_gpu_failure(monkeypatch, tr: Translator, direction: str,
                     message: str = "CUDA error: out of memory (fake)") -> list[str]:
    """Put ``tr`` on a stand-in GPU whose first forward pass of ``direction``'s net fails the way
    CUDA does; returns the log of forward calls ("gpu" then "cpu")."""
    import torch

    for d in tr.directions:  # build the nets on the CPU, as a GPU translator would have them
        tr.net(d)
    net = tr.net(direction)
    real = net.forward
    calls: list[str] = []

    def forward(x, *args, **kwargs):
        calls.append(tr.device.type)
        if tr.device.type != "cpu":
            raise RuntimeError(message)
        return real(x, *args, **kwargs)

    monkeypatch.setattr(net, "forward", forward)
    # "meta" stands in for the GPU: tensors move there without allocating, and it is not the CPU
    monkeypatch.setattr(tr, "device", torch.device("meta"))
    monkeypatch.setattr("sketchstudio.engine.describe_device",
                        lambda dev: "CUDA: Fake GPU" if dev.type != "cpu" else "CPU (test)")
    return calls


def test_cuda_failure_falls_back_to_the_cpu_and_says_so(monkeypatch, tiny_model):
    img = face_like(1, 40, 48)
    expected = Translator(tiny_model, device="cpu", precision="fp32").translate(img, PHOTO2SKETCH)
    tr = Translator(tiny_model, device="cpu", precision="fp32")
    calls = fake_gpu_failure(monkeypatch, tr, PHOTO2SKETCH)
    assert tr.fallback_note is None
    got = tr.translate(img, PHOTO2SKETCH)
    assert calls == ["meta", "cpu"]  # failed once on the "GPU", then ran on the CPU
    assert np.array_equal(got.output, expected.output)
    assert tr.device.type == "cpu" and tr.describe == "CPU (test), fp32"
    assert tr.fallback_note == ("CUDA: Fake GPU failed (RuntimeError: CUDA error: out of memory "
                                "(fake)); running on the CPU instead.")
    assert all(p.device.type == "cpu" for n in tr._nets.values() for p in n.parameters())
    # the next call goes straight to the CPU
    tr.translate(img, SKETCH2PHOTO)
    assert calls == ["meta", "cpu"] and tr.device.type == "cpu"


def test_a_bug_on_the_gpu_is_not_hidden_by_the_fallback(monkeypatch, tiny_model):
    tr = Translator(tiny_model, device="cpu", precision="fp32")
    calls = fake_gpu_failure(monkeypatch, tr, PHOTO2SKETCH, message="shapes cannot be multiplied")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        tr.translate(face_like(1, 40, 48), PHOTO2SKETCH)
    assert calls == ["meta"] and tr.fallback_note is None and tr.device.type == "meta"
