"""Estimates of the partition function Z = ∫ exp(-E(x)) dx of an energy-based model."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from dgmdsl.numerics.mcmc_samplers import mala
from dgmdsl.numerics.score_matching import EnergyFn, per_example_energy, standard_normal

__all__ = ["covering_box", "log_z_quadrature", "annealed_importance_sampling", "log_likelihood"]


def log_likelihood(energy_fn: EnergyFn, x: Tensor, log_z: float | Tensor) -> Tensor:
    """log p(x) = -E(x) - log Z per example [B]."""
    return -per_example_energy(energy_fn, x) - log_z


def covering_box(x: Tensor, margin: float = 3.0) -> tuple[Tensor, Tensor]:
    """(low, high) per dimension: the range of x [N, D] widened by `margin` std on each side."""
    x = x.reshape(x.shape[0], -1)
    spread = margin * x.std(0)
    return x.min(0).values - spread, x.max(0).values + spread


def _as_vector(bound: float | Sequence[float] | Tensor, device: torch.device,
               dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(bound, device=device, dtype=dtype).reshape(-1)


def _grid_energies(energy_fn: EnergyFn, axes: list[Tensor], chunk: int) -> Tensor:
    """E at every point of the product grid of `axes`, shaped [len(a) for a in axes]."""
    points = torch.cartesian_prod(*axes).reshape(-1, len(axes))
    with torch.no_grad():
        energies = torch.cat([per_example_energy(energy_fn, part) for part in points.split(chunk)])
    return energies.reshape(*(len(a) for a in axes))


def log_z_quadrature(energy_fn: EnergyFn, low: float | Sequence[float] | Tensor,
                     high: float | Sequence[float] | Tensor, points_per_dim: int = 512,
                     chunk: int = 65536, enlarge: float = 0.25,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> dict:
    """log Z by the midpoint rule on the box [low, high] (1 or 2 dims), with a truncation check.

    The box should cover the data (see `covering_box`). The energy is also evaluated on the
    box grown by `enlarge` of its width on each side, with the same cell size, and the result
    reports both values: `truncation_estimate` = log_z_enlarged - log_z, the log of the mass
    the given box misses (as far as the larger box can see). Keys: log_z, log_z_enlarged,
    truncation_estimate, cell_volume, grid ([n^D, D] cell centres, 'ij' order) and
    log_density ([n^D], -E - log_z on the grid), low, high, enlarged_low, enlarged_high.
    The grid lives on `device` (default: low's device if it is a tensor, else the CPU).
    """
    if isinstance(low, Tensor) and device is None:
        device = low.device
    dtype = dtype or torch.get_default_dtype()
    low_v = _as_vector(low, device, dtype)
    high_v = _as_vector(high, device, dtype)
    dim = low_v.numel()
    if dim not in (1, 2) or high_v.numel() != dim:
        raise ValueError(f"quadrature needs 1 or 2 dims with matching bounds, got low "
                         f"{list(low_v.shape)} and high {list(high_v.shape)}; "
                         "use annealed_importance_sampling")
    if not bool((high_v > low_v).all()) or points_per_dim < 1:
        raise ValueError("need high > low in every dimension and points_per_dim >= 1")
    cell = (high_v - low_v) / points_per_dim
    pad = math.ceil(enlarge * points_per_dim)  # extra cells per side; the inner grid is a sub-grid
    steps = torch.arange(-pad, points_per_dim + pad, device=device, dtype=dtype) + 0.5
    axes = [low_v[d] + steps * cell[d] for d in range(dim)]
    neg_energy = -_grid_energies(energy_fn, axes, chunk).double()
    inner = neg_energy[(slice(pad, pad + points_per_dim),) * dim]
    log_cell_volume = float(cell.double().log().sum())
    log_z = float(torch.logsumexp(inner.reshape(-1), 0)) + log_cell_volume
    log_z_enlarged = float(torch.logsumexp(neg_energy.reshape(-1), 0)) + log_cell_volume
    inner_axes = [a[pad:pad + points_per_dim] for a in axes]
    return {
        "log_z": log_z,
        "log_z_enlarged": log_z_enlarged,
        "truncation_estimate": log_z_enlarged - log_z,
        "cell_volume": math.exp(log_cell_volume),
        "grid": torch.cartesian_prod(*inner_axes).reshape(-1, dim),
        "log_density": (inner.reshape(-1) - log_z).to(dtype),
        "low": low_v, "high": high_v,
        "enlarged_low": low_v - pad * cell, "enlarged_high": high_v + pad * cell,
    }


def _step_size_update(step_size: float, acceptance_rate: float) -> float:
    """Nudge the MALA step toward 45-75% acceptance (a common range for MALA in low dims)."""
    if acceptance_rate > 0.75:
        return step_size * 1.2
    if acceptance_rate < 0.45:
        return step_size * 0.7
    return step_size


def _base_energy(x: Tensor, base_std: float) -> Tensor:
    """-log N(x; 0, base_std^2 I) without its normalising constant."""
    return 0.5 * x.pow(2).sum(1) / base_std ** 2


def _annealed_energy(energy_fn: EnergyFn, base_std: float, beta: float) -> EnergyFn:
    """Energy of the intermediate target: (1 - beta) * base energy + beta * E."""
    def energy(x: Tensor) -> Tensor:
        return (1.0 - beta) * _base_energy(x, base_std) + beta * per_example_energy(energy_fn, x)
    return energy


def annealed_importance_sampling(energy_fn: EnergyFn, dim: int, n_chains: int = 256,
                                 n_temps: int = 200, base_std: float = 1.0,
                                 mcmc_steps_per_temp: int = 1, step_size: float = 0.1,
                                 adapt_step_size: bool = True,
                                 generator: torch.Generator | None = None,
                                 device: torch.device | str | None = None,
                                 dtype: torch.dtype | None = None) -> dict:
    """log Z by AIS (Neal 2001) from N(0, base_std^2 I) along the geometric path.

    Intermediate targets f_b(x) = N(x; 0, base_std^2 I)^(1 - b) exp(-E(x))^b for b evenly
    spaced in [0, 1] (n_temps steps), each followed by MALA transitions (see mcmc_samplers
    for the step-size convention). With adapt_step_size the step is rescaled between
    temperatures from the last acceptance rate; it depends only on the past, so every
    transition still leaves its own target invariant. log Z is the log-mean-exp of the
    weights; stderr is the delta-method standard error sqrt(Var(w / mean w) / n_chains).
    Returns log_z, stderr, n_chains, n_temps, ess (effective sample size of the weights) and
    acceptance_rate (mean over temperatures).
    """
    like = torch.empty(0, device=device, dtype=dtype or torch.get_default_dtype())
    betas = torch.linspace(0.0, 1.0, n_temps + 1).tolist()
    x = base_std * standard_normal((n_chains, dim), like, generator)
    log_base_norm = 0.5 * dim * math.log(2.0 * math.pi * base_std ** 2)

    log_w = torch.zeros(n_chains, dtype=torch.float64, device=like.device)
    rates = []
    for k in range(1, n_temps + 1):
        with torch.no_grad():
            # log f_b(x) is linear in b with slope base energy - E(x).
            slope = _base_energy(x, base_std) - per_example_energy(energy_fn, x)
            log_w += (betas[k] - betas[k - 1]) * slope.double()
        if k == n_temps:
            break  # a transition at b = 1 would not change the weights
        target = _annealed_energy(energy_fn, base_std, betas[k])
        x, rate = mala(target, x, mcmc_steps_per_temp, step_size, generator)
        rates.append(rate)
        if adapt_step_size:
            step_size = _step_size_update(step_size, rate)
    normalised = torch.softmax(log_w, 0)
    relative = n_chains * normalised  # w_i / mean(w)
    stderr = float((relative.var() / n_chains).sqrt()) if n_chains > 1 else float("nan")
    return {
        "log_z": float(torch.logsumexp(log_w, 0)) - math.log(n_chains) + log_base_norm,
        "stderr": stderr,
        "n_chains": n_chains,
        "n_temps": n_temps,
        "ess": float(1.0 / normalised.pow(2).sum()),
        "acceptance_rate": sum(rates) / len(rates) if rates else float("nan"),
    }
