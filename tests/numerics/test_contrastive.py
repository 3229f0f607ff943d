"""NCE and FCE recover the normaliser of a Gaussian energy."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

from dgmdsl.numerics.contrastive import fce_loss, nce_loss
from tests.numerics.helpers import COV_STAR, MU_STAR, QuadraticEnergy, gaussian_data

TRUE_LOG_Z = math.log(2 * math.pi) + 0.5 * math.log(float(torch.det(COV_STAR)))  # d = 2


class AffineFlow(nn.Module):
    """x = shift + exp(log_scale) * z, z ~ N(0, I): a diagonal affine flow with exact log q."""

    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.full((dim,), math.log(scale)))

    def sample(self, n: int) -> torch.Tensor:
        return self.shift + self.log_scale.exp() * torch.randn(n, self.shift.numel())

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.shift) * torch.exp(-self.log_scale)
        log_base = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(1)
        return log_base - self.log_scale.sum()  # minus log |det dx/dz|


def test_nce_recovers_log_z():
    x = gaussian_data(4000, seed=0)
    noise = Normal(torch.tensor([0.5, -1.0]), torch.tensor([2.0, 2.5]))
    model, log_z = QuadraticEnergy(2), nn.Parameter(torch.zeros(()))
    steps = 500
    opt = torch.optim.Adam([*model.parameters(), log_z], lr=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    generator = torch.Generator().manual_seed(10)
    for _ in range(steps):
        opt.zero_grad()
        loss, _ = nce_loss(model, log_z, x, noise, noise_ratio=4, generator=generator)
        loss.backward()
        opt.step()
        schedule.step()
    # Self-normalisation at the optimum, and the analytic value since the family is right.
    assert abs(log_z.item() - model.log_z()) < 0.05
    assert abs(log_z.item() - TRUE_LOG_Z) < 0.05


def test_nce_noise_shapes_reproducibility_and_global_rng():
    x = gaussian_data(64, seed=1)
    model, log_z = QuadraticEnergy(2), torch.tensor(1.0)
    factorised = Normal(torch.zeros(2), 3.0)
    dists = [Normal(torch.tensor(0.0), 3.0), factorised, Independent(factorised, 1)]
    global_state = torch.get_rng_state()
    results = [nce_loss(model, log_z, x, d, noise_ratio=2,
                        generator=torch.Generator().manual_seed(3)) for d in dists]
    assert torch.equal(torch.get_rng_state(), global_state)
    for loss, accuracy in results[1:]:
        torch.testing.assert_close(loss, results[0][0])
        torch.testing.assert_close(accuracy, results[0][1])
    assert 0.0 <= float(results[0][1]) <= 1.0
    with pytest.raises(ValueError):
        nce_loss(model, log_z, x, Normal(torch.zeros(3), 1.0))
    with pytest.raises(ValueError):
        nce_loss(model, log_z, x, factorised, noise_ratio=0)


def test_nce_loss_value_for_known_densities():
    # Model = noise density exactly, ratio 1: G = 0 everywhere and the loss is 2 log 2.
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(4))
    noise = Independent(Normal(torch.zeros(2), 1.0), 1)
    log_z = torch.tensor(math.log(2 * math.pi))

    def energy(v):
        return 0.5 * v.pow(2).sum(1, keepdim=True)

    loss, _ = nce_loss(energy, log_z, x, noise, generator=torch.Generator().manual_seed(5))
    assert loss.item() == pytest.approx(2 * math.log(2), abs=1e-5)
    # A tiny log_z makes every point look like data: only the data (1 in 4) is right.
    _, accuracy = nce_loss(energy, torch.tensor(-50.0), x, noise, noise_ratio=3,
                           generator=torch.Generator().manual_seed(5))
    assert float(accuracy) == 0.25


def test_fce_gradients_split_the_shared_value_between_players():
    x = gaussian_data(32, seed=2)
    model, log_z, flow = QuadraticEnergy(2), nn.Parameter(torch.tensor(0.5)), AffineFlow(2, 1.5)
    energy_params, flow_params = [*model.parameters(), log_z], [*flow.parameters()]
    torch.manual_seed(6)
    energy_loss, flow_loss, _ = fce_loss(model, log_z, x, flow.log_prob, flow.sample)
    assert flow_loss.item() == pytest.approx(-energy_loss.item(), rel=1e-6)
    grads_energy = torch.autograd.grad(energy_loss, energy_params + flow_params, allow_unused=True)
    assert all(g is None for g in grads_energy[len(energy_params):])  # the flow is fixed here
    grads_flow = torch.autograd.grad(flow_loss, flow_params)

    # Reference: the classification loss with every dependency live.
    torch.manual_seed(6)
    x_flow = flow.sample(32)
    logit_data = -model(x) - log_z - flow.log_prob(x)
    logit_flow = -model(x_flow) - log_z - flow.log_prob(x_flow)
    reference = (nn.functional.softplus(-logit_data).mean()
                 + nn.functional.softplus(logit_flow).mean())
    ref_energy = torch.autograd.grad(reference, energy_params, retain_graph=True)
    ref_flow = torch.autograd.grad(-reference, flow_params)
    for got, want in zip(grads_energy[:len(energy_params)] + grads_flow, ref_energy + ref_flow):
        torch.testing.assert_close(got, want)


def test_fce_moves_log_z_toward_truth():
    x = gaussian_data(2000, seed=3)
    model, log_z, flow = QuadraticEnergy(2), nn.Parameter(torch.zeros(())), AffineFlow(2, 2.0)
    energy_opt = torch.optim.Adam([*model.parameters(), log_z], lr=0.05)
    flow_opt = torch.optim.Adam(flow.parameters(), lr=0.01)
    assert abs(log_z.item() - TRUE_LOG_Z) > 1.5
    for _ in range(300):
        energy_loss, flow_loss, _ = fce_loss(model, log_z, x, flow.log_prob, flow.sample)
        flow_opt.zero_grad()
        flow_loss.backward(retain_graph=True)
        energy_opt.zero_grad()  # drop what flow_loss left on the energy's parameters
        energy_loss.backward()
        energy_opt.step()
        flow_opt.step()
    assert abs(log_z.item() - TRUE_LOG_Z) < 0.2
    assert abs(log_z.item() - model.log_z()) < 0.1
    # The flow is pulled toward the data (its marginal means and standard deviations).
    assert (flow.shift - MU_STAR).abs().max().item() < 0.25
    assert (flow.log_scale.exp() - COV_STAR.diagonal().sqrt()).abs().max().item() < 0.25
