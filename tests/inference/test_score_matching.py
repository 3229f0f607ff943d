"""exact_sm and ssm through the runtime (spec, data file, engine, loop) on Gaussian data:
with a quadratic energy both recover the data's mean and precision (the closed-form optimum;
for exact_sm on the full batch, exactly the sample moments)."""
from __future__ import annotations

import torch

import dgmdsl
from dgmdsl.inference.score_matching import ExactScoreMatching, SlicedScoreMatching
from tests.families.test_energy import gaussian_data, learned_moments, quadratic_net, spec, write_data  # noqa: F401


def fit(tmp_path, method: str, data: torch.Tensor, steps: int, batch: int, lr: float):
    model = dgmdsl.loads(spec(f"method = {method}, optimizer = adam(lr = {lr}), batch_size = {batch}")).models[0]
    return model.fit(data=write_data(tmp_path, data), max_steps=steps, out=tmp_path / "run", quiet=True,
                     device="cpu")


def test_exact_score_matching_recovers_the_sample_mean_and_precision(tmp_path, quadratic_net):
    data = gaussian_data(1000, seed=4)
    run = fit(tmp_path, "exact_sm", data, steps=300, batch=1000, lr=0.05)
    assert isinstance(run.engine, ExactScoreMatching)
    loc, precision = learned_moments(run.compiled)
    assert torch.allclose(loc, data.mean(0), atol=0.01)
    assert torch.allclose(precision, torch.linalg.inv(torch.cov(data.T)), atol=0.01)


def test_sliced_score_matching_recovers_mean_and_precision(tmp_path, quadratic_net):
    data = gaussian_data(1000, seed=5)
    run = fit(tmp_path, "ssm(projections = 4)", data, steps=300, batch=1000, lr=0.03)
    assert isinstance(run.engine, SlicedScoreMatching) and run.engine.projections == 4
    loc, precision = learned_moments(run.compiled)
    assert torch.allclose(loc, data.mean(0), atol=0.02)
    assert torch.allclose(precision, torch.linalg.inv(torch.cov(data.T)), atol=0.06)


def test_ssm_reads_a_positional_projection_count(tmp_path, quadratic_net):
    run = fit(tmp_path, "ssm(3)", gaussian_data(64), steps=1, batch=64, lr=0.01)
    assert run.engine.projections == 3
