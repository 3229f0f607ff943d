"""What several numerics tests share: a correlated 2-D Gaussian, a quadratic energy family
that contains it, and a small MLP critic trained on samples of two distributions."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Distribution, MultivariateNormal

from dgmdsl.nn.mlp import MLP
from dgmdsl.numerics.adversarial import gradient_penalty

MU_STAR = torch.tensor([0.5, -1.0])
COV_STAR = torch.tensor([[1.0, 0.6], [0.6, 2.0]])


def gaussian_data(n: int, seed: int) -> torch.Tensor:
    """`n` draws of N(MU_STAR, COV_STAR) after seeding the global generator with `seed`."""
    torch.manual_seed(seed)
    return MultivariateNormal(MU_STAR, COV_STAR).sample((n,))


class QuadraticEnergy(nn.Module):
    """E(x) = 1/2 (x - mu)^T L L^T (x - mu), L lower triangular with a positive diagonal.

    Returns [B], or [B, 1] like a net with `keepdim=True`; starts at N(0, I).
    """

    def __init__(self, dim: int, keepdim: bool = False) -> None:
        super().__init__()
        self.keepdim = keepdim
        self.mu = nn.Parameter(torch.zeros(dim))
        self.lower = nn.Parameter(torch.zeros(dim, dim))

    def cholesky(self) -> torch.Tensor:
        return torch.tril(self.lower, -1) + torch.diag(self.lower.diagonal().exp())

    def precision(self) -> torch.Tensor:
        chol = self.cholesky()
        return chol @ chol.T

    def log_z(self) -> float:
        """Exact log of the integral of exp(-E): (d/2) log 2pi - log det L."""
        dim = self.mu.numel()
        return 0.5 * dim * math.log(2 * math.pi) - self.lower.diagonal().sum().item()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x - self.mu) @ self.cholesky()).pow(2).sum(1, keepdim=self.keepdim)


def train_critic(loss, real_dist: Distribution, fake_dist: Distribution, steps: int, seed: int,
                 penalty: float = 0.0, lr: float = 1e-2) -> MLP:
    """A 1-D MLP critic fitted by Adam to `loss.critic_loss` on fresh batches of 1024 per side.

    `penalty` > 0 adds that weight times the gradient penalty. Seeds the global generator.
    """
    torch.manual_seed(seed)
    critic = MLP(1, 1, hidden=(64, 64), act="tanh")
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    # Annealing the step size removes most of the SGD noise from the final estimate.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        real, fake = real_dist.sample((1024, 1)), fake_dist.sample((1024, 1))
        objective = loss.critic_loss(critic(real), critic(fake))
        if penalty:
            objective = objective + penalty * gradient_penalty(critic, real, fake)
        opt.zero_grad()
        objective.backward()
        opt.step()
        schedule.step()
    return critic
