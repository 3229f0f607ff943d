"""SVI: the torch fast path equals Pyro's Trace_ELBO with the same noise; enumeration
inside SVI equals brute-force summation; option parsing; the Pyro score-function path."""
import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

import dgmdsl
from dgmdsl.inference.base import TrainSettings
from dgmdsl.inference.svi import SVI, parse_elbo
from dgmdsl.runtime.errors import RuntimeUserError

HIERARCHICAL = """
model TwoLevel {
    data   x : binary[6]
    latent z1 : real[3]
    latent z2 : real[2]
    net top = MLP(hidden = [8])
    net dec = MLP(hidden = [8])
    net e1 = MLP(hidden = [8])
    z2 ~ Normal(0, 1)
    z1 ~ Normal(top(z2))
    x ~ Bernoulli(logits = dec(z1))
    guide {
        z1 ~ Normal(e1(x))
    }
}
"""

MIXED = """
model Mixed {
    data   x : real
    latent c : cat(3)
    latent z : real
    param  mu : real[3]
    c ~ Categorical(probs = table())
    z ~ Normal(mu[c], 1)
    x ~ Normal(z, 0.5)
    fit { method = svi(elbo = trace_enum) }
}
"""


def engine_for(text: str, **options) -> SVI:
    torch.manual_seed(0)
    model = dgmdsl.loads(text).models[0].compile()
    return SVI(model, TrainSettings(method_options=options))


def binary_batch(n=5, d=6):
    return {"x": (torch.rand(n, d, generator=torch.Generator().manual_seed(3)) < 0.5).long()}


def test_fast_path_equals_pyro_trace_elbo_with_the_same_noise():
    engine = engine_for(HIERARCHICAL)
    model, batch = engine.model, binary_batch()
    assert engine.fast and model.guide_order == ["z1", "z2"]  # z2's guide is automatic and reads x
    pyro.set_rng_seed(11)
    fast = engine.loss(batch)
    fast_grads = torch.autograd.grad(fast, list(model.parameters()))
    pyro.set_rng_seed(11)
    reference = Trace_ELBO().differentiable_loss(model.pyro_model, model.pyro_guide, batch) / 5
    ref_grads = torch.autograd.grad(reference, list(model.parameters()))
    assert float(fast.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    assert all(torch.allclose(g, r, atol=1e-5) for g, r in zip(fast_grads, ref_grads))


def test_fast_path_equals_pyro_trace_elbo_in_expectation():
    engine = engine_for(HIERARCHICAL, particles=4000)
    model, batch = engine.model, binary_batch(2)
    torch.manual_seed(1)
    with torch.no_grad():
        fast = float(engine.loss(batch))
        pyro_loss = Trace_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1)
        reference = float(pyro_loss.loss(model.pyro_model, model.pyro_guide, batch)) / 2
    # both are Monte Carlo estimates of the same -ELBO from independent draws; per-example
    # log-weights have an sd of about a nat, so 4000 particles leave ~0.02 nats of noise
    assert fast == pytest.approx(reference, abs=0.1)


def brute_force_elbo(model, batch, z):
    """E_q[log sum_c p(c) p(z | c) p(x | z) - log q(z)] at the given draw of z, by hand."""
    probs = model.conditionals["c"]({}).probs
    mu = model.params["mu"].detach()
    x = batch["x"]
    total = torch.zeros(len(x))
    for c in range(3):
        total = total + probs[c] * torch.exp(torch.distributions.Normal(mu[c], 1.0).log_prob(z)
                                             + torch.distributions.Normal(z, 0.5).log_prob(x))
    q = model.guide["z"](model.inputs(batch))
    return total.log() - q.log_prob(z)


