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
    volume_preserving = False  # True: the log-det is always 0 (a stack skips adding it)

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


def apply_pyro(transform: Transform, inputs: Tensor, *, inverse: bool = False,
               elementwise: bool | None = None) -> tuple[Tensor, Tensor]:
    """Run a Pyro/torch transform (or its inverse); return outputs and per-example log-det.
    `elementwise` (the transform's `event_dim == 0`) may be given: Pyro builds constraint
    objects each time `event_dim` is read, a measurable cost per layer and step."""
    direction = transform.inv if inverse else transform
    outputs = direction(inputs)
    # Called right after the map, Pyro reuses the scales it just computed.
    log_det = direction.log_abs_det_jacobian(inputs, outputs)
    _forget_cache(transform)
    if elementwise is None:
        elementwise = transform.event_dim == 0
    return outputs, per_example(log_det, inputs, elementwise=elementwise)


def _caches_affine_log_scale(transform) -> bool:
    """Pyro's AffineCoupling on the last axis and unstable AffineAutoregressive: their
    `_call`/`_inverse` store the clipped log-scales whose sum is log|det|."""
    from pyro.distributions.transforms import AffineAutoregressive, AffineCoupling
    if isinstance(transform, AffineCoupling):
        return transform.dim == -1
    return isinstance(transform, AffineAutoregressive) and not transform.stable


class PyroBijection(FlowLayer):
    """A Pyro `TransformModule` as a flow layer; `reverse` swaps its directions."""

    def __init__(self, transform: nn.Module, *, reverse: bool = False) -> None:
        super().__init__()
        self.transform = transform
        self.reverse = reverse
        self.elementwise = transform.event_dim == 0  # read once (see apply_pyro)
        self.affine = _caches_affine_log_scale(transform)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._map(z, inverse=self.reverse)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._map(x, inverse=not self.reverse)

    def _map(self, inputs: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if not self.affine:
            return apply_pyro(self.transform, inputs, inverse=inverse, elementwise=self.elementwise)
        # Pyro's affine layers compute their log-scales in `_call`/`_inverse` and keep them:
        # the log-det is their sum (negated for the inverse). Calling the maps directly skips
        # Transform.__call__'s caching and the inverse wrapper, ~0.1 ms a layer and step;
        # tests hold it to the autograd Jacobian and to `apply_pyro`.
        transform = self.transform
        outputs = transform._inverse(inputs) if inverse else transform._call(inputs)
        log_det = transform._cached_log_scale.sum(-1)
        transform._cached_log_scale = None
        return outputs, (-log_det if inverse else log_det).expand(inputs.shape[:-1])
