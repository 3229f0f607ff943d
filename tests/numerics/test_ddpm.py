"""DDPM: schedules, posterior, simple loss, samplers and the variational bound, on Gaussian data."""
import math

import pytest
import torch

from dgmdsl.numerics.ddpm import (DDPMSchedule, _discretized_gaussian_log_prob, ancestral_sample,
                                  cosine_betas, ddim_sample, linear_betas, net_time, simple_loss,
                                  variational_bound)

MU, S = 0.3, 0.5  # 1-D data N(MU, S²)


def exact_eps_net(schedule):
    """E[ε | x_t] for data N(MU, S²); reads the step back from net_time's (t + 1) / T."""
    def eps_net(x, u):
        step = (u * schedule.T).round().long() - 1
        alpha_bar = schedule.alpha_bars[step].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return (1 - alpha_bar).sqrt() * (x - alpha_bar.sqrt() * MU) / (alpha_bar * S**2 + 1 - alpha_bar)
    return eps_net


def model_moments(schedule):
    """Mean and variance of the reverse chain's x_0 under the exact ε-net (it is linear-Gaussian).

    Uses Ho et al.'s form mean = (x_t - β_t / sqrt(1 - ᾱ_t) ε) / sqrt(α_t), not the code's x0 route.
    """
    mean, var = 0.0, 1.0
    for step in reversed(range(schedule.T)):
        beta, alpha_bar = schedule.betas[step].item(), schedule.alpha_bars[step].item()
        gain = math.sqrt(1 - alpha_bar) / (alpha_bar * S**2 + 1 - alpha_bar)  # ε = gain (x - sqrt(ᾱ) MU)
        slope = (1 - beta * gain / math.sqrt(1 - alpha_bar)) / math.sqrt(1 - beta)
        offset = beta * gain * math.sqrt(alpha_bar) * MU / math.sqrt(1 - alpha_bar) / math.sqrt(1 - beta)
        noise_var = schedule.posterior_var[step].item()
        mean, var = slope * mean + offset, slope**2 * var + noise_var
    return mean, var


