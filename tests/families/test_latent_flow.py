"""Flows inside latent-variable models: a flow prior (`u ~ Normal(0, 1)`, `z = prior(u)`, the
guide written for z) and a flow in the guide (`e ~ Normal(enc(x))`, `z = post(e)`). The
prior's density is normalized, the torch fast path equals Pyro's Trace_ELBO on the same
draws, and a short fit improves the ELBO with IWAE never below it."""
import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

import dgmdsl
from dgmdsl.inference.base import TrainSettings
from dgmdsl.inference.svi import SVI

FLOW_PRIOR = """
model FlowPrior {
    data   x : binary[6]
    latent u : real[2]
    latent z : real[2]
    net dec = MLP(hidden = [16])
    net enc = MLP(hidden = [16])
    flow prior {
        repeat 2 {
            affine_coupling(mask = alternate, net = MLP(hidden = [16]))
            permute(reverse)
        }
        scale
    }
    u ~ Normal(0, 1)
    z = prior(u)
    x ~ Bernoulli(logits = dec(z))
    guide { z ~ Normal(enc(x)) }
}
"""

FLOW_GUIDE = """
model FlowGuide {
    data   x : binary[6]
    latent e : real[3]
    latent z : real[3]
    net dec = MLP(hidden = [16])
    net enc = MLP(hidden = [16])
    flow post { repeat 2 { iaf(net = MADE(hidden = [16])); permute(reverse) } }
    z ~ Normal(0, 1)
    x ~ Bernoulli(logits = dec(z))
    guide { e ~ Normal(enc(x)); z = post(e) }
}
"""

# both at once, the prior a chain of two flows through an intermediate latent that the
# decoder reads too, and no guide statement for z (an automatic guide)
CHAIN_PRIOR_FLOW_GUIDE = """
model Both {
    data   x : binary[6]
    latent u : real[2]
    latent h : real[2]
    latent z : real[2]
    latent e : real[2]
    latent w : real[2]
    net dec = MLP(hidden = [16])
    net enc = MLP(hidden = [16])
    flow f { affine_coupling(mask = alternate, net = MLP(hidden = [8])); scale }
    flow g { additive_coupling(mask = alternate, net = MLP(hidden = [8])) }
    flow post { affine_coupling(mask = alternate, net = MLP(hidden = [8])) }
    u ~ Normal(0, 1)
    h = f(u)
    z = g(h)
    w ~ Normal(0, 1)
    x ~ Bernoulli(logits = dec([z, h, w]))
    guide { e ~ Normal(enc(x)); z = post(e) }
}
"""


def compiled(text: str, seed: int = 0):
    torch.manual_seed(seed)
    spec = dgmdsl.loads(text).models[0]
    return spec, spec.compile()


def binary_batch(n=5, d=6, seed=3):
    return {"x": (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.5).long()}


