"""`flow` blocks: known layers, their options, `repeat` counts (never unrolled here); flows
used as priors or posteriors in latent-variable models."""
from __future__ import annotations

from .. import ast as A
from .. import errors as E
from ..catalog import FLOW_LAYERS, NETS
from ..checked import FlowInfo
from .context import Context
from .symbols import check_net_call

__all__ = ["check_flows", "check_flow_latents"]

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
        else:
            check_net_call(ctx, value)
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


# ---- flows inside latent-variable models (LANGUAGE.md §5.4, §4.3) --------------------
def check_flow_latents(ctx: Context) -> None:
    """A flow prior `u ~ Dist(...)`, `z = prior(u)` (chains `z = g(f(u))` through intermediate
    latents too) gives z a density by change of variables; the guide is written for z, the
    chain's end, and u is recovered by inverting the flow. A flow in the guide,
    `e ~ Normal(enc(x)); z = post(e)`, gives q(z) the same way: its base e is an auxiliary
    variable of q alone, declared as a latent with no model statement. Runs after the
    statements and guides are checked (parents known)."""
    _check_flow_priors(ctx)
    _check_guide_flows(ctx)
    _check_layer_nets(ctx)


def _check_flow_priors(ctx: Context) -> None:
    users: dict[str, list] = {}  # a flow's base -> the variables its flows define
    for var in ctx.vars.values():
        if var.construct == "flow" and var.parents:
            users.setdefault(var.parents[0], []).append(var)
    shared: set[str] = set()  # bases already reported as feeding two flows
    inferred = [v for v in ctx.vars.values() if v.kind == "latent" and not v.type.discrete
                and v.stmt is not None and v.name not in users]  # what a guide is needed for
    for data in ctx.vars.values():
        if data.kind == "data" and data.construct == "flow" and inferred:
            ctx.error(E.unsupported(data.stmt.span, f"{data.name} = {A.call_name(data.stmt.expr)}(...) gives data a "
                                    f"flow density, but {inferred[0].name} is a latent to infer: data defined by "
                                    "a flow beside latents that need a guide is not supported",
                                    "a flow may be a latent's prior (z = prior(u)) or part of the guide"))
            break
    for end in ctx.vars.values():
        if end.kind != "latent" or end.construct != "flow" or end.name in users:
            continue
        current = end
        while current.construct == "flow" and current.parents and current.parents[0] in ctx.vars:
            base, flow = ctx.vars[current.parents[0]], A.call_name(current.stmt.expr)
            if len(users[base.name]) > 1:
                if base.name not in shared:
                    shared.add(base.name)
                    other = next(v for v in users[base.name] if v is not current)
                    ctx.error(E.unsupported(current.stmt.span, f"{base.name} is the base of two flows "
                                            f"({current.name} and {other.name}); a flow prior's base is recovered "
                                            "from the flow's output, so it feeds one flow",
                                            "give each flow a base of its own"))
                break
            if base.guide_stmt is not None:
                ctx.error(E.unsupported(base.guide_stmt.target_span,
                                        f"{base.name} is the base of flow prior '{flow}' ({current.name} = "
                                        f"{flow}({base.name})): the guide is written for {end.name}, the "
                                        "flow's output", f"remove the guide statement for {base.name}; it is "
                                        f"recovered by inverting the flow"))
            for var in ctx.vars.values():
                if base.name in var.guide_parents and var.guide_stmt is not None:
                    ctx.error(E.unsupported(var.guide_stmt.span, f"the guide for {var.name} reads {base.name}, the "
                                            f"base of flow prior '{flow}'; the guide proposes {end.name}, and "
                                            f"{base.name} exists only in the model", f"read {end.name} instead"))
            if base.construct != "flow" and not (base.kind == "latent" and isinstance(base.stmt, A.SampleStmt)):
                what = "deterministic" if base.kind == "latent" else f"a {base.kind} variable"
                ctx.error(E.unsupported(current.stmt.expr.args[0].span,
                                        f"the base of flow prior '{flow}' must be a latent defined by '~'; "
                                        f"{base.name} is {what}", f"write {base.name} ~ Normal(0, 1)"))
                break
            current = base


def _check_guide_flows(ctx: Context) -> None:
    bases: dict[str, str] = {}  # guide flow base -> the latent it defines
    for var in ctx.vars.values():
        stmt = var.guide_stmt
        if not (isinstance(stmt, A.AssignStmt) and A.call_name(stmt.expr) in ctx.flows and len(stmt.expr.args) == 1
                and isinstance(stmt.expr.args[0].value, A.Name)):
            continue
        flow, arg = A.call_name(stmt.expr), stmt.expr.args[0]
        base = ctx.vars.get(arg.value.id)
        if base is None:
            continue  # reported as an undefined name
        if base.name in bases:
            ctx.error(E.unsupported(stmt.span, f"{base.name} is the base of two guide flows ({bases[base.name]} and "
                                    f"{var.name}); q would put all its mass on a curve",
                                    "give each flow a base of its own"))
            continue
        bases[base.name] = var.name
        if base.kind != "latent" or base.stmt is not None:
            where = "defined in the model" if base.kind == "latent" else f"a {base.kind} variable"
            ctx.error(E.unsupported(arg.span, f"the base of guide flow '{flow}' must be a latent defined only in "
                                    f"the guide; {base.name} is {where}",
                                    f"declare one for q alone ('latent {base.name}_q : {var.type}') and define "
                                    f"it in the guide ('{base.name}_q ~ Normal(...)')"))
        elif base.guide_stmt is None:
            ctx.error(E.unsupported(base.span, f"latent '{base.name}' has no distribution: it is the base of guide "
                                    f"flow '{flow}'", f"define it in the guide: '{base.name} ~ Normal(...)'"))
    for var in ctx.vars.values():
        used = [p for p in var.parents if p in bases and ctx.vars[p].stmt is None]
        if var.stmt is not None and used:
            ctx.error(E.unsupported(var.stmt.span, f"{used[0]} is defined only in the guide (the base of a guide "
                                    "flow); the model cannot use it", "use the flow's output instead"))


def _check_layer_nets(ctx: Context) -> None:
    """A declared net named by a flow layer (`net = s`) is the layer's alone: a statement's
    call builds its own module, so sharing it would silently train two nets."""
    statements = [*ctx.statements(), *ctx.guide_statements()]
    called = {A.call_name(node) for stmt in statements for node in A.walk(stmt.expr) if isinstance(node, A.Call)}
    for flow in ctx.flows.values():
        layers = list(flow.decl.layers)
        while layers:
            item = layers.pop()
            if isinstance(item, A.Repeat):
                layers.extend(item.body)
                continue
            for arg in item.args:
                key = arg.name or next(iter(FLOW_LAYERS.get(item.name, {})), None)
                name = A.call_name(arg.value)
                if key == "net" and name in ctx.nets and name in called:
                    ctx.error(E.unsupported(arg.value.span, f"net '{name}' is called in a statement and named by "
                                            f"a layer of flow '{flow.name}'; a flow layer cannot share a "
                                            "statement's net", "write the layer's net inline, e.g. "
                                            "net = MLP(hidden = [64])"))
