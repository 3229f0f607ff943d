"""`sde` blocks: helpers of t, the state equation `dx = A dt + B dw`, and the decision that
the drift A is affine in the state (A = a(t)·x + b(t)) with B free of the state.

The decision is symbolic. A fast linear-form pass over our own AST settles every case
written as a polynomial of degree <= 1 in x; only when it finds a non-linear term
do we ask sympy (imported lazily) whether the expression simplifies to an affine one
(e.g. `x*x/x`), so checking the common specs never imports sympy.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import ast as A
from .. import errors as E
from ..catalog import ELEMENTWISE
from ..checked import SdeInfo
from .context import Context

__all__ = ["check_sdes", "to_text", "linear_form", "NonAffine"]

TIME = "t"


@dataclass
class NonAffine(Exception):
    reason: str
    span: object


def to_text(expr, helpers: dict[str, A.SdeDef], env: dict[str, str] | None = None) -> str:
    """A sympy-parsable string for expr, with helper functions inlined."""
    env = env or {}
    if isinstance(expr, A.Num):
        return expr.text
    if isinstance(expr, A.Name):
        if expr.id in env:
            return f"({env[expr.id]})"
        if expr.id in helpers and helpers[expr.id].params is None:
            return f"({to_text(helpers[expr.id].expr, helpers)})"
        return expr.id
    if isinstance(expr, A.Neg):
        return f"(-{to_text(expr.operand, helpers, env)})"
    if isinstance(expr, A.BinOp):
        op = "**" if expr.op == "^" else expr.op
        return f"({to_text(expr.left, helpers, env)} {op} {to_text(expr.right, helpers, env)})"
    if isinstance(expr, A.Call) and isinstance(expr.func, A.Name):
        args = [to_text(a.value, helpers, env) for a in expr.args]
        helper = helpers.get(expr.func.id)
        if helper is not None and helper.params is not None:
            return f"({to_text(helper.expr, helpers, dict(zip(helper.params, args)))})"
        return f"{expr.func.id}({', '.join(args)})"
    raise NonAffine("unsupported expression", getattr(expr, "span", None))


Form = tuple  # (coefficient of the symbol or None, remainder or None); None means zero


def _mentions(expr, sym: str, helpers: dict) -> bool:
    for node in A.walk(expr):
        if isinstance(node, A.Name) and node.id == sym:
            return True
        if isinstance(node, A.Name) and node.id in helpers and node.id != sym:
            if _mentions(helpers[node.id].expr, sym, {k: v for k, v in helpers.items() if k != node.id}):
                return True
        if isinstance(node, A.Call) and isinstance(node.func, A.Name) and node.func.id in helpers:
            inner = {k: v for k, v in helpers.items() if k != node.func.id}
            if _mentions(helpers[node.func.id].expr, sym, inner):
                return True
    return False


def _mul(a, b):
    if a is None or b is None:
        return None
    return A.BinOp("*", a, b, span=a.span)


def _add(a, b, op="+"):
    if a is None:
        return b if op == "+" or b is None else A.Neg(b, span=b.span)
    if b is None:
        return a
    return A.BinOp(op, a, b, span=a.span)


def linear_form(expr, sym: str, helpers: dict) -> Form:
    """(c, r) with expr = c*sym + r, c and r free of sym; raises NonAffine otherwise."""
    if not _mentions(expr, sym, helpers):
        return (None, expr)
    if isinstance(expr, A.Name):
        if expr.id == sym:
            return (A.Num(1.0, "1", span=expr.span), None)
        return linear_form(helpers[expr.id].expr, sym, helpers)
    if isinstance(expr, A.Neg):
        c, r = linear_form(expr.operand, sym, helpers)
        return (_add(None, c, "-"), _add(None, r, "-"))
    if isinstance(expr, A.BinOp):
        return _binop_form(expr, sym, helpers)
    raise NonAffine(f"{sym} appears inside {A.call_name(expr) or 'a function'}(...)", expr.span)


def _binop_form(expr: A.BinOp, sym: str, helpers: dict) -> Form:
    if expr.op in "+-":
        lc, lr = linear_form(expr.left, sym, helpers)
        rc, rr = linear_form(expr.right, sym, helpers)
        return (_add(lc, rc, expr.op), _add(lr, rr, expr.op))
    if expr.op == "*":
        lc, lr = linear_form(expr.left, sym, helpers)
        rc, rr = linear_form(expr.right, sym, helpers)
        if lc is not None and rc is not None:
            raise NonAffine(f"{sym} is multiplied by itself", expr.span)
        if lc is not None:
            return (_mul(lc, expr.right), _mul(lr, expr.right))
        return (_mul(expr.left, rc), _mul(expr.left, rr))
    if expr.op == "/":
        if _mentions(expr.right, sym, helpers):
            raise NonAffine(f"{sym} appears in a denominator", expr.span)
        lc, lr = linear_form(expr.left, sym, helpers)
        div = lambda e: None if e is None else A.BinOp("/", e, expr.right, span=e.span)  # noqa: E731
        return (div(lc), div(lr))
    raise NonAffine(f"{sym} appears in a power", expr.span)


def _sympy_affine(text: str, state: str):
    """(a, b) strings if sympy proves the drift affine in the state, else None."""
    import sympy as sp  # lazily: only for drifts our linear-form pass could not settle

    x = sp.Symbol(state)
    try:
        drift = sp.sympify(text, locals={state: x, "t": sp.Symbol("t")})
    except (sp.SympifyError, SyntaxError, TypeError, ValueError):
        return None
    if sp.simplify(sp.diff(drift, x, 2)) != 0:
        return None
    a = sp.simplify(sp.diff(drift, x))
    return str(a), str(sp.simplify(drift - a * x))


def check_sdes(ctx: Context) -> None:
    for sde in ctx.sdes.values():
        _check_sde(ctx, sde)


def _check_sde(ctx: Context, sde: SdeInfo) -> None:
    helpers: dict[str, A.SdeDef] = {}
    equations = []
    for d in sde.decl.defs:
        if d.params is None and d.name.startswith("d") and len(d.name) > 1 and _mentions_any(d.expr, ("dt", "dw")):
            equations.append(d)
        elif d.name in helpers:
            ctx.error(E.defined_twice(d.name_span, d.name, helpers[d.name].name_span))
        else:
            helpers[d.name] = d
    if len(equations) != 1:
        span = equations[1].name_span if equations else sde.decl.name_span
        ctx.error(E.sde_error(span, f"sde '{sde.name}' needs exactly one state equation",
                              "write e.g. dx = -0.5 * beta(t) * x * dt + sqrt(beta(t)) * dw"))
        return
    eq = equations[0]
    sde.state, sde.helpers = eq.name[1:], helpers
    _check_helper_names(ctx, sde, helpers, eq)
    if any(d.span for d in ctx.diagnostics if d.span.start >= sde.decl.span.start and d.span.end <= sde.decl.span.end):
        return
    try:
        drift_coef, rest = linear_form(eq.expr, "dt", helpers)
        diff_coef, rest = linear_form(rest, "dw", helpers) if rest is not None else (None, None)
        if rest is not None:
            raise NonAffine("every term must be multiplied by dt or dw", rest.span)
        if drift_coef is not None and _mentions(drift_coef, "dw", helpers):
            raise NonAffine("dt and dw are multiplied together", eq.expr.span)
    except NonAffine as exc:
        ctx.error(E.sde_error(exc.span or eq.span, f"the state equation must read d{sde.state} = A * dt + B * dw "
                                                   f"({exc.reason})"))
        return
    sde.drift, sde.diffusion = drift_coef, diff_coef
    if diff_coef is not None and _mentions(diff_coef, sde.state, helpers):
        ctx.error(E.sde_error(diff_coef.span, f"the diffusion term must not depend on the state {sde.state}",
                              "B in dx = A dt + B dw may depend on t only"))
        return
    sde.g = to_text(diff_coef, helpers) if diff_coef is not None else "0"
    _affine_drift(ctx, sde, drift_coef, helpers)


def _affine_drift(ctx: Context, sde: SdeInfo, drift, helpers) -> None:
    if drift is None:
        sde.a, sde.b = "0", "0"
        return
    try:
        a, b = linear_form(drift, sde.state, helpers)
        sde.a = to_text(a, helpers) if a is not None else "0"
        sde.b = to_text(b, helpers) if b is not None else "0"
    except NonAffine as exc:
        proved = _sympy_affine(to_text(drift, helpers), sde.state)
        if proved is None:
            ctx.error(E.non_affine_drift(exc.span or drift.span, sde.state, exc.reason))
        else:
            sde.a, sde.b = proved


def _mentions_any(expr, names) -> bool:
    return any(isinstance(n, A.Name) and n.id in names for n in A.walk(expr))


def _check_helper_names(ctx: Context, sde: SdeInfo, helpers: dict, eq: A.SdeDef) -> None:
    known = set(helpers) | {TIME, sde.state, "dt", "dw"} | ELEMENTWISE
    for d in [*helpers.values(), eq]:
        local = set(d.params or ())
        for node in A.walk(d.expr):
            if isinstance(node, A.Name) and node.id not in known and node.id not in local:
                called = any(isinstance(c, A.Call) and c.func is node for c in A.walk(d.expr))
                ctx.error(E.unknown(node.span, "function" if called else "name in sde", node.id, known))
        if d is not eq and _mentions(d.expr, sde.state, {}):
            ctx.error(E.sde_error(d.span, f"helper '{d.name}' must be a function of t, not of {sde.state}"))
