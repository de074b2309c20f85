"""The optional adversarial term (``--gan-weight``): a conditional PatchGAN per student, pix2pix-style.

Reconstruction and feature losses are averages, so a student that cannot tell where the next pencil
stroke goes learns the average: smooth grey. A discriminator that judges overlapping patches of
(input, output) pairs as drawn or synthesised rewards strokes that look like the drawings' strokes
(Isola et al., pix2pix, 2017). Here: the 70×70 PatchGAN (three stride-2 stages, then two
stride-1), InstanceNorm, LeakyReLU 0.2, and the least-squares loss (Mao et al.), which trains more
steadily than the log loss with batch size 1. Training-only: discriminators are saved in training
checkpoints (``disc.G.*``, ``disc.F.*``) and dropped by ``sketchstudio-export``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """Scores each ~70×70 patch of ``cat(condition, image)``: 1 = real drawing/photo, 0 = synthesised."""

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride=stride, padding=1), nn.InstanceNorm2d(out),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition, image], dim=1))


def generator_adv_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN: the student wants every patch of its output judged real (1)."""
    return F.mse_loss(d_fake.float(), torch.ones_like(d_fake, dtype=torch.float32))


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN: ½·(mean (D(real) − 1)² + mean D(fake)²)."""
    real = F.mse_loss(d_real.float(), torch.ones_like(d_real, dtype=torch.float32))
    fake = F.mse_loss(d_fake.float(), torch.zeros_like(d_fake, dtype=torch.float32))
    return 0.5 * (real + fake)
