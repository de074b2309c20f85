"""The frozen VGG-19 teacher (ImageNet), cut after relu3_1.

Weights are resolved in this order: an explicit path, ``$SKETCHSTUDIO_TEACHER``, torchvision's
VGG19_Weights.IMAGENET1K_V1 from its cache, then (if allowed) its download. The layers are built
directly with torchvision's key names (``features.0`` ... ``features.10``), so a state dict holding
only those keys (like ``../shared/teacher/vgg19_relu3_1.pth``) or a full VGG-19 both load, without
allocating the 140 M-parameter classifier.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import TeacherUnavailableError
from ..vocab import TEACHER_CHANNELS, TEACHER_TAPS

log = logging.getLogger(__name__)

ENV_VAR = "SKETCHSTUDIO_TEACHER"
#: index in ``features`` after which each tap is taken (torchvision's VGG-19 layout)
_TAP_INDEX = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"

HOW_TO_SUPPLY = (
    "SketchStudio needs the ImageNet VGG-19 weights (layers up to relu3_1) as its teacher. Supply "
    "them in one of these ways:\n"
    "  1. pass the file explicitly (--teacher PATH on the command line, or Settings → Teacher in the "
    "app), e.g. vgg19_relu3_1.pth;\n"
    f"  2. set the environment variable {ENV_VAR}=/path/to/vgg19_relu3_1.pth;\n"
    f"  3. put torchvision's '{TORCHVISION_FILE}' into torch's cache "
    "($TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints) or go online once so "
    "torchvision can download it."
)


class VGGTeacher(nn.Module):
    """VGG-19 ``features[:12]`` returning relu1_1 / relu2_1 / relu3_1.

    Input is a [-1, 1] image (the students' convention), mapped to [0, 1] and normalised with the
    ImageNet mean/std. Each tap is divided by a per-channel scale (buffer ``scale_<tap>``, ones by
    default); the trainer sets it to the mean activation over the training images ("normalised
    VGG", METHOD.md) so loss weights mean the same whichever VGG-19 file is used.
    """

    def __init__(self) -> None:
        super().__init__()
        cfg = [64, 64, "M", 128, 128, "M", 256]
        layers: list[nn.Module] = []
        c_in = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)  # indices 0..11, torchvision's names
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for tap in TEACHER_TAPS:
            self.register_buffer(f"scale_{tap}", torch.ones(TEACHER_CHANNELS[tap]), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGTeacher:  # always frozen, always eval
        return super().train(False)

    @property
    def channel_scales(self) -> dict[str, torch.Tensor]:
        return {t: getattr(self, f"scale_{t}") for t in TEACHER_TAPS}

    def set_channel_scales(self, scales: dict[str, torch.Tensor] | None) -> None:
        """Divide each tap by these per-channel values (None restores the raw activations)."""
        for tap in TEACHER_TAPS:
            buf = getattr(self, f"scale_{tap}")
            if scales is None:
                buf.fill_(1.0)
                continue
            s = scales[tap].to(buf)
            if s.shape != buf.shape:
                raise ValueError(f"scale for {tap} has shape {tuple(s.shape)}, expected {tuple(buf.shape)}")
            buf.copy_(s.clamp_min(1e-6))

    @torch.no_grad()
    def forward_raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._raw(x)

    def _raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = ((x + 1.0) * 0.5 - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        last = _TAP_INDEX["relu3_1"]
        for i, layer in enumerate(self.features):
            h = layer(h)
            for tap, idx in _TAP_INDEX.items():
                if i == idx:
                    out[tap] = h
            if i == last:
                break
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scaled taps of a real photo or sketch: targets, computed without autograd."""
        return self._scaled(self.forward_raw(x))

    def forward_with_grad(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scaled taps with autograd through ``x`` (the weights stay frozen): for loss terms on a
        student's *output* (texture/perceptual), whose gradient must reach the student."""
        return self._scaled(self._raw(x))

    def _scaled(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {t: raw[t] / getattr(self, f"scale_{t}").view(1, -1, 1, 1).to(raw[t].dtype)
                for t in TEACHER_TAPS}


def _expected_shapes() -> dict[str, torch.Size]:
    return {k: v.shape for k, v in VGGTeacher().features.state_dict().items()}


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a teacher state dict without unpickling arbitrary objects."""
    if not path.is_file():
        raise TeacherUnavailableError(f"Teacher weights file not found: '{path}'.\n\n{HOW_TO_SUPPLY}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the same thing to a user
        raise TeacherUnavailableError(
            f"'{path}' is not a readable VGG-19 weights file ({type(exc).__name__}: {exc}).\n\n"
            f"{HOW_TO_SUPPLY}") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise TeacherUnavailableError(f"'{path}' does not hold a state dict.\n\n{HOW_TO_SUPPLY}")
    return sd


def _select_features(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    expected = _expected_shapes()
    picked: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        full = f"features.{key}"
        if full not in sd:
            raise TeacherUnavailableError(
                f"Teacher weights '{source}' lack '{full}' (need features.0..features.10 of "
                f"torchvision's VGG-19).\n\n{HOW_TO_SUPPLY}")
        t = sd[full]
        if not isinstance(t, torch.Tensor) or t.shape != shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise TeacherUnavailableError(
                f"Teacher weights '{source}': '{full}' has shape {got}, expected {tuple(shape)}. "
                "This is not VGG-19.")
        if not torch.isfinite(t).all():
            raise TeacherUnavailableError(f"Teacher weights '{source}': '{full}' contains NaN/inf.")
        picked[key] = t.float()
    return picked


def _torchvision_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def _download_torchvision() -> dict[str, torch.Tensor]:
    from torchvision.models import VGG19_Weights

    return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)


def resolve_teacher_source(path: str | os.PathLike[str] | None = None) -> str | None:
    """Where the weights would come from (a file path), or None if only a download is left."""
    if path:
        return str(path)
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    cached = _torchvision_cache_file()
    return str(cached) if cached.is_file() else None


def load_teacher(path: str | os.PathLike[str] | None = None, *, allow_download: bool = True,
                 device: torch.device | str = "cpu") -> VGGTeacher:
    """Build the frozen teacher; raise :class:`TeacherUnavailableError` with instructions if none."""
    source = resolve_teacher_source(path)
    if source is not None:
        sd = load_state_file(Path(source))
    elif allow_download and os.environ.get("SKETCHSTUDIO_OFFLINE") != "1":
        try:
            sd = _download_torchvision()
            source = "torchvision download"
        except Exception as exc:  # noqa: BLE001 - offline, proxy, hash... all mean "not available"
            raise TeacherUnavailableError(
                f"No teacher weights were found and the download failed ({exc}).\n\n{HOW_TO_SUPPLY}"
            ) from exc
    else:
        raise TeacherUnavailableError(f"No teacher weights were found.\n\n{HOW_TO_SUPPLY}")
    teacher = VGGTeacher()
    teacher.features.load_state_dict(_select_features(sd, source))
    log.info("Teacher VGG-19 loaded from %s", source)
    return teacher.to(device)
