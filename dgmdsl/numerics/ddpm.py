"""Discrete-time diffusion (Ho et al. 2020): schedules, the simple loss, samplers, the bound.

Code steps t = 0..T-1 are the paper's steps 1..T, so alpha_bars[t] = prod_{s<=t} (1 - betas[s])
and step 0 is the decoder step. The ε-net is called as eps_net(x_t, net_time(t, T)) with
net_time(t, T) = (t + 1) / T in (0, 1]: the paper's step over T, so 0 would be clean data
as in continuous time.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

__all__ = ["DDPMSchedule", "ancestral_sample", "cosine_betas", "ddim_sample", "linear_betas",
           "net_time", "simple_loss", "variational_bound"]

EpsNet = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def linear_betas(T: int, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    return torch.linspace(start, end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal: alpha_bar(n) = cos²((n/T + s)/(1 + s) · π/2) / the same at n = 0."""
    n = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((n / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bars = f / f[0]
    return (1 - alpha_bars[1:] / alpha_bars[:-1]).clamp(max=max_beta)


def net_time(t: torch.Tensor, T: int) -> torch.Tensor:
    """The ε-net's time input for code steps t: (t + 1) / T."""
    return (t + 1).to(torch.get_default_dtype()) / T


def _per_example(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.to(x.dtype).reshape(values.shape[0], *([1] * (x.dim() - 1)))


class DDPMSchedule(nn.Module):
    """Noise schedule and the derived coefficients, as float64 buffers.

    Steps t index the buffers, so the schedule must sit on the data's device (.to(device)).
    """

    def __init__(self, betas: torch.Tensor) -> None:
        super().__init__()
        betas = betas.to(torch.float64)
        if betas.dim() != 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        alphas = 1 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        alpha_bars_prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
        posterior_var = betas * (1 - alpha_bars_prev) / (1 - alpha_bars)
        buffers = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bars": alpha_bars,
            "alpha_bars_prev": alpha_bars_prev,
            "posterior_var": posterior_var,
            # step 0 has zero posterior variance; its log borrows step 1's (Ho et al.)
            "posterior_log_var_clipped": torch.log(torch.cat([posterior_var[1:2], posterior_var[1:]])),
            "posterior_coef_x0": betas * alpha_bars_prev.sqrt() / (1 - alpha_bars),
            "posterior_coef_xt": (1 - alpha_bars_prev) * alphas.sqrt() / (1 - alpha_bars),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value)

    @property
    def T(self) -> int:
        return self.betas.shape[0]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise."""
        alpha_bar = _per_example(self.alpha_bars[t], x0)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor,
                  t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(x_{t-1} | x_t, x0): (mean, var, clipped log var), var and log var as [B, 1, ...]."""
        mean = (_per_example(self.posterior_coef_x0[t], x0) * x0
                + _per_example(self.posterior_coef_xt[t], x0) * xt)
        return (mean, _per_example(self.posterior_var[t], x0),
                _per_example(self.posterior_log_var_clipped[t], x0))

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        alpha_bar = _per_example(self.alpha_bars[t], xt)
        return (xt - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()

    def reverse(self, eps_net: EpsNet, xt: torch.Tensor, t: torch.Tensor,
                clip_x0: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """p(x_{t-1} | x_t) = N(posterior mean at the predicted x0, exp(clipped log var)): (mean, log var)."""
        x0_hat = self.predict_x0(xt, t, eps_net(xt, net_time(t, self.T).to(xt)))
        if clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
        mean, _, log_var = self.posterior(x0_hat, xt, t)
        return mean, log_var


def _steps_like(t: int, batch: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch,), t, dtype=torch.long, device=device)


def simple_loss(eps_net: EpsNet, x0: torch.Tensor, schedule: DDPMSchedule,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Ho et al.'s L_simple: t uniform on {0..T-1}, mean squared error of the predicted noise."""
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    prediction = eps_net(schedule.q_sample(x0, t, noise), net_time(t, schedule.T).to(x0))
    return (prediction - noise).pow(2).mean()


def _start(schedule: DDPMSchedule, shape: tuple[int, ...], generator: torch.Generator | None,
           device: torch.device | str | None, dtype: torch.dtype | None) -> torch.Tensor:
    device = device if device is not None else schedule.betas.device
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


@torch.no_grad()
def ancestral_sample(eps_net: EpsNet, schedule: DDPMSchedule, shape: tuple[int, ...],
                     generator: torch.Generator | None = None, clip_x0: bool = False,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
    """x_T ~ N(0, I), then x_{t-1} ~ p(x_{t-1} | x_t) with the posterior variance; no noise at t = 0."""
    x = _start(schedule, shape, generator, device, dtype)
    for step in reversed(range(schedule.T)):
        mean, log_var = schedule.reverse(eps_net, x, _steps_like(step, shape[0], x.device), clip_x0)
        if step == 0:
            return mean
        noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
        x = mean + (0.5 * log_var).exp() * noise
    return x


def _ddim_steps(T: int, steps: int) -> list[int]:
    if not 1 <= steps <= T:
        raise ValueError(f"ddim steps must be in 1..{T}, got {steps}")
    return torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().unique().tolist()


@torch.no_grad()
def ddim_sample(eps_net: EpsNet, schedule: DDPMSchedule, shape: tuple[int, ...], steps: int,
                eta: float = 0.0, generator: torch.Generator | None = None, clip_x0: bool = False,
                device: torch.device | str | None = None,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """DDIM (Song et al. 2021) on `steps` evenly spaced steps; eta = 1 with steps = T is ancestral."""
    x = _start(schedule, shape, generator, device, dtype)
    sequence = _ddim_steps(schedule.T, steps)
    previous = [-1] + sequence[:-1]
    alpha_bars = schedule.alpha_bars.tolist()  # one device sync instead of two per step
    for step, prev in zip(reversed(sequence), reversed(previous)):
        t = _steps_like(step, shape[0], x.device)
        eps = eps_net(x, net_time(t, schedule.T).to(x))
        x0_hat = schedule.predict_x0(x, t, eps)
        alpha_bar = alpha_bars[step]
        alpha_bar_prev = alpha_bars[prev] if prev >= 0 else 1.0
        if clip_x0:  # keep x0 in the data range and re-derive the noise it implies
            x0_hat = x0_hat.clamp(-1, 1)
            eps = (x - math.sqrt(alpha_bar) * x0_hat) / math.sqrt(1 - alpha_bar)
        sigma = eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))
        x = math.sqrt(alpha_bar_prev) * x0_hat + math.sqrt(max(1 - alpha_bar_prev - sigma**2, 0.0)) * eps
        if prev >= 0 and sigma > 0:
            x = x + sigma * torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    return x


# ---------------------------------------------------------------- variational bound

def _gaussian_kl(mean1: torch.Tensor, log_var1: torch.Tensor, mean2: torch.Tensor,
                 log_var2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) elementwise."""
    return 0.5 * (log_var2 - log_var1 + (log_var1.exp() + (mean1 - mean2) ** 2) / log_var2.exp() - 1)


def _discretized_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor,
                                   bins: int) -> torch.Tensor:
    """log P(x's bin) for x on the grid of `bins` values in [-1, 1]; end bins reach to ±infinity."""
    half_width = 1.0 / (bins - 1)
    inv_std = torch.exp(-0.5 * log_var)
    upper = (x + half_width - mean) * inv_std
    lower = (x - half_width - mean) * inv_std
    log_below_upper = torch.special.log_ndtr(upper)
    log_above_lower = torch.special.log_ndtr(-lower)
    middle = torch.log((torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp_min(1e-12))
    return torch.where(x < -1 + half_width, log_below_upper,
                       torch.where(x > 1 - half_width, log_above_lower, middle))


def _decoder_nll(x0: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, data_kind: str,
                 bins: int) -> torch.Tensor:
    if data_kind == "continuous":
        log_prob = -0.5 * (math.log(2 * math.pi) + log_var + (x0 - mean) ** 2 / log_var.exp())
    else:
        log_prob = _discretized_gaussian_log_prob(x0, mean, log_var, bins)
    return -log_prob


@torch.no_grad()
def variational_bound(eps_net: EpsNet, schedule: DDPMSchedule, x0: torch.Tensor,
                      data_kind: str = "continuous", bins: int = 256,
                      noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                      chunk: int = 50) -> dict[str, torch.Tensor]:
    """Per-example negative ELBO L_T + Σ_{t>=1} L_t + L_0 in nats, one x_t draw per step.

    L_0 is -log p(x0 | x_1) under the decoder N(mean, exp(clipped log var at step 0)):
    a Gaussian density for "continuous" data, or for "discrete" data on `bins` evenly
    spaced values in [-1, 1] (2 for binary pixels, 256 for 8-bit) the discretized
    Gaussian of Ho et al. (a probability mass). `noise` [T, *x0.shape] fixes the x_t
    draws; `chunk` steps are evaluated per net call (batch chunk · B).
    Returns "prior", "diffusion", "decoder", "nll_bound", "bits_per_dim" (all [B]) and
    "terms" [B, T] (column 0 the decoder term, column t the KL L_t).
    """
    if data_kind not in ("continuous", "discrete"):
        raise ValueError(f"data_kind must be 'continuous' or 'discrete', not {data_kind!r}")
    T, batch = schedule.T, x0.shape[0]
    if noise is None:
        noise = torch.randn((T, *x0.shape), generator=generator, device=x0.device, dtype=x0.dtype)
    terms = x0.new_zeros(batch, T)
    for first in range(0, T, chunk):
        steps = torch.arange(first, min(first + chunk, T), device=x0.device)
        t = steps.repeat_interleave(batch)
        x0_rep = x0.repeat(len(steps), *([1] * (x0.dim() - 1)))
        xt = schedule.q_sample(x0_rep, t, noise[steps].flatten(0, 1))
        true_mean, _, true_log_var = schedule.posterior(x0_rep, xt, t)
        model_mean, model_log_var = schedule.reverse(eps_net, xt, t)
        kl = _gaussian_kl(true_mean, true_log_var, model_mean, model_log_var)
        decoder = _decoder_nll(x0_rep, model_mean, model_log_var, data_kind, bins)
        is_decoder_step = (t == 0).reshape(-1, *([1] * (x0.dim() - 1)))
        per_step = torch.where(is_decoder_step, decoder, kl).flatten(1).sum(dim=1)
        terms[:, first:first + len(steps)] = per_step.reshape(len(steps), batch).T
    alpha_bar_T = schedule.alpha_bars[-1].to(x0.dtype)
    prior = 0.5 * ((1 - alpha_bar_T) + alpha_bar_T * x0**2 - 1 - torch.log(1 - alpha_bar_T))
    prior = prior.flatten(1).sum(dim=1)
    total = prior + terms.sum(dim=1)
    return {
        "prior": prior,
        "diffusion": terms[:, 1:].sum(dim=1),
        "decoder": terms[:, 0],
        "terms": terms,
        "nll_bound": total,
        "bits_per_dim": total / (x0[0].numel() * math.log(2)),
    }
