"""The checked model: what the checker learned about a model, handed to the IR builder."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from . import ast as A
from .spans import NO_SPAN, Source, Span

__all__ = ["TypeInfo", "VarInfo", "NetInfo", "FlowInfo", "SdeInfo", "MethodChoice", "CheckedModel",
           "CheckedProgram"]


@dataclass(frozen=True)
class TypeInfo:
    base: str                 # binary | cat | ordinal | count | real | positive | unit
    k: int | None             # number of values for cat/ordinal (2 for binary)
    shape: tuple[int, ...]

    @property
    def discrete(self) -> bool:
        return self.base in ("binary", "cat", "ordinal", "count")

    @property
    def size(self) -> int:
        return prod(self.shape)

    @property
    def width(self) -> int:
        """Input width when fed to a net or `linear`: one-hot for cat/ordinal."""
        if self.base in ("cat", "ordinal") and self.k:
            return self.size * self.k
        return self.size

    def __str__(self) -> str:
        text = self.base + (f"({self.k})" if self.base in ("cat", "ordinal") else "")
        return text + (f"[{', '.join(map(str, self.shape))}]" if self.shape else "")


@dataclass
class VarInfo:
    name: str
    kind: str                 # data | latent | param
    type: TypeInfo
    span: Span
    stmt: A.SampleStmt | A.AssignStmt | None = None
    guide_stmt: A.SampleStmt | A.AssignStmt | None = None
    parents: list[str] = field(default_factory=list)
    guide_parents: list[str] = field(default_factory=list)
    construct: str | None = None   # distribution or family construct name; "flow"/"implicit"/"deterministic"

    @property
    def role(self) -> str:
        if self.kind == "data":
            return "data"
        if self.kind == "param":
            return "param"
        if isinstance(self.stmt, A.AssignStmt):
            return "deterministic"
        return "latent"

    @property
    def is_covariate(self) -> bool:
        return self.kind == "data" and self.stmt is None


@dataclass
class NetInfo:
    name: str
    kind: str                 # net | critic
    ctor: str                 # MLP, UNet, ...
    options: dict
    span: Span
    inputs: tuple[str, ...] | None = None   # critic D(x, z)
    in_width: int | None = None
    out_width: int | None = None
    in_shape: tuple[int, ...] | None = None  # for image nets: [C, H, W]
    time_input: bool = False                 # called with a time / noise level
    uses: list[Span] = field(default_factory=list)


@dataclass
class FlowInfo:
    name: str
    decl: A.FlowDecl
    dim: int | None = None
    has_iaf: bool = False
    has_maf: bool = False
    used_as_option: bool = False


@dataclass
class SdeInfo:
    name: str
    decl: A.SdeDecl
    state: str = "x"
    drift: A.Expr | None = None
    diffusion: A.Expr | None = None
    helpers: dict[str, A.SdeDef] = field(default_factory=dict)
    # a(t), b(t), g(t) as sympy-parsable strings in t (the drift is a*x + b)
    a: str = "0"
    b: str = "0"
    g: str = "0"


@dataclass
class MethodChoice:
    name: str
    options: dict
    rule: str                 # which rule of LANGUAGE.md §7 fired, or "fit.method"
    reasons: list[str]
    alternatives: list[str]
    evaluation: str
    span: Span = NO_SPAN


@dataclass
class CheckedModel:
    name: str
    ast: A.Model
    source: Source
    vars: dict[str, VarInfo]
    nets: dict[str, NetInfo]
    flows: dict[str, FlowInfo]
    sdes: dict[str, SdeInfo]
    fit: dict                 # key -> plain value (see values.py)
    sample: dict
    family: str               # bayesnet | autoregressive | latent | vq | flow | distill | energy | score | diffusion | ddpm | implicit
    method: MethodChoice | None = None

    @property
    def data_vars(self) -> list[VarInfo]:
        return [v for v in self.vars.values() if v.kind == "data"]

    @property
    def latents(self) -> list[VarInfo]:
        return [v for v in self.vars.values() if v.kind == "latent"]

    @property
    def params(self) -> list[VarInfo]:
        return [v for v in self.vars.values() if v.kind == "param"]


@dataclass
class CheckedProgram:
    source: Source
    models: dict[str, CheckedModel]
