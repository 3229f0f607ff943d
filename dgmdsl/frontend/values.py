"""Option values: the plain-Python form of `fit`/`sample` entries and constructor arguments."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import ast as A
from .spans import NO_SPAN, Span

__all__ = ["Sym", "CallValue", "to_value", "NOT_A_VALUE"]


@dataclass(frozen=True)
class Sym:
    """A bare name used as a value (`raster`, `relu`, a model or flow name)."""

    name: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class CallValue:
    """`name(args..., key = value...)` as a value."""

    name: str
    args: tuple = ()
    kwargs: tuple[tuple[str, object], ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    expr: A.Expr | None = field(default=None, compare=False, repr=False)

    @property
    def options(self) -> dict:
        return dict(self.kwargs)


class _NotAValue:
    def __repr__(self) -> str:
        return "NOT_A_VALUE"


NOT_A_VALUE = _NotAValue()


def to_value(expr: A.Expr):
    """Numbers -> float/int, strings -> str, names -> Sym, calls -> CallValue, brackets -> list.
    Anything else (arithmetic on names) -> NOT_A_VALUE; a negated number stays a number."""
    if isinstance(expr, A.Num):
        return int(expr.value) if expr.is_int else expr.value
    if isinstance(expr, A.Str):
        return expr.value
    if isinstance(expr, A.Name):
        return Sym(expr.id, expr.span)
    if isinstance(expr, A.Neg) and isinstance(expr.operand, A.Num):
        inner = to_value(expr.operand)
        return -inner
    if isinstance(expr, A.Bracket):
        return [to_value(e) for e in expr.items]
    if isinstance(expr, A.Call) and isinstance(expr.func, A.Name):
        args = tuple(to_value(a.value) for a in expr.args if a.name is None)
        kwargs = tuple((a.name, to_value(a.value)) for a in expr.args if a.name is not None)
        return CallValue(expr.func.id, args, kwargs, expr.span, expr)
    return NOT_A_VALUE
