"""The student generators G (photo→sketch) and F (sketch→photo) of the KT paper.

The table in METHOD.md, built on the CycleGAN ResNet generator: reflection padding,
conv → InstanceNorm → ReLU for IC..UC2 (taps after the ReLU), 9 squeeze-excitation residual blocks
with dilation-2 3×3 convs, and a tanh output. With ngf=64 the net has ~11.4 M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from ..vocab import TAP_NAMES, UPSAMPLE_MODES

__all__ = ["TAP_NAMES", "UPSAMPLE_MODES", "StudentNet", "count_parameters"]


def _norm_relu(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels), nn.ReLU(inplace=True)]


def _upsample(c_in: int, c_out: int, mode: str) -> list[nn.Module]:
    """×2 upsampling stage (without its norm): transposed conv or resize-then-convolve."""
    if mode == "deconv":
        return [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)]
    if mode == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                nn.Conv2d(c_in, c_out, 3)]
    raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}")


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.): global pool → bottleneck MLP → sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


class SEResBlock(nn.Module):
    """[conv3×3 d2 → IN → ReLU → conv3×3 d2 → IN] → SE → + identity.

    ``width``: the channels between the two convolutions (default ``channels``, the paper's). A
    narrower block is what :mod:`trainer.lite` makes: the residual stream keeps its width, and
    the two convolutions that hold ~88 % of the FLOPs shrink in proportion.
    """

    def __init__(self, channels: int, dilation: int = 2, width: int | None = None) -> None:
        super().__init__()
        width = width or channels
        self.body = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            nn.Conv2d(channels, width, 3, dilation=dilation),
            *_norm_relu(width),
            nn.ReflectionPad2d(dilation),
            nn.Conv2d(width, channels, 3, dilation=dilation),
            nn.InstanceNorm2d(channels),
            SqueezeExcite(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class StudentNet(nn.Module):
    """Encoder / SE-residual / decoder generator with named intermediate taps."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9, in_channels: int = 3,
                 out_channels: int = 3, upsample: str = "deconv", block_width: int = 0) -> None:
        """``block_width``: channels inside each residual block (0: ``4 * ngf``, the paper's)."""
        super().__init__()
        if ngf < 1 or n_blocks < 0 or block_width < 0:
            raise ValueError(f"ngf must be ≥ 1, n_blocks and block_width ≥ 0 (got ngf={ngf}, "
                             f"n_blocks={n_blocks}, block_width={block_width})")
        self.ngf, self.n_blocks, self.upsample = ngf, n_blocks, upsample
        self.block_width = block_width or ngf * 4
        self.IC = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), *_norm_relu(ngf))
        self.DC1 = nn.Sequential(nn.Conv2d(ngf, ngf * 2, 3, stride=2, padding=1), *_norm_relu(ngf * 2))
        self.DC2 = nn.Sequential(nn.Conv2d(ngf * 2, ngf * 4, 3, stride=2, padding=1),
                                 *_norm_relu(ngf * 4))
        self.Block = nn.Sequential(*[SEResBlock(ngf * 4, width=self.block_width)
                                     for _ in range(n_blocks)])
        self.UC1 = nn.Sequential(*_upsample(ngf * 4, ngf * 2, upsample), *_norm_relu(ngf * 2))
        self.UC2 = nn.Sequential(*_upsample(ngf * 2, ngf, upsample), *_norm_relu(ngf))
        self.OC = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.02) conv weights and zero biases, as in the paper (and pix2pix/CycleGAN)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @staticmethod
    def check_input(x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"Expected an (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            raise ValueError(
                f"Input size {w}×{h} is not divisible by 4; the two stride-2 stages need it "
                f"(use e.g. {w - w % 4}×{h - h % 4} or 256×256)."
            )

    def forward(self, x: torch.Tensor, return_taps: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.check_input(x)
        taps: dict[str, torch.Tensor] = {}
        h = x
        for name in TAP_NAMES:
            h = getattr(self, name)(h)
            taps[name] = h
        out = self.OC(h)
        return (out, taps) if return_taps else out


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
