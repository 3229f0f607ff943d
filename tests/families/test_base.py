"""What every family shares (families/base.py): `seeded` sampling."""
import pytest
import torch

import dgmdsl
from dgmdsl.families import base
from dgmdsl.families.base import seeded
from dgmdsl.runtime.api import compile_model

COIN = """model Coins {
    data x : binary[20]
    x ~ Bernoulli(0.3)
}
"""


def _draw(seed):
    with seeded(seed):
        return torch.rand(5)


def test_seeded_block_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    assert torch.equal(_draw(7), _draw(7))
    assert not torch.equal(_draw(7), _draw(8))
    assert torch.equal(torch.get_rng_state(), before)
    unseeded = _draw(None)  # no seed: draws from the global stream, as torch.rand would
    torch.set_rng_state(before)
    assert torch.equal(unseeded, torch.rand(5))


def test_seeded_model_samples_repeat_and_leave_the_global_rng_alone():
    model = compile_model(dgmdsl.loads(COIN)["Coins"])
    before = torch.get_rng_state()
    first = model.sample(50, seed=3)["x"]
    assert torch.equal(first, model.sample(50, seed=3)["x"])
    assert not torch.equal(first, model.sample(50, seed=4)["x"])
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("cuda_started", [False, True])
def test_seeded_forks_and_seeds_every_cuda_device_once_cuda_is_in_use(monkeypatch, cuda_started):
    forked, seeded_all = [], []
    real_fork = torch.random.fork_rng

    def fork_rng(devices, device_type):
        forked.append((list(devices), device_type))
        return real_fork(devices=[])  # no GPU here: fork the CPU only

    monkeypatch.setattr(base.torch.random, "fork_rng", fork_rng)
    monkeypatch.setattr(base.torch.cuda, "is_initialized", lambda: cuda_started)
    monkeypatch.setattr(base.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(base.torch.cuda, "manual_seed_all", seeded_all.append)
    with seeded(5):
        pass
    assert forked == [([0, 1] if cuda_started else [], "cuda")]
    assert seeded_all == ([5] if cuda_started else [])  # before CUDA starts, no seed is queued for it
