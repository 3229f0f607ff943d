"""Common interface of invertible layers and the Pyro adapter they share."""

from __future__ import annotations

from torch import Tensor, nn
from torch.distributions import Transform

__all__ = ["FlowLayer", "PyroBijection", "apply_pyro", "per_example"]


class FlowLayer(nn.Module):
    """An invertible map listed in the z -> x direction.

    `forward(z) -> (x, log|det dx/dz|)` and `inverse(x) -> (z, log|det dz/dx|)`,
    log-dets of shape `z.shape[:-1]`. The class flags say which direction costs
    one pass (both directions are always correct).
    """

    fast_density = True  # inverse (x -> z) is a single pass
    fast_sampling = True  # forward (z -> x) is a single pass

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def per_example(log_det: Tensor, inputs: Tensor, *, elementwise: bool) -> Tensor:
    """Sum an element-wise log-det over the last axis; broadcast to `inputs.shape[:-1]`."""
    if elementwise:
        log_det = log_det.sum(-1)
    return log_det.expand(inputs.shape[:-1])


def _forget_cache(transform: Transform) -> None:
    # Pyro caches the last (x, y) pair keyed on tensor identity: a reused data
    # tensor would get a stale result after a parameter update, and the cached
    # graph tensors make `copy.deepcopy` of the module fail.
    if hasattr(transform, "_cached_x_y"):
        transform._cached_x_y = (None, None)
    if hasattr(transform, "_cached_log_scale"):
        transform._cached_log_scale = None


def apply_pyro(transform: Transform, inputs: Tensor, *, inverse: bool = False) -> tuple[Tensor, Tensor]:
    """Run a Pyro/torch transform (or its inverse); return outputs and per-example log-det."""
    direction = transform.inv if inverse else transform
    outputs = direction(inputs)
    # Called right after the map, Pyro reuses the scales it just computed.
    log_det = direction.log_abs_det_jacobian(inputs, outputs)
    _forget_cache(transform)
    return outputs, per_example(log_det, inputs, elementwise=transform.event_dim == 0)


class PyroBijection(FlowLayer):
    """A Pyro `TransformModule` as a flow layer; `reverse` swaps its directions."""

    def __init__(self, transform: nn.Module, *, reverse: bool = False) -> None:
        super().__init__()
        self.transform = transform
        self.reverse = reverse

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return apply_pyro(self.transform, z, inverse=self.reverse)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return apply_pyro(self.transform, x, inverse=not self.reverse)
