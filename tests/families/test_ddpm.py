"""The DDPM backend: schedules from the spec, samplers and the bound with the exact noise
predictor of Gaussian data plugged in, the discrete decoder for binarized images, training."""
import math

import pytest
import torch
from torch import nn

import dgmdsl
from dgmdsl.data import toy_dataset
from dgmdsl.families.base import seeded
from dgmdsl.runtime.errors import RuntimeUserError

MU = torch.tensor([1.0, -0.5])
STD = torch.tensor([0.5, 1.5])


def spec(ddpm: str = "T = 200, beta = linear(1e-4, 0.05)", sample: str = "ancestral", fit: str = "",
         data: str = "real[2]", net: str = "MLP(hidden = [16], act = swish)",
         source: str = "moons(n = 256, seed = 0)") -> str:
    return f"""model D {{
    data x : {data}
    net  eps = {net}
    x ~ DDPM({ddpm}, eps = eps)
    fit {{ data = {source}, batch_size = 64 {fit} }}
    sample {{ method = {sample} }}
}}"""


def test_schedules_come_from_the_spec():
    linear = dgmdsl.loads(spec("T = 50, beta = linear(1e-3, 0.2)"))["D"].compile().schedule
    torch.testing.assert_close(linear.betas, torch.linspace(1e-3, 0.2, 50, dtype=torch.float64))
    cosine = dgmdsl.loads(spec("T = 40, beta = cosine(0.008)"))["D"].compile().schedule
    n = torch.arange(41, dtype=torch.float64)
    f = torch.cos((n / 40 + 0.008) / 1.008 * math.pi / 2) ** 2
    # the last beta is clipped at 0.999
    torch.testing.assert_close(cosine.alpha_bars, (f / f[0])[1:], atol=2e-6, rtol=1e-6)
    default = dgmdsl.loads(spec("T = 1000").replace("T = 1000, ", ""))["D"].compile().schedule
    assert default.T == 1000 and float(default.betas[-1]) == pytest.approx(0.02)


class ExactGaussianEps(nn.Module):
    """E[noise | x_t] for data N(MU, diag(STD^2)) at net time (step + 1) / T."""

    def __init__(self, schedule) -> None:
        super().__init__()
        self.schedule = [schedule]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        schedule = self.schedule[0]
        step = (t * schedule.T).round().long() - 1
        alpha_bar = schedule.alpha_bars[step].to(x.dtype).reshape(-1, 1)
        return (1 - alpha_bar).sqrt() * (x - alpha_bar.sqrt() * MU) / (alpha_bar * STD**2 + 1 - alpha_bar)


def exact_model(**kwargs):
    model = dgmdsl.loads(spec(**kwargs))["D"].compile()
    model.net = ExactGaussianEps(model.schedule)
    return model


@pytest.mark.parametrize("sample", ["ancestral", "ddim(steps = 50, eta = 0)", "ddim(steps = 200, eta = 1)"])
def test_samplers_reproduce_gaussian_data_with_the_exact_noise_predictor(sample):
    x = exact_model(sample=sample).sample(4000, seed=0)["x"]
    torch.testing.assert_close(x.mean(0), MU, atol=0.06, rtol=0)
    torch.testing.assert_close(x.std(0), STD, atol=0.0, rtol=0.06)


def chain_moments(schedule):
    """Mean and variance of x_0 under the reverse chain with the exact predictor (linear-Gaussian)."""
    mean, var = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    for step in reversed(range(schedule.T)):
        beta, alpha_bar = schedule.betas[step], schedule.alpha_bars[step]
        gain = (1 - alpha_bar).sqrt() / (alpha_bar * STD.double() ** 2 + 1 - alpha_bar)
        slope = (1 - beta * gain / (1 - alpha_bar).sqrt()) / (1 - beta).sqrt()
        offset = beta * gain * alpha_bar.sqrt() * MU.double() / (1 - alpha_bar).sqrt() / (1 - beta).sqrt()
        mean, var = slope * mean + offset, slope**2 * var + schedule.posterior_var[step]
    return mean, var


def test_bound_with_the_exact_predictor_bounds_the_chains_nll():
    model = exact_model(ddpm="T = 1000")
    data = MU + STD * torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    metrics = model.evaluate({"x": data}, batch_size=250, mmd_samples=0)
    mean, var = chain_moments(model.schedule)
    chain_nll = float(-torch.distributions.Normal(mean, var.sqrt()).log_prob(data.double()).sum(1).mean())
    data_nll = float(-torch.distributions.Normal(MU, STD).log_prob(data).sum(1).mean())
    assert abs(chain_nll - data_nll) < 0.02  # the exact predictor's chain reproduces the data
    # E[bound] >= NLL; the fixed reverse variances cost under a nat per dimension at T = 1000
    assert chain_nll - 4 * metrics["nll_bound_stderr"] < metrics["nll_bound_nats"] < chain_nll + 2.0
    assert metrics["bound_examples"] == 500 and "Gaussian decoder" in metrics["kind"]
    assert metrics["nll_bound_nats"] == pytest.approx(metrics["bound_prior"] + metrics["bound_diffusion"]
                                                      + metrics["bound_decoder"])
    assert metrics["bits_per_dim"] == pytest.approx(metrics["nll_bound_nats"] / (2 * math.log(2)))


def test_binarized_images_in_minus_one_one_use_the_two_bin_decoder_and_clip():
    model = dgmdsl.loads(spec(data="real[1, 4, 4]", source="binarized_mnist(scale = [-1, 1])",
                              ddpm="T = 20"))["D"].compile()
    assert model.clip_x0 and model.event_shape == (16,)
    pixels = torch.randint(0, 2, (6, 1, 4, 4), generator=torch.Generator().manual_seed(0)) * 2.0 - 1
    metrics = model.evaluate({"x": pixels}, batch_size=6, mmd_samples=0)
    assert "2 values" in metrics["kind"]
    assert metrics["bound_decoder"] >= 0  # minus the log of a probability
    # values off the {-1, 1} grid: the continuous decoder
    metrics = model.evaluate({"x": pixels * 0.5}, batch_size=6, mmd_samples=0)
    assert "Gaussian decoder" in metrics["kind"]
    draws = model.sample(3, seed=0)["x"]
    assert draws.shape == (3, 1, 4, 4)


def test_short_fit_reduces_the_simple_loss(tmp_path):
    model = dgmdsl.loads(spec(fit=", optimizer = adam(lr = 3e-3)"))["D"]
    data = torch.from_numpy(toy_dataset("moons", n=256, seed=0)["x"])
    torch.manual_seed(0)

    def mean_loss(compiled):
        with seeded(7), torch.no_grad():
            return float(torch.stack([compiled.dsm_loss({"x": data}) for _ in range(20)]).mean())
    before = mean_loss(model.compile())
    run = model.fit(max_steps=150, out=tmp_path / "run", quiet=True, device="cpu")
    assert mean_loss(run.compiled) < 0.8 * before
    metrics = run.evaluate(limit=200, batch_size=100)
    assert math.isfinite(metrics["nll_bound_nats"]) and metrics["mmd"] >= 0


def test_dsm_options_that_do_not_apply_are_errors():
    with pytest.raises(RuntimeUserError, match="does not apply"):
        dgmdsl.loads(spec(fit=", method = dsm(weighting = likelihood)"))["D"].compile()
