"""Implicit generators: structure of the compiled model, one-pass sampling, sample-based
evaluation against generators whose output distribution is known exactly, and a tiny
end-to-end fit."""
import math

import numpy as np
import pytest
import torch

import dgmdsl
from dgmdsl.data import toy_dataset, toy_modes
from dgmdsl.runtime.api import compile_model
from tests.conftest import ROOT

SPECS = ROOT / "specs"


def compiled(spec: str, name: str | None = None):
    torch.manual_seed(0)
    program = dgmdsl.loads(spec) if "model" in spec else dgmdsl.load(SPECS / f"{spec}.dgm")
    return compile_model(program[name] if name else program.models[0])


# A generator that can equal the 5x5 grid exactly: x = modes[k] + std * z for Linear G.
GRID = """model Grid {
    data   x : real[2]
    latent k : cat(25)
    latent z : real[2]
    net    G = Linear
    critic D = MLP(hidden = [8])
    k ~ Categorical(probs = uniform)
    z ~ Normal(0, 1)
    x = G(k, z)
    fit { data = grid_25_gaussians(n = 4000) }
}"""

# BiGAN with linear maps, so that G and E can be set to exact inverses.
LINEAR_BIGAN = """model LinearBiGAN {
    data   x : real[2]
    latent z : real[2]
    net    G = Linear
    net    E = Linear
    critic D(x, z) = MLP(hidden = [8])
    z ~ Normal(0, 1)
    x = G(z)
    guide { z = E(x) }
    fit { method = adversarial(loss = non_saturating), data = moons(n = 2000) }
}"""


def exact_grid_model():
    model = compiled(GRID)
    modes, std = toy_modes("grid_25_gaussians")
    weight = model.nets["G"].weight
    with torch.no_grad():
        weight.zero_()
        weight[:, :25] = torch.tensor(modes, dtype=weight.dtype).T
        weight[:, 25:] = std * torch.eye(2)
        model.nets["G"].bias.zero_()
    return model.eval()


def grid_heldout(n: int = 2000):
    return {"x": torch.from_numpy(toy_dataset("grid_25_gaussians", n, seed=1)["x"])}


def test_reference_specs_compile_with_the_declared_nets():
    gan = compiled("wgan_gp")
    assert [m.in_features for m in gan.critic if isinstance(m, torch.nn.Linear)] == [2, 256, 256]
    assert [v.name for v in gan.critic_vars] == ["x"] and not gan.bidirectional
    assert not gan.has_density
    bigan = compiled("bigan")
    assert [v.name for v in bigan.critic_vars] == ["x", "z"] and bigan.bidirectional
    assert bigan.critic[0].in_features == 4
    critic_ids = {id(p) for p in bigan.critic.parameters()}
    generator_ids = {id(p) for p in bigan.generator_parameters()}
    assert critic_ids == {id(p) for p in bigan.critic_parameters()}
    assert not critic_ids & generator_ids
    assert {id(p) for p in bigan.nets["E"].parameters()} <= generator_ids  # the encoder trains with G
    assert critic_ids | generator_ids == {id(p) for p in bigan.parameters()}


def test_sample_is_one_seeded_pass_through_g():
    model = compiled("gan").eval()
    out = model.sample(5, seed=3)
    assert list(out) == ["x"] and out["x"].shape == (5, 2)
    torch.manual_seed(3)
    expected = model.nets["G"](torch.randn(5, 16))
    torch.testing.assert_close(out["x"], expected)
    torch.testing.assert_close(model.sample(5, seed=3)["x"], out["x"])
    assert not torch.equal(model.sample(5, seed=4)["x"], out["x"])


def test_bigan_critic_sees_exactly_x_and_z_on_both_sides():
    model = compiled("bigan")
    x = torch.randn(6, 2)
    real = model.data_side({"x": x})
    assert len(real) == 2
    torch.testing.assert_close(real[0], x)
    torch.testing.assert_close(real[1], model.nets["E"](x))
    fake_x, fake_z = model.generator_side(6)
    torch.testing.assert_close(fake_x, model.nets["G"](fake_z))
    torch.testing.assert_close(model.score(*real), model.critic(torch.cat(real, -1)).squeeze(-1))


