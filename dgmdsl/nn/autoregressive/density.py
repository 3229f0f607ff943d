"""``AutoregressiveDensity``: a per-position family, a conditioner and an event shape."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Conditioner
from .families import PositionFamily

__all__ = ["AutoregressiveDensity"]


class AutoregressiveDensity(nn.Module):
    """Exact chain-rule density ``p(x) = prod_t p(x_{o_t} | x_{o_<t})`` over ``event_shape``.

    For a MADE ensemble (``masks > 1``), ``log_prob`` uses the current mask in
    training mode and the ensemble average in eval mode.
    """

    def __init__(self, family: PositionFamily, conditioner: Conditioner, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(int(size) for size in event_shape)
        self.dim = math.prod(self.event_shape)
        if conditioner.dim != self.dim:
            raise ValueError(
                f"shape mismatch: conditioner has {conditioner.dim} positions, event shape "
                f"{list(self.event_shape)} has {self.dim}"
            )
        if (conditioner.params_per_position, conditioner.in_features) != (
            family.params_per_position,
            family.input_features,
        ):
            raise ValueError(f"conditioner was not built for family {family!r}")
        self.family = family
        self.conditioner = conditioner

    @property
    def order(self) -> Tensor:
        """Visiting order (flat positions) of the current connectivity."""
        return self.conditioner.order_for()

    def next_mask(self) -> None:
        """Cycle to the next MADE connectivity (call once per training step; no-op otherwise)."""
        self.conditioner.next_mask()

    def _flatten(self, x: Tensor) -> tuple[Tensor, torch.Size]:
        event_rank = len(self.event_shape)
        if x.dim() < event_rank or tuple(x.shape[x.dim() - event_rank :]) != self.event_shape:
            raise ValueError(f"shape mismatch: expected [..., {list(self.event_shape)}], got {list(x.shape)}")
        batch_shape = x.shape[: x.dim() - event_rank]
        dtype = self.conditioner.reference_parameter().dtype
        return x.reshape(-1, self.dim).to(dtype), batch_shape

    def conditional_log_probs(self, x: Tensor, mask_index: int | None = None) -> Tensor:
        """``log p(x_i | x_<i)`` for every position -> ``[..., D]`` (positions in storage layout)."""
        values, batch_shape = self._flatten(x)
        params = self.conditioner(self.family.encode(values), mask_index)
        return self.family.log_prob(params, values).view(*batch_shape, self.dim)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` -> ``[...]`` for ``x`` shaped ``[..., *event_shape]``."""
        if self.conditioner.num_masks > 1 and not self.training:
            return self.log_prob_ensemble(x)
        return self.conditional_log_probs(x).sum(-1)

    def log_prob_ensemble(self, x: Tensor) -> Tensor:
        """Log of the mean of the k connectivities' likelihoods (log-mean-exp)."""
        count = self.conditioner.num_masks
        per_mask = torch.stack([self.conditional_log_probs(x, index).sum(-1) for index in range(count)])
        return torch.logsumexp(per_mask, dim=0) - math.log(count)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact sequential samples ``[n, *event_shape]``; ``generator`` must live on the model's device."""
        count = self.conditioner.num_masks
        if count == 1 or self.training:
            flat = self.conditioner.sample(self.family, n, generator)
        else:
            flat = self._sample_ensemble(n, generator)
        return flat.view(n, *self.event_shape)

    def _sample_ensemble(self, n: int, generator: torch.Generator | None) -> Tensor:
        # The eval-mode density is a uniform mixture of the k connectivities:
        # draw each sample's component, then sample each group from its model.
        ref = self.conditioner.reference_parameter()
        count = self.conditioner.num_masks
        component = torch.randint(count, (n,), generator=generator, device=ref.device)
        flat = torch.empty(n, self.dim, dtype=ref.dtype, device=ref.device)
        for index in range(count):
            members = (component == index).nonzero().squeeze(1)
            if members.numel():
                flat[members] = self.conditioner.sample(self.family, members.numel(), generator, index)
        return flat
