"""Adversarial losses: closed forms, optimal critics, trained critics, gradient penalty."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dgmdsl.nn.mlp import MLP
from dgmdsl.numerics.adversarial import (
    DEFAULT_F_DIVERGENCE,
    LOSSES,
    clip_weights_,
    gradient_penalty,
    make_loss,
)
from dgmdsl.numerics.fgan import analytic_f_divergence_gaussians
from tests.numerics.helpers import train_critic

DATA = torch.distributions.Normal(0.0, 1.0)
MODEL = torch.distributions.Normal(1.0, 1.5)


def _randn64(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def _quadrature(fn) -> float:
    """∫ fn(p(x), q(x)) dx for p = DATA, q = MODEL."""
    x = np.linspace(-20.0, 20.0, 400_001)
    p = np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    q = np.exp(-0.5 * ((x - 1.0) / 1.5) ** 2) / (1.5 * math.sqrt(2 * math.pi))
    return float(np.trapezoid(fn(p, q), x))


def test_losses_match_naive_formulas():
    gen = torch.Generator().manual_seed(0)
    r, f = _randn64(gen, 50), _randn64(gen, 50)
    d_r, d_f = torch.sigmoid(r), torch.sigmoid(f)
    bce = -(torch.log(d_r).mean() + torch.log(1 - d_f).mean())
    torch.testing.assert_close(LOSSES["minimax"].critic_loss(r, f), bce)
    torch.testing.assert_close(LOSSES["minimax"].generator_loss(f), torch.log(1 - d_f).mean())
    torch.testing.assert_close(LOSSES["non_saturating"].generator_loss(f), -torch.log(d_f).mean())
    torch.testing.assert_close(LOSSES["minimax"].estimate(r, f), -bce)
    torch.testing.assert_close(LOSSES["wgan"].critic_loss(r, f), f.mean() - r.mean())
    torch.testing.assert_close(LOSSES["wgan_gp"].generator_loss(f), -f.mean())
    hinge = torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean()
    torch.testing.assert_close(LOSSES["hinge"].critic_loss(r, f), hinge)
    ls = 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean()
    torch.testing.assert_close(LOSSES["least_squares"].critic_loss(r, f), ls)
    torch.testing.assert_close(LOSSES["least_squares"].generator_loss(f), 0.5 * ((f - 1) ** 2).mean())


def test_minimax_losses_are_stable_at_extreme_logits():
    big = torch.tensor([100.0])
    assert LOSSES["minimax"].critic_loss(big, -big).item() == pytest.approx(0.0, abs=1e-30)
    assert LOSSES["minimax"].critic_loss(-big, big).item() == pytest.approx(200.0)
    assert LOSSES["minimax"].generator_loss(big).item() == pytest.approx(-100.0)
    assert LOSSES["non_saturating"].generator_loss(-big).item() == pytest.approx(100.0)


def test_non_saturating_keeps_gradient_where_minimax_saturates():
    # A confident critic (D(G(z)) = sigmoid(-10)): minimax gradient ~ 4.5e-5, non-saturating ~ 1.
    fake = torch.full((1,), -10.0, requires_grad=True)
    (g_minimax,) = torch.autograd.grad(LOSSES["minimax"].generator_loss(fake), fake)
    (g_ns,) = torch.autograd.grad(LOSSES["non_saturating"].generator_loss(fake), fake)
    assert g_minimax.item() == pytest.approx(-torch.sigmoid(torch.tensor(-10.0)).item(), rel=1e-4)
    assert g_ns.item() == pytest.approx(-1.0, abs=1e-4)


def test_metadata():
    assert {n for n, l in LOSSES.items() if l.needs_penalty} == {"wgan_gp"}
    assert {n for n, l in LOSSES.items() if l.needs_clip} == {"wgan"}
    assert LOSSES["wgan"].default_clip == 0.01
    steps = {n: l.default_critic_steps for n, l in LOSSES.items()}
    assert steps == {"minimax": 1, "non_saturating": 1, "wgan": 5, "wgan_gp": 5, "hinge": 1,
                     "least_squares": 1, "f_gan": 1}
    assert LOSSES["f_gan"].divergence == DEFAULT_F_DIVERGENCE
    assert make_loss("f_gan", divergence="js").divergence == "js"
    with pytest.raises(ValueError, match="unknown adversarial loss"):
        make_loss("wasserstein")
    with pytest.raises(ValueError, match="takes no options"):
        make_loss("hinge", divergence="kl")


def _oracle_outputs(n: int = 400_000):
    torch.manual_seed(0)
    x_real, x_fake = DATA.sample((n,)).double(), MODEL.sample((n,)).double()
    log_ratio = lambda x: DATA.log_prob(x) - MODEL.log_prob(x)  # noqa: E731
    return log_ratio(x_real), log_ratio(x_fake)


def test_estimates_at_optimal_critics_equal_their_divergences():
    lr_real, lr_fake = _oracle_outputs()
    # Minimax: optimal logit log(p/q) gives 2 JSD - log 4 (the f-GAN "js" value is 2 JSD).
    js_value = LOSSES["minimax"].estimate(lr_real, lr_fake).item()
    exact_js = analytic_f_divergence_gaussians("js", 0, 1, 1, 1.5) - math.log(4)
    assert js_value == pytest.approx(exact_js, abs=0.005)
    # Hinge: optimal critic sign(p - q) gives total variation.
    tv = _quadrature(lambda p, q: 0.5 * np.abs(p - q))
    hinge = LOSSES["hinge"]
    assert hinge.estimate(torch.sign(lr_real), torch.sign(lr_fake)).item() == pytest.approx(tv, abs=0.005)
    # Least squares: optimal critic p / (p + q) gives the triangular discrimination.
    delta = _quadrature(lambda p, q: (p - q) ** 2 / (p + q + 1e-300))
    ls = LOSSES["least_squares"]
    ls_value = ls.estimate(torch.sigmoid(lr_real), torch.sigmoid(lr_fake)).item()
    assert ls_value == pytest.approx(delta, abs=0.005)
    # Each is a bound: a damped critic certifies clearly less.
    assert LOSSES["minimax"].estimate(0.5 * lr_real, 0.5 * lr_fake).item() < js_value - 0.01
    assert hinge.estimate(0.5 * torch.sign(lr_real), 0.5 * torch.sign(lr_fake)).item() < tv - 0.05
    assert ls.estimate(torch.sigmoid(0.5 * lr_real), torch.sigmoid(0.5 * lr_fake)).item() < delta - 0.01


def test_minimax_critic_approaches_optimal_discriminator():
    critic = train_critic(make_loss("minimax"), DATA, MODEL, steps=500, seed=3)
    grid = torch.linspace(-2.0, 2.5, 46).unsqueeze(1)
    with torch.no_grad():
        d_learned = torch.sigmoid(critic(grid)).squeeze(1)
        p, q = DATA.log_prob(grid).exp().squeeze(1), MODEL.log_prob(grid).exp().squeeze(1)
        assert (d_learned - p / (p + q)).abs().mean().item() < 0.02
        real, fake = DATA.sample((100_000, 1)), MODEL.sample((100_000, 1))
        estimate = LOSSES["minimax"].estimate(critic(real), critic(fake)).item()
    exact = analytic_f_divergence_gaussians("js", 0, 1, 1, 1.5) - math.log(4)
    assert estimate == pytest.approx(exact, abs=0.015)


def test_wgan_gp_critic_estimates_wasserstein_distance():
    real_dist, fake_dist = torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(2.0, 1.0)
    critic = train_critic(make_loss("wgan_gp"), real_dist, fake_dist, steps=400, seed=3, penalty=10.0, lr=3e-3)
    with torch.no_grad():
        real, fake = real_dist.sample((100_000, 1)), fake_dist.sample((100_000, 1))
        estimate = LOSSES["wgan_gp"].estimate(critic(real), critic(fake)).item()
    # The soft penalty lets the critic trade slope above 1 for value, so the optimum sits a
    # known amount above W1 = 2 (about 2.21 at penalty 10).
    assert estimate == pytest.approx(_penalised_wasserstein_optimum(10.0), abs=0.03)
    assert estimate == pytest.approx(2.0, abs=0.25)


def _penalised_wasserstein_optimum(penalty: float) -> float:
    """max_f E_P f - E_Q f - λ E_ρ(|f'| - 1)² for P = N(0, 1), Q = N(2, 1) in 1-D.

    E_P f - E_Q f = ∫ f' ΔF with ΔF = F_P - F_Q (up to sign), so pointwise
    |f'| = 1 + |ΔF| / (2 λ ρ), where ρ is the density of the interpolates
    ε x + (1 - ε) y ~ N(2 (1 - ε), ε² + (1 - ε)²), ε ~ U(0, 1). The value of
    E_P f - E_Q f there is W1 + ∫ ΔF² / (2 λ ρ).
    """
    x = torch.linspace(-10.0, 12.0, 22_001, dtype=torch.float64)
    eps = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)[:, None]
    mean, var = 2.0 * (1.0 - eps), eps**2 + (1.0 - eps) ** 2
    density = torch.exp(-0.5 * (x - mean) ** 2 / var) / torch.sqrt(2 * math.pi * var)
    rho = torch.trapezoid(density, eps[:, 0], dim=0)
    cdf_gap = torch.special.ndtr(x) - torch.special.ndtr(x - 2.0)
    return float(torch.trapezoid(cdf_gap + cdf_gap**2 / (2.0 * penalty * rho), x))


def _small_critic_64(in_features: int) -> MLP:
    torch.manual_seed(0)
    return MLP(in_features, 1, hidden=(6, 5), act="tanh").double()


def _penalty_by_finite_differences(critic_fn, interpolates: torch.Tensor, target: float) -> float:
    h = 1e-6
    norms = []
    for point in interpolates:
        grad = []
        for j in range(point.numel()):
            step = torch.zeros_like(point)
            step[j] = h
            grad.append((critic_fn(point + step) - critic_fn(point - step)).item() / (2 * h))
        norms.append(math.sqrt(sum(g * g for g in grad)))
    return float(np.mean([(nrm - target) ** 2 for nrm in norms]))


@pytest.mark.parametrize("target", [1.0, 0.3])
def test_gradient_penalty_matches_finite_differences(target):
    critic = _small_critic_64(3)
    gen = torch.Generator().manual_seed(1)
    real, fake = _randn64(gen, 6, 3), _randn64(gen, 6, 3)
    eps = torch.rand(6, generator=gen, dtype=torch.float64)
    value = gradient_penalty(critic, real, fake, eps=eps, target_norm=target).item()
    mixed = eps[:, None] * real + (1 - eps[:, None]) * fake
    expected = _penalty_by_finite_differences(lambda v: critic(v[None]).sum(), mixed, target)
    assert value == pytest.approx(expected, rel=1e-7)


def test_one_sided_gradient_penalty_prices_only_steep_gradients():
    # E[max(0, ||∇f|| - t)²]: with t the median finite-difference norm, half the
    # interpolates are priced, so the one-sided value lies strictly inside (0, two-sided).
    critic = _small_critic_64(3)
    gen = torch.Generator().manual_seed(5)
    real, fake = _randn64(gen, 8, 3), _randn64(gen, 8, 3)
    eps = torch.rand(8, generator=gen, dtype=torch.float64)
    mixed = eps[:, None] * real + (1 - eps[:, None]) * fake
    fn = lambda v: critic(v[None]).sum()  # noqa: E731
    norms = [math.sqrt(_penalty_by_finite_differences(fn, point[None], 0.0)) for point in mixed]
    target = float(np.median(norms))
    one_sided = gradient_penalty(critic, real, fake, eps=eps, target_norm=target, one_sided=True).item()
    expected = float(np.mean([max(0.0, n - target) ** 2 for n in norms]))
    assert one_sided == pytest.approx(expected, rel=1e-6)
    two_sided = gradient_penalty(critic, real, fake, eps=eps, target_norm=target).item()
    assert 0.0 < one_sided < two_sided


def test_one_sided_gradient_penalty_leaves_a_flat_critic_free():
    # a constant critic: gradient 0 everywhere, so the two-sided penalty is exactly 1
    gen = torch.Generator().manual_seed(6)
    real, fake = torch.randn(16, 2, generator=gen), torch.randn(16, 2, generator=gen)
    flat = lambda x: 0.0 * x.sum(1)  # noqa: E731
    assert gradient_penalty(flat, real, fake, generator=gen).item() == pytest.approx(1.0)
    assert gradient_penalty(flat, real, fake, generator=gen, one_sided=True).item() == 0.0


def test_gradient_penalty_for_pair_critic_matches_finite_differences():
    critic = _small_critic_64(5)  # BiGAN-style: reads (x[3], z[2])
    pair_critic = lambda x, z: critic(torch.cat([x, z], dim=-1))  # noqa: E731
    gen = torch.Generator().manual_seed(2)
    x, x_fake = _randn64(gen, 4, 3), _randn64(gen, 4, 3)
    z, z_fake = _randn64(gen, 4, 2), _randn64(gen, 4, 2)
    eps = torch.rand(4, generator=gen, dtype=torch.float64)
    value = gradient_penalty(pair_critic, (x, z), [x_fake, z_fake], eps=eps).item()
    joint = eps[:, None] * torch.cat([x, z], 1) + (1 - eps[:, None]) * torch.cat([x_fake, z_fake], 1)
    expected = _penalty_by_finite_differences(lambda v: critic(v[None]).sum(), joint, 1.0)
    assert value == pytest.approx(expected, rel=1e-7)


def test_gradient_penalty_uses_one_epsilon_per_example_across_inputs():
    # critic(x, z) = ||x - z||²: with real = (a, a) and fake = (b, b), the same ε gives
    # x̂ = ẑ, a zero gradient, and penalty (0 - 1)² = 1 exactly; different ε would not.
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(8, 2, generator=gen), torch.randn(8, 2, generator=gen)
    value = gradient_penalty(lambda x, z: ((x - z) ** 2).sum(1), (a, a), (b, b), generator=gen)
    assert value.item() == pytest.approx(1.0, abs=1e-6)


def test_gradient_penalty_parameter_gradient_matches_finite_differences():
    # create_graph must make the penalty differentiable w.r.t. the critic's weights.
    critic = _small_critic_64(2)
    gen = torch.Generator().manual_seed(4)
    real, fake = _randn64(gen, 5, 2), _randn64(gen, 5, 2)
    eps = torch.rand(5, generator=gen, dtype=torch.float64)
    weight = critic[0].weight
    gradient_penalty(critic, real, fake, eps=eps).backward()
    analytic = weight.grad[1, 0].item()
    h = 1e-6
    with torch.no_grad():
        weight[1, 0] += h
    up = gradient_penalty(critic, real, fake, eps=eps).item()
    with torch.no_grad():
        weight[1, 0] -= 2 * h
    down = gradient_penalty(critic, real, fake, eps=eps).item()
    assert analytic != 0.0
    assert analytic == pytest.approx((up - down) / (2 * h), rel=1e-6)


def test_clip_weights_clamps_only_what_is_outside():
    module = torch.nn.Linear(3, 2)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[0.5, -0.004, 0.02], [-0.3, 0.0, 0.009]]))
        module.bias.copy_(torch.tensor([-0.02, 0.001]))
    clip_weights_(module, 0.01)
    torch.testing.assert_close(module.weight, torch.tensor([[0.01, -0.004, 0.01], [-0.01, 0.0, 0.009]]))
    torch.testing.assert_close(module.bias, torch.tensor([-0.01, 0.001]))
