"""The dsm engine: its loss is the model's `dsm_loss` with the method's options, it keeps the
model's EMA in step, and its state round-trips through a checkpoint."""
import pytest
import torch

import dgmdsl
from dgmdsl.families.base import seeded
from dgmdsl.inference.base import TrainSettings
from dgmdsl.inference.dsm import DenoisingScoreMatching
from dgmdsl.numerics.sde_kernel import dsm_loss

VP_MODEL = """model G {{
    data x : real[2]
    net  s = MLP(hidden = [16], act = swish)
    sde vp {{
        beta(t) = 0.1 + (20 - 0.1) * t
        dx = -0.5 * beta(t) * x * dt + sqrt(beta(t)) * dw
    }}
    x ~ Diffusion(vp, score = s)
    fit {{ data = moons(n = 128, seed = 0), batch_size = 32 {fit} }}
}}"""

ENERGY_MODEL = """model E {
    data x : real[2]
    net  E = MLP(hidden = [16], act = swish)
    x ~ Energy(E)
    fit { method = dsm(sigma = 0.3), data = moons(n = 128, seed = 0) }
}"""


def engine_for(text: str, name: str, **settings) -> DenoisingScoreMatching:
    model = dgmdsl.loads(text)[name]
    options = {k: getattr(v, "name", v) for k, v in model.checked.method.options.items()}
    return DenoisingScoreMatching(model.compile(), TrainSettings(method_options=options, **settings))


BATCH = {"x": torch.randn(64, 2, generator=torch.Generator().manual_seed(0))}


@pytest.mark.parametrize("weighting", ["variance", "likelihood"])
def test_the_loss_is_the_models_dsm_loss_with_the_methods_weighting(weighting):
    engine = engine_for(VP_MODEL.format(fit=f", method = dsm(weighting = {weighting})"), "G")
    model = engine.model
    with seeded(3), torch.no_grad():
        loss = engine.loss(BATCH)
    with seeded(3), torch.no_grad():
        expected = dsm_loss(model.score, BATCH["x"], model.kernel, weighting, eps=1e-5)
    with seeded(3), torch.no_grad():
        other = dsm_loss(model.score, BATCH["x"], model.kernel,
                         {"variance": "likelihood", "likelihood": "variance"}[weighting], eps=1e-5)
    torch.testing.assert_close(loss, expected)
    assert abs(float(loss - other)) > 1e-3 * float(loss)


def test_energy_models_train_through_the_same_engine():
    engine = engine_for(ENERGY_MODEL, "E")
    assert engine.update_ema is None
    with seeded(3):
        loss = engine.loss(BATCH)
    with seeded(3):
        expected = engine.model.dsm_loss(BATCH, {"sigma": 0.3})
    torch.testing.assert_close(loss, expected)


def test_each_step_updates_the_ema_and_the_state_round_trips():
    engine = engine_for(VP_MODEL.format(fit=", ema = 0.5"), "G")
    model = engine.model
    for step in range(1, 4):
        engine.train_step(BATCH, step)
    assert int(model.ema_updates) == 3
    state = engine.state_dict()
    fresh = engine_for(VP_MODEL.format(fit=", ema = 0.5"), "G")
    fresh.load_state_dict(state)
    for a, b in zip(model.ema_net.parameters(), fresh.model.ema_net.parameters()):
        assert torch.equal(a, b)
    assert int(fresh.model.ema_updates) == 3
    assert fresh.optimizer.state_dict()["state"].keys() == engine.optimizer.state_dict()["state"].keys()
    # the EMA holds no gradients and is not optimized
    assert not any(p.requires_grad for p in model.ema_net.parameters())
    optimized = {id(p) for group in engine.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.net.parameters()}


def test_a_training_step_lowers_the_loss_on_a_fixed_batch():
    engine = engine_for(VP_MODEL.format(fit=""), "G", optimizer=("adam", {"lr": 1e-2}))

    def fixed_loss():
        with seeded(11), torch.no_grad():
            return float(torch.stack([engine.loss(BATCH) for _ in range(10)]).mean())
    before = fixed_loss()
    for step in range(1, 41):
        engine.train_step(BATCH, step)
    assert fixed_loss() < 0.8 * before
