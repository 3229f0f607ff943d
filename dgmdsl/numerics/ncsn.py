"""Noise-conditional score networks (Song & Ermon 2019): DSM over noise levels, annealed Langevin.

One net s(x, level) serves every noise level. The level it sees is the normalized
log-σ, level = (log σ - log σ_min) / (log σ_max - log σ_min), so 1 is the largest
noise and 0 the smallest (the same orientation as diffusion time).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["annealed_langevin", "geometric_sigmas", "ncsn_dsm_loss", "noise_level",
           "sigma_from_level"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def geometric_sigmas(first: float, last: float, n: int, dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """n noise levels from `first` to `last`, equally spaced in log σ."""
    if first <= 0 or last <= 0 or n < 1:
        raise ValueError("geometric(first, last, n) needs positive levels and n >= 1")
    exponents = torch.linspace(math.log(first), math.log(last), n, dtype=torch.float64)
    return exponents.exp().to(dtype=dtype or torch.get_default_dtype(), device=device)


def noise_level(sigma: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The net's conditioning input for σ: normalized log-σ in [0, 1] (1 for a lone level)."""
    if len(sigmas) == 1:
        return torch.ones_like(sigma)
    log_min, log_max = sigmas.min().log(), sigmas.max().log()
    return (sigma.log() - log_min) / (log_max - log_min)


def sigma_from_level(level: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Inverse of `noise_level` (for exact scores written in terms of σ)."""
    if len(sigmas) == 1:
        return sigmas.expand_as(level)
    log_min, log_max = sigmas.min().log(), sigmas.max().log()
    return torch.exp(log_min + level * (log_max - log_min))


def ncsn_dsm_loss(score_net: ScoreFn, x: torch.Tensor, sigmas: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean over the batch of ½ ||σ s(x + σ z, level(σ)) + z||², σ uniform over `sigmas`.

    This is DSM weighted by σ², so every level contributes on the same scale.
    """
    sigmas = sigmas.to(device=x.device, dtype=x.dtype)
    index = torch.randint(0, len(sigmas), (x.shape[0],), generator=generator, device=x.device)
    sigma = sigmas[index]
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    sigma_b = sigma.reshape(-1, *([1] * (x.dim() - 1)))
    score = score_net(x + sigma_b * z, noise_level(sigma, sigmas))
    return 0.5 * (sigma_b * score + z).pow(2).flatten(1).sum(dim=1).mean()


@torch.no_grad()
def annealed_langevin(score_fn: ScoreFn, sigmas: torch.Tensor, shape: tuple[int, ...],
                      steps_per_level: int, eps: float, generator: torch.Generator | None = None,
                      denoise: bool = True, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> torch.Tensor:
    """Langevin from the largest σ to the smallest, step α_i = eps σ_i² / σ_L².

    Starts from N(0, σ_max² I), a draw close to the largest-noise marginal for data of
    scale much below σ_max. With `denoise`, returns Tweedie's x + σ_L² s(x, σ_L).
    """
    sigmas = sigmas.to(device=device, dtype=dtype or torch.get_default_dtype())
    descending = torch.sort(sigmas, descending=True).values
    x = descending[0] * torch.randn(shape, generator=generator, device=sigmas.device,
                                    dtype=sigmas.dtype)
    smallest = descending[-1]
    for sigma in descending:
        level = noise_level(sigma, sigmas).expand(shape[0])
        step = eps * (sigma / smallest) ** 2
        for _ in range(steps_per_level):
            noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + 0.5 * step * score_fn(x, level) + step.sqrt() * noise
    if denoise:
        level = noise_level(smallest, sigmas).expand(shape[0])
        x = x + smallest**2 * score_fn(x, level)
    return x
