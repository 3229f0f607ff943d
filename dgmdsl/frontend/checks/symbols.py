"""Declarations and definitions: the symbol table, duplicates, undeclared targets, types."""
from __future__ import annotations

from .. import ast as A
from .. import errors as E
from ..catalog import ACTIVATIONS, NET_INITS, NETS, TYPES
from ..checked import FlowInfo, NetInfo, SdeInfo, TypeInfo, VarInfo
from ..values import Sym, to_value
from .context import Context

__all__ = ["check_declarations", "check_definitions", "check_net_call", "check_net_option", "check_type",
           "guide_flow_bases"]

MAX_SIZE = 2 ** 40  # a declared size past this is a user error (and is never allocated)


def check_type(ctx: Context, t: A.TypeExpr) -> TypeInfo:
    """A TypeInfo for a declared type; errors for unknown names, bad K or bad dimensions."""
    base = t.name
    if base not in TYPES:
        ctx.error(E.unknown(t.span, "type", base, TYPES))
        base = "real"
    k = None
    if TYPES.get(t.name):
        if t.arg is None:
            ctx.error(E.bad_type(t.span, f"type {t.name} needs its number of values",
                                 f"write {t.name}(K), e.g. {t.name}(10)"))
        elif not t.arg.is_int or t.arg.value < 2 or t.arg.value > MAX_SIZE:
            ctx.error(E.bad_type(t.arg.span, f"{t.name}(K) needs an integer K >= 2, got {t.arg.text}"))
        else:
            k = int(t.arg.value)
    elif t.arg is not None:
        ctx.error(E.bad_type(t.arg.span, f"type {t.name} takes no argument"))
    if base == "binary":
        k = 2
    shape = []
    for dim in t.shape:
        if not dim.is_int or dim.value < 1 or dim.value > MAX_SIZE:
            ctx.error(E.bad_type(dim.span, f"a dimension must be a positive integer, got {dim.text}"))
            shape.append(1)
        else:
            shape.append(int(dim.value))
    return TypeInfo(base, k, tuple(shape))


def _first_span(ctx: Context, name: str):
    for holder in (ctx.vars, ctx.nets, ctx.flows, ctx.sdes):
        if name in holder:
            return holder[name].span if hasattr(holder[name], "span") else holder[name].decl.name_span
    return None


def check_declarations(ctx: Context) -> None:
    """Fill the symbol table; a second declaration of a name is an error at the later one."""
    for item in ctx.model.items:
        if not isinstance(item, (A.VarDecl, A.NetDecl, A.FlowDecl, A.SdeDecl)):
            continue
        first = _first_span(ctx, item.name)
        if first is not None:
            ctx.error(E.duplicate_declaration(item.name_span, item.name, first))
            continue
        if isinstance(item, A.VarDecl):
            ctx.vars[item.name] = VarInfo(item.name, item.kind, check_type(ctx, item.type), item.name_span)
        elif isinstance(item, A.NetDecl):
            _declare_net(ctx, item)
        elif isinstance(item, A.FlowDecl):
            ctx.flows[item.name] = FlowInfo(item.name, item)
        else:
            ctx.sdes[item.name] = SdeInfo(item.name, item)


