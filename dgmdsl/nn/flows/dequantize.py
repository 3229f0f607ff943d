"""Uniform dequantization of discrete data for continuous flows."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["dequantize"]


def dequantize(
    x_discrete: Tensor, levels: int, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor]:
    """Map integers in {0, ..., levels-1} to `(x + u) / levels` in [0, 1), u ~ U[0, 1).

    Returns the continuous data and a per-example correction `-D log(levels)`
    (D = number of values per example, all axes but the first). For any density
    p on [0, 1)^D the discrete model P(x) = integral of p over x's cell obeys, by
    Jensen, log P(x) >= E_u[log p((x + u) / levels)] - D log(levels); so
    `log p(x_cont) + correction` is an unbiased estimate of a lower bound on the
    discrete log-likelihood (in nats).
    """
    dtype = x_discrete.dtype if x_discrete.is_floating_point() else torch.get_default_dtype()
    noise = torch.rand(x_discrete.shape, generator=generator, device=x_discrete.device, dtype=dtype)
    x_cont = (x_discrete.to(dtype) + noise) / levels
    values_per_example = x_discrete[0].numel() if x_discrete.dim() > 0 else 1
    correction = torch.full(
        x_discrete.shape[:1], -values_per_example * math.log(levels), device=x_discrete.device, dtype=dtype
    )
    return x_cont, correction
