"""Static analysis of expressions: names, shapes (with broadcasting) and net widths.

Broadcasting follows NumPy: shapes align on the right, a dimension of 1 stretches.
A net call, `table(...)` and `linear(...)` have no shape of their own: they take the
shape their use asks for (`Val.poly`), which also fixes the net's output width.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from .. import ast as A
from .. import errors as E
from ..catalog import DISTRIBUTIONS, ELEMENTWISE, FAMILY_CONSTRUCTS, FUNCTIONS, NETS
from ..spans import Span
from .context import Context

__all__ = ["Val", "analyze", "fit_shape", "broadcast", "net_input", "record_net_output"]


@dataclass
class Val:
    shape: tuple[int, ...] | None      # None: takes the shape of its use
    k: int | None = None               # a discrete variable's number of values (for indexing)
    poly: str | None = None            # "net:<name>", "table", "linear": shape set by use
    parents: set[str] = field(default_factory=set)
    width: int | None = None           # input width when fed to a net (one-hot discrete)


UNKNOWN = Val(None)


def broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    out = []
    for x, y in zip(reversed((1,) * (len(b) - len(a)) + a), reversed((1,) * (len(a) - len(b)) + b)):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y))
    return tuple(reversed(out))


def record_net_output(ctx: Context, net: str, width: int, span: Span) -> None:
    info = ctx.nets[net]
    if info.out_width is None:
        info.out_width = width
    elif info.out_width != width:
        ctx.error(E.shape_mismatch(span, f"net '{net}' output used with two widths",
                                   (info.out_width,), (width,), "a net used twice shares its weights"))


def fit_shape(ctx: Context, val: Val, target: tuple[int, ...], span: Span, what: str) -> None:
    """Check that val can take `target` (broadcasting); a shapeless value adopts it."""
    if val.poly and val.poly.startswith("net:"):
        record_net_output(ctx, val.poly[4:], prod(target), span)
    elif val.shape is not None and broadcast(val.shape, target) != target:
        ctx.error(E.shape_mismatch(span, what, val.shape, target))


def net_input(ctx: Context, net: str, args: list[Val], span: Span, time: bool = False) -> None:
    info = ctx.nets[net]
    info.uses.append(span)
    info.time_input = info.time_input or time
    if any(a.shape is None and a.poly is None for a in args):
        return
    widths = [a.width if a.width is not None else prod(a.shape or ()) for a in args]
    width = sum(widths)
    if info.in_width is None:
        info.in_width = width
        if len(args) == 1 and args[0].shape is not None:
            info.in_shape = args[0].shape
    elif info.in_width != width:
        ctx.error(E.shape_mismatch(span, f"net '{net}' input used with two widths",
                                   (info.in_width,), (width,), "a net used twice shares its weights"))


def analyze(ctx: Context, expr, allowed: frozenset = frozenset()) -> Val:
    """Analyze a value expression; `allowed` holds bare names valid in this position."""
    if isinstance(expr, A.Num):
        return Val(())
    if isinstance(expr, A.Str):
        ctx.error(E.bad_argument(expr.span, "a string is not a value here"))
        return UNKNOWN
    if isinstance(expr, A.Name):
        return _name(ctx, expr, allowed)
    if isinstance(expr, A.Neg):
        return analyze(ctx, expr.operand)
    if isinstance(expr, A.BinOp):
        return _binop(ctx, expr)
    if isinstance(expr, A.Bracket):
        return _bracket(ctx, expr)
    if isinstance(expr, A.Index):
        return _index(ctx, expr)
    if isinstance(expr, A.Call):
        return _call(ctx, expr)
    ctx.error(E.bad_argument(expr.span, "a slice is only valid inside [...]"))
    return UNKNOWN


def _name(ctx: Context, expr: A.Name, allowed: frozenset) -> Val:
    var = ctx.vars.get(expr.id)
    if var is not None:
        t = var.type
        return Val(t.shape, t.k if t.base in ("binary", "cat", "ordinal") else None,
                   parents={var.name}, width=t.width)
    if expr.id in allowed:
        return UNKNOWN
    if expr.id in ctx.nets or expr.id in ctx.flows:
        ctx.error(E.bad_argument(expr.span, f"'{expr.id}' is a {'net' if expr.id in ctx.nets else 'flow'}; "
                                            f"call it: {expr.id}(...)"))
        return UNKNOWN
    ctx.error(E.undefined_name(expr.span, expr.id, ctx.declared))
    return UNKNOWN


def _merge(vals: list[Val]) -> set[str]:
    out: set[str] = set()
    for v in vals:
        out |= v.parents
    return out


def _binop(ctx: Context, expr: A.BinOp) -> Val:
    left, right = analyze(ctx, expr.left), analyze(ctx, expr.right)
    parents = left.parents | right.parents
    if left.shape is None or right.shape is None:
        return Val(left.shape if right.shape is None else right.shape, parents=parents)
    shape = broadcast(left.shape, right.shape)
    if shape is None:
        ctx.error(E.shape_mismatch(expr.span, f"operands of '{expr.op}'", left.shape, right.shape))
        return Val(None, parents=parents)
    return Val(shape, parents=parents)


def _bracket(ctx: Context, expr: A.Bracket) -> Val:
    if not expr.items:
        ctx.error(E.bad_argument(expr.span, "empty brackets"))
        return UNKNOWN
    if all(_is_constant(e) for e in expr.items):
        shape = _constant_shape(ctx, expr)
        return Val(shape)
    # concatenation along the last axis
    vals = [analyze(ctx, e) for e in expr.items]
    if any(v.shape is None for v in vals):
        return Val(None, parents=_merge(vals))
    shapes = [v.shape or (1,) for v in vals]
    lead = shapes[0][:-1]
    if any(s[:-1] != lead for s in shapes):
        ctx.error(E.shape_mismatch(expr.span, "concatenated pieces", shapes[0], next(s for s in shapes if s[:-1] != lead)))
        return Val(None, parents=_merge(vals))
    return Val(lead + (sum(s[-1] for s in shapes),), parents=_merge(vals),
               width=sum(v.width if v.width is not None else prod(v.shape or ()) for v in vals))


def _is_constant(e) -> bool:
    if isinstance(e, A.Num) or (isinstance(e, A.Neg) and isinstance(e.operand, A.Num)):
        return True
    return isinstance(e, A.Bracket) and bool(e.items) and all(_is_constant(i) for i in e.items)


def _constant_shape(ctx: Context, expr) -> tuple[int, ...]:
    if not isinstance(expr, A.Bracket):
        return ()
    inner = [_constant_shape(ctx, e) for e in expr.items]
    if any(s != inner[0] for s in inner):
        ctx.error(E.bad_argument(expr.span, "a constant tensor must be rectangular",
                                 "every row needs the same number of entries"))
    return (len(expr.items),) + inner[0]


def _index(ctx: Context, expr: A.Index) -> Val:
    base = analyze(ctx, expr.base)
    parents = set(base.parents)
    if base.shape is None:
        for item in expr.items:
            if not isinstance(item, A.Slice):
                parents |= analyze(ctx, item).parents
        return Val(None, parents=parents)
    rest = list(base.shape)
    lead: tuple[int, ...] = ()
    kept: list[int] = []
    for item in expr.items:
        if not rest:
            ctx.error(E.bad_argument(item.span, f"too many indices for a value of shape {list(base.shape)}"))
            return Val(None, parents=parents)
        size = rest.pop(0)
        if isinstance(item, A.Slice):
            kept.append(size)
            continue
        if isinstance(item, A.Num):
            if not item.is_int or not 0 <= item.value < size:
                ctx.error(E.bad_argument(item.span, f"index {item.text} is out of range for an axis of size {size}"))
            continue
        idx = analyze(ctx, item)
        parents |= idx.parents
        if idx.k is None:
            ctx.error(E.bad_argument(item.span, "an index must be a discrete variable or an integer",
                                     "index by a binary, cat or ordinal variable"))
            continue
        if idx.k != size:
            ctx.error(E.shape_mismatch(item.span, f"indexing an axis of size {size} by a variable with "
                                                  f"{idx.k} values", (size,), (idx.k,)))
        lead = broadcast(lead, idx.shape or ()) or lead
    return Val(lead + tuple(kept) + tuple(rest), parents=parents)


def _call(ctx: Context, expr: A.Call) -> Val:
    name = expr.func.id if isinstance(expr.func, A.Name) else None
    if name is None:
        ctx.error(E.bad_argument(expr.span, "only names can be called"))
        return UNKNOWN
    if name in ctx.nets:
        args = [analyze(ctx, a.value) for a in expr.args]
        net_input(ctx, name, args, expr.span)
        return Val(None, poly=f"net:{name}", parents=_merge(args))
    if name in ctx.flows:
        ctx.error(E.unsupported(expr.span, f"flow '{name}' can only be applied as a whole statement",
                                f"write 'x = {name}(z)'"))
        return UNKNOWN
    if name in ELEMENTWISE:
        return _elementwise(ctx, expr, name)
    if name == "sum":
        vals = [analyze(ctx, a.value) for a in expr.args]
        if len(vals) != 1:
            ctx.error(E.bad_argument(expr.span, "sum takes one argument"))
        return Val((), parents=_merge(vals))
    if name in ("table", "linear"):
        return _table_or_linear(ctx, expr, name)
    if name == "nearest":
        ctx.error(E.unsupported(expr.span, "nearest(...) is only valid as a guide statement",
                                "write it in the guide: k = nearest(enc(x), codebook)"))
        return UNKNOWN
    if name in DISTRIBUTIONS or name in FAMILY_CONSTRUCTS:
        ctx.error(E.unsupported(expr.span, f"{name} is a distribution; it can only follow '~'"))
        return UNKNOWN
    ctx.error(E.unknown(expr.func.span, "function", name, sorted(FUNCTIONS | set(ctx.nets))))
    return UNKNOWN


def _elementwise(ctx: Context, expr: A.Call, name: str) -> Val:
    if len(expr.args) != 1 or expr.args[0].name is not None:
        ctx.error(E.bad_argument(expr.span, f"{name} takes one positional argument"))
        return UNKNOWN
    val = analyze(ctx, expr.args[0].value)
    return Val(val.shape, parents=val.parents)


def _table_or_linear(ctx: Context, expr: A.Call, name: str) -> Val:
    parents: set[str] = set()
    for arg in expr.args:
        if arg.name is not None or not isinstance(arg.value, A.Name) or arg.value.id not in ctx.vars:
            ctx.error(E.bad_argument(arg.span, f"{name}(...) takes variables as its arguments"))
            continue
        var = ctx.vars[arg.value.id]
        parents.add(var.name)
        if name == "table" and (not var.type.discrete or var.type.base == "count"):
            ctx.error(E.table_parent_not_discrete(arg.span, var.name, str(var.type)))
    return Val(None, poly=name, parents=parents)
