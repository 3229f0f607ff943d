"""nce and fce through the runtime on Gaussian data with a quadratic energy (a family that
contains the data density): the energy recovers the mean and precision, and the learned
log Z agrees with quadrature of the learned energy, as `dgm eval` reports them."""
from __future__ import annotations

import pytest
import torch

import dgmdsl
from dgmdsl.inference.nce import FCE, NCE
from tests.families.test_energy import (gaussian_data, gaussian_log_z, learned_moments,  # noqa: F401
                                        quadratic_net, spec, write_data)

FLOW = "flow f {\n repeat 2 {\n affine_coupling(mask = alternate, net = MLP(hidden = [16]))\n permute(reverse)\n }\n}"


def fit(tmp_path, method: str, data, steps: int, batch: int, lr: float, extra: str = ""):
    text = spec(f"method = {method}, optimizer = adam(lr = {lr}), batch_size = {batch}",
                "langevin(steps = 5, step_size = 0.01)", extra=extra)
    return dgmdsl.loads(text).models[0].fit(data=write_data(tmp_path, data), max_steps=steps,
                                            out=tmp_path / "run", quiet=True, device="cpu")


def test_nce_recovers_the_gaussian_and_its_log_z(tmp_path, quadratic_net):
    data = gaussian_data(2000, seed=6)
    run = fit(tmp_path, "nce(noise = Normal(0, 3), ratio = 4)", data, steps=500, batch=500, lr=0.03)
    assert isinstance(run.engine, NCE) and run.engine.ratio == 4
    noise = run.engine.noise(data)
    assert float(noise.scale) == 3.0 and float(noise.loc) == 0.0
    loc, precision = learned_moments(run.compiled)
    assert torch.allclose(loc, data.mean(0), atol=0.06)
    assert torch.allclose(precision, torch.linalg.inv(torch.cov(data.T)), atol=0.12)
    metrics = run.evaluate(limit=200, samples=20)
    assert metrics["log_z"] == pytest.approx(gaussian_log_z(precision), abs=1e-3)
    assert metrics["log_z_learned"] == pytest.approx(metrics["log_z"], abs=0.05)
    assert metrics["nll_nats_learned_log_z"] - metrics["nll_nats"] == pytest.approx(
        metrics["log_z_learned"] - metrics["log_z"], abs=1e-6)


def test_bare_nce_uses_a_normal_around_the_data(tmp_path, quadratic_net):
    data = gaussian_data(256, seed=7)
    run = fit(tmp_path, "nce", data, steps=2, batch=128, lr=0.01)
    noise = run.engine.noise(data)
    assert torch.allclose(noise.loc, data.mean(0), atol=1e-5)
    assert torch.allclose(noise.scale, 2 * data.std(0), atol=1e-5)


def test_fce_trains_energy_and_flow_jointly(tmp_path, quadratic_net):
    data = gaussian_data(2000, seed=8)
    run = fit(tmp_path, "fce(noise = f)", data, steps=400, batch=500, lr=0.03, extra=FLOW)
    assert isinstance(run.engine, FCE)
    model = run.compiled
    loc, precision = learned_moments(model)
    assert torch.allclose(loc, data.mean(0), atol=0.08)
    assert torch.allclose(precision, torch.linalg.inv(torch.cov(data.T)), atol=0.1)
    metrics = run.evaluate(limit=200, samples=20)
    assert metrics["log_z_learned"] == pytest.approx(metrics["log_z"], abs=0.05)
    # The flow was trained too: its mean moved from N(0, I) towards the data's.
    with torch.no_grad():
        flow_mean = model.noise_flow.sample(4000, torch.Generator().manual_seed(0)).mean(0)
    assert torch.allclose(flow_mean, data.mean(0), atol=0.1)
    state = torch.load(run.path / "checkpoint.pt", weights_only=True)["trainable"]
    assert "flow_optimizer" in state and any(k.startswith("noise_flow.") for k in state["model"])
