"""Samplers reproduce known densities; the MH step satisfies detailed balance; CD pieces."""
from __future__ import annotations

import math

import pytest
import torch

from dgmdsl.numerics.mcmc_samplers import (ReplayBuffer, contrastive_divergence_loss, langevin,
                                           mala, metropolis_accept, metropolis_step,
                                           random_walk_mh)

WEIGHTS = torch.tensor([0.3, 0.7])
MEANS = torch.tensor([[-1.0, 0.0], [1.0, 0.5]])
COV = torch.tensor([[0.36, 0.1], [0.1, 0.25]])


def mixture_energy(x: torch.Tensor) -> torch.Tensor:
    """-log of a two-component Gaussian mixture density, returned as [B, 1]."""
    components = torch.distributions.MultivariateNormal(MEANS, COV.expand(2, 2, 2))
    log_density = torch.logsumexp(WEIGHTS.log() + components.log_prob(x.unsqueeze(1)), dim=1)
    return -log_density.unsqueeze(1)


def mixture_moments() -> tuple[torch.Tensor, torch.Tensor]:
    mean = WEIGHTS @ MEANS
    second = COV + (WEIGHTS[:, None, None] * MEANS[:, :, None] * MEANS[:, None, :]).sum(0)
    return mean, second - torch.outer(mean, mean)


def moment_z_scores(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """|estimate - truth| / standard error for each mean entry and covariance entry."""
    n = x.shape[0]
    mean_se = (x.var(0) / n).sqrt()
    centred = x - mean
    products = (centred[:, :, None] * centred[:, None, :]).reshape(n, -1)
    cov_se = (products.var(0) / n).sqrt()
    cov_hat = products.mean(0)
    mean_z = ((x.mean(0) - mean) / mean_se).abs()
    return torch.cat([mean_z, ((cov_hat - cov.reshape(-1)) / cov_se).abs()])


def assert_mixture_moments(x: torch.Tensor, max_z: float) -> None:
    """Every mean and covariance entry of the draws within `max_z` standard errors of the mixture's."""
    mean, cov = mixture_moments()
    z = moment_z_scores(x, mean, cov)
    assert float(z.max()) < max_z, z


@pytest.fixture(scope="module")
def chains_start() -> torch.Tensor:
    return torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))


def test_langevin_reproduces_mixture_moments(chains_start):
    x = langevin(mixture_energy, chains_start, steps=1000, step_size=0.01,
                 generator=torch.Generator().manual_seed(1))
    # Small allowance on top of Monte Carlo error for the O(eps) bias of unadjusted Langevin.
    assert_mixture_moments(x, 4.5)


def test_mala_reproduces_mixture_moments(chains_start):
    x, rate = mala(mixture_energy, chains_start, steps=400, step_size=0.2,
                   generator=torch.Generator().manual_seed(2))
    assert 0.3 < rate < 1.0
    assert_mixture_moments(x, 4.0)


def test_random_walk_mh_reproduces_mixture_moments(chains_start):
    x, rate = random_walk_mh(mixture_energy, chains_start, steps=400, proposal_scale=0.8,
                             generator=torch.Generator().manual_seed(3))
    assert 0.2 < rate < 0.8
    assert_mixture_moments(x, 4.0)


