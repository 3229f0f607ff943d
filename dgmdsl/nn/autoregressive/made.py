"""MADE (Germain et al., 2015): an MLP whose weight masks enforce the chain rule.

Each unit carries an interval [lo, hi] of input degrees (degree = 1 + step in
the order) it may depend on. An input has [d, d]; a unit reads a unit of the
previous layer only if that unit's interval lies inside its own; output d
reads hidden units with hi < d. Without a context window lo = 1 everywhere and
this is exactly MADE's "degree(in) <= degree(out)" rule. With ``context = k``
hidden intervals are kept within width k and output d additionally needs
lo >= d - k, so the window is enforced exactly at any depth.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Activation, Conditioner, resolve_activation

__all__ = ["MADE", "made_masks"]

Intervals = tuple[Tensor, Tensor]  # (lo, hi), each [units]


def _unit_degrees(order: Tensor, units_per_position: int) -> Tensor:
    """Degree (1 + step in the order) of each unit, units laid out as (position, unit)."""
    degrees = torch.empty_like(order)
    degrees[order] = torch.arange(1, order.numel() + 1)
    return degrees.repeat_interleave(units_per_position)


def _hidden_intervals(
    size: int, lowest_hi: int, dim: int, context: int | None, generator: torch.Generator
) -> Intervals:
    # hi ~ U{lowest_hi .. D-1} as in the paper, so no unit is left unconnected below.
    hi = torch.randint(lowest_hi, max(dim, lowest_hi + 1), (size,), generator=generator)
    if context is None:
        return torch.ones_like(hi), hi
    lo_min = (hi - context + 1).clamp(min=1)
    span = hi - lo_min + 1  # 0 when context = 0: an empty interval, a constant unit
    lo = lo_min + (torch.rand(size, generator=generator) * span).long()
    return lo, hi


def _hidden_mask(src: Intervals, dst: Intervals) -> Tensor:
    """``[dst, src]``: dst reads src when src's interval lies inside dst's."""
    (src_lo, src_hi), (dst_lo, dst_hi) = src, dst
    return (dst_lo.unsqueeze(1) <= src_lo.unsqueeze(0)) & (src_hi.unsqueeze(0) <= dst_hi.unsqueeze(1))


def _output_mask(src: Intervals, order: Tensor, params_per_position: int, context: int | None) -> Tensor:
    degrees = _unit_degrees(order, params_per_position)
    src_lo, src_hi = src
    mask = src_hi.unsqueeze(0) < degrees.unsqueeze(1)
    if context is not None:
        mask &= src_lo.unsqueeze(0) >= degrees.unsqueeze(1) - context
    return mask


def made_masks(
    order: Tensor,
    in_features: int,
    params_per_position: int,
    hidden: Sequence[int],
    context: int | None,
    generator: torch.Generator,
) -> list[Tensor]:
    """Boolean masks ``[out, in]`` for each layer of one MADE connectivity."""
    dim = order.numel()
    input_degrees = _unit_degrees(order, in_features)
    previous = (input_degrees, input_degrees)
    masks = []
    for size in hidden:
        current = _hidden_intervals(size, int(previous[1].min()), dim, context, generator)
        masks.append(_hidden_mask(previous, current))
        previous = current
    masks.append(_output_mask(previous, order, params_per_position, context))
    return masks


class MADE(Conditioner):
    """Masked MLP conditioner; ``masks = k > 1`` gives an order-agnostic ensemble.

    Connectivity 0 uses the given order; connectivities 1..k-1 each draw a fresh
    random order and hidden degrees (seeded by ``seed``). ``mask_index`` picks
    the one used by default; ``next_mask()`` cycles through them in training.
    """

    def __init__(
        self,
        dim: int,
        params_per_position: int,
        in_features: int,
        order: Tensor,
        hidden: Sequence[int] = (500,),
        masks: int = 1,
        context: int | None = None,
        act: str | Activation = "relu",
        seed: int = 0,
    ) -> None:
        super().__init__(dim, params_per_position, in_features, order)
        if isinstance(masks, bool) or not isinstance(masks, int) or masks < 1:
            raise ValueError(f"MADE needs an integer masks >= 1, got {masks!r}")
        self.hidden = [_check_width(width) for width in hidden]
        self.num_masks = masks
        self.context = context
        self.act = resolve_activation(act)
        self.mask_index = 0
        sizes = [dim * in_features, *self.hidden, dim * params_per_position]
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self._build_connectivities(seed)

    def _build_connectivities(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        orders = [self.order]
        orders += [torch.randperm(self.dim, generator=generator) for _ in range(self.num_masks - 1)]
        per_set = [
            made_masks(order, self.in_features, self.params_per_position, self.hidden, self.context, generator)
            for order in orders
        ]
        self.register_buffer("orders", torch.stack(orders), persistent=False)
        for layer in range(len(self.layers)):
            stacked = torch.stack([masks[layer] for masks in per_set])  # [k, out, in]
            self.register_buffer(f"mask{layer}", stacked.to(torch.get_default_dtype()), persistent=False)

    def _index(self, mask_index: int | None) -> int:
        index = self.mask_index if mask_index is None else mask_index
        if not 0 <= index < self.num_masks:
            raise ValueError(f"mask_index {index} is outside 0..{self.num_masks - 1}")
        return index

    def order_for(self, mask_index: int | None = None) -> Tensor:
        return self.orders[self._index(mask_index)]

    def next_mask(self) -> None:
        self.mask_index = (self.mask_index + 1) % self.num_masks

    def forward(self, features: Tensor, mask_index: int | None = None) -> Tensor:
        index = self._index(mask_index)
        batch = features.shape[0]
        h = features.reshape(batch, -1)
        last = len(self.layers) - 1
        for number, layer in enumerate(self.layers):
            mask = getattr(self, f"mask{number}")[index]
            h = F.linear(h, layer.weight * mask, layer.bias)
            if number < last:
                h = self.act(h)
        return h.view(batch, self.dim, self.params_per_position)


def _check_width(width: int) -> int:
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"MADE hidden sizes must be integers >= 1, got {width!r}")
    return width
