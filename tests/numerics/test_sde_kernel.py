"""Perturbation kernels of affine SDEs (closed form and numeric) and the continuous DSM loss."""
import math

import pytest
import sympy as sp
import torch

from dgmdsl.nn.mlp import TimeConditionedMLP
from dgmdsl.numerics.sde_kernel import derive_kernel, dsm_loss, sympy_to_torch

t = sp.Symbol("t")
BETA_0, BETA_1 = 0.1, 20.0
BETA = 0.1 + (20 - 0.1) * t                      # as written in score_sde.dgm
SIGMA = 0.01 * (50 / 0.01) ** t                  # as written in score_sde_ve.dgm
VE_G = SIGMA * sp.sqrt(2 * sp.log(50 / 0.01))
TIMES = torch.tensor([0.0, 1e-4, 0.01, 0.1, 0.3, 0.5, 0.77, 1.0], dtype=torch.float64)


def vp_kernel(**kwargs):
    return derive_kernel(-0.5 * BETA, sp.Integer(0), sp.sqrt(BETA), t, **kwargs)


def vp_mean_coef(times):
    return torch.exp(-0.25 * times**2 * (BETA_1 - BETA_0) - 0.5 * times * BETA_0)


def test_vp_kernel_is_closed_form_and_textbook():
    kernel = vp_kernel()
    m = vp_mean_coef(TIMES)
    assert kernel.is_closed_form and kernel.source.startswith("closed form")
    torch.testing.assert_close(kernel.mean_coef(TIMES), m, atol=1e-6, rtol=0)
    torch.testing.assert_close(kernel.var(TIMES), 1 - m**2, atol=1e-6, rtol=0)
    torch.testing.assert_close(kernel.mean_shift(TIMES), torch.zeros_like(TIMES))


def test_ve_kernel_is_closed_form_and_textbook():
    kernel = derive_kernel(sp.Integer(0), sp.Integer(0), VE_G, t)
    sigma = 0.01 * 5000.0**TIMES
    assert kernel.is_closed_form
    torch.testing.assert_close(kernel.mean_coef(TIMES), torch.ones_like(TIMES))
    # relative 1e-6 at v(1) = 2500, absolute 1e-6 near t = 0
    torch.testing.assert_close(kernel.var(TIMES), sigma**2 - 0.01**2, atol=1e-6, rtol=1e-6)


def test_sub_vp_kernel_is_closed_form_and_textbook():
    integral_beta = 0.1 * t + 0.5 * (20 - 0.1) * t**2
    g = sp.sqrt(BETA * (1 - sp.exp(-2 * integral_beta)))
    kernel = derive_kernel(-0.5 * BETA, sp.Integer(0), g, t)
    m = vp_mean_coef(TIMES)
    assert kernel.is_closed_form
    torch.testing.assert_close(kernel.var(TIMES), (1 - m**2) ** 2, atol=1e-6, rtol=0)


