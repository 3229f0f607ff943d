"""Adversarial training over 2 gloo processes (both players in DistributedDataParallel)
equals one process with the same global batch and seed, and keeps the processes' copies
of generator and critic identical although each process sees different rows."""
import json
import os
from pathlib import Path

import pytest
import torch

import dgmdsl
from dgmdsl.inference.adversarial import Adversarial
from dgmdsl.runtime.api import compile_model, resolve_settings
from dgmdsl.runtime.distributed import Placement, shutdown, spawn
from dgmdsl.runtime.errors import RuntimeUserError

# wgan_gp: the gradient penalty (a double backward) runs under the critic's wrapper. A
# large step makes an unsynchronised gradient show far above the tolerance.
TINY = """model Tiny {
    data   x : real[2]
    latent z : real[2]
    net    G = MLP(hidden = [8])
    critic D = MLP(hidden = [8])
    z ~ Normal(0, 1)
    x = G(z)
    fit { method = adversarial(loss = wgan_gp, critic_steps = 2, penalty = 10),
          data = eight_gaussians(n = 256, seed = 0), batch_size = 32, optimizer = adam(lr = 1e-2) }
}
"""
STEPS = 8  # 256 rows / (2 critic batches of 32) = 4 steps an epoch: two epochs
# The runs draw the same noise and penalty weights and see the same global batches; they
# differ only in the order of floating-point reductions (the gradient all-reduce, the
# mean of two half-batch losses), which changes the last bits of each step.
TOL = 1e-5


def _fit_rank(out: str, states: str) -> None:
    """One process of the 2-process run; saves its own copy of the parameters."""
    torch.set_num_threads(1)
    try:
        run = dgmdsl.loads(TINY)["Tiny"].fit(max_steps=STEPS, out=out, quiet=True, device="cpu", metrics_every=2)
        torch.save(run.compiled.state_dict(), Path(states) / f"rank{os.environ['RANK']}.pt")
    finally:
        shutdown()


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adversarial_ddp")
    torch.manual_seed(0)  # as fit seeds it before building the model
    initial = compile_model(dgmdsl.loads(TINY)["Tiny"], torch.device("cpu")).state_dict()
    threads = torch.get_num_threads()  # the conftest's one-thread fixture is per test, this runs before
    torch.set_num_threads(1)
    try:
        one = dgmdsl.loads(TINY)["Tiny"].fit(max_steps=STEPS, out=tmp / "one", quiet=True, device="cpu",
                                             metrics_every=2)
    finally:
        torch.set_num_threads(threads)
    spawn(2, _fit_rank, str(tmp / "two"), str(tmp))
    ranks = [torch.load(tmp / f"rank{r}.pt") for r in (0, 1)]
    return {"initial": initial, "one": one.compiled.state_dict(), "ranks": ranks,
            "metrics_one": _metrics(tmp / "one"), "metrics_two": _metrics(tmp / "two")}


def test_two_processes_log_the_losses_of_one(runs):
    one, two = runs["metrics_one"], runs["metrics_two"]
    assert [m["step"] for m in one] == [m["step"] for m in two] == [2, 4, 6, 8]
    for name in ("loss", "critic_loss", "penalty", "estimate"):
        assert [m[name] for m in two] == pytest.approx([m[name] for m in one], rel=TOL, abs=TOL), name


def test_two_processes_end_with_the_parameters_of_one(runs):
    one, rank0 = runs["one"], runs["ranks"][0]
    assert any(k.startswith("critic.") for k in one) and any(not k.startswith("critic.") for k in one)
    for name, value in one.items():
        assert torch.allclose(rank0[name], value, rtol=TOL, atol=TOL), name


def test_both_players_stay_identical_across_processes(runs):
    # Each rank trained on its own half of every batch with its own half of the noise:
    # only synchronised gradients leave generator and critic bit-identical on both.
    initial, (rank0, rank1) = runs["initial"], runs["ranks"]
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    for player, owns in (("critic", lambda k: k.startswith("critic.")), ("generator", lambda k: "critic" not in k)):
        moved = max((rank0[k] - initial[k]).abs().max() for k in rank0 if owns(k))
        assert moved > 1e-2, f"the {player} did not train"


def test_batch_size_must_split_over_processes():
    model = dgmdsl.loads(TINY)["Tiny"]
    settings = resolve_settings(model, batch_size=33, placement=Placement(rank=0, world_size=2))
    engine = Adversarial(compile_model(model, torch.device("cpu")), settings)
    with pytest.raises(RuntimeUserError, match="batch size 33 does not split over 2 processes"):
        engine.fit({"x": torch.zeros(256, 2)}, None, None, torch.device("cpu"))