def _declare_net(ctx: Context, decl: A.NetDecl) -> None:
    ctor = A.call_name(decl.ctor)
    if ctor is None or ctor not in NETS:
        ctx.error(E.unknown(decl.ctor.span, "net", ctor or "expression", NETS))
        ctor = "MLP"
    value = to_value(decl.ctor)
    options = dict(getattr(value, "kwargs", ()) or ())
    if isinstance(decl.ctor, A.Call) and decl.ctor.positional:
        ctx.error(E.bad_argument(decl.ctor.span, f"{ctor} options must be named",
                                 "e.g. MLP(hidden = [128, 128])"))
    for arg in (decl.ctor.args if isinstance(decl.ctor, A.Call) else ()):
        if arg.name is not None and arg.name not in NETS[ctor].options:
            ctx.error(E.unknown(arg.span, f"option of {ctor}", arg.name, NETS[ctor].options))
        elif arg.name is not None:
            check_net_option(ctx, f"{ctor}.{arg.name}", NETS[ctor].options[arg.name], arg.value)
    inputs = tuple(n.id for n in decl.inputs) if decl.inputs else None
    ctx.nets[decl.name] = NetInfo(decl.name, decl.kind, ctor, options, decl.name_span, inputs)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_net_call(ctx: Context, call: A.Expr) -> None:
    """The option values of an inline net call (`MLP(hidden = [64])` in a flow layer or as
    a conditioner); unknown option names are the caller's check."""
    name = A.call_name(call)
    if isinstance(call, A.Call) and name in NETS:
        for arg in call.args:
            if arg.name in NETS[name].options:
                check_net_option(ctx, f"{name}.{arg.name}", NETS[name].options[arg.name], arg.value)


# net option kinds whose value is one of a set of names: kind -> (noun, names)
_NAMED_KINDS = {"act": ("activation", ACTIVATIONS), "init": ("initialisation", NET_INITS)}


def check_net_option(ctx: Context, what: str, kind: str, expr: A.Expr) -> None:
    """A net option's value against its kind (catalog.NetCtor): checked here, so that a
    wrong width or activation is a spec error, not a failure when the net is built."""
    value = to_value(expr)
    if kind in _NAMED_KINDS:
        noun, names = _NAMED_KINDS[kind]
        if not isinstance(value, Sym):
            ctx.error(E.bad_argument(expr.span, f"{what} must be an {noun} name", f"one of {', '.join(sorted(names))}"))
        elif value.name not in names:
            ctx.error(E.unknown(expr.span, noun, value.name, names))
    elif kind == "embedding" and not (_positive_int(value) and value >= 2):
        ctx.error(E.bad_argument(expr.span, f"{what} must be an integer >= 2 (a sinusoidal embedding's width)",
                                 "e.g. 64"))
    elif kind == "int" and not _positive_int(value):
        ctx.error(E.bad_argument(expr.span, f"{what} must be a positive integer", "e.g. 64"))
    elif kind == "ints" and not (_positive_int(value)
                                 or isinstance(value, list) and all(_positive_int(v) for v in value)):
        ctx.error(E.bad_argument(expr.span, f"{what} must be a list of positive integers", "e.g. [128, 128]"))


def check_definitions(ctx: Context) -> None:
    """Each statement defines a declared variable, at most once; latents must be defined."""
    for stmt in ctx.statements():
        var = ctx.vars.get(stmt.target)
        if var is None:
            if stmt.target in ctx.declared:
                ctx.error(E.bad_argument(stmt.target_span, f"'{stmt.target}' is not a variable",
                                         "only data, latent and param variables are defined by statements"))
            else:
                ctx.error(E.undeclared_target(stmt.target_span, stmt.target, ctx.vars))
            continue
        if var.stmt is not None:
            ctx.error(E.defined_twice(stmt.target_span, stmt.target, var.stmt.target_span))
            continue
        var.stmt = stmt
    guide_only = guide_flow_bases(ctx)
    for var in ctx.vars.values():
        if var.kind == "latent" and var.stmt is None and var.name not in guide_only:
            ctx.error(E.latent_undefined(var.span, var.name))


def guide_flow_bases(ctx: Context) -> set[str]:
    """Names `e` of guide statements `z = post(e)`, `post` a flow: such a latent may be defined
    in the guide alone (an auxiliary variable of q; checks.flows.check_flow_latents)."""
    bases = set()
    for stmt in ctx.guide_statements():
        expr = stmt.expr
        if isinstance(stmt, A.AssignStmt) and isinstance(expr, A.Call) and A.call_name(expr) in ctx.flows \
                and len(expr.args) == 1 and isinstance(expr.args[0].value, A.Name):
            bases.add(expr.args[0].value.id)
    return bases