def test_numeric_path_matches_closed_form():
    for a, b, g in [(-0.5 * BETA, sp.Integer(0), sp.sqrt(BETA)),
                    (-2 + 0 * t, 1 + t, 0.5 + 0 * t)]:  # an OU process with a moving target
        closed = derive_kernel(a, b, g, t)
        numeric = derive_kernel(a, b, g, t, force_numeric=True)
        assert closed.is_closed_form and not numeric.is_closed_form
        grid = torch.rand(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        for name in ("mean_coef", "mean_shift", "var"):
            torch.testing.assert_close(getattr(numeric, name)(grid), getattr(closed, name)(grid),
                                       atol=1e-6, rtol=0)


def test_numeric_kernel_matches_simulated_forward_sde():
    a, b, g = -(1 + sp.sin(3 * t)), 0.5 * t, 0.3 + t**2
    kernel = derive_kernel(a, b, g, t)
    assert not kernel.is_closed_form  # sympy finds no elementary antiderivative
    a_fn, b_fn, g_fn = (sympy_to_torch(e, t) for e in (a, b, g))
    gen = torch.Generator().manual_seed(1)
    paths, steps, x0 = 20_000, 1000, 1.5
    x = torch.full((paths,), x0, dtype=torch.float64)
    dt = 1.0 / steps
    checkpoints = {}
    for i in range(steps):
        now = torch.tensor(i * dt, dtype=torch.float64)
        noise = torch.randn(paths, generator=gen, dtype=torch.float64)
        x = x + (a_fn(now) * x + b_fn(now)) * dt + g_fn(now) * math.sqrt(dt) * noise
        if i + 1 in (steps // 2, steps):
            checkpoints[(i + 1) * dt] = x.clone()
    for time, samples in checkpoints.items():
        when = torch.tensor(time, dtype=torch.float64)
        mean = kernel.mean_coef(when) * x0 + kernel.mean_shift(when)
        var = kernel.var(when)
        # 5 standard errors of the Monte Carlo estimates, plus O(dt) discretization bias
        assert abs(samples.mean() - mean) < 5 * (var / paths).sqrt() + 2 * dt
        assert abs(samples.var() - var) < 5 * var * math.sqrt(2 / paths) + 2 * dt * var


def test_marginal_prob_drift_and_prior_shapes():
    kernel = vp_kernel()
    x0 = torch.randn(5, 3, 4, dtype=torch.float64)
    times = torch.linspace(0.1, 0.9, 5, dtype=torch.float64)
    mean, std = kernel.marginal_prob(x0, times)
    assert mean.shape == x0.shape and std.shape == (5, 1, 1)
    torch.testing.assert_close(mean[2], vp_mean_coef(times[2]) * x0[2])
    drift = kernel.drift(x0, times)
    torch.testing.assert_close(drift[1], -0.5 * (0.1 + 19.9 * times[1]) * x0[1])
    torch.testing.assert_close(kernel.diffusion(times), (0.1 + 19.9 * times).sqrt())
    prior = torch.distributions.Normal(0.0, kernel.std(torch.tensor(1.0, dtype=torch.float64)))
    torch.testing.assert_close(kernel.prior_log_prob(x0), prior.log_prob(x0).sum(dim=(1, 2)))
    draws = kernel.prior_sample((4000, 2), generator=torch.Generator().manual_seed(0),
                                dtype=torch.float64)
    assert abs(draws.std() - 1.0) < 0.03  # v(1) = 1 - m(1)^2 ~ 1 for VP


def test_sympy_to_torch_matches_sympy_evaluation():
    expr = sp.exp(-t) * sp.sin(2 * t) + sp.sqrt(1 + t**2) / 3 + 2**t + sp.erf(t) + sp.log(1 + t)
    fn = sympy_to_torch(expr, t)
    for value in (0.0, 0.25, 0.9):
        got = fn(torch.tensor([value], dtype=torch.float64))
        assert abs(float(got) - float(expr.subs(t, value))) < 1e-12
    assert sympy_to_torch(sp.Integer(3), t)(torch.zeros(4)).tolist() == [3.0] * 4
    with pytest.raises(ValueError):
        sympy_to_torch(t * sp.Symbol("x"), t)


def _gaussian_score(kernel, mu, s):
    def score(x, times):
        m = kernel.mean_coef(times)[:, None]
        return -(x - m * mu - kernel.mean_shift(times)[:, None]) / (m**2 * s**2 + kernel.var(times)[:, None])
    return score


def test_dsm_loss_at_exact_score_is_the_irreducible_value():
    # with the exact score, E ½||std s + z||² = ½ E_t[m² s² / (m² s² + v)] per dimension
    kernel, mu, s, eps = vp_kernel(), 0.5, 0.7, 1e-5
    grid = torch.linspace(eps, 1.0, 20_001, dtype=torch.float64)
    m2 = kernel.mean_coef(grid) ** 2
    expected = 2 * 0.5 * torch.trapezoid(m2 * s**2 / (m2 * s**2 + kernel.var(grid)), grid) / (1 - eps)
    gen = torch.Generator().manual_seed(0)
    x0 = mu + s * torch.randn(100_000, 2, generator=gen, dtype=torch.float64)
    losses = torch.stack([dsm_loss(_gaussian_score(kernel, mu, s), chunk, kernel, generator=gen)
                          for chunk in x0.split(1000)])
    standard_error = losses.std() / math.sqrt(len(losses))
    assert abs(losses.mean() - expected) < 4 * standard_error
    assert standard_error < 0.01 * expected  # the check has teeth


def test_likelihood_weighting_is_g2_over_var_times_variance_weighting():
    kernel, seen = vp_kernel(), []

    def score(x, times):
        seen.append(times)
        return torch.sin(3 * x) - x * times[:, None]

    x0 = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    for seed in range(3):
        variance = dsm_loss(score, x0, kernel, "variance", generator=torch.Generator().manual_seed(seed))
        likelihood = dsm_loss(score, x0, kernel, "likelihood", generator=torch.Generator().manual_seed(seed))
        when = seen[-1]
        assert torch.equal(seen[-2], when) and 1e-5 <= float(when) <= 1.0
        torch.testing.assert_close(likelihood, (kernel.diffusion(when) ** 2 / kernel.var(when) * variance)[0])
    with pytest.raises(ValueError):
        dsm_loss(score, x0, kernel, "uniform")


def test_trained_score_approaches_analytic_score():
    torch.manual_seed(0)
    kernel, mu, s = vp_kernel(), 0.5, 0.6
    net = TimeConditionedMLP(1, 1, hidden=(64, 64), act="silu")
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(400):
        x0 = mu + s * torch.randn(512, 1)
        loss = dsm_loss(net, x0, kernel)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    analytic = _gaussian_score(kernel, mu, s)
    for time in (0.3, 0.5, 0.7):
        times = torch.full((2000,), time)
        mean, std = kernel.marginal_prob(torch.full((2000, 1), mu), times)
        x = mean + (std**2 + (kernel.mean_coef(times)[:, None] * s) ** 2).sqrt() * torch.randn(2000, 1)
        with torch.no_grad():
            error = (net(x, times) - analytic(x, times)).norm() / analytic(x, times).norm()
        assert error < 0.2, (time, float(error))
