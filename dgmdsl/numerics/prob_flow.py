"""Probability-flow ODE: deterministic sampling and exact-in-the-limit likelihoods.

dx/dt = f(x, t) - ½ g(t)² s(x, t) shares the marginals p_t of the SDE, so
log p_eps(x) = log p_1(x_1) + ∫_eps^1 div(dx/dt) dt along its solution.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torchdiffeq import odeint

from dgmdsl.numerics.sde_kernel import GaussianKernel

__all__ = ["EXACT_DIVERGENCE_MAX_DIM", "probability_flow_nll", "probability_flow_sample"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# above this many dimensions the exact trace (one backward pass per dimension) gives way to Hutchinson
EXACT_DIVERGENCE_MAX_DIM = 10


_ADAPTIVE = {"dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun"}


def _solver_options(method: str, end: torch.Tensor) -> dict:
    """Adaptive steps may not overshoot the end time: below t = eps the score blows up."""
    return {"step_t": end.reshape(1)} if method in _ADAPTIVE else {}


def _ode_velocity(score_fn: ScoreFn, kernel: GaussianKernel, x: torch.Tensor,
                  t: torch.Tensor) -> torch.Tensor:
    t = t.to(x.dtype)
    return kernel.drift(x, t) - 0.5 * kernel.diffusion(t) ** 2 * score_fn(x, t.expand(x.shape[0]))


@torch.no_grad()
def probability_flow_sample(score_fn: ScoreFn, kernel: GaussianKernel, shape: tuple[int, ...],
                            rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5",
                            eps: float = 1e-3, generator: torch.Generator | None = None,
                            device: torch.device | str | None = None,
                            dtype: torch.dtype | None = None) -> torch.Tensor:
    """Solve the probability-flow ODE from a prior draw at t = 1 back to t = eps."""
    x1 = kernel.prior_sample(shape, generator=generator, device=device, dtype=dtype)
    times = torch.tensor([1.0, eps], device=x1.device, dtype=x1.dtype)
    path = odeint(lambda t, x: _ode_velocity(score_fn, kernel, x, t), x1, times,
                  rtol=rtol, atol=atol, method=method, options=_solver_options(method, times[-1]))
    return path[-1]


VelocityFn = Callable[[torch.Tensor], torch.Tensor]


def _velocity_and_exact_divergence(velocity_fn: VelocityFn,
                                   x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity and the trace of its Jacobian per example, one backward pass per dimension."""
    x = x.detach().requires_grad_(True)
    flat = velocity_fn(x).flatten(1)
    trace = x.new_zeros(x.shape[0])
    if flat.requires_grad:  # else the velocity is constant in x and the trace is zero
        for i in range(flat.shape[1]):
            grad = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)[0]
            trace = trace + grad.flatten(1)[:, i]
    return flat.reshape(x.shape).detach(), trace.detach()


def _velocity_and_hutchinson_divergence(velocity_fn: VelocityFn, x: torch.Tensor,
                                        probes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity and the mean over probes v of vᵀ J v; probes [K, *x.shape].

    The K probes go through one batched backward pass: x is repeated K times in the batch.
    """
    count, batch = probes.shape[0], x.shape[0]
    repeated = x.detach().repeat(count, *([1] * (x.dim() - 1))).requires_grad_(True)
    velocity = velocity_fn(repeated)
    flat_probes = probes.flatten(0, 1)
    estimate = x.new_zeros(count * batch)
    if velocity.requires_grad:
        vjp = torch.autograd.grad(velocity, repeated, grad_outputs=flat_probes)[0]
        estimate = (vjp * flat_probes).flatten(1).sum(dim=1)
    return velocity[:batch].detach(), estimate.reshape(count, batch).mean(dim=0).detach()


def probability_flow_nll(score_fn: ScoreFn, kernel: GaussianKernel, x: torch.Tensor,
                         rtol: float = 1e-5, atol: float = 1e-5,
                         exact_divergence: bool | None = None, probes: int = 1,
                         generator: torch.Generator | None = None, eps: float = 1e-5,
                         method: str = "dopri5") -> dict:
    """Per-example NLL of x under p_eps via the instantaneous change of variables.

    The divergence is exact (autograd trace) when `exact_divergence` is True, or by
    default when x has at most EXACT_DIVERGENCE_MAX_DIM dimensions; otherwise Hutchinson's
    estimator with `probes` Rademacher vectors held fixed along the whole solve (unbiased
    for the NLL, noisier per example; the net then sees batches of probes · B).
    Returns "nll" and "bits_per_dim" (per example, nats and bits), "divergence" (which
    estimator) and "evaluations" (ODE right-hand sides).
    """
    dim = x[0].numel()
    exact = dim <= EXACT_DIVERGENCE_MAX_DIM if exact_divergence is None else exact_divergence
    probe_vectors = None
    if not exact:
        if probes < 1:
            raise ValueError("probes must be at least 1")
        signs = torch.randint(0, 2, (probes, *x.shape), generator=generator, device=x.device)
        probe_vectors = (2 * signs - 1).to(x.dtype)
    evaluations = 0

    def rhs(t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        nonlocal evaluations
        evaluations += 1
        velocity_fn = functools.partial(_ode_velocity, score_fn, kernel, t=t)
        with torch.enable_grad():
            if probe_vectors is None:
                return _velocity_and_exact_divergence(velocity_fn, state[0])
            return _velocity_and_hutchinson_divergence(velocity_fn, state[0], probe_vectors)

    times = torch.tensor([eps, 1.0], device=x.device, dtype=x.dtype)
    start = (x.detach(), torch.zeros(x.shape[0], device=x.device, dtype=x.dtype))
    x_path, divergence_path = odeint(rhs, start, times, rtol=rtol, atol=atol, method=method,
                                     options=_solver_options(method, times[-1]))
    nll = -(kernel.prior_log_prob(x_path[-1]) + divergence_path[-1])
    return {
        "nll": nll,
        "bits_per_dim": nll / (dim * math.log(2)),
        "divergence": "exact" if exact else f"hutchinson(rademacher, probes={probes})",
        "evaluations": evaluations,
    }
