"""NCSN: noise levels, the σ²-weighted DSM loss and annealed Langevin with exact scores."""
import math

import torch

from dgmdsl.numerics.ncsn import (annealed_langevin, geometric_sigmas, ncsn_dsm_loss, noise_level,
                                  sigma_from_level)

MU = torch.tensor([0.5, -1.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.3], [0.3, 0.8]], dtype=torch.float64)
SIGMAS = geometric_sigmas(10, 0.01, 10, dtype=torch.float64)


def exact_score(x, level):
    """Score of the data N(MU, COV) perturbed by N(0, σ² I); one σ per batch here."""
    sigma = sigma_from_level(level, SIGMAS)
    precision = torch.linalg.inv(COV + sigma[:, None, None] ** 2 * torch.eye(2, dtype=x.dtype))
    return -torch.einsum("bij,bj->bi", precision, x - MU)


def test_geometric_sigmas_and_levels():
    assert SIGMAS.shape == (10,)
    torch.testing.assert_close(SIGMAS[[0, -1]], torch.tensor([10.0, 0.01], dtype=torch.float64))
    ratios = SIGMAS[1:] / SIGMAS[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 0.001 ** (1 / 9)))
    levels = noise_level(SIGMAS, SIGMAS)
    torch.testing.assert_close(levels, torch.linspace(1, 0, 10, dtype=torch.float64))
    torch.testing.assert_close(sigma_from_level(levels, SIGMAS), SIGMAS)


def test_dsm_loss_at_exact_score_is_the_irreducible_value():
    # E ½||σ s + z||² at the exact score is ½ Σ_k λ_k / (λ_k + σ²), averaged over the levels
    eigenvalues = torch.linalg.eigvalsh(COV)
    expected = (0.5 * eigenvalues / (eigenvalues + SIGMAS[:, None] ** 2)).sum(dim=1).mean()
    gen = torch.Generator().manual_seed(0)
    data = MU + torch.randn(100_000, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(COV).T
    losses = torch.stack([ncsn_dsm_loss(exact_score, chunk, SIGMAS, generator=gen)
                          for chunk in data.split(1000)])
    standard_error = losses.std() / math.sqrt(len(losses))
    assert abs(losses.mean() - expected) < 4 * standard_error
    assert standard_error < 0.01 * expected


def annealed_moments(steps_per_level, eps):
    """Mean and covariance of annealed Langevin's output, propagated exactly (linear dynamics)."""
    eye = torch.eye(2, dtype=torch.float64)
    mean, cov = torch.zeros(2, dtype=torch.float64), SIGMAS[0] ** 2 * eye
    for sigma in SIGMAS:
        precision = torch.linalg.inv(COV + sigma**2 * eye)
        step = eps * (sigma / SIGMAS[-1]) ** 2
        contraction = eye - 0.5 * step * precision
        for _ in range(steps_per_level):
            mean = contraction @ mean + 0.5 * step * precision @ MU
            cov = contraction @ cov @ contraction.T + step * eye
    shrink = eye - SIGMAS[-1] ** 2 * torch.linalg.inv(COV + SIGMAS[-1] ** 2 * eye)  # Tweedie
    return shrink @ mean + (eye - shrink) @ MU, shrink @ cov @ shrink.T


def test_annealed_langevin_reproduces_gaussian_data():
    steps, eps, n = 100, 5e-5, 6000
    samples = annealed_langevin(exact_score, SIGMAS, (n, 2), steps, eps,
                                generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mean, cov = annealed_moments(steps, eps)
    # the sampler's own law, within 4.5 Monte Carlo standard errors ...
    assert ((samples.mean(0) - mean).abs() < 4.5 * (cov.diagonal() / n).sqrt()).all()
    cov_se = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / n).sqrt()
    assert ((torch.cov(samples.T) - cov).abs() < 4.5 * cov_se).all()
    # ... which is the data law up to the annealing's residual noise (~4% of the variance here)
    assert (mean - MU).abs().max() < 0.01
    assert ((cov - COV).abs() < 0.06).all()


def test_denoise_applies_tweedie_and_respects_dtype():
    plain = annealed_langevin(exact_score, SIGMAS, (8, 2), 2, 5e-5, denoise=False,
                              generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    denoised = annealed_langevin(exact_score, SIGMAS, (8, 2), 2, 5e-5, denoise=True,
                                 generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    smallest = torch.zeros(8, dtype=torch.float64)  # level 0 is σ_min
    torch.testing.assert_close(denoised, plain + 0.01**2 * exact_score(plain, smallest))
    assert denoised.dtype == torch.float64
