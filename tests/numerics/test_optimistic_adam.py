"""OptimisticAdam: the explicit recursion, the bilinear game it is for, and exact resume."""
from __future__ import annotations

import math

import pytest
import torch

from dgmdsl.numerics.optimistic_adam import OptimisticAdam


def _reference_steps(theta: float, grads: list[float], lr: float, beta1: float, beta2: float, eps: float,
                     weight_decay: float) -> list[float]:
    """The module docstring's recursion written out in float64 for one scalar parameter."""
    m = v = last = 0.0
    path = []
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        u = lr * (m / (1 - beta1 ** t)) / (math.sqrt(v / (1 - beta2 ** t)) + eps)
        theta = theta - 2 * u + last
        last = u
        path.append(theta)
    return path


@pytest.mark.parametrize("beta1, weight_decay", [(0.0, 0.0), (0.5, 0.0), (0.9, 0.1)])
def test_steps_follow_the_recursion(beta1, weight_decay):
    grads = [0.3, -1.2, 0.7, 2.0, -0.1]
    p = torch.nn.Parameter(torch.tensor([0.8], dtype=torch.float64))
    opt = OptimisticAdam([p], lr=0.05, betas=(beta1, 0.9), weight_decay=weight_decay)
    expected = _reference_steps(0.8, grads, 0.05, beta1, 0.9, 1e-8, weight_decay)
    for g, want in zip(grads, expected):
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        assert float(p.detach()) == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_first_step_is_twice_adams():
    a = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    b = torch.nn.Parameter(a.detach().clone())
    adam, optimistic = torch.optim.Adam([a], lr=0.1), OptimisticAdam([b], lr=0.1)
    for param, opt in ((a, adam), (b, optimistic)):
        param.grad = torch.tensor([0.5, -3.0])
        opt.step()
    torch.testing.assert_close(b - torch.tensor([1.0, -2.0]), 2 * (a - torch.tensor([1.0, -2.0])))


def _bilinear_game(optimizer_class, steps: int = 3000, lr: float = 0.01) -> float:
    """min_x max_y x*y from (1, 1), simultaneous steps: the largest distance to the
    equilibrium (0, 0) over the last 500 steps."""
    x = torch.nn.Parameter(torch.tensor([1.0]))
    y = torch.nn.Parameter(torch.tensor([1.0]))
    opt_x, opt_y = (optimizer_class([w], lr=lr, betas=(0.0, 0.9)) for w in (x, y))
    radius = []
    for _ in range(steps):
        x.grad, y.grad = y.detach().clone(), -x.detach().clone()  # d(xy)/dx, -d(xy)/dy
        opt_x.step()
        opt_y.step()
        radius.append(float(torch.hypot(x.detach(), y.detach())))
    return max(radius[-500:])


def test_bilinear_game_spirals_in_where_adam_orbits():
    adam, optimistic = _bilinear_game(torch.optim.Adam), _bilinear_game(OptimisticAdam)
    assert adam > 0.08  # Adam's normalised steps keep circling at a radius of order lr * 10
    assert optimistic < 0.03
    assert optimistic < adam / 3


def test_state_dict_resumes_exactly():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    data = torch.randn(10, 16, 3)

    def train(model, opt, batches):
        for xb in batches:
            opt.zero_grad()
            model(xb).pow(2).mean().backward()
            opt.step()

    straight = torch.nn.Linear(3, 2)
    straight.load_state_dict(net.state_dict())
    train(straight, OptimisticAdam(straight.parameters(), lr=0.01, betas=(0.0, 0.9)), data)

    first = torch.nn.Linear(3, 2)
    first.load_state_dict(net.state_dict())
    opt = OptimisticAdam(first.parameters(), lr=0.01, betas=(0.0, 0.9))
    train(first, opt, data[:5])
    second = torch.nn.Linear(3, 2)
    second.load_state_dict(first.state_dict())
    resumed = OptimisticAdam(second.parameters(), lr=0.01, betas=(0.0, 0.9))
    resumed.load_state_dict(opt.state_dict())
    train(second, resumed, data[5:])
    for a, b in zip(straight.parameters(), second.parameters()):
        assert torch.equal(a, b)


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="betas"):
        OptimisticAdam([torch.nn.Parameter(torch.zeros(1))], betas=(1.0, 0.9))
