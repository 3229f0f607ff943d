"""Masked (MAF) and inverse (IAF) autoregressive affine layers, on Pyro's transform."""

from __future__ import annotations

import torch
from pyro.distributions.transforms import AffineAutoregressive
from pyro.distributions.transforms.utils import clamp_preserve_gradients
from torch import Tensor, nn

from .base import PyroBijection

__all__ = ["MaskedAutoregressive", "InverseAutoregressive"]


class _AffineAutoregressive(AffineAutoregressive):
    """`y = exp(s(x)) * x + m(x)` with a sequential inverse that keeps the input's dtype.

    Pyro's own inverse allocates its buffer in the default dtype (float64 inputs
    fail) and requires the net to expose `.permutation`; this one needs neither.
    """

    def _inverse(self, y: Tensor) -> Tensor:
        # With a triangular dependency, each full pass fixes one more coordinate:
        # after D passes every coordinate (and every scale) is exact.
        x = torch.zeros_like(y)
        for _ in range(y.size(-1)):
            mean, log_scale = self.arn(x)
            log_scale = clamp_preserve_gradients(log_scale, self.log_scale_min_clip, self.log_scale_max_clip)
            x = (y - mean) * torch.exp(-log_scale)
        self._cached_log_scale = log_scale
        return x


class MaskedAutoregressive(PyroBijection):
    """MAF: `z = exp(s(x)) * x + m(x)`: density (x -> z) in one pass, sampling in D.

    `made(x)` must return `(shift, log_scale)`, each shaped like `x`, with
    output i depending only on inputs before i in some fixed order.
    """

    fast_density = True
    fast_sampling = False

    def __init__(self, made: nn.Module) -> None:
        super().__init__(_AffineAutoregressive(made), reverse=True)


class InverseAutoregressive(PyroBijection):
    """IAF: `x = exp(s(z)) * z + m(z)`, sampling (z -> x) in one pass, density in D."""

    fast_density = False
    fast_sampling = True

    def __init__(self, made: nn.Module) -> None:
        super().__init__(_AffineAutoregressive(made), reverse=False)
