"""FVSBN-style conditioners: one (multi-output) logistic regression per position."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Conditioner
from .orders import allowed_dependencies, is_identity, order_ranks

__all__ = ["LinearConditioner", "BandedLinearConditioner"]


class LinearConditioner(Conditioner):
    """Dense masked linear map: position i reads every position before it (or a window).

    The weight is ``[D*P, D*F]`` times a fixed mask that is strictly lower
    triangular in the order (banded when ``context`` is set).
    """

    def __init__(
        self, dim: int, params_per_position: int, in_features: int, order: Tensor, context: int | None = None
    ) -> None:
        super().__init__(dim, params_per_position, in_features, order)
        self.context = context
        allowed = allowed_dependencies(self.order, context)
        mask = allowed.repeat_interleave(params_per_position, 0).repeat_interleave(in_features, 1)
        self.register_buffer("mask", mask.to(torch.get_default_dtype()), persistent=False)
        self.weight = nn.Parameter(torch.empty(dim * params_per_position, dim * in_features))
        self.bias = nn.Parameter(torch.empty(dim * params_per_position))
        bound = 1.0 / math.sqrt(dim * in_features)  # nn.Linear's default scale
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, features: Tensor, mask_index: int | None = None) -> Tensor:
        batch = features.shape[0]
        out = F.linear(features.reshape(batch, -1), self.weight * self.mask, self.bias)
        return out.view(batch, self.dim, self.params_per_position)

    def position_params(self, features: Tensor, position: int, mask_index: int | None = None) -> Tensor:
        # Only this position's rows: O(D) per step instead of a full O(D^2) pass.
        rows = slice(position * self.params_per_position, (position + 1) * self.params_per_position)
        weight = self.weight[rows] * self.mask[rows]
        return F.linear(features.reshape(features.shape[0], -1), weight, self.bias[rows])


class BandedLinearConditioner(Conditioner):
    """Linear conditioner with a window of ``context = k`` previous positions.

    Stores only ``[D, P, F, k]`` weights and evaluates with one unfold + einsum,
    O(D*k) per example instead of the dense O(D^2). ``context = 0`` leaves
    only the per-position biases: every conditional is a learned marginal.
    """

    def __init__(self, dim: int, params_per_position: int, in_features: int, order: Tensor, context: int) -> None:
        super().__init__(dim, params_per_position, in_features, order)
        self.context = context
        self.register_buffer("ranks", order_ranks(self.order), persistent=False)
        self._identity = is_identity(self.order)
        # weight[t, :, :, j] multiplies the position visited k - j steps before step t.
        self.weight = nn.Parameter(torch.empty(dim, params_per_position, in_features, context))
        self.bias = nn.Parameter(torch.empty(dim, params_per_position))
        bound = 1.0 / math.sqrt(max(context * in_features, 1))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, features: Tensor, mask_index: int | None = None) -> Tensor:
        batch = features.shape[0]
        if self.context == 0:
            return self.bias.expand(batch, -1, -1)
        visited = features if self._identity else features.index_select(1, self.order)
        # Left-pad k zero steps so the window before step t is padded[t : t + k].
        padded = F.pad(visited, (0, 0, self.context, 0))
        windows = padded.unfold(1, self.context, 1)[:, : self.dim]  # [B, D, F, k]
        out = torch.einsum("bdfk,dpfk->bdp", windows, self.weight) + self.bias
        return out if self._identity else out.index_select(1, self.ranks)