def test_linear_and_cosine_schedules():
    betas = linear_betas(1000, 1e-4, 0.02)
    assert betas.shape == (1000,) and betas[0] == 1e-4 and abs(betas[-1] - 0.02) < 1e-15
    T, s = 1000, 0.008
    cosine = cosine_betas(T, s)
    f = lambda n: math.cos((n / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    alpha_bars = torch.cumprod(1 - cosine, dim=0)
    for n in (1, 250, 500, 900):  # far from the clipped end, ᾱ follows the cosine law
        assert abs(alpha_bars[n - 1].item() - f(n) / f(0)) < 1e-10
    assert 0 < cosine[0] < 1e-4 and cosine.max() == 0.999 and cosine[-1] == 0.999
    assert (cosine[1:] >= cosine[:-1]).all() and alpha_bars[-1] < 1e-6


def test_posterior_equals_gaussian_conditioning():
    schedule = DDPMSchedule(linear_betas(4, 0.1, 0.4))
    x0, xt = torch.tensor([[0.7]], dtype=torch.float64), torch.tensor([[-0.2]], dtype=torch.float64)
    for step in range(1, 4):
        ab_prev = schedule.alpha_bars[step - 1].item()
        alpha = schedule.alphas[step].item()
        # joint of (x_{t-1}, x_t) given x0: x_t = sqrt(α) x_{t-1} + sqrt(1 - α) noise
        mean_prev, var_prev = math.sqrt(ab_prev) * 0.7, 1 - ab_prev
        mean_t, var_t = math.sqrt(alpha) * mean_prev, alpha * var_prev + 1 - alpha
        cross = math.sqrt(alpha) * var_prev
        mean, var, log_var = schedule.posterior(x0, xt, torch.tensor([step]))
        assert abs(mean.item() - (mean_prev + cross / var_t * (-0.2 - mean_t))) < 1e-12
        assert abs(var.item() - (var_prev - cross**2 / var_t)) < 1e-12
        assert abs(log_var.exp().item() - var.item()) < 1e-12
    mean, var, log_var = schedule.posterior(x0, xt, torch.tensor([0]))  # x_{-1} is x0 itself
    assert mean.item() == pytest.approx(0.7) and var.item() == 0
    assert log_var.item() == pytest.approx(math.log(schedule.posterior_var[1].item()))


def test_schedule_moves_with_to_and_q_sample_follows_x():
    schedule = DDPMSchedule(linear_betas(10)).to(torch.float32)
    assert schedule.alpha_bars.dtype == torch.float32 and "betas" in dict(schedule.named_buffers())
    x0 = torch.ones(3, 1, 2, 2)
    xt = schedule.q_sample(x0, torch.tensor([0, 4, 9]), torch.zeros_like(x0))
    assert xt.dtype == torch.float32 and xt.shape == x0.shape
    torch.testing.assert_close(xt[:, 0, 0, 0], schedule.alpha_bars[[0, 4, 9]].sqrt())
    torch.testing.assert_close(net_time(torch.tensor([0, 9]), 10), torch.tensor([0.1, 1.0]))


def test_simple_loss_at_exact_predictor_is_the_irreducible_value():
    # E (ε - E[ε | x_t])² = Var(ε | x_t) = ᾱ S² / (ᾱ S² + 1 - ᾱ), averaged over t
    schedule = DDPMSchedule(linear_betas(1000)).to(torch.float64)
    ab = schedule.alpha_bars
    expected = (ab * S**2 / (ab * S**2 + 1 - ab)).mean()
    gen = torch.Generator().manual_seed(0)
    x0 = MU + S * torch.randn(100_000, 1, generator=gen, dtype=torch.float64)
    losses = torch.stack([simple_loss(exact_eps_net(schedule), chunk, schedule, generator=gen)
                          for chunk in x0.split(1000)])
    standard_error = losses.std() / math.sqrt(len(losses))
    assert abs(losses.mean() - expected) < 4 * standard_error
    assert standard_error < 0.02 * expected


def test_ancestral_and_ddim_eta_one_agree_and_match_the_model():
    schedule = DDPMSchedule(linear_betas(1000)).to(torch.float64)
    net, n = exact_eps_net(schedule), 6000
    ancestral = ancestral_sample(net, schedule, (n, 1), generator=torch.Generator().manual_seed(1),
                                 dtype=torch.float64)
    ddim = ddim_sample(net, schedule, (n, 1), steps=1000, eta=1.0,
                       generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # same noise, same law: with eta = 1 and every step, DDIM is ancestral sampling path by path
    torch.testing.assert_close(ddim, ancestral, atol=1e-8, rtol=0)
    mean, var = model_moments(schedule)
    assert abs(ancestral.mean() - mean) < 4.5 * math.sqrt(var / n)
    assert abs(ancestral.var() - var) < 4.5 * var * math.sqrt(2 / n)
    assert abs(mean - MU) < 0.02 and abs(var - S**2) < 0.01  # the model is nearly the data


def test_ddim_deterministic_with_few_steps_is_close_to_the_data():
    schedule = DDPMSchedule(linear_betas(1000)).to(torch.float64)
    samples = ddim_sample(exact_eps_net(schedule), schedule, (6000, 1), steps=100, eta=0.0,
                          generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert abs(samples.mean() - MU) < 0.03 and abs(samples.std() - S) < 0.03
    with pytest.raises(ValueError):
        ddim_sample(exact_eps_net(schedule), schedule, (2, 1), steps=1001)


def direct_bound_terms(eps_net, schedule, x0, noise, bins=None):
    """The bound's terms for 1-D data from scratch, with Ho et al.'s reverse mean."""
    T, terms = schedule.T, []
    for step in range(T):
        ab, beta = schedule.alpha_bars[step].item(), schedule.betas[step].item()
        xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * noise[step]
        eps = eps_net(xt, torch.full((len(x0),), (step + 1) / T, dtype=x0.dtype))
        model_mean = (xt - beta / math.sqrt(1 - ab) * eps) / math.sqrt(1 - beta)
        model = torch.distributions.Normal(model_mean, schedule.posterior_log_var_clipped[step].exp().sqrt())
        if step == 0 and bins is None:
            terms.append(-model.log_prob(x0).sum(1))
        elif step == 0:
            half = 1 / (bins - 1)
            upper = torch.where(x0 > 1 - half, torch.ones_like(x0), model.cdf(x0 + half))
            lower = torch.where(x0 < -1 + half, torch.zeros_like(x0), model.cdf(x0 - half))
            terms.append(-(upper - lower).log().sum(1))
        else:
            mean, var, _ = schedule.posterior(x0, xt, torch.full((len(x0),), step))
            true = torch.distributions.Normal(mean, var.sqrt())
            terms.append(torch.distributions.kl_divergence(true, model).sum(1))
    ab_T = schedule.alpha_bars[-1].item()
    prior = torch.distributions.kl_divergence(
        torch.distributions.Normal(math.sqrt(ab_T) * x0, math.sqrt(1 - ab_T)),
        torch.distributions.Normal(0.0, 1.0)).sum(1)
    return torch.stack(terms, dim=1), prior


@pytest.mark.parametrize("bins", [None, 2, 256])
def test_bound_terms_match_a_direct_computation(bins):
    schedule = DDPMSchedule(linear_betas(4, 0.05, 0.5)).to(torch.float64)
    gen = torch.Generator().manual_seed(3)
    if bins is None:
        x0 = torch.randn(5, 1, generator=gen, dtype=torch.float64)
    else:  # values on the grid of `bins` levels in [-1, 1]
        x0 = -1 + 2 * torch.randint(0, bins, (5, 1), generator=gen).to(torch.float64) / (bins - 1)
    noise = torch.randn(4, 5, 1, generator=gen, dtype=torch.float64)

    def eps_net(x, u):  # any smooth function of (x, time) will do
        return 0.4 * torch.tanh(x) - 0.3 * u[:, None]

    kind = "continuous" if bins is None else "discrete"
    result = variational_bound(eps_net, schedule, x0, kind, bins=bins or 256, noise=noise, chunk=3)
    terms, prior = direct_bound_terms(eps_net, schedule, x0, noise, bins)
    torch.testing.assert_close(result["terms"], terms)
    torch.testing.assert_close(result["prior"], prior)
    torch.testing.assert_close(result["nll_bound"], prior + terms.sum(1))
    torch.testing.assert_close(result["bits_per_dim"], result["nll_bound"] / math.log(2))


@pytest.mark.parametrize("bins", [2, 16, 256])
def test_discretized_decoder_sums_to_one_over_bins(bins):
    grid = torch.linspace(-1, 1, bins, dtype=torch.float64)
    for mean, log_var in [(0.1, math.log(0.3)), (-0.95, math.log(1e-4)), (3.0, 0.0)]:
        log_probs = _discretized_gaussian_log_prob(grid, torch.full_like(grid, mean),
                                                   torch.full_like(grid, log_var), bins)
        assert abs(log_probs.exp().sum().item() - 1) < 1e-9


def test_bound_with_exact_predictor_is_above_and_near_the_true_nll():
    schedule = DDPMSchedule(linear_betas(1000)).to(torch.float64)
    gen = torch.Generator().manual_seed(4)
    x0 = MU + S * torch.randn(2048, 1, generator=gen, dtype=torch.float64)
    bound = variational_bound(exact_eps_net(schedule), schedule, x0, generator=gen, chunk=250)
    mean, var = model_moments(schedule)
    model_nll = -torch.distributions.Normal(mean, math.sqrt(var)).log_prob(x0).sum(1)
    data_nll = -torch.distributions.Normal(MU, S).log_prob(x0).sum(1)
    gap = bound["nll_bound"] - model_nll
    standard_error = gap.std() / math.sqrt(len(gap))
    assert gap.mean() > -4 * standard_error  # E[bound] >= -log p_model(x0), per x0
    # the fixed (posterior) reverse variances cost ~0.6 nats at T = 1000; we allow 1 nat
    assert (bound["nll_bound"] - data_nll).mean() < 1.0
    assert abs((model_nll - data_nll).mean()) < 0.01
