"""f-GAN (Nowozin, Cseke & Tomioka 2016): variational bounds on f-divergences.

For a convex f with f(1) = 0, D_f(P || Q) = ∫ q f(p / q) dx, and for every
critic T with values in the domain of the Fenchel conjugate f*,

    D_f(P || Q) >= F(T) = E_P[T(x)] - E_Q[f*(T(x))],

with equality at T = f'(p / q). Here P is the data and Q the generator. The
critic's raw output v is mapped into dom f* by the output activation g_f, as in
the paper's Table 6:

    name               f(u)                                g_f(v)                 f*(t)
    kl                 u log u                             v                      exp(t - 1)
    reverse_kl         -log u                              -exp(-v)               -1 - log(-t)
    pearson            (u - 1)^2                           v                      t^2 / 4 + t
    squared_hellinger  (sqrt(u) - 1)^2                     1 - exp(-v)            t / (1 - t)
    js                 u log u - (u + 1) log((u + 1) / 2)  log 2 - softplus(-v)   -log(2 - exp(t))

`js` is the paper's "Jensen-Shannon" row; with this f, D_f = KL(P || M) +
KL(Q || M) = 2 JSD(P, Q) (M the mixture), which lies in [0, 2 log 2].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "DIVERGENCES",
    "FDivergence",
    "analytic_f_divergence_gaussians",
    "f_gan_bound",
    "get_divergence",
]

Fn = Callable[[torch.Tensor], torch.Tensor]
LOG2 = math.log(2.0)


@dataclass(frozen=True)
class FDivergence:
    """One row of the f-GAN table.

    `conjugate_of_activation(v)` is f*(g_f(v)) simplified by hand, so the bound
    stays finite for any raw output v (composing the two naively overflows or
    leaves dom f* in floating point).
    """

    name: str
    f: Fn
    activation: Fn
    conjugate: Fn
    conjugate_of_activation: Fn


def _kl_f(u: torch.Tensor) -> torch.Tensor:
    return torch.xlogy(u, u)


def _js_f(u: torch.Tensor) -> torch.Tensor:
    return torch.xlogy(u, u) - torch.xlogy(u + 1.0, (u + 1.0) / 2.0)


DIVERGENCES: dict[str, FDivergence] = {
    "kl": FDivergence(
        "kl", _kl_f,
        activation=lambda v: v,
        conjugate=lambda t: torch.exp(t - 1.0),
        conjugate_of_activation=lambda v: torch.exp(v - 1.0),
    ),
    "reverse_kl": FDivergence(
        "reverse_kl", lambda u: -torch.log(u),
        activation=lambda v: -torch.exp(-v),
        conjugate=lambda t: -1.0 - torch.log(-t),
        conjugate_of_activation=lambda v: v - 1.0,
    ),
    "pearson": FDivergence(
        "pearson", lambda u: (u - 1.0) ** 2,
        activation=lambda v: v,
        conjugate=lambda t: 0.25 * t**2 + t,
        conjugate_of_activation=lambda v: 0.25 * v**2 + v,
    ),
    "squared_hellinger": FDivergence(
        "squared_hellinger", lambda u: (torch.sqrt(u) - 1.0) ** 2,
        activation=lambda v: -torch.expm1(-v),
        conjugate=lambda t: t / (1.0 - t),
        # t / (1 - t) with t = 1 - e^{-v} is e^{v} - 1.
        conjugate_of_activation=lambda v: torch.expm1(v),
    ),
    "js": FDivergence(
        "js", _js_f,
        activation=lambda v: LOG2 - F.softplus(-v),
        conjugate=lambda t: -torch.log(2.0 - torch.exp(t)),
        # 2 - exp(log 2 - softplus(-v)) = 2 (1 - sigmoid(v)), whose -log is softplus(v) - log 2.
        conjugate_of_activation=lambda v: F.softplus(v) - LOG2,
    ),
}


def get_divergence(name: str) -> FDivergence:
    try:
        return DIVERGENCES[name]
    except KeyError:
        known = ", ".join(sorted(DIVERGENCES))
        raise ValueError(f"unknown f-divergence {name!r}; known: {known}") from None


def f_gan_bound(divergence: str | FDivergence, real_out: torch.Tensor,
                fake_out: torch.Tensor) -> torch.Tensor:
    """F = E_P[g_f(v_real)] - E_Q[f*(g_f(v_fake))], a lower bound on D_f(P || Q)."""
    div = get_divergence(divergence) if isinstance(divergence, str) else divergence
    return div.activation(real_out).mean() - div.conjugate_of_activation(fake_out).mean()


def _normal_log_density(x: torch.Tensor, mu: float, s: float) -> torch.Tensor:
    return -0.5 * ((x - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2.0 * math.pi)


def analytic_f_divergence_gaussians(divergence: str, mu_p: float, s_p: float, mu_q: float,
                                    s_q: float, n_points: int = 200_001,
                                    width: float = 14.0) -> float:
    """D_f(N(mu_p, s_p^2) || N(mu_q, s_q^2)) by trapezoidal quadrature on a float64 grid.

    The grid spans `width` standard deviations beyond both means. Meant for
    overlapping Gaussians (tests, benchmarks); the ratio p/q is clamped in log
    space so far tails cannot produce inf * 0.
    """
    div = get_divergence(divergence)
    s_max = max(s_p, s_q)
    lo = min(mu_p, mu_q) - width * s_max
    hi = max(mu_p, mu_q) + width * s_max
    x = torch.linspace(lo, hi, n_points, dtype=torch.float64)
    log_p = _normal_log_density(x, mu_p, s_p)
    log_q = _normal_log_density(x, mu_q, s_q)
    ratio = torch.exp((log_p - log_q).clamp(-600.0, 600.0))
    integrand = torch.exp(log_q) * div.f(ratio)
    return float(torch.trapezoid(integrand, x))
