"""NADE (Larochelle & Murray, 2011): tied input weights make conditionals incremental.

With h_t = act(c + sum_{s<t} W_s x_s), the pre-activation of step t+1 is that
of step t plus W_t x_t. The density evaluates this recurrence for all steps at
once as an exclusive cumulative sum; sampling runs it step by step in O(D*H).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Activation, Conditioner, resolve_activation
from .families import PositionFamily
from .orders import is_identity, order_ranks

__all__ = ["NADE"]


class NADE(Conditioner):
    """Weights are indexed by step in the order: ``W[D, F, H]``, ``c[H]``, ``V[D, P, H]``, ``b[D, P]``."""

    def __init__(
        self,
        dim: int,
        params_per_position: int,
        in_features: int,
        order: Tensor,
        hidden: int = 500,
        act: str | Activation = "sigmoid",
    ) -> None:
        super().__init__(dim, params_per_position, in_features, order)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"NADE needs an integer hidden >= 1, got {hidden!r}")
        self.hidden = hidden
        self.act = resolve_activation(act)
        self.register_buffer("ranks", order_ranks(self.order), persistent=False)
        self._identity = is_identity(self.order)
        in_bound = 1.0 / math.sqrt(dim * in_features)
        out_bound = 1.0 / math.sqrt(hidden)
        self.W = nn.Parameter(torch.empty(dim, in_features, hidden).uniform_(-in_bound, in_bound))
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.empty(dim, params_per_position, hidden).uniform_(-out_bound, out_bound))
        self.b = nn.Parameter(torch.zeros(dim, params_per_position))

    def forward(self, features: Tensor, mask_index: int | None = None) -> Tensor:
        visited = features if self._identity else features.index_select(1, self.order)
        if self.in_features == 1:
            steps = visited * self.W[:, 0]  # [B, D, H]: W_t x_t for every step
        else:
            steps = torch.einsum("bdf,dfh->bdh", visited, self.W)
        # Exclusive cumulative sum: step t sees the contributions of steps < t.
        pre_activation = steps.cumsum(1).sub_(steps).add_(self.c)
        hidden = self.act(pre_activation)
        out = torch.einsum("bdh,dph->bdp", hidden, self.V) + self.b
        return out if self._identity else out.index_select(1, self.ranks)

    @torch.no_grad()
    def sample(
        self,
        family: PositionFamily,
        n: int,
        generator: torch.Generator | None = None,
        mask_index: int | None = None,
    ) -> Tensor:
        """Incremental sampling: a_{t+1} = a_t + W_t x_t, O(D*H) per sample."""
        values = torch.zeros(n, self.dim, dtype=self.c.dtype, device=self.c.device)
        pre_activation = self.c.expand(n, -1).clone()
        for step, position in enumerate(self.order.tolist()):
            params = self._step_params(pre_activation, step)
            drawn = family.sample(params, generator)
            values[:, position] = drawn
            pre_activation.addmm_(family.encode(drawn.unsqueeze(1))[:, 0], self.W[step])
        return values

    @torch.no_grad()
    def sample_naive(self, family: PositionFamily, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Reference sampler recomputing every hidden layer from scratch: O(D^2*H) per sample."""
        values = torch.zeros(n, self.dim, dtype=self.c.dtype, device=self.c.device)
        # [n, D, F] indexed by step; cloned because encode may return a view of values.
        visited_features = family.encode(values).clone()
        for step, position in enumerate(self.order.tolist()):
            history = visited_features[:, :step].reshape(n, -1)
            pre_activation = self.c + history @ self.W[:step].reshape(-1, self.hidden)
            drawn = family.sample(self._step_params(pre_activation, step), generator)
            values[:, position] = drawn
            visited_features[:, step] = family.encode(drawn.unsqueeze(1))[:, 0]
        return values

    def _step_params(self, pre_activation: Tensor, step: int) -> Tensor:
        return torch.addmm(self.b[step], self.act(pre_activation), self.V[step].t())
