"""``build_autoregressive``: the ``x ~ Autoregressive(Family, conditioner = ..., ...)`` statement."""
from __future__ import annotations

import math
from typing import Any, Mapping

from .base import Conditioner
from .density import AutoregressiveDensity
from .families import PositionFamily, make_family
from .linear import BandedLinearConditioner, LinearConditioner
from .made import MADE
from .nade import NADE
from .orders import OrderSpec, check_context, resolve_order
from .pixelcnn import PixelCNN

__all__ = ["CONDITIONERS", "build_autoregressive"]

# Paper defaults: NADE 500 sigmoid units; MADE one hidden layer of 500; PixelCNN as in pixelcnn.dgm.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "Linear": {},
    "NADE": {"hidden": 500, "act": "sigmoid"},
    "MADE": {"hidden": [500], "masks": 1, "act": "relu", "seed": 0},
    "MaskedNet": {"hidden": [500], "act": "relu", "seed": 0},
    "PixelCNN": {"layers": 8, "channels": 64},
}
_ALIASES = {"MLP": "MaskedNet"}
CONDITIONERS = tuple(_DEFAULTS) + tuple(_ALIASES)


def build_autoregressive(
    family: str,
    family_options: Mapping[str, Any] | None,
    conditioner: str,
    conditioner_options: Mapping[str, Any] | None,
    event_shape: tuple[int, ...],
    order: OrderSpec = "raster",
    context: int | None = None,
) -> AutoregressiveDensity:
    """Build an exact chain-rule density; raises ``ValueError`` on unsupported combinations."""
    position_family = make_family(family, family_options)
    event_shape = _check_event_shape(event_shape)
    name = _ALIASES.get(conditioner, conditioner)
    if name not in _DEFAULTS:
        raise ValueError(f"unknown conditioner {conditioner!r}; choose one of {', '.join(CONDITIONERS)}")
    options = _with_defaults(name, conditioner_options)
    context = check_context(context)
    if name == "PixelCNN":
        module = _build_pixelcnn(position_family, event_shape, order, context, options)
    else:
        module = _build_sequence_conditioner(name, position_family, math.prod(event_shape), order, context, options)
    return AutoregressiveDensity(position_family, module, event_shape)


def _check_event_shape(event_shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(event_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"Autoregressive needs a non-empty shape of positive sizes, got {list(shape)}")
    return shape


def _with_defaults(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    given = dict(options or {})
    unknown = sorted(set(given) - set(_DEFAULTS[name]))
    if unknown:
        accepted = ", ".join(_DEFAULTS[name]) or "none"
        raise ValueError(f"conditioner {name} does not take {unknown}; it accepts: {accepted}")
    return {**_DEFAULTS[name], **given}


def _hidden_list(hidden: int | list[int]) -> list[int]:
    return [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else list(hidden)


def _build_sequence_conditioner(
    name: str, family: PositionFamily, dim: int, order: OrderSpec, context: int | None, options: dict[str, Any]
) -> Conditioner:
    common = (dim, family.params_per_position, family.input_features, resolve_order(order, dim))
    if name == "Linear":
        if context is None or context >= dim - 1:
            return LinearConditioner(*common, context=None)
        return BandedLinearConditioner(*common, context=context)
    if name == "NADE":
        if context is not None:
            raise ValueError(
                "NADE ties its weights over the full history, so it cannot use a context window; "
                "use conditioner = MADE(...) or Linear with context"
            )
        return NADE(*common, hidden=options["hidden"], act=options["act"])
    masks = options.get("masks", 1)
    return MADE(
        *common, hidden=_hidden_list(options["hidden"]), masks=masks, context=context,
        act=options["act"], seed=options["seed"],
    )


def _build_pixelcnn(
    family: PositionFamily, event_shape: tuple[int, ...], order: OrderSpec, context: int | None,
    options: dict[str, Any],
) -> PixelCNN:
    if len(event_shape) != 3:
        raise ValueError(
            f"PixelCNN needs an image variable shaped [C, H, W], got {list(event_shape)}; "
            "use NADE or MADE for a flat variable"
        )
    if not (isinstance(order, str) and order == "raster"):
        raise ValueError(f"PixelCNN's masked convolutions fix the raster order; got order = {order!r}")
    if context is not None:
        raise ValueError("PixelCNN's receptive field is set by its convolutions; context is not supported")
    return PixelCNN(
        event_shape, family.params_per_position, family.input_features,
        layers=options["layers"], channels=options["channels"],
    )
