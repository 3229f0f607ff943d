"""One contract, every family backend: compile, fit a few steps, checkpoint round trip,
sample, evaluate. A family is tested by registering it and adding
tests/contract_specs/<family>.dgm (a tiny model of that family with small data)."""
from pathlib import Path

import numpy as np
import pytest
import torch

import dgmdsl
from dgmdsl.families import FAMILIES, family_available

SPECS = Path(__file__).parent / "contract_specs"



def contract_model(family):
    path = SPECS / f"{family}.dgm"
    if not path.exists():
        pytest.skip(f"no contract spec for {family}")
    if not family_available(family):
        pytest.skip(f"the {family} backend is not built yet (open issue)")
    program = dgmdsl.load(path)
    model = program.models[0]
    assert model.checked.family == family
    return model


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_contract(family, tmp_path, shared_data_dir):
    model = contract_model(family)
    run = model.fit(max_steps=3, out=tmp_path / "run", quiet=True, device="cpu")
    assert run.fit_result.get("steps", 3) <= 3
    samples = run.sample(4, seed=1)
    again = run.sample(4, seed=1)
    assert samples and all(np.array_equal(samples[k], again[k]) for k in samples)
    for values in samples.values():
        assert len(values) == 4 and np.isfinite(values.astype(np.float64)).all()
    metrics = run.evaluate(limit=32, batch_size=16)
    assert metrics["examples"] == 32
    reopened = dgmdsl.open_run(tmp_path / "run", device="cpu")
    before = run.compiled.state_dict()
    after = reopened.compiled.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k].cpu(), after[k].cpu()) for k in before)
    if run.compiled.has_density:
        batch = {k: torch.from_numpy(v[:8]) for k, v in run.load("heldout").items()}
        with torch.no_grad():
            assert torch.allclose(run.compiled.log_prob(batch), reopened.compiled.log_prob(batch))
