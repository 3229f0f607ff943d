"""The conditioner interface shared by Linear, NADE, MADE and PixelCNN."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .families import PositionFamily

__all__ = ["Conditioner", "Activation", "resolve_activation"]

Activation = Callable[[Tensor], Tensor]

_ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": torch.sigmoid,
    "relu": F.relu,
    "tanh": torch.tanh,
    "elu": F.elu,
    "gelu": F.gelu,
}


def resolve_activation(act: str | Activation) -> Activation:
    """An activation given by name (``"sigmoid"``, ``"relu"``, ...) or as a callable."""
    if callable(act):
        return act
    if act not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[act]


class Conditioner(nn.Module):
    """Maps encoded values ``[B, D, F]`` to per-position parameters ``[B, D, P]``.

    Positions stay in their natural (storage) layout; the order is encoded in
    the masks, so output position i depends only on inputs visited before i.
    Orders and masks are rebuilt deterministically from the constructor
    arguments, so they are non-persistent buffers and checkpoints hold weights only.
    """

    num_masks = 1

    def __init__(self, dim: int, params_per_position: int, in_features: int, order: Tensor) -> None:
        super().__init__()
        if order.numel() != dim:
            raise ValueError(f"order has {order.numel()} entries but the variable has {dim} positions")
        self.dim = dim
        self.params_per_position = params_per_position
        self.in_features = in_features
        self.register_buffer("order", order.clone().long(), persistent=False)

    def order_for(self, mask_index: int | None = None) -> Tensor:
        """The visiting order of the connectivity ``mask_index`` (one order unless an ensemble)."""
        return self.order

    def next_mask(self) -> None:
        """Advance to the next connectivity (no-op for single-mask conditioners)."""

    def forward(self, features: Tensor, mask_index: int | None = None) -> Tensor:
        raise NotImplementedError

    def position_params(self, features: Tensor, position: int, mask_index: int | None = None) -> Tensor:
        """Parameters ``[B, P]`` of one position given (partially filled) features."""
        return self(features, mask_index)[:, position]

    def reference_parameter(self) -> Tensor:
        """Any parameter: it tells the module's dtype and device."""
        return next(self.parameters())

    @torch.no_grad()
    def sample(
        self,
        family: PositionFamily,
        n: int,
        generator: torch.Generator | None = None,
        mask_index: int | None = None,
    ) -> Tensor:
        """Exact ancestral sampling, one position at a time in the order -> ``[n, D]``."""
        ref = self.reference_parameter()
        values = torch.zeros(n, self.dim, dtype=ref.dtype, device=ref.device)
        # Unvisited positions hold encode(0); the masks guarantee nobody reads them.
        # Cloned because encode may return a view of values.
        features = family.encode(values).clone()
        for position in self.order_for(mask_index).tolist():
            params = self.position_params(features, position, mask_index)
            drawn = family.sample(params, generator)
            values[:, position] = drawn
            features[:, position] = family.encode(drawn.unsqueeze(1))[:, 0]
        return values
