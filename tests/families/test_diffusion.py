"""The diffusion backend: kernels of spec-written SDEs, samplers and the probability-flow NLL
with the exact score of Gaussian data plugged in, training, EMA, and `dgm eval`."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import dgmdsl
from dgmdsl.cli import main as dgm_main
from dgmdsl.data import toy_dataset
from dgmdsl.families.base import seeded

MU = torch.tensor([1.0, -0.5])
STD = torch.tensor([0.5, 1.5])

VP = """
    sde vp {
        beta(t) = 0.1 + (20 - 0.1) * t
        dx = -0.5 * beta(t) * x * dt + sqrt(beta(t)) * dw
    }"""
VE = """
    sde ve {
        sigma(t) = 0.01 * (50 / 0.01) ^ t
        dx = sigma(t) * sqrt(2 * log(50 / 0.01)) * dw
    }"""
SUB_VP = """
    sde subvp {
        beta(t) = 0.1 + (20 - 0.1) * t
        dx = -0.5 * beta(t) * x * dt + sqrt(beta(t) * (1 - exp(-2 * (0.1 * t + 9.95 * t ^ 2)))) * dw
    }"""
# no elementary antiderivative of exp(t^2): the kernel is integrated numerically
ODD = """
    sde odd {
        dx = (1 - exp(t ^ 2) * x) * dt + (1 + t) * dw
    }"""


def spec(sde_text: str, sde: str, sample: str = "euler_maruyama(steps = 200)", fit: str = "") -> str:
    return f"""model G {{
    data x : real[2]
    net  s = MLP(hidden = [16], act = swish)
    {sde_text}
    x ~ Diffusion({sde}, score = s)
    fit {{ data = moons(n = 256, seed = 0), batch_size = 64 {fit} }}
    sample {{ method = {sample} }}
}}"""


def compiled(sde_text: str, sde: str, **kwargs):
    return dgmdsl.loads(spec(sde_text, sde, **kwargs))["G"].compile()


TIMES = torch.tensor([1e-4, 0.01, 0.1, 0.3, 0.5, 0.8, 1.0], dtype=torch.float64)
VP_LOG_M = -0.25 * TIMES**2 * 19.9 - 0.05 * TIMES


@pytest.mark.parametrize("sde_text, sde, mean_coef, var", [
    (VP, "vp", VP_LOG_M.exp(), 1 - (2 * VP_LOG_M).exp()),
    (VE, "ve", torch.ones_like(TIMES), 1e-4 * 5000.0 ** (2 * TIMES) - 1e-4),
    (SUB_VP, "subvp", VP_LOG_M.exp(), (1 - (2 * VP_LOG_M).exp()) ** 2),
])
def test_spec_written_sdes_get_their_closed_form_kernels(sde_text, sde, mean_coef, var):
    kernel = compiled(sde_text, sde).kernel
    assert kernel.is_closed_form
    torch.testing.assert_close(kernel.mean_coef(TIMES), mean_coef, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(kernel.var(TIMES), var, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(kernel.mean_shift(TIMES), torch.zeros_like(TIMES))


def test_numeric_kernel_of_an_unusual_sde_matches_a_simulation():
    model = compiled(ODD, "odd")
    kernel = model.kernel
    assert not kernel.is_closed_form and model.standardize
    generator = torch.Generator().manual_seed(0)
    paths, steps, x0 = 20_000, 1000, 0.7
    x = torch.full((paths,), x0, dtype=torch.float64)
    dt = 1.0 / steps
    checks = {500: None, 1000: None}
    for i in range(steps):
        t = i * dt
        x = x + (1 - math.exp(t**2) * x) * dt + (1 + t) * math.sqrt(dt) * torch.randn(paths, generator=generator,
                                                                                       dtype=torch.float64)
        if i + 1 in checks:
            checks[i + 1] = x.clone()
    for step, values in checks.items():
        t = torch.tensor([step * dt], dtype=torch.float64)
        mean = kernel.mean_coef(t) * x0 + kernel.mean_shift(t)
        var = kernel.var(t)
        # 4 Monte Carlo standard errors plus the simulation's Euler-Maruyama bias, O(dt)
        assert abs(float(values.mean() - mean)) < 4 * math.sqrt(float(var) / paths) + 2 * dt
        assert abs(float(values.var() / var) - 1) < 4 * math.sqrt(2 / paths) + 2 * dt


class ExactGaussianNet(nn.Module):
    """What the score net must output for data N(MU, diag(STD^2)): std(t) * score, fed the
    model's standardized input."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = [model]  # not a submodule

    def forward(self, x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        model = self.model[0]
        k, t = model.kernel, t.reshape(-1, 1)
        m, c, v = k.mean_coef(t), k.mean_shift(t), k.var(t)
        x = x_in * (m**2 + v).sqrt() + c if model.standardize else x_in
        score = -(x - m * MU - c) / (m**2 * STD**2 + v)
        return score * k.std(t)


def exact_model(sde_text, sde, **kwargs):
    model = compiled(sde_text, sde, **kwargs)
    model.net = ExactGaussianNet(model)
    return model


@pytest.mark.parametrize("sde_text, sde, sample", [
    (VP, "vp", "euler_maruyama(steps = 200)"),
    (VE, "ve", "euler_maruyama(steps = 200)"),
    (VP, "vp", "pc(steps = 100, corrector = langevin(snr = 0.16))"),
    (VP, "vp", "ode(rtol = 1e-4, atol = 1e-4)"),
])
def test_samplers_reproduce_gaussian_data_with_the_exact_score(sde_text, sde, sample):
    model = exact_model(sde_text, sde, sample=sample)
    x = model.sample(4000, seed=0)["x"]
    assert x.shape == (4000, 2)
    # standard errors of the mean: STD / 63; a few percent of std for the sampler's bias
    torch.testing.assert_close(x.mean(0), MU, atol=0.06, rtol=0)
    torch.testing.assert_close(x.std(0), STD, atol=0.0, rtol=0.06)


@pytest.mark.parametrize("sde_text, sde", [(VP, "vp"), (VE, "ve")])
def test_probability_flow_nll_equals_the_analytic_nll(sde_text, sde):
    model = exact_model(sde_text, sde)
    data = MU + STD * torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    metrics = model.evaluate({"x": data}, batch_size=100, mmd_samples=0)
    analytic = -torch.distributions.Normal(MU, STD).log_prob(data).sum(1).mean()
    assert abs(metrics["nll_nats"] - float(analytic)) < 1e-2
    assert metrics["bits_per_dim"] == pytest.approx(metrics["nll_nats"] / (2 * math.log(2)))
    assert "exact divergence" in metrics["kind"] and metrics["nll_examples"] == 200
    if sde == "vp":  # VE's prior N(0, v(1)) misses the data mean: ~x_1 . MU / v(1) per example
        lp = model.log_prob({"x": data[:10]})
        torch.testing.assert_close(lp, torch.distributions.Normal(MU, STD).log_prob(data[:10]).sum(1),
                                   atol=1e-2, rtol=0)


def mean_loss(model, data, repeats=20):
    with seeded(123), torch.no_grad():
        return float(torch.stack([model.dsm_loss({"x": data}) for _ in range(repeats)]).mean())


def test_short_fit_reduces_the_dsm_loss(tmp_path):
    model = dgmdsl.loads(spec(VP, "vp", fit=", optimizer = adam(lr = 3e-3)"))["G"]
    data = torch.from_numpy(toy_dataset("moons", n=256, seed=0)["x"])
    torch.manual_seed(0)  # the weights fit starts from
    before = mean_loss(model.compile(), data)
    run = model.fit(max_steps=150, out=tmp_path / "run", quiet=True, device="cpu")
    after = mean_loss(run.compiled, data)
    assert after < 0.7 * before


def test_ema_weights_differ_are_saved_and_are_used_for_sampling(tmp_path):
    model = dgmdsl.loads(spec(VP, "vp", sample="euler_maruyama(steps = 20)", fit=", ema = 0.9"))["G"]
    run = model.fit(max_steps=30, out=tmp_path / "run", quiet=True, device="cpu")
    compiled = run.compiled
    raw, ema = list(compiled.net.parameters()), list(compiled.ema_net.parameters())
    assert int(compiled.ema_updates) == 30
    assert all(not p.requires_grad for p in ema)
    assert max(float((a.detach() - b).abs().max()) for a, b in zip(raw, ema)) > 1e-4
    with seeded(5):
        by_ema = compiled.draw(8, compiled.ema_net)
    with seeded(5):
        by_raw = compiled.draw(8, compiled.net)
    sampled = compiled.sample(8, seed=5)["x"]
    assert torch.equal(sampled, by_ema) and not torch.allclose(sampled, by_raw)
    reopened = dgmdsl.open_run(tmp_path / "run", device="cpu").compiled
    assert all(torch.equal(a, b) for a, b in zip(ema, reopened.ema_net.parameters()))


def test_ema_update_follows_the_warmed_up_decay():
    model = compiled(VP, "vp", fit=", ema = 0.999")
    start = [p.detach().clone() for p in model.ema_net.parameters()]
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(1.0)
    model.update_ema()
    decay = 2 / 11  # min(0.999, (1 + n) / (10 + n)) at n = 1
    for average, first, current in zip(model.ema_net.parameters(), start, model.net.parameters()):
        torch.testing.assert_close(average, decay * first + (1 - decay) * current)


def test_dgm_eval_prints_nll_bits_per_dim_and_mmd(tmp_path, capsys):
    path = tmp_path / "g.dgm"
    path.write_text(spec(VP, "vp", sample="euler_maruyama(steps = 30)"))
    assert dgm_main(["fit", str(path), "--max-steps", "5", "--out", str(tmp_path / "run"), "--quiet",
                     "--device", "cpu"]) == 0
    capsys.readouterr()
    assert dgm_main(["eval", str(tmp_path / "run"), "--limit", "200", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    values = {line.split(":")[0].strip(): line.split(":", 1)[1].strip() for line in out.splitlines() if ":" in line}
    assert np.isfinite(float(values["nll_nats"])) and np.isfinite(float(values["bits_per_dim"]))
    assert float(values["mmd"]) > float(values["mmd_noise_floor"])
    assert "probability-flow ODE" in values["kind"]
