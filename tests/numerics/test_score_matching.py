"""Score-matching losses recover the closed-form optimum of a Gaussian energy."""
from __future__ import annotations

import pytest
import torch

from dgmdsl.numerics.score_matching import (denoising_score_matching_loss, energy_and_grad,
                                            exact_score_matching_loss, per_example_energy,
                                            sliced_score_matching_loss)
from tests.numerics.helpers import COV_STAR, MU_STAR, QuadraticEnergy, gaussian_data


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return gaussian_data(500, seed=0)


def _sample_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean(0), torch.cov(x.T, correction=0)


def _fit(loss_fn, steps: int = 400, lr: float = 0.1) -> QuadraticEnergy:
    torch.manual_seed(1)
    model = QuadraticEnergy(2, keepdim=True)  # [B, 1], as a net returns it
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model).backward()
        opt.step()
        schedule.step()
    return model


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_exact_loss_matches_closed_form_for_fixed_quadratic():
    # For a quadratic energy: 1/2 |P (x - mu)|^2 - tr P, per example.
    torch.manual_seed(3)
    precision = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    mu = torch.tensor([1.0, -1.0])
    x = torch.randn(64, 2)

    def energy(v):
        return 0.5 * (((v - mu) @ precision) * (v - mu)).sum(1)

    expected = (0.5 * ((x - mu) @ precision).pow(2).sum(1) - precision.trace()).mean()
    assert exact_score_matching_loss(energy, x).item() == pytest.approx(expected.item(), abs=1e-5)


def test_exact_loss_hessian_trace_of_non_quadratic_energy():
    # E = sum x^4 / 4: |grad E|^2 / 2 = sum x^6 / 2, tr hess E = sum 3 x^2.
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(4))
    expected = (0.5 * x.pow(6).sum(1) - 3 * x.pow(2).sum(1)).mean()
    loss = exact_score_matching_loss(lambda v: 0.25 * v.pow(4).sum(1), x)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_sliced_loss_is_unbiased_for_exact_loss():
    torch.manual_seed(5)
    x = torch.randn(16, 2)

    def energy(v):
        return (v.pow(4).sum(1) + v[:, 0] * v[:, 1]).unsqueeze(1)

    exact = exact_score_matching_loss(energy, x).item()
    generator = torch.Generator().manual_seed(6)
    for distribution in ("rademacher", "gaussian"):
        for reduced in (True, False):
            sliced = sliced_score_matching_loss(energy, x, projections=4000, generator=generator,
                                                distribution=distribution,
                                                variance_reduced=reduced).item()
            assert sliced == pytest.approx(exact, rel=0.03), (distribution, reduced)


def test_exact_score_matching_recovers_gaussian(data):
    mean, cov = _sample_moments(data)
    model = _fit(lambda m: exact_score_matching_loss(m, data))
    # Score matching of a Gaussian family gives the sample mean and inverse sample covariance.
    assert _max_abs(model.mu, mean) < 1e-3
    assert _max_abs(model.precision(), torch.linalg.inv(cov)) < 1e-3
    assert _max_abs(model.mu, MU_STAR) < 0.15
    assert _max_abs(model.precision(), torch.linalg.inv(COV_STAR)) < 0.15


@pytest.mark.parametrize("distribution, reduced, tol", [("rademacher", True, 0.02),
                                                         ("gaussian", False, 0.06)])
def test_sliced_score_matching_recovers_gaussian(data, distribution, reduced, tol):
    mean, cov = _sample_moments(data)
    generator = torch.Generator().manual_seed(2)
    model = _fit(lambda m: sliced_score_matching_loss(m, data, projections=4, generator=generator,
                                                      distribution=distribution,
                                                      variance_reduced=reduced))
    assert _max_abs(model.mu, mean) < 0.02
    assert _max_abs(model.precision(), torch.linalg.inv(cov)) < tol


def test_denoising_score_matching_recovers_smoothed_gaussian(data):
    sigma = 0.3
    mean, cov = _sample_moments(data)
    smoothed_precision = torch.linalg.inv(cov + sigma ** 2 * torch.eye(2))
    generator = torch.Generator().manual_seed(2)
    replicated = data.repeat(4, 1)  # several noise draws per point per step
    model = _fit(lambda m: denoising_score_matching_loss(m, replicated, sigma, generator=generator))
    assert _max_abs(model.mu, mean) < 0.05
    assert _max_abs(model.precision(), smoothed_precision) < 0.02
    # The smoothing is visible: the fit is not the unsmoothed precision.
    assert _max_abs(model.precision(), torch.linalg.inv(cov)) > 0.1


def test_denoising_loss_per_example_sigma_and_weighting():
    # Zero energy => s = 0, so the loss is 1/2 E|z|^2 = D / 2 whatever sigma is (sigma^2 weight).
    x = torch.zeros(20000, 3)
    sigmas = torch.linspace(0.01, 5.0, 20000)
    generator = torch.Generator().manual_seed(7)

    def flat_energy(v):
        return 0.0 * v.sum(1)

    loss = denoising_score_matching_loss(flat_energy, x, sigmas, generator=generator)
    assert loss.item() == pytest.approx(1.5, rel=0.03)
    with pytest.raises(ValueError):
        denoising_score_matching_loss(flat_energy, x, torch.ones(3))


def test_energy_helpers_accept_both_shapes_and_reject_others():
    x = torch.randn(5, 2)
    column = per_example_energy(lambda v: v.sum(1, keepdim=True), x)
    assert column.shape == (5,)
    with torch.no_grad():  # samplers call this under no_grad
        energy, grad = energy_and_grad(lambda v: v.pow(2).sum(1), x)
    torch.testing.assert_close(grad, 2 * x)
    torch.testing.assert_close(energy, x.pow(2).sum(1))
    with pytest.raises(ValueError):
        per_example_energy(lambda v: v, x)
