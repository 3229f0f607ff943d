"""Distribution statements -> closures returning torch distributions over the declared shape.

One row per distribution: its torch constructor and the constraint each parameter gets
when a net is the whole head (softplus for scales and rates)."""
from __future__ import annotations

import functools
from math import prod
from typing import Callable

import torch
import torch.distributions as D
import torch.nn.functional as F

from ..frontend import ast as A
from ..frontend.catalog import DISTRIBUTIONS
from ..frontend.checked import VarInfo
from .expressions import ExprCompiler

__all__ = ["compile_distribution", "TORCH_DISTRIBUTIONS"]

_MIN_SCALE = 1e-5


def _positive(v: torch.Tensor) -> torch.Tensor:
    return F.softplus(v) + _MIN_SCALE


def _mixture(logits, loc, scale):
    return D.MixtureSameFamily(D.Categorical(logits=logits, validate_args=False),
                               D.Normal(loc, scale, validate_args=False), validate_args=False)


def _bernoulli(probs=None, logits=None):
    return D.Bernoulli(probs=probs, logits=logits, validate_args=False)


def _categorical(probs=None, logits=None):
    return D.Categorical(probs=probs, logits=logits, validate_args=False)


# name -> (constructor taking the parameters by name, head constraint per parameter)
def _unchecked(cls):
    # argument validation costs a host sync per call; the checker and softplus heads
    # already keep parameters in their supports
    return functools.partial(cls, validate_args=False)


TORCH_DISTRIBUTIONS: dict[str, tuple[Callable, dict[str, Callable]]] = {
    "Bernoulli": (_bernoulli, {}),
    "Categorical": (_categorical, {}),
    "Normal": (_unchecked(D.Normal), {"scale": _positive}),
    "LogNormal": (_unchecked(D.LogNormal), {"scale": _positive}),
    "Laplace": (_unchecked(D.Laplace), {"scale": _positive}),
    "StudentT": (_unchecked(D.StudentT), {"df": _positive, "scale": _positive}),
    "Beta": (_unchecked(D.Beta), {"concentration1": _positive, "concentration0": _positive}),
    "Gamma": (_unchecked(D.Gamma), {"concentration": _positive, "rate": _positive}),
    "Exponential": (_unchecked(D.Exponential), {"rate": _positive}),
    "Poisson": (_unchecked(D.Poisson), {"rate": _positive}),
    "MixtureOfGaussians": (_mixture, {"scale": _positive}),
}


def compile_distribution(comp: ExprCompiler, var: VarInfo, expr: A.Call, key: str):
    """A closure env -> torch Distribution whose event shape is the variable's shape."""
    info = DISTRIBUTIONS[expr.func.id]
    ctor, constraints = TORCH_DISTRIBUTIONS[info.name]
    shape = var.type.shape
    k = var.type.k if info.name == "Categorical" else _mixture_k(expr)
    ndims = len(shape)
    positional = [a for a in expr.args if a.name is None]
    if len(expr.args) == 1 and positional and _is_net(comp, positional[0].value):
        head = comp.compile(positional[0].value, (_head_width(info, k) * prod(shape),), key)
        return _head_dist(info, ctor, constraints, head, shape, k, ndims)
    order = [p for p in info.params if not any(p in g[1:] for g in info.exclusive)]
    bound = dict(zip(order, (a.value for a in positional)))
    bound.update({a.name: a.value for a in expr.args if a.name is not None and a.name != "K"})
    closures = {}
    for pname, pexpr in bound.items():
        if isinstance(pexpr, A.Name) and pexpr.id == "uniform":
            zeros = torch.zeros((*shape, k) if k else tuple(shape))
            closures["logits"] = comp._constant(zeros, f"{key}_uniform")
            continue
        per_value = k if pname in info.per_value else None
        closures[pname] = comp.compile(pexpr, shape, f"{key}_{pname}", per_value)

    def dist(env):
        params = {n: fn(env) for n, fn in closures.items()}
        params = {n: _broadcast_to_shape(v, shape, n in info.per_value) for n, v in params.items()}
        return _independent(ctor(**params), ndims)
    return dist


def _mixture_k(expr: A.Call) -> int | None:
    for a in expr.args:
        if a.name == "K":
            return int(a.value.value)
    return None


def _is_net(comp: ExprCompiler, expr) -> bool:
    return isinstance(expr, A.Call) and isinstance(expr.func, A.Name) and expr.func.id in comp.nets


def _head_width(info, k) -> int:
    return sum((k or 1) if w == -1 else w for w in info.head_widths.values())


def _head_dist(info, ctor, constraints, head, shape, k, ndims):
    widths = [(p, (k or 1) if w == -1 else w) for p, w in info.head_widths.items()]

    def dist(env):
        out = head(env)  # [..., total * size]
        out = out.reshape(*out.shape[:-1], _head_width(info, k), *shape) if shape else \
            out.reshape(*out.shape[:-1], _head_width(info, k))
        params, start = {}, 0
        for name, width in widths:
            piece = out.narrow(out.dim() - len(shape) - 1, start, width)
            start += width
            piece = piece.movedim(out.dim() - len(shape) - 1, -1) if width > 1 or info.head_widths[name] == -1 \
                else piece.squeeze(out.dim() - len(shape) - 1)
            params[name] = constraints.get(name, lambda v: v)(piece)
        return _independent(ctor(**params), ndims)
    return dist


def _broadcast_to_shape(value: torch.Tensor, shape, per_value: bool) -> torch.Tensor:
    if not shape:
        return value
    tail = value.shape[-1:] if per_value else ()
    core = value.shape[:value.dim() - len(tail)]
    target = torch.broadcast_shapes(core, tuple(shape))
    return value.expand(*target, *tail)


def _independent(dist, ndims: int):
    return D.Independent(dist, ndims) if ndims else dist
