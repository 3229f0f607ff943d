"""Reverse-SDE samplers for continuous-time score models (Song et al. 2021).

score_fn(x, t) takes x [B, ...] and t [B] in (0, 1] and returns the score of
p_t at x. Time runs backwards from 1 to eps on a uniform grid of `steps` steps.
"""
from __future__ import annotations

from typing import Callable

import torch

from dgmdsl.numerics.sde_kernel import GaussianKernel

__all__ = ["euler_maruyama", "langevin_corrector", "predictor_corrector"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _time_grid(steps: int, eps: float, device: torch.device | str | None,
               dtype: torch.dtype | None) -> torch.Tensor:
    if steps < 1:
        raise ValueError("steps must be at least 1")
    return torch.linspace(1.0, eps, steps + 1, device=device, dtype=dtype)


def _reverse_step(score_fn: ScoreFn, kernel: GaussianKernel, x: torch.Tensor, t: float,
                  dt: float, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler–Maruyama step of dx = [f - g² s] dt + g dw̄ backwards by dt > 0: (x, its mean)."""
    # the kernel sees a scalar time (one evaluation per step), the score net a batch of it
    t_scalar = torch.tensor(t, device=x.device, dtype=x.dtype)
    g = kernel.diffusion(t_scalar)
    reverse_drift = kernel.drift(x, t_scalar) - g**2 * score_fn(x, t_scalar.expand(x.shape[0]))
    mean = x - reverse_drift * dt
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return mean + g * dt**0.5 * noise, mean


@torch.no_grad()
def euler_maruyama(score_fn: ScoreFn, kernel: GaussianKernel, shape: tuple[int, ...], steps: int,
                   generator: torch.Generator | None = None, eps: float = 1e-3,
                   device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> torch.Tensor:
    """Integrate the reverse SDE from the prior at t = 1 to t = eps; the last step adds no noise."""
    return predictor_corrector(score_fn, kernel, shape, steps, corrector_steps=0, generator=generator, eps=eps,
                               device=device, dtype=dtype)


def langevin_corrector(score_fn: ScoreFn, kernel: GaussianKernel, x: torch.Tensor, t: float,
                       dt: float, snr: float, steps: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Langevin MCMC at fixed t with the step set by the signal-to-noise rule of Song et al.

    step = 2 α (snr ||z|| / ||s||)², norms averaged over the batch; α = exp(2 a(t) dt) is the
    squared one-step mean factor (1 for VE, ≈ 1 - β(t) dt for VP, as in the paper).
    """
    t_scalar = torch.tensor(t, device=x.device, dtype=x.dtype)
    t_batch = t_scalar.expand(x.shape[0])
    alpha = torch.exp(2 * kernel.drift_coef(t_scalar) * dt)
    for _ in range(steps):
        score = score_fn(x, t_batch)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        score_norm = score.flatten(1).norm(dim=1).mean()
        noise_norm = noise.flatten(1).norm(dim=1).mean()
        step = 2 * alpha * (snr * noise_norm / score_norm) ** 2
        x = x + step * score + (2 * step).sqrt() * noise
    return x


@torch.no_grad()
def predictor_corrector(score_fn: ScoreFn, kernel: GaussianKernel, shape: tuple[int, ...],
                        steps: int, snr: float = 0.16, corrector_steps: int = 1,
                        generator: torch.Generator | None = None, eps: float = 1e-3,
                        device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None) -> torch.Tensor:
    """PC sampling: at each time, `corrector_steps` Langevin steps, then one reverse EM step.

    With no corrector steps this is Euler–Maruyama; the last step adds no noise either way.
    """
    x = kernel.prior_sample(shape, generator=generator, device=device, dtype=dtype)
    grid = _time_grid(steps, eps, x.device, x.dtype).tolist()
    mean = x
    for t, t_next in zip(grid[:-1], grid[1:]):
        if corrector_steps:
            x = langevin_corrector(score_fn, kernel, x, t, t - t_next, snr, corrector_steps, generator)
        x, mean = _reverse_step(score_fn, kernel, x, t, t - t_next, generator)
    return mean  # the noise-free last step denoises
