"""f-GAN table: conjugates, activations, quadrature, and a trained critic's bound."""
from __future__ import annotations

import math

import pytest
import torch

from dgmdsl.numerics.adversarial import f_gan_loss, make_loss
from dgmdsl.numerics.fgan import DIVERGENCES, analytic_f_divergence_gaussians, f_gan_bound
from tests.numerics.helpers import train_critic

NAMES = sorted(DIVERGENCES)


def _f_prime(name: str, u: torch.Tensor) -> torch.Tensor:
    u = u.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(DIVERGENCES[name].f(u).sum(), u)
    return grad


@pytest.mark.parametrize("name", NAMES)
def test_conjugate_is_legendre_transform_at_f_prime(name):
    # Fenchel-Young equality: f*(f'(u)) = u f'(u) - f(u).
    div = DIVERGENCES[name]
    u = torch.tensor([0.2, 0.5, 0.9, 1.0, 1.7, 3.0, 6.0], dtype=torch.float64)
    t = _f_prime(name, u)
    torch.testing.assert_close(div.conjugate(t), u * t - div.f(u), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_conjugate_is_supremum(name):
    # f*(t) = sup_u (u t - f(u)); check against a brute-force maximum on a grid of u.
    div = DIVERGENCES[name]
    u = torch.linspace(1e-4, 60.0, 600_001, dtype=torch.float64)
    for t in _f_prime(name, torch.tensor([0.4, 1.0, 2.5], dtype=torch.float64)):
        brute = (u * t - div.f(u)).max()
        assert abs(float(div.conjugate(t)) - float(brute)) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_f_is_normalised_and_stable_composition_matches(name):
    div = DIVERGENCES[name]
    assert abs(float(div.f(torch.tensor(1.0, dtype=torch.float64)))) < 1e-15
    v = torch.linspace(-4.0, 4.0, 41, dtype=torch.float64)
    torch.testing.assert_close(div.conjugate_of_activation(v), div.conjugate(div.activation(v)))
    # Far outside that range the hand-simplified form stays finite where the naive one does not.
    assert torch.isfinite(div.conjugate_of_activation(torch.tensor([-50.0, 50.0]))).all()


def test_quadrature_matches_closed_forms():
    mp, sp, mq, sq = 0.0, 1.0, 1.0, 1.5
    kl_pq = math.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5
    kl_qp = math.log(sp / sq) + (sq**2 + (mp - mq) ** 2) / (2 * sp**2) - 0.5
    # Squared Hellinger ∫(√p - √q)² = 2 (1 - Bhattacharyya coefficient).
    bc = math.sqrt(2 * sp * sq / (sp**2 + sq**2)) * math.exp(-((mp - mq) ** 2) / (4 * (sp**2 + sq**2)))
    assert analytic_f_divergence_gaussians("kl", mp, sp, mq, sq) == pytest.approx(kl_pq, abs=1e-7)
    assert analytic_f_divergence_gaussians("reverse_kl", mp, sp, mq, sq) == pytest.approx(kl_qp, abs=1e-7)
    assert analytic_f_divergence_gaussians("squared_hellinger", mp, sp, mq, sq) == pytest.approx(
        2 * (1 - bc), abs=1e-7)
    # Pearson χ² for equal scales: exp(Δμ² / s²) - 1.
    assert analytic_f_divergence_gaussians("pearson", 0.0, 1.0, 0.5, 1.0) == pytest.approx(
        math.exp(0.25) - 1, abs=1e-7)
    js = analytic_f_divergence_gaussians("js", mp, sp, mq, sq)
    assert 0.0 < js < 2 * math.log(2)
    assert analytic_f_divergence_gaussians("js", 0.0, 1.0, 0.0, 1.0) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_optimal_critic_attains_the_divergence(name):
    # At v with g_f(v) = f'(p/q) the bound is tight; Monte Carlo with known densities.
    torch.manual_seed(0)
    p, q = torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(0.5, 1.2)
    n = 400_000
    xp, xq = p.sample((n,)).double(), q.sample((n,)).double()
    g_inverse = {
        "kl": lambda t: t, "pearson": lambda t: t, "reverse_kl": lambda t: -torch.log(-t),
        "squared_hellinger": lambda t: -torch.log1p(-t),
        "js": lambda t: -torch.log(2.0 * torch.exp(-t) - 1.0),  # inverse of log 2 - softplus(-v)
    }[name]

    def optimal_v(x):
        ratio = torch.exp(p.log_prob(x) - q.log_prob(x))
        return g_inverse(_f_prime(name, ratio))

    bound = float(f_gan_bound(name, optimal_v(xp), optimal_v(xq)))
    exact = analytic_f_divergence_gaussians(name, 0.0, 1.0, 0.5, 1.2)
    assert bound == pytest.approx(exact, abs=0.01)
    # Any other critic does worse: shrink v towards 0 (T towards the value at ratio 1).
    worse = float(f_gan_bound(name, 0.5 * optimal_v(xp), 0.5 * optimal_v(xq)))
    assert worse < exact - 0.005


def _train_critic_on_bound(divergence: str, steps: int = 600) -> float:
    p, q = torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(1.0, 1.5)
    loss = make_loss("f_gan", divergence=divergence)
    critic = train_critic(loss, p, q, steps, seed=1)
    with torch.no_grad():
        real, fake = p.sample((100_000, 1)), q.sample((100_000, 1))
        return float(loss.estimate(critic(real), critic(fake)))


@pytest.mark.parametrize("divergence", ["kl", "reverse_kl"])
def test_trained_critic_bound_approaches_divergence(divergence):
    exact = analytic_f_divergence_gaussians(divergence, 0.0, 1.0, 1.0, 1.5)
    estimate = _train_critic_on_bound(divergence)
    # A lower bound up to Monte Carlo error, and close to tight after training.
    assert exact - 0.05 < estimate < exact + 0.02


def test_generator_forms():
    fake = torch.tensor([-1.0, 0.3, 2.0], dtype=torch.float64)
    div = DIVERGENCES["reverse_kl"]
    alt = f_gan_loss("reverse_kl").generator_loss(fake)
    saddle = f_gan_loss("reverse_kl", generator_form="saddle").generator_loss(fake)
    torch.testing.assert_close(alt, -div.activation(fake).mean())
    torch.testing.assert_close(saddle, -(fake - 1.0).mean())  # -E_Q f*(g_f(v)) = 1 - E_Q v
    with pytest.raises(ValueError, match="generator_form"):
        f_gan_loss("kl", generator_form="bogus")
    with pytest.raises(ValueError, match="unknown f-divergence"):
        make_loss("f_gan", divergence="wasserstein")
