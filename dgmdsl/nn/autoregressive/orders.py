"""Orders in which the chain rule visits positions, and the dependencies they allow.

An order is a LongTensor ``order[D]`` listing flat positions in visiting
sequence; ``ranks = order_ranks(order)`` is its inverse (the step at which each
position is visited).
"""
from __future__ import annotations

import operator
from typing import Sequence, Union

import torch
from torch import Tensor

__all__ = [
    "OrderSpec",
    "resolve_order",
    "order_ranks",
    "is_identity",
    "pixel_raster_order",
    "check_context",
    "allowed_dependencies",
]

OrderSpec = Union[str, tuple, Sequence[int], Tensor]


def resolve_order(order: OrderSpec, dim: int) -> Tensor:
    """``"raster"``, ``"reverse"``, ``("random", seed)`` or a permutation -> ``order[D]``."""
    if isinstance(order, str):
        if order == "raster":
            return torch.arange(dim)
        if order == "reverse":
            return torch.arange(dim).flip(0)
        raise ValueError(
            f"unknown order {order!r}; use 'raster', 'reverse', ('random', seed) or a permutation list"
        )
    if isinstance(order, tuple) and len(order) == 2 and order[0] == "random":
        seed = order[1]
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"random order needs an integer seed, got {seed!r}")
        return torch.randperm(dim, generator=torch.Generator().manual_seed(seed))
    return _validated_permutation(order, dim)


def _validated_permutation(order: Sequence[int] | Tensor, dim: int) -> Tensor:
    entries = order.tolist() if isinstance(order, Tensor) else list(order)
    try:
        entries = [_as_index(entry) for entry in entries]
    except TypeError:
        raise ValueError(f"order must list integer positions, got {list(order)!r}") from None
    if len(entries) != dim:
        raise ValueError(f"order has {len(entries)} entries but the variable has {dim} positions")
    outside = [entry for entry in entries if not 0 <= entry < dim]
    if outside:
        raise ValueError(f"order entry {outside[0]} is outside the positions 0..{dim - 1}")
    if len(set(entries)) != dim:
        repeated = sorted({entry for entry in entries if entries.count(entry) > 1})
        missing = sorted(set(range(dim)) - set(entries))
        raise ValueError(f"order is not a permutation: repeats {repeated} and omits {missing}")
    return torch.tensor(entries, dtype=torch.long)


def _as_index(entry: object) -> int:
    if isinstance(entry, bool):
        raise TypeError("bool is not a position")
    return operator.index(entry)


def order_ranks(order: Tensor) -> Tensor:
    """Inverse permutation: ``ranks[order[t]] = t``."""
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel(), device=order.device)
    return ranks


def is_identity(order: Tensor) -> bool:
    return bool(torch.equal(order.cpu(), torch.arange(order.numel())))


def pixel_raster_order(channels: int, height: int, width: int) -> Tensor:
    """Flat positions of a ``[C, H, W]`` variable visited pixel by pixel, channels inside a pixel."""
    flat = torch.arange(channels * height * width).view(channels, height, width)
    return flat.permute(1, 2, 0).reshape(-1)


def check_context(context: int | None) -> int | None:
    """``None`` (full history) or a window size ``k >= 0``."""
    if context is None:
        return None
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ValueError(f"context must be None or an integer >= 0, got {context!r}")
    return context


def allowed_dependencies(order: Tensor, context: int | None = None) -> Tensor:
    """Boolean ``[D, D]``: entry (i, j) is True when position i may read position j."""
    ranks = order_ranks(order)
    lag = ranks.unsqueeze(1) - ranks.unsqueeze(0)
    allowed = lag > 0
    if context is not None:
        allowed &= lag <= context
    return allowed