def _gaussian_energy(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x.pow(2).sum(1)


def test_langevin_step_convention_from_exact_discretised_variance():
    # x <- (1 - eps) x + s sqrt(2 eps) z on E = |x|^2 / 2 has stationary variance
    # 2 eps s^2 / (1 - (1 - eps)^2): 4/3 at eps = 0.5, s = 1 (the true target has variance 1).
    generator = torch.Generator().manual_seed(4)
    x0 = torch.zeros(20000, 1)
    for noise_scale in (1.0, 0.5):
        x = langevin(_gaussian_energy, x0, steps=40, step_size=0.5, generator=generator,
                     noise_scale=noise_scale)
        expected = noise_scale ** 2 * 1.0 / (1.0 - 0.25)
        se = expected * math.sqrt(2.0 / x.shape[0])
        assert abs(float(x.var()) - expected) < 4 * se


def test_mala_is_exact_where_unadjusted_langevin_is_biased():
    generator = torch.Generator().manual_seed(5)
    x, rate = mala(_gaussian_energy, torch.zeros(20000, 1), steps=60, step_size=0.5,
                   generator=generator)
    assert 0.5 < rate < 1.0
    assert abs(float(x.var()) - 1.0) < 4 * math.sqrt(2.0 / x.shape[0])
    assert abs(float(x.mean())) < 4 / math.sqrt(x.shape[0])


def test_samplers_are_reproducible_and_do_not_track_gradients():
    x0 = torch.randn(8, 2, requires_grad=True)
    outs = [langevin(mixture_energy, x0, 5, 0.01, torch.Generator().manual_seed(9))
            for _ in range(2)]
    torch.testing.assert_close(outs[0], outs[1])
    assert not outs[0].requires_grad
    with torch.no_grad():  # samplers need input gradients even inside no_grad
        x, _ = mala(mixture_energy, x0, 5, 0.05, torch.Generator().manual_seed(9))
    assert torch.isfinite(x).all()


def test_metropolis_accept_probabilities():
    generator = torch.Generator().manual_seed(6)
    n = 200000
    accepted = metropolis_accept(torch.full((n,), math.log(0.3)), generator)
    assert abs(float(accepted.float().mean()) - 0.3) < 4 * math.sqrt(0.21 / n)
    edge = torch.tensor([float("nan"), -float("inf"), float("inf"), 2.0])
    assert metropolis_accept(edge, generator).tolist() == [False, False, True, True]


LATTICE_ENERGY = torch.tensor([0.3, 1.2, 0.0, 2.0, 0.7, 1.5])


def lattice_energy(x: torch.Tensor) -> torch.Tensor:
    """Energy on sites 0..K-1; +inf off the lattice so such proposals are always rejected."""
    index = x.squeeze(1).long()
    inside = (index >= 0) & (index < len(LATTICE_ENERGY))
    return torch.where(inside, LATTICE_ENERGY[index.clamp(0, len(LATTICE_ENERGY) - 1)],
                       torch.tensor(float("inf")))


def lattice_step(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One MH step with a symmetric +-1 proposal, using the samplers' metropolis_step."""
    direction = torch.randint(0, 2, x.shape, generator=generator).to(x.dtype) * 2 - 1
    proposal = x + direction
    x_new, _, _ = metropolis_step(x, lattice_energy(x), proposal, lattice_energy(proposal),
                                  generator)
    return x_new


def test_mh_step_satisfies_detailed_balance_on_lattice():
    generator = torch.Generator().manual_seed(7)
    k, n = len(LATTICE_ENERGY), 40000
    target = torch.softmax(-LATTICE_ENERGY.double(), 0)
    transition = torch.zeros(k, k, dtype=torch.float64)
    for i in range(k):
        after = lattice_step(torch.full((n, 1), float(i)), generator).squeeze(1).long()
        transition[i] = torch.bincount(after, minlength=k).double() / n
    flow = target[:, None] * transition  # pi_i P_ij
    flow_se = target[:, None] * (transition * (1 - transition) / n).sqrt()
    imbalance = (flow - flow.T).abs()
    assert bool((imbalance <= 4 * (flow_se ** 2 + flow_se.T ** 2).sqrt() + 1e-12).all())
    # The exact kernel: P_ij = 1/2 min(1, pi_j / pi_i) for neighbours.
    for i in range(k - 1):
        expected = 0.5 * min(1.0, float(target[i + 1] / target[i]))
        assert abs(float(transition[i, i + 1]) - expected) < 4 * math.sqrt(0.25 / n)


def test_mh_chain_recovers_lattice_stationary_distribution():
    generator = torch.Generator().manual_seed(8)
    k, n = len(LATTICE_ENERGY), 20000
    target = torch.softmax(-LATTICE_ENERGY.double(), 0)
    x = torch.randint(0, k, (n, 1), generator=generator).double()
    for _ in range(200):
        x = lattice_step(x, generator)
    freq = torch.bincount(x.squeeze(1).long(), minlength=k).double() / n
    se = (target * (1 - target) / n).sqrt()
    assert bool(((freq - target).abs() < 4 * se).all()), (freq, target)


def test_replay_buffer_fresh_fraction_and_round_trip():
    generator = torch.Generator().manual_seed(10)
    buffer = ReplayBuffer(1000, (2,), init="uniform", low=-1.0, high=1.0, generator=generator)
    assert buffer.data.shape == (1000, 2)
    assert bool((buffer.data.abs() <= 1.0).all())
    buffer.data.fill_(100.0)  # sentinel outside the noise box: fresh rows are recognisable
    x, indices = buffer.sample(200, fresh_fraction=0.1, generator=generator)
    fresh = (x.abs() <= 1.0).all(1)
    assert int(fresh.sum()) == 20
    assert bool((x[~fresh] == 100.0).all())
    assert indices.unique().numel() == 200
    buffer.push(indices, x + 1.0)
    torch.testing.assert_close(buffer.data[indices], x + 1.0)
    untouched = torch.ones(1000, dtype=torch.bool)
    untouched[indices] = False
    assert bool((buffer.data[untouched] == 100.0).all())
    stale, _ = buffer.sample(50, fresh_fraction=0.0, generator=generator)
    assert not bool((stale.abs() <= 1.0).all(1).any())


def test_replay_buffer_normal_init_and_validation():
    buffer = ReplayBuffer(20000, (3,), init="normal", std=2.0,
                          generator=torch.Generator().manual_seed(11))
    assert abs(float(buffer.data.std()) - 2.0) < 0.05
    with pytest.raises(ValueError):
        buffer.sample(20001)
    with pytest.raises(ValueError):
        ReplayBuffer(10, (2,), init="laplace")


def test_contrastive_divergence_loss_value_and_gradient_path():
    x_data = torch.randn(16, 2, generator=torch.Generator().manual_seed(12))
    x_model = torch.randn(16, 2, generator=torch.Generator().manual_seed(13), requires_grad=True)
    scale = torch.tensor(2.0, requires_grad=True)

    def energy(x):
        return scale * x.pow(2).sum(1)

    e_data, e_model = energy(x_data), energy(x_model)
    plain = contrastive_divergence_loss(energy, x_data, x_model, l2=0.0)
    assert plain.item() == pytest.approx((e_data.mean() - e_model.mean()).item(), rel=1e-6)
    regularised = contrastive_divergence_loss(energy, x_data, x_model, l2=0.5)
    expected = e_data.mean() - e_model.mean() + 0.5 * (e_data.pow(2).mean() + e_model.pow(2).mean())
    assert regularised.item() == pytest.approx(expected.item(), rel=1e-6)
    regularised.backward()
    assert x_model.grad is None  # negatives are constants
    assert scale.grad is not None
