"""Quadrature and AIS estimates of log Z against Gaussian closed forms."""
from __future__ import annotations

import math

import pytest
import torch

from dgmdsl.numerics.partition import (annealed_importance_sampling, covering_box,
                                       log_likelihood, log_z_quadrature)

PRECISION_4D = torch.tensor([[1.0, 0.3, 0.0, 0.0], [0.3, 0.5, 0.1, 0.0],
                             [0.0, 0.1, 2.0, 0.4], [0.0, 0.0, 0.4, 0.8]])
MEAN_4D = torch.tensor([0.5, -1.0, 0.2, 1.5])
OFFSET = 0.7  # a constant in E shifts log Z by -OFFSET


def gaussian_energy(mean: torch.Tensor, precision: torch.Tensor):
    def energy(x: torch.Tensor) -> torch.Tensor:
        centred = x - mean
        return (0.5 * ((centred @ precision) * centred).sum(1) + OFFSET).unsqueeze(1)  # [B, 1]
    return energy


def gaussian_log_z(precision: torch.Tensor) -> float:
    dim = precision.shape[0]
    return 0.5 * dim * math.log(2 * math.pi) - 0.5 * float(torch.logdet(precision)) - OFFSET


def normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_quadrature_2d_matches_analytic_and_box_covers():
    precision = torch.tensor([[2.0, 0.8], [0.8, 1.0]])
    mean = torch.tensor([1.0, -0.5])
    generator = torch.Generator().manual_seed(0)
    chol = torch.linalg.cholesky(torch.linalg.inv(precision))
    samples = mean + torch.randn(2000, 2, generator=generator) @ chol.T
    low, high = covering_box(samples, margin=3.0)
    result = log_z_quadrature(gaussian_energy(mean, precision), low, high, points_per_dim=300)
    assert result["log_z"] == pytest.approx(gaussian_log_z(precision), abs=1e-3)
    assert 0.0 <= result["truncation_estimate"] < 1e-4
    assert result["grid"].shape == (300 * 300, 2)
    mass = result["log_density"].double().exp().sum() * result["cell_volume"]
    assert float(mass) == pytest.approx(1.0, abs=1e-6)


def test_quadrature_truncated_box_and_truncation_estimate_1d():
    # E = x^2 / 2 + OFFSET on [a, b]: the box holds Phi(b) - Phi(a) of the mass.
    precision = torch.ones(1, 1)
    energy = gaussian_energy(torch.zeros(1), precision)
    a, b, enlarge = -0.5, 1.0, 0.5
    result = log_z_quadrature(energy, a, b, points_per_dim=2000, enlarge=enlarge)
    full = gaussian_log_z(precision)
    box_mass = normal_cdf(b) - normal_cdf(a)
    assert result["log_z"] == pytest.approx(full + math.log(box_mass), abs=1e-4)
    grown = (a - enlarge * (b - a), b + enlarge * (b - a))
    expected_gap = math.log((normal_cdf(grown[1]) - normal_cdf(grown[0])) / box_mass)
    assert result["truncation_estimate"] == pytest.approx(expected_gap, abs=1e-4)
    assert result["truncation_estimate"] > 0.3  # a box that misses mass is flagged
    assert float(result["enlarged_low"]) == pytest.approx(grown[0], abs=1e-6)


def test_quadrature_rejects_three_dims():
    with pytest.raises(ValueError):
        log_z_quadrature(lambda x: x.sum(1), [0.0] * 3, [1.0] * 3)


def test_covering_box_is_range_plus_margin_std():
    x = torch.tensor([[0.0, 10.0], [2.0, 14.0], [4.0, 12.0]])
    low, high = covering_box(x, margin=1.0)
    torch.testing.assert_close(low, torch.tensor([-2.0, 8.0]))
    torch.testing.assert_close(high, torch.tensor([6.0, 16.0]))


def test_ais_matches_analytic_log_z_4d():
    energy = gaussian_energy(MEAN_4D, PRECISION_4D)
    result = annealed_importance_sampling(energy, dim=4, n_chains=256, n_temps=200, base_std=2.0,
                                          generator=torch.Generator().manual_seed(1))
    assert 0.0 < result["stderr"] < 0.5
    assert abs(result["log_z"] - gaussian_log_z(PRECISION_4D)) < 3 * result["stderr"]
    assert result["n_chains"] == 256 and result["n_temps"] == 200


def test_ais_stderr_matches_spread_across_seeds():
    # With few temperatures the estimate is noisy; the reported stderr should match the spread.
    energy = gaussian_energy(MEAN_4D, PRECISION_4D)
    runs = [annealed_importance_sampling(energy, dim=4, n_chains=128, n_temps=20, base_std=2.0,
                                         generator=torch.Generator().manual_seed(seed))
            for seed in range(12)]
    spread = torch.tensor([r["log_z"] for r in runs]).std().item()
    reported = sum(r["stderr"] for r in runs) / len(runs)
    assert 0.5 < spread / reported < 2.0


def test_log_likelihood_is_normalised_log_density():
    precision = torch.tensor([[2.0, 0.8], [0.8, 1.0]])
    mean = torch.tensor([1.0, -0.5])
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(2))
    got = log_likelihood(gaussian_energy(mean, precision), x, gaussian_log_z(precision))
    want = torch.distributions.MultivariateNormal(mean, precision_matrix=precision).log_prob(x)
    torch.testing.assert_close(got, want)
