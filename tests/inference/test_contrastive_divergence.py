"""Persistent contrastive divergence through the runtime: a quadratic energy on Gaussian data
recovers the data's moments (up to the short chains' bias), the replay buffer is engine state
that a checkpoint holds, and a resumed run continues bit for bit."""
from __future__ import annotations

import torch

import dgmdsl
from dgmdsl.inference.contrastive_divergence import ContrastiveDivergence
from tests.families.test_energy import gaussian_data, learned_moments, quadratic_net, spec, write_data  # noqa: F401


def cd_model(method: str, batch: int = 200, lr: float = 0.02):
    text = spec(f"method = {method}, optimizer = adam(lr = {lr}), batch_size = {batch}",
                "langevin(steps = 5, step_size = 0.01)")
    return dgmdsl.loads(text).models[0]


def test_cd_with_langevin_recovers_the_gaussian(tmp_path, quadratic_net):
    data = gaussian_data(2000, seed=9)
    # fresh = 0: restarts from wide noise leave a share of unrelaxed chains in every batch,
    # which short runs cannot remove and which would bias the learned variance low.
    method = "cd(sampler = langevin(steps = 20, step_size = 0.01), buffer = 400, fresh = 0, l2 = 0)"
    run = cd_model(method, lr=0.01).fit(data=write_data(tmp_path, data), max_steps=600, out=tmp_path / "run",
                               quiet=True, device="cpu")
    assert isinstance(run.engine, ContrastiveDivergence)
    assert run.engine.sampler == {"name": "langevin", "steps": 20, "step_size": 0.01}
    loc, precision = learned_moments(run.compiled)
    assert torch.allclose(loc, data.mean(0), atol=0.06)
    # CD's fixed point is where the (O(step)-biased, short-run) chains match the data.
    assert torch.allclose(torch.linalg.inv(precision), torch.cov(data.T), atol=0.08)


def test_mh_sampler_reports_its_acceptance_rate(tmp_path, quadratic_net):
    data = gaussian_data(400, seed=10)
    run = cd_model("cd(sampler = mh(steps = 5, proposal_scale = 0.5), buffer = 400)").fit(
        data=write_data(tmp_path, data), max_steps=6, out=tmp_path / "run", quiet=True, device="cpu")
    records = (run.path / "metrics.jsonl").read_text()
    assert "acceptance_rate" in records
    assert len(run.engine.buffer.data) == 400


def test_checkpoint_holds_the_buffer_and_resume_continues_bit_for_bit(tmp_path, quadratic_net):
    data = write_data(tmp_path, gaussian_data(400, seed=11))
    model = cd_model("cd(sampler = langevin(steps = 5, step_size = 0.01), buffer = 300)", batch=100)
    whole = model.fit(data=data, max_steps=8, out=tmp_path / "whole", quiet=True, device="cpu")
    model.fit(data=data, max_steps=4, out=tmp_path / "part", quiet=True, device="cpu")
    state = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["trainable"]
    assert state["buffer"].shape == (300, 2)
    resumed = model.fit(data=data, max_steps=8, out=tmp_path / "part", resume=True, quiet=True, device="cpu")
    assert not torch.equal(state["buffer"], resumed.engine.buffer.data)
    assert torch.equal(whole.engine.buffer.data, resumed.engine.buffer.data)
    for key, value in whole.compiled.state_dict().items():
        assert torch.equal(value, resumed.compiled.state_dict()[key]), key
    reopened = dgmdsl.open_run(tmp_path / "part", device="cpu")
    assert torch.equal(reopened.engine.buffer.data, whole.engine.buffer.data)


def test_buffer_zero_restarts_every_chain_from_noise(quadratic_net):
    from dgmdsl.inference.base import TrainSettings
    from dgmdsl.runtime.api import compile_model

    model = compile_model(cd_model("cd(buffer = 0)"), "cpu")
    engine = ContrastiveDivergence(model, TrainSettings(batch_size=32))
    assert engine.fresh == 1.0 and engine.capacity == 32
    assert engine.sampler == {"name": "langevin", "steps": 60, "step_size": 0.01}
