"""Score-matching losses for energy-based models p(x) = exp(-E(x)) / Z.

Every function takes `energy_fn`, a callable mapping a batch x [B, ...] to per-example
energies of shape [B] or [B, 1]. The model score is s(x) = grad log p(x) = -grad E(x);
Z never appears. The energy/gradient/noise helpers here are shared by the samplers.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "EnergyFn",
    "per_example_energy",
    "energy_and_grad",
    "standard_normal",
    "standard_uniform",
    "exact_score_matching_loss",
    "sliced_score_matching_loss",
    "denoising_score_matching_loss",
]

EnergyFn = Callable[[Tensor], Tensor]


def per_example_energy(energy_fn: EnergyFn, x: Tensor) -> Tensor:
    """Energies of a batch as a vector [B], accepting nets that return [B, 1]."""
    energy = energy_fn(x)
    if energy.dim() == 2 and energy.shape[1] == 1:
        energy = energy.squeeze(1)
    if energy.shape != x.shape[:1]:
        raise ValueError(f"energy_fn must return shape [{x.shape[0]}] or [{x.shape[0]}, 1], "
                         f"got {list(energy.shape)}")
    return energy


def energy_and_grad(energy_fn: EnergyFn, x: Tensor) -> tuple[Tensor, Tensor]:
    """Detached (E(x) [B], grad_x E(x) shaped like x), for samplers; works under no_grad."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        energy = per_example_energy(energy_fn, x)
        (grad,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), grad.detach()


def _differentiable_energy_grad(energy_fn: EnergyFn, x: Tensor) -> tuple[Tensor, Tensor]:
    """(x_leaf, grad E(x_leaf) flattened to [B, D]) with the graph kept for a second derivative."""
    x_leaf = x.detach().requires_grad_(True)
    energy = per_example_energy(energy_fn, x_leaf)
    (grad,) = torch.autograd.grad(energy.sum(), x_leaf, create_graph=True)
    return x_leaf, grad.reshape(x.shape[0], -1)


def _draw(kind: str, shape: Sequence[int], like: Tensor,
          generator: torch.Generator | None) -> Tensor:
    # Draw on the generator's own device, then move: a CPU generator then seeds runs on any device.
    device = generator.device if generator is not None else like.device
    draw = torch.randn if kind == "normal" else torch.rand
    sample = draw(tuple(shape), generator=generator, device=device, dtype=like.dtype)
    return sample.to(like.device)


def standard_normal(shape: Sequence[int], like: Tensor,
                    generator: torch.Generator | None = None) -> Tensor:
    """N(0, 1) draws with `like`'s dtype and device, reproducible from `generator`."""
    return _draw("normal", shape, like, generator)


def standard_uniform(shape: Sequence[int], like: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """U[0, 1) draws with `like`'s dtype and device, reproducible from `generator`."""
    return _draw("uniform", shape, like, generator)


def _flat_grad(output: Tensor, x: Tensor) -> Tensor:
    """d output.sum() / dx flattened to [B, D], graph kept; zero where output ignores x."""
    if not output.requires_grad:  # e.g. an energy linear in x has a constant gradient
        return torch.zeros_like(x).reshape(x.shape[0], -1)
    (grad,) = torch.autograd.grad(output.sum(), x, create_graph=True, allow_unused=True,
                                  materialize_grads=True)
    return grad.reshape(x.shape[0], -1)


def exact_score_matching_loss(energy_fn: EnergyFn, x: Tensor) -> Tensor:
    """Hyvarinen's objective E[1/2 |s|^2 + tr grad s] with the exact Hessian trace.

    With s = -grad E this is E[1/2 |grad E|^2 - tr hess E]. The trace costs one backward pass
    per data dimension, so this is meant for low-dimensional data (D <= 8).
    """
    x_leaf, grad = _differentiable_energy_grad(energy_fn, x)
    laplacian = torch.zeros_like(grad[:, 0])
    for i in range(grad.shape[1]):
        laplacian = laplacian + _flat_grad(grad[:, i], x_leaf)[:, i]
    return (0.5 * grad.pow(2).sum(1) - laplacian).mean()


def _projections(distribution: str, shape: Sequence[int], like: Tensor,
                 generator: torch.Generator | None) -> Tensor:
    if distribution == "rademacher":
        return (standard_uniform(shape, like, generator) < 0.5).to(like.dtype) * 2 - 1
    if distribution == "gaussian":
        return standard_normal(shape, like, generator)
    raise ValueError(f"unknown projection distribution {distribution!r}; "
                     "use 'rademacher' or 'gaussian'")


def sliced_score_matching_loss(energy_fn: EnergyFn, x: Tensor, projections: int = 1,
                               generator: torch.Generator | None = None,
                               distribution: str = "rademacher",
                               variance_reduced: bool = True) -> Tensor:
    """Sliced score matching (Song et al. 2019), averaged over `projections` directions per example.

    Per direction v the loss is v^T (grad s) v + 1/2 (v^T s)^2. With variance_reduced=True
    (the default, SSM-VR) the second term is replaced by its closed-form expectation 1/2 |s|^2,
    valid because E[v v^T] = I for both Rademacher (default) and Gaussian v.
    """
    if projections < 1:
        raise ValueError("projections must be at least 1")
    x_rep = x.repeat(projections, *([1] * (x.dim() - 1)))
    x_leaf, grad = _differentiable_energy_grad(energy_fn, x_rep)
    v = _projections(distribution, grad.shape, grad, generator)
    grad_along_v = (grad * v).sum(1)                        # v^T grad E = -v^T s
    hess_v = _flat_grad(grad_along_v, x_leaf)               # (hess E) v
    curvature = (hess_v * v).sum(1)                         # v^T hess E v = -v^T (grad s) v
    if variance_reduced:
        quadratic = 0.5 * grad.pow(2).sum(1)
    else:
        quadratic = 0.5 * grad_along_v.pow(2)
    return (quadratic - curvature).mean()


def _sigma_per_example(sigma: float | Tensor, x: Tensor) -> Tensor:
    """sigma as [] or [B, 1] (for flattened [B, D] tensors); rejects other shapes."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.dim() == 0:
        return sigma
    if sigma.shape == x.shape[:1]:
        return sigma.reshape(-1, 1)
    raise ValueError(f"sigma must be a scalar or have shape [{x.shape[0]}], "
                     f"got {list(sigma.shape)}")


def denoising_score_matching_loss(energy_fn: EnergyFn, x: Tensor, sigma: float | Tensor,
                                  generator: torch.Generator | None = None) -> Tensor:
    """Denoising score matching (Vincent 2011) at noise level sigma, weighted by sigma^2.

    x~ = x + sigma z has conditional score -z / sigma, so the loss is
    sigma^2 * 1/2 |s(x~) + z / sigma|^2 = 1/2 |z - sigma grad E(x~)|^2. The sigma^2 weight
    (Song & Ermon 2019) keeps the loss O(1) across noise levels. Its optimum is the score of
    the data convolved with N(0, sigma^2 I). sigma is a float, or a tensor [] or [B].
    """
    sigma_flat = _sigma_per_example(sigma, x)
    noise = standard_normal(x.shape, x, generator).reshape(x.shape[0], -1)
    x_noisy = x.reshape(x.shape[0], -1) + sigma_flat * noise
    _, grad = _differentiable_energy_grad(lambda v: energy_fn(v.reshape(x.shape)), x_noisy)
    residual = noise - sigma_flat * grad
    return 0.5 * residual.pow(2).sum(1).mean()
