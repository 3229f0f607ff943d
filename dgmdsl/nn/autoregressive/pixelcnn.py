"""PixelCNN (van den Oord et al., 2016, "Pixel Recurrent Neural Networks").

A 7x7 mask-A convolution, residual blocks (1x1 -> 3x3 -> 1x1, mask B), then two
ReLU + 1x1 mask-B output layers. Pixels are visited in raster order and, inside
a pixel, image channels in order (R -> G -> B): feature maps are split into
contiguous channel groups and group g at the centre tap reads groups < g
(mask A) or <= g (mask B).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Conditioner
from .orders import pixel_raster_order

__all__ = ["PixelCNN", "MaskedConv2d", "pixelcnn_mask"]


def _channel_groups(count: int, image_channels: int) -> Tensor:
    return torch.arange(count) * image_channels // count


def pixelcnn_mask(out_channels: int, in_channels: int, kernel: int, mask_type: str, image_channels: int) -> Tensor:
    """Boolean ``[out, in, k, k]`` mask: taps strictly before the centre, plus the centre by group."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    centre = kernel // 2
    mask = torch.zeros(out_channels, in_channels, kernel, kernel, dtype=torch.bool)
    mask[:, :, :centre, :] = True
    mask[:, :, centre, :centre] = True
    out_group = _channel_groups(out_channels, image_channels).unsqueeze(1)
    in_group = _channel_groups(in_channels, image_channels).unsqueeze(0)
    mask[:, :, centre, centre] = in_group < out_group if mask_type == "A" else in_group <= out_group
    return mask


class MaskedConv2d(nn.Conv2d):
    """Same-padded convolution with a fixed causal mask on its kernel."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, mask_type: str, image_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        mask = pixelcnn_mask(out_channels, in_channels, kernel, mask_type, image_channels)
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class _ResidualBlock(nn.Module):
    """ReLU-1x1 (C -> C/2), ReLU-3x3, ReLU-1x1 (C/2 -> C), added to the input."""

    def __init__(self, channels: int, image_channels: int) -> None:
        super().__init__()
        inner = max(channels // 2, image_channels)
        self.reduce = MaskedConv2d(channels, inner, 1, "B", image_channels)
        self.spatial = MaskedConv2d(inner, inner, 3, "B", image_channels)
        self.expand = MaskedConv2d(inner, channels, 1, "B", image_channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.reduce(F.relu(x))
        y = self.spatial(F.relu(y))
        return x + self.expand(F.relu(y))


class PixelCNN(Conditioner):
    """Conditioner on a ``[C, H, W]`` variable; ``layers`` = the mask-A layer + residual blocks."""

    def __init__(
        self,
        event_shape: tuple[int, int, int],
        params_per_position: int,
        in_features: int,
        layers: int = 8,
        channels: int = 64,
    ) -> None:
        if len(event_shape) != 3:
            raise ValueError(f"PixelCNN needs a [C, H, W] variable, got shape {list(event_shape)}")
        for name, value in (("layers", layers), ("channels", channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PixelCNN needs an integer {name} >= 1, got {value!r}")
        image_channels, height, width = event_shape
        dim = image_channels * height * width
        super().__init__(dim, params_per_position, in_features, pixel_raster_order(*event_shape))
        self.event_shape = tuple(event_shape)
        feature_maps = max(channels, image_channels)  # every channel group needs a feature map
        self.input_layer = MaskedConv2d(image_channels * in_features, feature_maps, 7, "A", image_channels)
        self.blocks = nn.Sequential(*(_ResidualBlock(feature_maps, image_channels) for _ in range(layers - 1)))
        self.head_hidden = MaskedConv2d(feature_maps, feature_maps, 1, "B", image_channels)
        self.head_out = MaskedConv2d(feature_maps, image_channels * params_per_position, 1, "B", image_channels)

    def forward(self, features: Tensor, mask_index: int | None = None) -> Tensor:
        batch = features.shape[0]
        channels, height, width = self.event_shape
        image = features.reshape(batch, channels, height, width, self.in_features)
        if self.in_features == 1:
            image = image.view(batch, channels, height, width)
        else:
            image = image.permute(0, 1, 4, 2, 3).reshape(batch, channels * self.in_features, height, width)
        h = self.blocks(self.input_layer(image))
        out = self.head_out(F.relu(self.head_hidden(F.relu(h))))
        out = out.view(batch, channels, self.params_per_position, height, width)
        if self.params_per_position == 1:
            return out.view(batch, self.dim, 1)
        return out.permute(0, 1, 3, 4, 2).reshape(batch, self.dim, self.params_per_position)
