"""MCMC samplers for p(x) ∝ exp(-E(x)) and the pieces of contrastive-divergence training.

Step-size convention (shared by `langevin` and `mala`): one step is
    x <- x - eps * grad E(x) + sqrt(2 eps) * z,   z ~ N(0, I),
the Euler-Maruyama step of dx = -grad E dt + sqrt(2) dW over a time eps, whose stationary law
is exp(-E). So `langevin(step_size = 0.01)` in a spec means eps = 0.01.
All randomness comes from an optional `torch.Generator` (on any device; draws are moved to
the chains' device), so runs are reproducible on CPU and CUDA.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from dgmdsl.numerics.score_matching import (EnergyFn, energy_and_grad, per_example_energy,
                                            standard_normal, standard_uniform)

__all__ = [
    "langevin",
    "mala",
    "random_walk_mh",
    "metropolis_accept",
    "metropolis_step",
    "ReplayBuffer",
    "contrastive_divergence_loss",
]


def _per_chain(mask: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-chain vector [B] so it broadcasts against x [B, ...]."""
    return mask.reshape(-1, *([1] * (x.dim() - 1)))


def metropolis_accept(log_ratio: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Accept each proposal with probability min(1, exp(log_ratio)); a bool mask like log_ratio.

    NaN ratios are rejected, and so is -inf (a proposal of zero target mass).
    """
    u = standard_uniform(log_ratio.shape, log_ratio, generator)
    return u < torch.exp(log_ratio.clamp(max=0.0))


def metropolis_step(x: Tensor, energy_x: Tensor, proposal: Tensor, energy_proposal: Tensor,
                    generator: torch.Generator | None = None,
                    log_proposal_ratio: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One Metropolis-Hastings correction for a batch of chains.

    The log acceptance ratio is E(x) - E(y) + log q(x | y) - log q(y | x); the last two terms
    are `log_proposal_ratio` (omit for a symmetric proposal). Returns the new states, their
    energies and the per-chain accepted mask.
    """
    log_ratio = energy_x - energy_proposal
    if log_proposal_ratio is not None:
        log_ratio = log_ratio + log_proposal_ratio
    accepted = metropolis_accept(log_ratio, generator)
    x_new = torch.where(_per_chain(accepted, x), proposal, x)
    return x_new, torch.where(accepted, energy_proposal, energy_x), accepted


def langevin(energy_fn: EnergyFn, x0: Tensor, steps: int, step_size: float,
             generator: torch.Generator | None = None, noise_scale: float = 1.0) -> Tensor:
    """Unadjusted Langevin: x <- x - eps grad E(x) + noise_scale * sqrt(2 eps) z.

    With noise_scale = 1 the chain targets exp(-E) up to an O(eps) discretisation bias; a
    smaller noise_scale is the common short-run EBM heuristic and samples a sharpened density.
    Returns the final states, detached.
    """
    x = x0.detach().clone()
    noise_std = noise_scale * math.sqrt(2.0 * step_size)
    for _ in range(steps):
        _, grad = energy_and_grad(energy_fn, x)
        x = x - step_size * grad + noise_std * standard_normal(x.shape, x, generator)
    return x


def _log_langevin_kernel(to: Tensor, start: Tensor, grad_at_start: Tensor,
                         step_size: float) -> Tensor:
    """log q(to | start) of the Langevin proposal, up to a constant that cancels in MH ratios."""
    diff = (to - start + step_size * grad_at_start).reshape(to.shape[0], -1)
    return -diff.pow(2).sum(1) / (4.0 * step_size)


def _acceptance_rate(accepted_total: Tensor, steps: int, n_chains: int) -> float:
    return float(accepted_total) / (steps * n_chains) if steps > 0 else float("nan")


def mala(energy_fn: EnergyFn, x0: Tensor, steps: int, step_size: float,
         generator: torch.Generator | None = None) -> tuple[Tensor, float]:
    """Metropolis-adjusted Langevin: the Langevin step above as a proposal, then an MH test.

    Returns (final states, acceptance rate over all steps and chains; NaN when steps = 0).
    """
    x = x0.detach().clone()
    energy, grad = energy_and_grad(energy_fn, x)
    noise_std = math.sqrt(2.0 * step_size)
    accepted_total = torch.zeros((), device=x.device)
    for _ in range(steps):
        proposal = x - step_size * grad + noise_std * standard_normal(x.shape, x, generator)
        energy_proposal, grad_proposal = energy_and_grad(energy_fn, proposal)
        log_q_ratio = (_log_langevin_kernel(x, proposal, grad_proposal, step_size)
                       - _log_langevin_kernel(proposal, x, grad, step_size))
        x, energy, accepted = metropolis_step(x, energy, proposal, energy_proposal, generator,
                                              log_q_ratio)
        grad = torch.where(_per_chain(accepted, grad), grad_proposal, grad)
        accepted_total += accepted.sum()
    return x, _acceptance_rate(accepted_total, steps, x.shape[0])


def random_walk_mh(energy_fn: EnergyFn, x0: Tensor, steps: int, proposal_scale: float,
                   generator: torch.Generator | None = None) -> tuple[Tensor, float]:
    """Random-walk Metropolis with N(x, proposal_scale^2 I) proposals.

    Returns (final states, acceptance rate over all steps and chains; NaN when steps = 0).
    """
    x = x0.detach().clone()
    accepted_total = torch.zeros((), device=x.device)
    with torch.no_grad():
        energy = per_example_energy(energy_fn, x)
        for _ in range(steps):
            proposal = x + proposal_scale * standard_normal(x.shape, x, generator)
            energy_proposal = per_example_energy(energy_fn, proposal)
            x, energy, accepted = metropolis_step(x, energy, proposal, energy_proposal, generator)
            accepted_total += accepted.sum()
    return x, _acceptance_rate(accepted_total, steps, x.shape[0])


class ReplayBuffer:
    """Persistent chains for contrastive divergence (as in Du & Mordatch 2019).

    Holds `capacity` states of shape `event_shape`, initialised from noise: uniform on the box
    [low, high] (init="uniform") or N(0, std^2) (init="normal"). `sample` takes distinct slots
    and restarts a fraction of them from fresh noise so the chains keep exploring; `push`
    writes the evolved chains back to the slots they came from.
    """

    def __init__(self, capacity: int, event_shape: Sequence[int], init: str = "uniform",
                 low: float = -1.0, high: float = 1.0, std: float = 1.0,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 generator: torch.Generator | None = None) -> None:
        if init not in ("uniform", "normal"):
            raise ValueError(f"unknown init {init!r}; use 'uniform' or 'normal'")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.event_shape = tuple(event_shape)
        self.init, self.low, self.high, self.std = init, low, high, std
        self.data = torch.empty((capacity, *self.event_shape), device=device,
                                dtype=dtype or torch.get_default_dtype())
        self.data.copy_(self.noise(capacity, generator))

    @property
    def device(self) -> torch.device:
        return self.data.device

    def to(self, device: torch.device | str) -> "ReplayBuffer":
        """Move the stored chains (e.g. to the energy net's device); returns self."""
        self.data = self.data.to(device)
        return self

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n fresh starting points from the initial noise distribution."""
        shape = (n, *self.event_shape)
        if self.init == "uniform":
            return self.low + (self.high - self.low) * standard_uniform(shape, self.data, generator)
        return self.std * standard_normal(shape, self.data, generator)

    def sample(self, batch: int, fresh_fraction: float = 0.05,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(starting points [batch, ...], their slot indices [batch]).

        Exactly round(batch * fresh_fraction) of the points are fresh noise; the rest are
        copies of stored chains. Slots are distinct, so a later `push` writes each once.
        """
        if not 0.0 <= fresh_fraction <= 1.0:
            raise ValueError("fresh_fraction must lie in [0, 1]")
        if not 1 <= batch <= self.capacity:
            raise ValueError(f"batch must be between 1 and the capacity {self.capacity}")
        perm_device = generator.device if generator is not None else self.device
        indices = torch.randperm(self.capacity, generator=generator, device=perm_device)[:batch]
        indices = indices.to(self.device)
        x = self.data[indices].clone()
        n_fresh = round(batch * fresh_fraction)
        # The permutation is random, so its first slots are a random subset to restart.
        x[:n_fresh] = self.noise(n_fresh, generator)
        return x, indices

    def push(self, indices: Tensor, x: Tensor) -> None:
        """Store evolved chains x [len(indices), ...] in the given slots."""
        self.data[indices.to(self.device)] = x.detach().to(self.data)


def contrastive_divergence_loss(energy_fn: EnergyFn, x_data: Tensor, x_model: Tensor,
                                l2: float = 0.1) -> Tensor:
    """mean E(x_data) - mean E(x_model) + l2 * mean(E_data^2) + l2 * mean(E_model^2).

    Its gradient is the maximum-likelihood gradient with model samples standing in for the
    expectation under p; x_model is detached (the sampler is not differentiated). The first two
    terms ignore a constant added to E, so energies can drift; the squared-energy penalty
    (Du & Mordatch 2019) pins that constant near 0. The default 0.1 is small next to the
    contrastive term; pass l2 = 0 for the plain objective.
    """
    energy_data = per_example_energy(energy_fn, x_data)
    energy_model = per_example_energy(energy_fn, x_model.detach())
    loss = energy_data.mean() - energy_model.mean()
    if l2:
        loss = loss + l2 * (energy_data.pow(2).mean() + energy_model.pow(2).mean())
    return loss
