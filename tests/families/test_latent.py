"""The latent family on models with closed forms: a linear-Gaussian model (exact log p(x)
and exact posterior), the IWAE estimate, the automatic guide, sampling."""
import math

import pytest
import torch

import dgmdsl
from dgmdsl.families.latent import observed_blanket
from dgmdsl.inference.base import TrainSettings
from dgmdsl.inference.svi import SVI

LINEAR_GAUSSIAN = """
model LinGauss {
    data   x : real
    latent z : real
    param  a : real
    param  b : real
    param  log_s : real
    net enc = Linear()
    z ~ Normal(0, 1)
    x ~ Normal(a * z + b, exp(log_s))
    guide { z ~ Normal(enc(x)) }
    fit { method = svi(particles = 8) }
}
"""


def compiled(text: str):
    torch.manual_seed(0)
    model = dgmdsl.loads(text).models[0]
    return model, model.compile()


def exact_log_px(model, x):
    """x ~ N(b, a^2 + s^2) once z is integrated out."""
    a, b, s = (model.params[n].detach() for n in ("a", "b", "log_s"))
    return torch.distributions.Normal(b, torch.sqrt(a ** 2 + s.exp() ** 2)).log_prob(x)


def exact_posterior(model, x):
    """z | x ~ N(a (x - b) / (a^2 + s^2), s^2 / (a^2 + s^2))."""
    a, b, s = (model.params[n].detach() for n in ("a", "b", "log_s"))
    var = a ** 2 + s.exp() ** 2
    return a * (x - b) / var, s.exp() / var.sqrt()


def data(n=400, seed=1):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=gen)
    return {"x": 2.0 * z + 1.0 + 0.5 * torch.randn(n, generator=gen)}


def test_fitted_elbo_reaches_exact_likelihood_and_guide_the_exact_posterior():
    spec, model = compiled(LINEAR_GAUSSIAN)
    settings = TrainSettings(optimizer=("adam", {"lr": 0.03}), method_options={"particles": 8})
    engine = SVI(model, settings)
    assert engine.fast
    batch = data()
    for step in range(1000):
        engine.train_step(batch, step)
    with torch.no_grad():
        torch.manual_seed(2)
        elbo = model.log_weights(batch, 2000)[0].mean()
        exact = exact_log_px(model, batch["x"]).mean()
        # the maximum likelihood: N(mean, var) of the data
        mle = torch.distributions.Normal(batch["x"].mean(), batch["x"].std(unbiased=False)).log_prob(batch["x"]).mean()
        assert float(exact) == pytest.approx(float(mle), abs=0.005)
        assert -0.002 < float(exact - elbo) < 0.005  # the KL gap closes: the guide family holds the posterior
        grid = torch.linspace(-3, 5, 9)
        q = model.guide["z"](model.inputs({"x": grid}))
        loc, scale = exact_posterior(model, grid)
        assert torch.allclose(q.mean, loc, atol=0.02)
        assert torch.allclose(q.stddev, scale.expand(9), atol=0.02)


def set_linear_gaussian(model, a=2.0, b=1.0, s=0.5, guide_shift=0.5, guide_scale=2.0):
    """Fixed model parameters and a deliberately poor guide: loc off by `guide_shift`,
    scale `guide_scale` times the exact posterior's."""
    with torch.no_grad():
        model.params["a"].fill_(a)
        model.params["b"].fill_(b)
        model.params["log_s"].fill_(math.log(s))
        var = a * a + s * s
        enc = model.nets["enc"]  # outputs [loc, raw scale] with softplus(raw) the scale
        enc.weight.copy_(torch.tensor([[a / var], [0.0]]))
        target = guide_scale * s / math.sqrt(var)
        enc.bias.copy_(torch.tensor([-a * b / var + guide_shift, math.log(math.expm1(target))]))


