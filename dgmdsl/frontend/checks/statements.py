"""Right-hand sides of `~` and `=`: distributions, their supports and parameter shapes,
flows and implicit generators."""
from __future__ import annotations

from math import prod

from .. import ast as A
from .. import errors as E
from ..catalog import DISTRIBUTIONS, FAMILY_CONSTRUCTS, SUPPORT_WORDS, DistInfo, support_fits
from ..checked import VarInfo
from .constructs import check_construct
from .context import Context
from .exprs import analyze, fit_shape, net_input, record_net_output

__all__ = ["check_statements", "check_guide_statement", "check_distribution"]


def check_statements(ctx: Context) -> None:
    for stmt in ctx.statements():
        var = ctx.vars.get(stmt.target)
        if var is None or var.stmt is not stmt:
            continue  # reported by check_definitions
        if isinstance(stmt, A.SampleStmt):
            var.parents = sorted(_check_sample(ctx, var, stmt.expr))
        else:
            var.parents = sorted(_check_assign(ctx, var, stmt.expr))


def _check_sample(ctx: Context, var: VarInfo, expr) -> set[str]:
    if not isinstance(expr, A.Call) or not isinstance(expr.func, A.Name):
        ctx.error(E.bad_argument(expr.span, f"'~' needs a distribution, e.g. {var.name} ~ Normal(0, 1)"))
        return analyze(ctx, expr).parents
    name = expr.func.id
    if name in FAMILY_CONSTRUCTS:
        var.construct = name
        return check_construct(ctx, var, expr)
    if name not in DISTRIBUTIONS:
        ctx.error(E.unknown(expr.func.span, "distribution", name, DISTRIBUTIONS.keys() | FAMILY_CONSTRUCTS))
        for arg in expr.args:
            analyze(ctx, arg.value)
        return set()
    var.construct = name
    return check_distribution(ctx, var, DISTRIBUTIONS[name], expr)


def _support_text(info: DistInfo) -> str:
    return SUPPORT_WORDS.get(info.support, info.support)


def check_distribution(ctx: Context, var: VarInfo, info: DistInfo, expr: A.Call) -> set[str]:
    """Support against the declared type, argument names, and every parameter's shape."""
    if not support_fits(info.support, var.type.base):
        ctx.error(E.support_mismatch(expr.func.span, var.name, str(var.type), info.name, _support_text(info)))
    params, k_mix = _bind_params(ctx, info, expr)
    shape = var.type.shape
    k = _event_k(ctx, var, info, expr, k_mix)
    parents: set[str] = set()
    # a net as the sole argument is the whole head: its output holds every parameter
    if len(expr.args) == 1 and expr.args[0].name is None and _is_net_call(ctx, expr.args[0].value):
        head = expr.args[0].value
        val = analyze(ctx, head)
        per_elem = sum((k or 1) if w == -1 else w for p, w in info.head_widths.items())
        record_net_output(ctx, head.func.id, per_elem * prod(shape), head.span)
        return val.parents
    for pname, pexpr in params.items():
        if isinstance(pexpr, A.Name) and pexpr.id == "uniform" and pname == "probs":
            continue
        val = analyze(ctx, pexpr)
        parents |= val.parents
        per = _param_shape(info, pname, shape, k)
        if val.poly and val.poly.startswith("net:"):
            record_net_output(ctx, val.poly[4:], prod(per), pexpr.span)
        elif val.shape is not None:
            fit_shape(ctx, val, per, pexpr.span, f"parameter '{pname}' of {info.name} for {var.name}")
    if not params and not info.takes_k:
        ctx.error(E.missing_argument(expr.span, info.name, info.params[0]))
    return parents


def _param_shape(info: DistInfo, pname: str, shape: tuple[int, ...], k: int | None) -> tuple[int, ...]:
    if pname in info.per_value and k:
        return shape + (k,)
    return shape


def _event_k(ctx: Context, var: VarInfo, info: DistInfo, expr: A.Call, k_mix: int | None) -> int | None:
    if info.name == "Categorical":
        return var.type.k
    if info.takes_k:
        return k_mix
    return None


def _bind_params(ctx: Context, info: DistInfo, expr: A.Call) -> tuple[dict, int | None]:
    params: dict[str, object] = {}
    k_mix = None
    positional = [a for a in expr.args if a.name is None]
    order = [p for p in info.params if not any(p in g[1:] for g in info.exclusive)]
    if len(positional) > len(order) and not (len(positional) == 1):
        ctx.error(E.bad_argument(expr.span, f"{info.name} takes at most {len(order)} positional arguments"))
    if not (len(positional) == 1 and len(expr.args) == 1 and _is_net_call(ctx, positional[0].value)):
        for pname, arg in zip(order, positional):
            params[pname] = arg.value
    for arg in expr.args:
        if arg.name is None:
            continue
        if info.takes_k and arg.name == "K":
            k_mix = _int_arg(ctx, arg)
        elif arg.name not in info.params:
            ctx.error(E.unknown(arg.span, f"parameter of {info.name}", arg.name, info.params))
        elif arg.name in params:
            ctx.error(E.bad_argument(arg.span, f"{info.name}: parameter '{arg.name}' given twice"))
        else:
            params[arg.name] = arg.value
    for group in info.exclusive:
        given = [p for p in group if p in params]
        if len(given) > 1:
            ctx.error(E.bad_argument(expr.span, f"{info.name} takes one of {' or '.join(group)}, not both"))
    return params, k_mix


