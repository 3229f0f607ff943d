"""Reverse-SDE samplers and the probability-flow ODE with the exact score of Gaussian data."""
import math

import pytest
import sympy as sp
import torch

from dgmdsl.numerics.prob_flow import probability_flow_nll, probability_flow_sample
from dgmdsl.numerics.score_samplers import (euler_maruyama, langevin_corrector,
                                            predictor_corrector)
from dgmdsl.numerics.sde_kernel import derive_kernel

t = sp.Symbol("t")
BETA = 0.1 + (20 - 0.1) * t
MU = torch.tensor([0.5, -1.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.3], [0.3, 0.8]], dtype=torch.float64)
EIGVALS, EIGVECS = torch.linalg.eigh(COV)


def kernels():
    vp = derive_kernel(-0.5 * BETA, sp.Integer(0), sp.sqrt(BETA), t)
    ve = derive_kernel(sp.Integer(0), sp.Integer(0),
                       0.01 * (50 / 0.01) ** t * sp.sqrt(2 * sp.log(50 / 0.01)), t)
    # an OU process pulled towards 0.5: checks that c(t) enters the samplers and the prior
    ou = derive_kernel(-8 + 0 * t, 4 + 0 * t, 2 + 0 * t, t)
    return {"vp": vp, "ve": ve, "ou": ou}


KERNELS = kernels()


def marginal(kernel, time):
    """Mean and covariance of x_t when x_0 ~ N(MU, COV)."""
    time = torch.as_tensor(time, dtype=torch.float64)
    m = kernel.mean_coef(time)
    return m * MU + kernel.mean_shift(time), m**2 * COV + kernel.var(time) * torch.eye(2)


def exact_score(kernel):
    def score(x, times):
        # samplers pass one time per batch; the score is linear in x at that time
        mean, cov = marginal(kernel, times[0])
        return -(x - mean) @ torch.linalg.inv(cov)
    return score


def assert_matches_gaussian(samples, mean, cov, bias=0.0):
    """Sample mean and covariance within 4.5 standard errors (+ a stated bias) of the target."""
    n = samples.shape[0]
    mean_se = (cov.diagonal() / n).sqrt()
    assert ((samples.mean(0) - mean).abs() < 4.5 * mean_se).all(), samples.mean(0)
    cov_se = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / n).sqrt()
    assert ((torch.cov(samples.T) - cov).abs() < 4.5 * cov_se + bias * cov.abs()).all(), torch.cov(samples.T)