def randomize_scales(model):
    """Non-trivial `scale` layers, so the prior is clearly not N(0, I)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("log_scale"):
                p.copy_(torch.linspace(-0.4, 0.5, p.numel()))


def test_checker_classifies_and_builds_the_flow_chains():
    spec, model = compiled(CHAIN_PRIOR_FLOW_GUIDE)
    assert spec.explain().method == "svi"
    assert model.guide_order[-1] == "z" and set(model.guide_order) == {"e", "z", "w"}  # not u, h
    (prior,) = model.flows.priors.values()
    assert (prior.base, prior.flows, prior.outputs) == ("u", ("f", "g"), ("h", "z"))
    (post,) = model.flows.posteriors.values()
    assert (post.base, post.flows, post.outputs) == ("e", ("post",), ("z",))
    assert "e" not in model.conditionals and "z" not in model.values  # e belongs to q alone
    _, auto = compiled(FLOW_PRIOR.replace("guide { z ~ Normal(enc(x)) }", "").replace("net enc = MLP(hidden = [16])", ""))
    assert auto.guide_order == ["z"] and "z" in auto.auto_nets  # an automatic guide for the flow's output


def test_flow_prior_density_integrates_to_one_on_a_grid():
    _, model = compiled(FLOW_PRIOR)
    with torch.no_grad():  # milder coupling nets than at initialisation: light tails, inside the grid
        for name, p in model.flows.named_parameters():
            p.copy_(torch.tensor([0.3, -0.2]) if name.endswith("log_scale") else 0.5 * p)
    step = 0.02
    axis = torch.arange(-8.0, 8.0, step) + step / 2
    grid = torch.cartesian_prod(axis, axis)  # [N, 2] cell midpoints
    chain = model.flows.priors["u"]
    with torch.no_grad():
        env = {"z": grid}
        log_det = model.flows.invert(chain, env)  # writes u = prior^-1(z) into env
        log_p = model.conditionals["u"](env).log_prob(env["u"]) + log_det
        # the Pyro program's TransformedDistribution gives the same density
        pyro_log_p = model.flows.distribution(chain, model.conditionals["u"]({})).log_prob(grid)
    assert torch.allclose(log_p, pyro_log_p, atol=1e-5)
    assert float(log_p.exp().sum() * step ** 2) == pytest.approx(1.0, abs=1e-2)
    standard = torch.distributions.Normal(0.0, 1.0).log_prob(grid).sum(-1)
    assert float((log_p - standard).abs().max()) > 0.1  # the flow does change the prior


@pytest.mark.parametrize("text", [FLOW_PRIOR, FLOW_GUIDE, CHAIN_PRIOR_FLOW_GUIDE], ids=["prior", "guide", "both"])
def test_fast_path_equals_pyro_trace_elbo_with_the_same_draws(text):
    _, model = compiled(text)
    randomize_scales(model)
    engine = SVI(model, TrainSettings())
    assert engine.fast
    batch = binary_batch()
    params = [p for p in model.parameters() if p.requires_grad]
    pyro.set_rng_seed(11)
    fast = engine.loss(batch)
    fast_grads = torch.autograd.grad(fast, params, allow_unused=True)
    pyro.set_rng_seed(11)
    reference = Trace_ELBO().differentiable_loss(model.pyro_model, model.pyro_guide, batch) / 5
    ref_grads = torch.autograd.grad(reference, params, allow_unused=True)
    assert float(fast.detach()) == pytest.approx(float(reference.detach()), abs=1e-5)
    for g, r in zip(fast_grads, ref_grads):
        assert (g is None) == (r is None)
        assert g is None or torch.allclose(g, r, atol=1e-5)
    assert sum(g.abs().sum() for g in fast_grads if g is not None) > 0
    flow_grads = [g for (name, _), g in zip(((n, p) for n, p in model.named_parameters() if p.requires_grad),
                                            fast_grads) if name.startswith("flows.")]
    assert flow_grads and all(g is not None for g in flow_grads)  # every flow layer is trained


def toy_binary(n=256, seed=0):
    """Two noisy prototypes on 8 pixels: a structure a 2-D latent captures."""
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1, 0, 0]], dtype=torch.float)
    rows = prototypes[torch.randint(0, 2, (n,), generator=gen)]
    flips = torch.rand(n, 8, generator=gen) < 0.1
    return {"x": torch.where(flips, 1 - rows, rows).long()}


@pytest.mark.parametrize("text", [FLOW_PRIOR, FLOW_GUIDE], ids=["prior", "guide"])
def test_short_fit_improves_the_elbo_and_iwae_bounds_it(text):
    _, model = compiled(text.replace("binary[6]", "binary[8]"))
    data = toy_binary()
    before = model.evaluate(data, batch_size=256, k=64, seed=0)
    engine = SVI(model, TrainSettings(optimizer=("adam", {"lr": 1e-2})))
    for step in range(300):
        rows = torch.randint(0, 256, (64,), generator=torch.Generator().manual_seed(step))
        engine.train_step({"x": data["x"][rows]}, step)
    after = model.evaluate(data, batch_size=256, k=64, seed=0)
    assert after["elbo_nats"] > before["elbo_nats"] + 1.0, (before, after)
    # IWAE-64 and the ELBO come from the same 64 draws: log-mean-exp >= mean, always
    assert after["nll_nats"] <= -after["elbo_nats"] + 1e-9
    assert after["nll_nats"] < 8 * math.log(2)  # better than coin flips per pixel
    samples = model.sample(7, seed=1)
    assert samples["x"].shape == (7, 8) and samples["z"].shape[0] == 7
    assert set(samples["x"].unique().tolist()) <= {0, 1}
    assert torch.equal(samples["z"], model.sample(7, seed=1)["z"])


def test_example_spec_compiles_with_a_flow_prior():
    from pathlib import Path

    spec = dgmdsl.load(Path(__file__).resolve().parents[2] / "specs" / "vae_flow_prior.dgm")["VAEFlowPrior"]
    assert spec.explain().method == "svi"
    torch.manual_seed(0)
    model = spec.compile()
    assert model.guide_order == ["z"] and model.flows.priors["u"].flows == ("prior",)
    with torch.no_grad():
        log_w, log_lik = model.log_weights(binary_batch(2, 784), particles=3)
    assert log_w.shape == (3, 2) and torch.isfinite(log_w).all() and torch.isfinite(log_lik).all()
