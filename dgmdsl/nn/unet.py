"""A small time-conditioned UNet for noise prediction on images (e.g. 1 x 28 x 28)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dgmdsl.nn.mlp import SinusoidalEmbedding

__all__ = ["ResidualBlock", "UNet"]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResidualBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added in between, plus a skip path."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, out_channels)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                     else nn.Identity())

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(time_emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Upsample(nn.Module):
    """Nearest-neighbour resize to the skip's exact size (so 4 -> 7 works), then a conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))


class UNet(nn.Module):
    """forward(x [B, C, H, W], t [B] in [0, 1]) -> [B, out_channels, H, W].

    One residual block per level on the way down (stride-2 conv between levels, so
    28 -> 14 -> 7 -> 4), one in the middle, one per level on the way up with the
    matching skip concatenated. `image_size` is the (H, W) checked in forward.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int] = (32, 64),
                 time_embedding: int = 64, image_size: Sequence[int] = (28, 28)) -> None:
        super().__init__()
        channels = list(channels)
        if not channels:
            raise ValueError("UNet needs at least one level of channels")
        self.image_size = tuple(image_size)
        self.time_embed = nn.Sequential(SinusoidalEmbedding(time_embedding),
                                        nn.Linear(time_embedding, time_embedding), nn.SiLU(),
                                        nn.Linear(time_embedding, time_embedding))
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        widths_in = [channels[0], *channels[:-1]]
        self.down = nn.ModuleList(ResidualBlock(a, b, time_embedding)
                                  for a, b in zip(widths_in, channels))
        self.downsample = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1)
                                        for c in channels[:-1])
        self.middle = ResidualBlock(channels[-1], channels[-1], time_embedding)
        # going up, level i takes the running width (that of level i + 1) plus its skip
        widths_up = [*channels[1:], channels[-1]]
        self.up = nn.ModuleList(ResidualBlock(a + b, b, time_embedding)
                                for a, b in zip(widths_up, channels))
        self.upsample = nn.ModuleList(Upsample(c) for c in channels[1:])
        self.head = nn.Sequential(_norm(channels[0]), nn.SiLU(),
                                  nn.Conv2d(channels[0], out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"UNet built for images of size {self.image_size}, "
                             f"got {tuple(x.shape[-2:])}")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        time_emb = self.time_embed(t)
        h = self.stem(x)
        skips = []
        for level, block in enumerate(self.down):
            h = block(h, time_emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.middle(h, time_emb)
        for level in reversed(range(len(self.up))):
            if level < len(self.upsample):
                h = self.upsample[level](h, skips[level].shape[-2:])
            h = self.up[level](torch.cat([h, skips[level]], dim=1), time_emb)
        return self.head(h)
