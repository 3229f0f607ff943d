"""`flow` blocks: known layers, their options, `repeat` counts (never unrolled here)."""
from __future__ import annotations

from .. import ast as A
from .. import errors as E
from ..catalog import FLOW_LAYERS, NETS
from ..checked import FlowInfo
from .context import Context

__all__ = ["check_flows"]

MAX_REPEAT = 10_000


def check_flows(ctx: Context) -> None:
    for flow in ctx.flows.values():
        _check_layers(ctx, flow, flow.decl.layers)
        if not flow.decl.layers:
            ctx.error(E.bad_argument(flow.decl.span, f"flow '{flow.name}' has no layers"))


def _check_layers(ctx: Context, flow: FlowInfo, layers) -> None:
    for item in layers:
        if isinstance(item, A.Repeat):
            if not item.count.is_int or not 1 <= item.count.value <= MAX_REPEAT:
                ctx.error(E.bad_argument(item.count.span, f"repeat needs a count in 1..{MAX_REPEAT}, "
                                                          f"got {item.count.text}"))
            _check_layers(ctx, flow, item.body)
            continue
        if item.name not in FLOW_LAYERS:
            ctx.error(E.unknown(item.span, "flow layer", item.name, FLOW_LAYERS))
            continue
        flow.has_iaf = flow.has_iaf or item.name == "iaf"
        flow.has_maf = flow.has_maf or item.name == "maf"
        _check_layer_args(ctx, item)


def _check_layer_args(ctx: Context, layer: A.Layer) -> None:
    schema = FLOW_LAYERS[layer.name]
    positional = [a for a in layer.args if a.name is None]
    if len(positional) > 1 or (positional and not schema):
        ctx.error(E.bad_argument(layer.span, f"{layer.name} takes "
                                 + ("no arguments" if not schema else "named options")))
    for arg in layer.args:
        key = arg.name or next(iter(schema), None)
        if key not in schema:
            if arg.name is not None:
                ctx.error(E.unknown(arg.span, f"option of {layer.name}", arg.name, schema))
            continue
        _check_option(ctx, layer.name, key, schema[key], arg.value)


def _check_option(ctx: Context, layer: str, key: str, kind: str, value) -> None:
    name = A.call_name(value)
    if kind == "net":
        if name in ctx.nets:
            ctx.nets[name].uses.append(value.span)
        elif name not in NETS:
            ctx.error(E.unknown(value.span, f"net for {layer}", name or "expression", set(NETS) | set(ctx.nets)))
    elif kind == "mask":
        if name not in ("alternate",):
            ctx.error(E.unknown(value.span, "mask", name or "expression", ["alternate"]))
    elif kind == "perm":
        if name not in ("reverse", "random"):
            ctx.error(E.unknown(value.span, "permutation", name or "expression", ["reverse", "random"]))
        elif name == "random" and isinstance(value, A.Call):
            for arg in value.args:
                if arg.name not in (None, "seed") or not (isinstance(arg.value, A.Num) and arg.value.is_int):
                    ctx.error(E.bad_argument(arg.span, "random takes an integer seed: random(seed = 0)"))
    elif kind in ("int", "float"):
        if not isinstance(value, A.Num) or (kind == "int" and not value.is_int) or value.value <= 0:
            ctx.error(E.bad_argument(value.span, f"{layer}.{key} must be a positive {'integer' if kind == 'int' else 'number'}"))