def _int_arg(ctx: Context, arg: A.Arg) -> int | None:
    if isinstance(arg.value, A.Num) and arg.value.is_int and arg.value.value >= 1:
        return int(arg.value.value)
    ctx.error(E.bad_argument(arg.span, f"{arg.name} must be a positive integer"))
    return None


def _is_net_call(ctx: Context, expr) -> bool:
    return isinstance(expr, A.Call) and isinstance(expr.func, A.Name) and expr.func.id in ctx.nets


def _check_assign(ctx: Context, var: VarInfo, expr) -> set[str]:
    if isinstance(expr, A.Call) and isinstance(expr.func, A.Name) and expr.func.id in ctx.flows:
        return _check_flow_application(ctx, var, expr)
    if _is_net_call(ctx, expr):
        var.construct = "implicit" if ctx.has_critic else "deterministic"
        val = analyze(ctx, expr)
        record_net_output(ctx, expr.func.id, var.type.size, expr.span)
        if var.type.discrete:
            ctx.error(E.unsupported(expr.span, f"{var.name} is {var.type}, but a net's output is real-valued",
                                    "declare it real, or give it a distribution with '~'"))
        return val.parents
    var.construct = "deterministic"
    val = analyze(ctx, expr)
    if val.shape is not None or val.poly:
        fit_shape(ctx, val, var.type.shape, expr.span, f"value assigned to {var.name}")
    return val.parents


def _check_flow_application(ctx: Context, var: VarInfo, expr: A.Call, in_guide: bool = False) -> set[str]:
    flow = ctx.flows[expr.func.id]
    if not in_guide:
        var.construct = "flow"
    if len(expr.args) != 1 or expr.args[0].name is not None or not isinstance(expr.args[0].value, A.Name):
        ctx.error(E.bad_argument(expr.span, f"a flow takes one variable: {var.name} = {flow.name}(z)"))
        return set()
    src = ctx.vars.get(expr.args[0].value.id)
    if src is None:
        analyze(ctx, expr.args[0].value)
        return set()
    if src.type.shape != var.type.shape:
        ctx.error(E.shape_mismatch(expr.span, f"flow '{flow.name}' keeps the shape of its input: "
                                              f"{src.name} and {var.name}", src.type.shape, var.type.shape))
    dequantized = var.kind == "data" and var.type.base in ("binary", "ordinal")
    if src.type.discrete or (var.type.discrete and not dequantized):
        ctx.error(E.unsupported(expr.span, "a flow maps real values to real values",
                                "declare the base real; binary or ordinal data is dequantized by fit"))
    flow.dim = var.type.size
    return {src.name}


def check_guide_statement(ctx: Context, stmt, var: VarInfo) -> set[str]:
    """A guide statement: `z ~ Dist(...)`, `z = E(x)` (an encoder), `k = nearest(e, codebook)` or
    `z = post(e)` with `post` a flow."""
    expr = stmt.expr
    if isinstance(stmt, A.AssignStmt):
        if isinstance(expr, A.Call) and isinstance(expr.func, A.Name) and expr.func.id == "nearest":
            return _check_nearest(ctx, var, expr)
        if isinstance(expr, A.Call) and isinstance(expr.func, A.Name) and expr.func.id in ctx.flows:
            # a flow posterior `z = post(e)`: q(z) by change of variables (checks.flows.check_flow_latents)
            return _check_flow_application(ctx, var, expr, in_guide=True)
        if _is_net_call(ctx, expr):
            val = analyze(ctx, expr)
            record_net_output(ctx, expr.func.id, var.type.size, expr.span)
            return val.parents
        return analyze(ctx, expr).parents
    if not isinstance(expr, A.Call) or not isinstance(expr.func, A.Name) or expr.func.id not in DISTRIBUTIONS:
        name = A.call_name(expr) or "expression"
        ctx.error(E.unknown(expr.span, "distribution", name, DISTRIBUTIONS))
        return set()
    return check_distribution(ctx, var, DISTRIBUTIONS[expr.func.id], expr)


def _check_nearest(ctx: Context, var: VarInfo, expr: A.Call) -> set[str]:
    if len(expr.args) != 2 or not isinstance(expr.args[1].value, A.Name):
        ctx.error(E.bad_argument(expr.span, "nearest takes an encoding and a codebook: nearest(enc(x), codebook)"))
        return set()
    book = ctx.vars.get(expr.args[1].value.id)
    enc = analyze(ctx, expr.args[0].value)
    if book is None or book.kind != "param" or len(book.type.shape) != 2:
        ctx.error(E.bad_argument(expr.args[1].span, "the codebook must be a param of shape [K, D]"))
        return enc.parents
    k_codes, dim = book.type.shape
    if var.type.base != "cat" or var.type.k != k_codes:
        ctx.error(E.shape_mismatch(var.span if var.stmt is None else expr.span,
                                   f"{var.name} must be cat(K) with K the codebook's rows",
                                   (var.type.k or 0,), (k_codes,)))
    n = var.type.size
    if enc.poly and enc.poly.startswith("net:"):
        record_net_output(ctx, enc.poly[4:], n * dim, expr.args[0].span)
    elif enc.shape is not None and prod(enc.shape) != n * dim:
        ctx.error(E.shape_mismatch(expr.args[0].span, "encoding vs codes x code size", enc.shape, (n, dim)))
    return enc.parents | {book.name}