def test_iwae_increases_with_k_and_converges_to_exact_log_px():
    spec, model = compiled(LINEAR_GAUSSIAN)
    set_linear_gaussian(model)
    batch = {"x": data(200)["x"]}
    exact = float(exact_log_px(model, batch["x"]).mean())
    bounds = [-model.evaluate(batch, batch_size=200, k=k, seed=k)["nll_nats"] for k in (1, 4, 32, 256, 4096)]
    assert all(lo < hi for lo, hi in zip(bounds, bounds[1:])), bounds
    assert bounds[0] < exact - 0.1  # the poor guide's ELBO is clearly loose
    assert bounds[-1] == pytest.approx(exact, abs=0.005)
    assert bounds[-1] <= exact + 0.002  # a lower bound (up to Monte Carlo error)


def test_evaluate_splits_elbo_into_reconstruction_and_kl():
    spec, model = compiled(LINEAR_GAUSSIAN)
    set_linear_gaussian(model, guide_shift=0.0, guide_scale=1.0)  # the exact posterior
    batch = {"x": data(300)["x"]}
    m = model.evaluate(batch, batch_size=100, k=64)
    exact = float(exact_log_px(model, batch["x"]).mean())
    assert m["elbo_nats"] == pytest.approx(exact, abs=1e-4)  # exact posterior: every weight equals p(x)
    assert m["nll_nats"] == pytest.approx(-exact, abs=1e-4)
    assert m["reconstruction_nats"] + m["kl_nats"] == pytest.approx(-m["elbo_nats"], abs=1e-9)
    # KL(N(m, v) || N(0, 1)) averaged over x, in closed form
    loc, scale = exact_posterior(model, batch["x"])
    kl = (0.5 * (scale ** 2 + loc ** 2 - 1) - torch.log(scale)).mean()
    assert m["kl_nats"] == pytest.approx(float(kl), abs=0.03)


def test_automatic_guide_for_vae_autoguide_reads_x():
    model = dgmdsl.load(dgmdsl_spec("vae_autoguide")).models[0]
    torch.manual_seed(0)
    c = model.compile()
    assert c.guide_order == ["z"] and "z" in c.auto_nets
    net = c.auto_nets["z"]
    assert net[0].in_features == 784 and net[-1].out_features == 2 * 32
    assert [m.out_features for m in net if isinstance(m, torch.nn.Linear)][:-1] == [256]  # mirrors dec
    x = (torch.rand(2, 784) < 0.5).long()
    q = c.guide["z"](c.inputs({"x": x}))
    assert q.batch_shape == (2,) and q.event_shape == (32,)
    assert not torch.allclose(q.mean[0], q.mean[1])  # it depends on x
    loss = -c.log_weights({"x": x})[0].mean()
    loss.backward()
    assert net[0].weight.grad.abs().sum() > 0


def test_observed_blanket_includes_co_parents_and_looks_through_deterministic_nodes():
    spec = dgmdsl.loads("""
model Blanket {
    data   c : real[1]
    data   x : real[2]
    data   y : real
    latent z : real[2]
    latent h : real[2]
    net dec = MLP(hidden = [8])
    z ~ Normal(0, 1)
    h = tanh(z)
    x ~ Normal(dec([h, c]), 1)
    y ~ Normal(0, 1)
}
""").models[0]
    assert [v.name for v in observed_blanket(spec.checked, "z")] == ["c", "x"]


def test_prior_samples_decode_with_the_declared_shapes():
    model = dgmdsl.load(dgmdsl_spec("hvae")).models[0]
    torch.manual_seed(0)
    c = model.compile()
    out = c.sample(5, seed=3)
    assert out["z2"].shape == (5, 16) and out["z1"].shape == (5, 64) and out["x"].shape == (5, 784)
    assert set(out["x"].unique().tolist()) <= {0, 1}
    assert torch.equal(out["x"], c.sample(5, seed=3)["x"])


def dgmdsl_spec(name: str):
    from pathlib import Path
    return Path(__file__).resolve().parents[2] / "specs" / f"{name}.dgm"
