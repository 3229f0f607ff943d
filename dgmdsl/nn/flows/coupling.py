"""Coupling layers (NICE, RealNVP, neural spline) with position-set masks.

Pyro's couplings condition on the first `split_dim` coordinates. The mask rule
needs arbitrary position sets, so `MaskedCoupling` gathers the kept positions
to the front, runs a kept-first coupling, and scatters the result back.
"""

from __future__ import annotations

from typing import Sequence

import torch
from pyro.distributions.transforms import ConditionalSpline
from pyro.distributions.transforms.utils import clamp_preserve_gradients
from torch import Tensor, nn

from .base import FlowLayer, apply_pyro

__all__ = [
    "SplitHead",
    "AdditiveSplitCoupling",
    "SplineSplitCoupling",
    "AffineSplitCoupling",
    "MaskedCoupling",
]


class SplitHead(nn.Module):
    """Cut a net's single output into the tuple of parameter blocks Pyro expects."""

    def __init__(self, net: nn.Module, sizes: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.sizes = list(sizes)

    def forward(self, inputs: Tensor) -> tuple[Tensor, ...]:
        return self.net(inputs).split(self.sizes, dim=-1)


class AdditiveSplitCoupling(FlowLayer):
    """NICE: `[a, b] -> [a, b + t(a)]`; volume preserving (log-det exactly 0)."""

    volume_preserving = True

    def __init__(self, shift_net: nn.Module, n_kept: int) -> None:
        super().__init__()
        self.shift_net = shift_net
        self.n_kept = n_kept

    def _shifted(self, inputs: Tensor, sign: float) -> tuple[Tensor, Tensor]:
        kept, moved = inputs[..., : self.n_kept], inputs[..., self.n_kept :]
        outputs = torch.cat([kept, moved + sign * self.shift_net(kept)], dim=-1)
        return outputs, inputs.new_zeros(inputs.shape[:-1])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._shifted(z, 1.0)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._shifted(x, -1.0)


class SplineSplitCoupling(FlowLayer):
    """Neural spline coupling: Pyro's rational-linear spline of `b` conditioned on `a`.

    Built on `ConditionalSpline` rather than `SplineCoupling`, whose unconditional
    spline on `a` would be dead parameters when `a` must pass unchanged.
    Outside `[-bound, bound]` the spline is the identity.
    """

    def __init__(self, net: nn.Module, n_kept: int, n_moved: int, bins: int, bound: float) -> None:
        super().__init__()
        sizes = [n_moved * bins, n_moved * bins, n_moved * (bins - 1), n_moved * bins]
        self.spline = ConditionalSpline(SplitHead(net, sizes), n_moved, bins, bound, order="linear")
        self.n_kept = n_kept

    def _run(self, inputs: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        kept, moved = inputs[..., : self.n_kept], inputs[..., self.n_kept :]
        moved, log_det = apply_pyro(self.spline.condition(kept), moved, inverse=inverse)
        return torch.cat([kept, moved], dim=-1), log_det

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(z, inverse=False)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(x, inverse=True)


class AffineSplitCoupling(FlowLayer):
    """RealNVP: `[a, b] -> [a, exp(s(a)) * b + m(a)]` with `(m, s) = net(a)`.

    Pyro's `AffineCoupling` in plain torch: the same net layout (shift, then log-scale)
    and the same clip of s to [-5, 3] in value only (gradients pass as through the
    identity). Pyro's transform machinery around it (caches, reshapes, the Module
    attribute for the cached scale, the split head) cost about a fifth of a RealNVP
    training step on 2-D data; tests hold this layer to Pyro's with the same net.
    """

    LOG_SCALE_MIN, LOG_SCALE_MAX = -5.0, 3.0  # Pyro's AffineCoupling defaults

    def __init__(self, net: nn.Module, n_kept: int, n_moved: int) -> None:
        super().__init__()
        self.net = net
        self.n_kept = n_kept
        self.n_moved = n_moved
        self.register_load_state_dict_pre_hook(_rename_pyro_coupling_keys)

    def _shift_log_scale(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self.net(kept).split([self.n_moved, self.n_moved], dim=-1)
        return shift, clamp_preserve_gradients(log_scale, self.LOG_SCALE_MIN, self.LOG_SCALE_MAX)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        kept, moved = z[..., : self.n_kept], z[..., self.n_kept :]
        shift, log_scale = self._shift_log_scale(kept)
        return torch.cat([kept, moved * log_scale.exp() + shift], dim=-1), log_scale.sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        kept, moved = x[..., : self.n_kept], x[..., self.n_kept :]
        shift, log_scale = self._shift_log_scale(kept)
        return torch.cat([kept, (moved - shift) * torch.exp(-log_scale)], dim=-1), -log_scale.sum(-1)


def _rename_pyro_coupling_keys(module, state_dict, prefix, *_) -> None:
    """Checkpoints written while this layer wrapped Pyro's AffineCoupling name the net
    `transform.nn.net.*`: load them under `net.*`."""
    old = prefix + "transform.nn.net."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + "net." + key[len(old):]] = state_dict.pop(key)


class MaskedCoupling(FlowLayer):
    """Apply a kept-first coupling to the positions `transformed`, given `kept`.

    `transformed` (0-based positions) is kept as an attribute for inspection.
    """

    def __init__(self, inner: FlowLayer, kept: Sequence[int], transformed: Sequence[int]) -> None:
        super().__init__()
        order = torch.tensor([*kept, *transformed], dtype=torch.long)
        self.inner = inner
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("unorder", torch.argsort(order), persistent=False)
        self.transformed = tuple(transformed)
        self.volume_preserving = inner.volume_preserving
        # kept-first masks (`alternate` on 2-D, halves) need no gather and scatter
        self.identity = bool(torch.equal(order, torch.arange(len(order))))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.identity:
            return self.inner(z)
        x, log_det = self.inner(z[..., self.order])
        return x[..., self.unorder], log_det

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.identity:
            return self.inner.inverse(x)
        z, log_det = self.inner.inverse(x[..., self.order])
        return z[..., self.unorder], log_det
