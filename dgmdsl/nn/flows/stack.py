"""A stack of flow layers and the density it defines over a standard Normal base."""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .base import FlowLayer

__all__ = ["FlowStack", "FlowDensity"]


class FlowStack(FlowLayer):
    """Layers applied in the listed z -> x order; the inverse runs them backwards."""

    def __init__(self, layers: Sequence[FlowLayer], dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dim = dim

    @property
    def fast_density(self) -> bool:
        return all(layer.fast_density for layer in self.layers)

    @property
    def fast_sampling(self) -> bool:
        return all(layer.fast_sampling for layer in self.layers)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z -> x and log|det dx/dz| per example."""
        log_det = z.new_zeros(z.shape[:-1])
        for layer in self.layers:
            z, layer_log_det = layer(z)
            if not layer.volume_preserving:
                log_det = log_det + layer_log_det
        return z, log_det

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x -> z and log|det dz/dx| per example."""
        log_det = x.new_zeros(x.shape[:-1])
        for layer in reversed(self.layers):
            x, layer_log_det = layer.inverse(x)
            if not layer.volume_preserving:
                log_det = log_det + layer_log_det
        return x, log_det

    def log_prob(self, x: Tensor, base_log_prob: Callable[[Tensor], Tensor]) -> Tensor:
        """Change of variables: log p(x) = log p_base(z) + log|det dz/dx|."""
        z, log_det = self.inverse(x)
        return base_log_prob(z) + log_det

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent initialisation (actnorm) from one batch, layer by layer in x -> z order."""
        for layer in reversed(self.layers):
            if hasattr(layer, "initialize"):
                layer.initialize(x)
            x, _ = layer.inverse(x)


class FlowDensity(nn.Module):
    """`x = flow(z)`, `z ~ Normal(0, I)`: exact log-density and sampling."""

    def __init__(self, flow: FlowStack) -> None:
        super().__init__()
        self.flow = flow
        # Buffers so that `.to(device/dtype)` moves the base distribution too.
        self.register_buffer("base_loc", torch.zeros(flow.dim), persistent=False)
        self.register_buffer("base_scale", torch.ones(flow.dim), persistent=False)

    @property
    def dim(self) -> int:
        return self.flow.dim

    def base_log_prob(self, z: Tensor) -> Tensor:
        # The diagonal Normal base in closed form, without building and validating
        # distribution objects on every call.
        u = (z - self.base_loc) / self.base_scale
        return -0.5 * u.pow(2).sum(-1) - self.base_scale.log().sum() - 0.5 * z.size(-1) * math.log(2 * math.pi)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x), shape `x.shape[:-1]`."""
        return self.flow.log_prob(x, self.base_log_prob)

    def _base_sample(self, n: int, generator: Optional[torch.Generator]) -> Tensor:
        noise = torch.randn(
            n, self.dim, generator=generator, device=self.base_loc.device, dtype=self.base_loc.dtype
        )
        return self.base_loc + self.base_scale * noise

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n draws of x, shape [n, dim]; `generator` must live on the model's device."""
        return self.sample_with_log_prob(n, generator)[0]

    def sample_with_log_prob(self, n: int, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """Draws and their log-density from the same z -> x pass (one pass for IAF)."""
        z = self._base_sample(n, generator)
        x, log_det = self.flow(z)
        return x, self.base_log_prob(z) - log_det
