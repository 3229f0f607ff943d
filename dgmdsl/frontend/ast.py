"""The abstract syntax tree: small frozen dataclasses, each with its source span."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

from .spans import NO_SPAN, Span

__all__ = [
    "Node", "Expr", "Num", "Str", "Name", "BinOp", "Neg", "Arg", "Call", "Slice", "Index", "Bracket",
    "TypeExpr", "VarDecl", "NetDecl", "Layer", "Repeat", "FlowDecl", "SdeDef", "SdeDecl",
    "SampleStmt", "AssignStmt", "Option", "OptionBlock", "Guide", "Model", "Program",
    "walk", "names_in", "call_name",
]


@dataclass(frozen=True)
class Node:
    span: Span = field(default=NO_SPAN, compare=False, repr=False, kw_only=True)


# ---- expressions ----------------------------------------------------------
@dataclass(frozen=True)
class Num(Node):
    value: float
    text: str

    @property
    def is_int(self) -> bool:
        return float(self.value).is_integer() and not any(c in self.text for c in ".eE")


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # one of + - * / ^
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Neg(Node):
    operand: "Expr"


@dataclass(frozen=True)
class Arg(Node):
    name: str | None  # None for a positional argument
    value: "Expr"


@dataclass(frozen=True)
class Call(Node):
    func: "Expr"
    args: tuple[Arg, ...]

    @property
    def positional(self) -> tuple["Expr", ...]:
        return tuple(a.value for a in self.args if a.name is None)

    @property
    def keywords(self) -> dict[str, "Expr"]:
        return {a.name: a.value for a in self.args if a.name is not None}


@dataclass(frozen=True)
class Slice(Node):
    start: "Expr | None"
    stop: "Expr | None"


@dataclass(frozen=True)
class Index(Node):
    base: "Expr"
    items: tuple["Expr | Slice", ...]


@dataclass(frozen=True)
class Bracket(Node):
    items: tuple["Expr", ...]


Expr = Union[Num, Str, Name, BinOp, Neg, Call, Index, Bracket]


# ---- declarations and statements -----------------------------------------
@dataclass(frozen=True)
class TypeExpr(Node):
    name: str
    arg: Num | None
    shape: tuple[Num, ...]


@dataclass(frozen=True)
class VarDecl(Node):
    kind: str  # data | latent | param
    name: str
    type: TypeExpr
    name_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class NetDecl(Node):
    kind: str  # net | critic
    name: str
    inputs: tuple[Name, ...] | None  # critic D(x, z): the variables it sees
    ctor: Expr
    name_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Layer(Node):
    name: str
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class Repeat(Node):
    count: Num
    body: tuple["Layer | Repeat", ...]


@dataclass(frozen=True)
class FlowDecl(Node):
    name: str
    layers: tuple[Layer | Repeat, ...]
    name_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class SdeDef(Node):
    name: str
    params: tuple[str, ...] | None  # beta(t) = ... has ("t",); dx = ... has None
    expr: Expr
    name_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class SdeDecl(Node):
    name: str
    defs: tuple[SdeDef, ...]
    name_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class SampleStmt(Node):
    target: str
    expr: Expr
    target_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class AssignStmt(Node):
    target: str
    expr: Expr
    target_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Option(Node):
    key: str
    value: Expr
    key_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class OptionBlock(Node):
    kind: str  # fit | sample
    options: tuple[Option, ...]


@dataclass(frozen=True)
class Guide(Node):
    stmts: tuple[SampleStmt | AssignStmt, ...]


Decl = Union[VarDecl, NetDecl, FlowDecl, SdeDecl]
Stmt = Union[SampleStmt, AssignStmt]


@dataclass(frozen=True)
class Model(Node):
    name: str
    items: tuple  # declarations, statements and blocks in source order
    name_span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def of_type(self, *types) -> Iterator:
        return (it for it in self.items if isinstance(it, types))


@dataclass(frozen=True)
class Program(Node):
    models: tuple[Model, ...]


# ---- helpers ---------------------------------------------------------------
def walk(expr) -> Iterator:
    """Every expression node under expr (iteratively: specs may nest deeply)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        yield node
        if isinstance(node, BinOp):
            stack += [node.right, node.left]
        elif isinstance(node, Neg):
            stack.append(node.operand)
        elif isinstance(node, Call):
            stack += [a.value for a in reversed(node.args)] + [node.func]
        elif isinstance(node, Index):
            stack += list(reversed(node.items)) + [node.base]
        elif isinstance(node, Slice):
            stack += [node.stop, node.start]
        elif isinstance(node, Bracket):
            stack += list(reversed(node.items))
        elif isinstance(node, Arg):
            stack.append(node.value)


def names_in(expr) -> list[Name]:
    """Names used as values (not as the function of a call or a keyword)."""
    called = {id(n.func) for n in walk(expr) if isinstance(n, Call)}
    return [n for n in walk(expr) if isinstance(n, Name) and id(n) not in called]


def call_name(expr) -> str | None:
    """`Foo` for `Foo(...)` or a bare `Foo`, else None."""
    if isinstance(expr, Call) and isinstance(expr.func, Name):
        return expr.func.id
    if isinstance(expr, Name):
        return expr.id
    return None
