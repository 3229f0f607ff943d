"""Build a `FlowStack` from layer specs: unroll `repeat`, resolve masks and seeds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from pyro.nn import AutoRegressiveNN
from torch import nn

from .autoregressive import InverseAutoregressive, MaskedAutoregressive
from .base import FlowLayer
from .coupling import AdditiveSplitCoupling, AffineSplitCoupling, MaskedCoupling, SplineSplitCoupling
from .elementwise import ActNorm, BatchNormLayer, Logit, Scale, Sigmoid
from .linear import LULinear, Permutation, random_order, reverse_order
from .masks import AlternatingMask
from .spec import FlowItem, LayerSpec, RepeatSpec
from .stack import FlowStack

__all__ = ["build_flow", "unroll", "default_make_net", "default_make_made", "LAYER_BUILDERS", "MakeNet", "MakeMade"]

MakeNet = Callable[[Any, int, int], nn.Module]
MakeMade = Callable[[Any, int, Sequence[int]], nn.Module]

_DEFAULT_HIDDEN = [64, 64]


def _hidden_sizes(net_option: Any) -> list[int]:
    if isinstance(net_option, dict):
        return list(net_option.get("hidden", _DEFAULT_HIDDEN))
    return list(_DEFAULT_HIDDEN)


def default_make_net(net_option: Any, in_features: int, out_features: int) -> nn.Module:
    """A ReLU MLP with `hidden` widths taken from a dict `net_option`."""
    layers: list[nn.Module] = []
    width = in_features
    for hidden in _hidden_sizes(net_option):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def default_make_made(net_option: Any, features: int, param_dims: Sequence[int]) -> nn.Module:
    """Pyro's MADE in the natural order (permute layers supply other orders)."""
    return AutoRegressiveNN(
        features, _hidden_sizes(net_option), param_dims=list(param_dims), permutation=torch.arange(features)
    )


@dataclass
class _BuildState:
    dim: int
    make_net: MakeNet
    make_made: MakeMade
    mask: AlternatingMask


def unroll(items: Sequence[FlowItem], repetition: int = 0) -> Iterator[tuple[LayerSpec, int]]:
    """Yield `(layer, i)`: i counts the unrolled copies of that layer (nested repeats flatten)."""
    for item in items:
        if isinstance(item, RepeatSpec):
            for r in range(item.count):
                yield from unroll(item.body, repetition * item.count + r)
        else:
            yield item, repetition


def _checked(spec: LayerSpec, allowed: set[str]) -> dict[str, Any]:
    unknown = set(spec.options) - allowed
    if unknown:
        raise ValueError(f"{spec.name}: unknown options {sorted(unknown)}")
    return spec.options


def _coupling(spec: LayerSpec, state: _BuildState, extra: Sequence[str] = ()) -> tuple[list[int], list[int]]:
    options = _checked(spec, {"mask", "net", *extra})
    if options.get("mask", "alternate") != "alternate":
        raise ValueError(f"{spec.name}: only mask = alternate is supported, got {options['mask']!r}")
    return state.mask.next_split()


def _additive(spec: LayerSpec, state: _BuildState, _: int) -> FlowLayer:
    kept, moved = _coupling(spec, state)
    net = state.make_net(spec.options.get("net"), len(kept), len(moved))
    return MaskedCoupling(AdditiveSplitCoupling(net, len(kept)), kept, moved)


def _affine(spec: LayerSpec, state: _BuildState, _: int) -> FlowLayer:
    kept, moved = _coupling(spec, state)
    net = state.make_net(spec.options.get("net"), len(kept), 2 * len(moved))
    return MaskedCoupling(AffineSplitCoupling(net, len(kept), len(moved)), kept, moved)


def _spline(spec: LayerSpec, state: _BuildState, _: int) -> FlowLayer:
    kept, moved = _coupling(spec, state, ("bins", "bound"))
    bins, bound = int(spec.options.get("bins", 8)), float(spec.options.get("bound", 3.0))
    if bins < 2 or bound <= 0:
        raise ValueError(f"spline_coupling: needs bins >= 2 and bound > 0, got {bins}, {bound}")
    # Pyro's rational-linear spline: bins widths, heights, lambdas and bins - 1 inner slopes.
    net = state.make_net(spec.options.get("net"), len(kept), len(moved) * (4 * bins - 1))
    return MaskedCoupling(SplineSplitCoupling(net, len(kept), len(moved), bins, bound), kept, moved)


def _maf(spec: LayerSpec, state: _BuildState, _: int) -> FlowLayer:
    options = _checked(spec, {"net"})
    return MaskedAutoregressive(state.make_made(options.get("net"), state.dim, [1, 1]))


def _iaf(spec: LayerSpec, state: _BuildState, _: int) -> FlowLayer:
    options = _checked(spec, {"net"})
    return InverseAutoregressive(state.make_made(options.get("net"), state.dim, [1, 1]))


def _permute(spec: LayerSpec, state: _BuildState, repetition: int) -> FlowLayer:
    options = _checked(spec, {"order", "seed"})
    order = options.get("order", "reverse")
    if order == "reverse":
        permutation = reverse_order(state.dim)
    elif order == "random":
        permutation = random_order(state.dim, int(options.get("seed", 0)) + repetition)
    else:
        raise ValueError(f"permute: order must be 'reverse' or 'random', got {order!r}")
    state.mask.permute(permutation)
    return Permutation(permutation)


def _batchnorm(spec: LayerSpec, state: _BuildState, _: int) -> FlowLayer:
    options = _checked(spec, {"momentum", "eps"})
    return BatchNormLayer(state.dim, float(options.get("momentum", 0.1)), float(options.get("eps", 1e-5)))


def _logit(spec: LayerSpec, state: _BuildState, _: int) -> FlowLayer:
    return Logit(float(_checked(spec, {"alpha"}).get("alpha", 0.05)))


def _plain(make: Callable[[int], FlowLayer]) -> Callable[[LayerSpec, _BuildState, int], FlowLayer]:
    def build(spec: LayerSpec, state: _BuildState, _: int) -> FlowLayer:
        _checked(spec, set())
        return make(state.dim)

    return build


# name -> builder(spec, state, repetition index)
LAYER_BUILDERS: dict[str, Callable[[LayerSpec, _BuildState, int], FlowLayer]] = {
    "additive_coupling": _additive,
    "affine_coupling": _affine,
    "spline_coupling": _spline,
    "maf": _maf,
    "iaf": _iaf,
    "actnorm": _plain(ActNorm),
    "batchnorm": _batchnorm,
    "scale": _plain(Scale),
    "permute": _permute,
    "lu_linear": _plain(LULinear),
    "logit": _logit,
    "sigmoid": _plain(lambda dim: Sigmoid()),
}


def build_flow(
    layers: Sequence[FlowItem],
    dim: int,
    make_net: MakeNet = default_make_net,
    make_made: MakeMade = default_make_made,
) -> FlowStack:
    """Build the stack for `layers` (z -> x order) on `dim`-dimensional vectors.

    `make_net(net_option, in, out)` and `make_made(net_option, features, param_dims)`
    are called once per unrolled layer and should return fresh modules.
    """
    state = _BuildState(dim, make_net, make_made, AlternatingMask(dim))
    built = []
    for spec, repetition in unroll(layers):
        if spec.name not in LAYER_BUILDERS:
            raise ValueError(f"unknown flow layer {spec.name!r}")
        built.append(LAYER_BUILDERS[spec.name](spec, state, repetition))
    return FlowStack(built, dim)