@pytest.mark.parametrize("name", ["vp", "ve", "ou"])
def test_euler_maruyama_reproduces_gaussian_data(name):
    kernel = KERNELS[name]
    samples = euler_maruyama(exact_score(kernel), kernel, (6000, 2), steps=300,
                             generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert_matches_gaussian(samples, MU, COV)


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_predictor_corrector_reproduces_gaussian_data(name):
    kernel = KERNELS[name]
    samples = predictor_corrector(exact_score(kernel), kernel, (6000, 2), steps=150, snr=0.16,
                                  generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # Langevin at snr 0.16 inflates the variance by about 2% (measured with 1e5 samples)
    assert_matches_gaussian(samples, MU, COV, bias=0.03)


def test_langevin_corrector_converges_to_the_marginal_at_fixed_time():
    kernel, time = KERNELS["vp"], 0.4
    gen = torch.Generator().manual_seed(2)
    x = 3.0 * torch.randn(6000, 2, generator=gen, dtype=torch.float64)  # far from p_t
    x = langevin_corrector(exact_score(kernel), kernel, x, time, dt=0.0, snr=0.16, steps=300,
                           generator=gen)
    mean, cov = marginal(kernel, time)
    assert_matches_gaussian(x, mean, cov, bias=0.03)


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_probability_flow_sampler_reproduces_gaussian_data(name):
    kernel = KERNELS[name]
    samples = probability_flow_sample(exact_score(kernel), kernel, (4000, 2), rtol=1e-6, atol=1e-6,
                                      generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert_matches_gaussian(samples, MU, COV)


def analytic_model_nll(kernel, x, eps):
    """NLL of the model the exact flow defines: the prior N(c(1), v(1)) pulled back to t = eps.

    For Gaussian data the flow is linear, x_1 - mean_1 = S_1^½ S_eps^-½ (x - mean_eps), with
    S_t = m_t² COV + v_t I, all diagonal in COV's eigenbasis.
    """
    one, start = torch.tensor(1.0, dtype=torch.float64), torch.tensor(eps, dtype=torch.float64)
    scale_start = kernel.mean_coef(start) ** 2 * EIGVALS + kernel.var(start)
    scale_one = kernel.mean_coef(one) ** 2 * EIGVALS + kernel.var(one)
    mean_start, _ = marginal(kernel, start)
    mean_one, _ = marginal(kernel, one)
    x1 = mean_one + ((x - mean_start) @ EIGVECS * (scale_one / scale_start).sqrt()) @ EIGVECS.T
    prior = torch.distributions.Normal(kernel.mean_shift(one), kernel.std(one))
    log_det = 0.5 * (scale_one.log() - scale_start.log()).sum()
    return -(prior.log_prob(x1).sum(dim=1) + log_det)


@pytest.mark.parametrize("name", ["vp", "ve", "ou"])
def test_probability_flow_nll_with_exact_divergence(name):
    kernel = KERNELS[name]
    torch.manual_seed(6)
    x = torch.distributions.MultivariateNormal(MU, COV).sample((32,))
    result = probability_flow_nll(exact_score(kernel), kernel, x, rtol=1e-6, atol=1e-6)
    expected = analytic_model_nll(kernel, x, 1e-5)
    assert result["divergence"] == "exact"
    assert (result["nll"] - expected).abs().max() < 1e-2
    torch.testing.assert_close(result["bits_per_dim"], result["nll"] / (2 * math.log(2)))
    if name != "ou":  # VP and VE priors are accurate: the model is the data distribution
        data_nll = -torch.distributions.MultivariateNormal(MU, COV).log_prob(x)
        assert (result["nll"] - data_nll).abs().max() < 0.1


def test_probability_flow_nll_with_hutchinson_probes():
    kernel = KERNELS["vp"]
    torch.manual_seed(4)
    x = torch.distributions.MultivariateNormal(MU, COV).sample((16,))
    expected = analytic_model_nll(kernel, x, 1e-5)
    gen = torch.Generator().manual_seed(5)
    many = probability_flow_nll(exact_score(kernel), kernel, x, rtol=1e-6, atol=1e-6,
                                exact_divergence=False, probes=4000, generator=gen)
    one = probability_flow_nll(exact_score(kernel), kernel, x, rtol=1e-6, atol=1e-6,
                               exact_divergence=False, probes=1, generator=gen)
    assert many["divergence"] == "hutchinson(rademacher, probes=4000)"
    # one probe errs by ~0.33 nats per example here (off-diagonal Jacobian), 4000 by ~0.005
    assert (many["nll"] - expected).abs().mean() < 1e-2
    assert (many["nll"] - expected).abs().max() < 3e-2
    assert (one["nll"] - expected).pow(2).mean().sqrt() > 0.1


def test_probability_flow_nll_uses_hutchinson_above_ten_dimensions():
    kernel = KERNELS["vp"]

    def standard_normal_score(x, times):
        return -x

    x = torch.randn(4, 12, dtype=torch.float64)
    result = probability_flow_nll(standard_normal_score, kernel, x, probes=2,
                                  generator=torch.Generator().manual_seed(0))
    assert result["divergence"].startswith("hutchinson")
    # N(0, I) is invariant under VP: the flow is the identity and the Jacobian diagonal,
    # so Rademacher probes are exact
    expected = -torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(dim=1)
    assert (result["nll"] - expected).abs().max() < 1e-3