def test_enumeration_inside_svi_equals_brute_force_summation():
    engine = engine_for(MIXED)
    model = engine.model
    assert not engine.fast and model.enumerated == ["c"]
    assert type(engine._pyro_elbo).__name__ == "TraceEnum_ELBO"
    with torch.no_grad():
        model.params["mu"].copy_(torch.tensor([-2.0, 0.5, 3.0]))
    batch = {"x": torch.tensor([-2.5, 0.0, 1.0, 3.5])}
    pyro.set_rng_seed(5)
    pyro_loss = float(engine.loss(batch).detach())
    pyro.set_rng_seed(5)
    with torch.no_grad():
        z = model.guide["z"](model.inputs(batch)).rsample()
        brute = brute_force_elbo(model, batch, z)
        pyro.set_rng_seed(5)
        torch_weights = model.log_weights(batch, 1)[0][0]
    assert pyro_loss == pytest.approx(-float(brute.mean()), rel=1e-5)
    assert torch.allclose(torch_weights, brute, atol=1e-5)  # the torch enumeration (evaluation, iwae)


def test_svi_with_enumeration_learns_the_component_means():
    engine = engine_for(MIXED, elbo="trace_enum")
    gen = torch.Generator().manual_seed(0)
    c = torch.randint(3, (300,), generator=gen)
    batch = {"x": torch.tensor([-4.0, 0.0, 4.0])[c] + torch.randn(300, generator=gen) * 1.1}
    engine.optimizer = torch.optim.Adam(engine.trainable_parameters(), lr=0.05)
    for step in range(200):
        engine.train_step(batch, step)
    mu = engine.model.params["mu"].detach().sort().values
    assert torch.allclose(mu, torch.tensor([-4.0, 0.0, 4.0]), atol=0.5)


def test_iwae_option_positional_and_named():
    positional = engine_for(HIERARCHICAL.replace("}\n}", "}\n    fit { method = svi(elbo = iwae(7)) }\n}", 1))
    assert (positional.objective, positional.particles, positional.fast) == ("iwae", 7, True)
    named = engine_for(HIERARCHICAL.replace("}\n}", "}\n    fit { method = svi(elbo = iwae(k = 3)) }\n}", 1))
    assert (named.objective, named.particles) == ("iwae", 3)
    batch = binary_batch()
    torch.manual_seed(4)
    loss = named.loss(batch)
    torch.manual_seed(4)
    log_w = named.model.log_weights(batch, 3)[0].detach()
    assert float(loss.detach()) == pytest.approx(-float((torch.logsumexp(log_w, 0) - math.log(3)).mean()), rel=1e-6)


DISCRETE_GUIDE = """
model DiscreteGuide {
    data   x : real
    latent c : binary
    latent z : real
    net q = MLP(hidden = [4])
    c ~ Bernoulli(probs = 0.3)
    z ~ Normal(0, 1)
    x ~ Normal(z + 2 * c, 0.5)
    guide { c ~ Bernoulli(logits = q(x)) }
}
"""


def test_discrete_guide_takes_the_pyro_score_function_path():
    engine = engine_for(DISCRETE_GUIDE)
    assert not engine.fast and type(engine._pyro_elbo).__name__ == "Trace_ELBO"
    loss = engine.loss({"x": torch.tensor([0.0, 2.0, 1.0])})
    loss.backward()
    assert torch.isfinite(loss) and engine.model.nets["q"][0].weight.grad.abs().sum() > 0


def test_iwae_refuses_a_guide_it_cannot_reparameterize():
    with pytest.raises(RuntimeUserError, match="reparameterizable"):
        engine_for(DISCRETE_GUIDE, elbo={"name": "iwae", "k": 3})
    assert parse_elbo("iwae") == ("iwae", 5) and parse_elbo(None) == ("trace", None)


def test_fit_switches_distribution_checks_off_only_while_training():
    engine = engine_for(HIERARCHICAL)
    engine.settings.max_steps, engine.settings.quiet = 2, True
    seen = []
    loss = engine.loss
    engine.loss = lambda batch: seen.append(torch.distributions.Distribution._validate_args) or loss(batch)
    before = torch.distributions.Distribution._validate_args
    result = engine.fit(binary_batch(8), None, None, torch.device("cpu"))
    assert result["steps"] == 2 and seen == [False, False]
    assert torch.distributions.Distribution._validate_args == before