def test_exact_generator_covers_every_mode_and_reaches_the_noise_floor():
    metrics = exact_grid_model().evaluate(grid_heldout())
    assert metrics["modes_covered"] == metrics["n_modes"] == 25
    # 2-D Gaussian: P(|e| <= 3 std) = 1 - exp(-4.5) = 0.989; 1000 samples, 3 standard errors
    assert metrics["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert metrics["samples"] == 1000
    # MMD^2 of two samples of one distribution: zero in expectation, same spread as the floor
    assert abs(metrics["mmd2"]) < 5 * max(abs(metrics["mmd2_noise_floor"]), 1e-4)


def test_evaluation_detects_dropped_modes_and_a_shifted_generator():
    model = exact_grid_model()
    with torch.no_grad():
        model.nets["G"].weight[:, :5] = model.nets["G"].weight[:, 5:10]  # 5 modes never drawn
    dropped = model.evaluate(grid_heldout())
    assert dropped["modes_covered"] == 20
    with torch.no_grad():
        model.nets["G"].bias.fill_(0.5)  # every sample half-way between modes
    shifted = model.evaluate(grid_heldout())
    assert shifted["high_quality_fraction"] < 0.01 and shifted["modes_covered"] == 0
    assert shifted["mmd2"] > 20 * abs(shifted["mmd2_noise_floor"]) + 1e-3


def test_mode_coverage_is_skipped_when_the_data_does_not_fit_the_modes():
    metrics = exact_grid_model().evaluate({"x": torch.randn(200, 2)})
    assert "mmd" in metrics and "modes_covered" not in metrics


def test_bigan_reconstruction_error_of_inverse_maps_is_zero():
    model = compiled(LINEAR_BIGAN)
    a = torch.tensor([[2.0, 1.0], [0.5, 1.5]])
    with torch.no_grad():
        model.nets["G"].weight.copy_(a)
        model.nets["G"].bias.fill_(0.3)
        model.nets["E"].weight.copy_(torch.linalg.inv(a))
        model.nets["E"].bias.copy_(-torch.linalg.inv(a) @ torch.full((2,), 0.3))
    x = torch.from_numpy(toy_dataset("moons", 400, seed=1)["x"])
    metrics = model.eval().evaluate({"x": x}, batch_size=128)
    assert metrics["reconstruction_error"] == pytest.approx(0.0, abs=1e-9)
    centred = (x.double() - x.double().mean(0)).pow(2).sum(1).mean()
    assert metrics["reconstruction_baseline"] == pytest.approx(float(centred), rel=1e-6)


FIT_1D = """
model Data {
    data x : real
    x ~ Normal(3, 0.5)
}
model Tiny {
    data   x : real
    latent z : real[2]
    net    G = MLP(hidden = [16])
    critic D = MLP(hidden = [16])
    z ~ Normal(0, 1)
    x = G(z)
    fit { method = adversarial(loss = non_saturating), data = samples(Data, n = 2000),
          batch_size = 64, optimizer = adam(lr = 1e-2) }
}"""


def test_fit_moves_generated_mean_and_std_to_the_data(tmp_path):
    run = dgmdsl.loads(FIT_1D)["Tiny"].fit(max_steps=300, out=tmp_path / "run", quiet=True, device="cpu")
    before = compiled(FIT_1D, "Tiny").sample(2000, seed=1)["x"]
    after = run.sample(2000, seed=1)["x"]
    # an untrained G sits near 0 with a small spread; the data is N(3, 0.5^2)
    assert abs(float(before.mean()) - 3.0) > 2.0
    assert abs(float(after.mean()) - 3.0) < 0.35
    assert abs(float(after.std()) - 0.5) < 0.25
    assert np.isfinite(after).all()


ENCODER_ONLY = """model Enc {
    data   x : real
    latent z : real
    net    G = Linear
    net    E = Linear
    critic D(x, z) = MLP(hidden = [16, 16])
    z ~ Normal(0, 1)
    x = G(z)
    guide { z = E(x) }
    fit { method = adversarial(loss = non_saturating), batch_size = 64, optimizer = adam(lr = 3e-3) }
}"""


def test_bigan_encoder_learns_to_invert_a_fixed_generator():
    # With G frozen at the data's own map x = 1 + 2 z, the critic's only signal is to E,
    # and the unique equilibrium is E = G^-1, i.e. E(x) = (x - 1) / 2.
    from dgmdsl.inference.adversarial import Adversarial
    from dgmdsl.runtime.api import resolve_settings

    model = compiled(ENCODER_ONLY)
    with torch.no_grad():
        model.nets["G"].weight.fill_(2.0)
        model.nets["G"].bias.fill_(1.0)
    model.nets["G"].requires_grad_(False)
    heldout = {"x": 1 + 2 * torch.randn(1000)}
    before = model.evaluate(heldout)["reconstruction_error"]
    settings = resolve_settings(dgmdsl.loads(ENCODER_ONLY)["Enc"], max_steps=300, quiet=True)
    Adversarial(model, settings).fit({"x": 1 + 2 * torch.randn(2000)}, None, None, torch.device("cpu"))
    after = model.evaluate(heldout)
    assert after["reconstruction_error"] < 0.1 * after["reconstruction_baseline"] < before
    assert model.nets["E"].weight.item() == pytest.approx(0.5, abs=0.1)
    assert model.nets["G"].weight.item() == 2.0  # the frozen generator did not move
