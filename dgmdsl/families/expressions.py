"""AST expressions -> torch closures over an environment of tensors.

Values carry leading batch (and enumeration) dimensions before their declared shape;
everything here broadcasts over those, so the same closure serves a minibatch, Pyro's
parallel enumeration and variable elimination's table of parent values.
"""
from __future__ import annotations

from math import prod
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..frontend import ast as A
from ..frontend.checked import CheckedModel, VarInfo
from ..nn.mlp import MLP

__all__ = ["Env", "ExprCompiler", "one_hot_input", "build_net", "option_name"]

Env = dict  # name -> tensor
Closure = Callable[[Env], torch.Tensor]

_ELEMENTWISE = {"sqrt": torch.sqrt, "exp": torch.exp, "log": torch.log, "softplus": F.softplus,
                "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def option_name(options: dict, key: str, default: str) -> str:
    """A net option written as a bare name (`act = relu`, `init = he`), or `default`."""
    value = options.get(key)
    return getattr(value, "name", value) or default


def build_net(info, hidden_default=(64, 64)) -> nn.Module:
    """A net from its declaration; widths were inferred by the checker."""
    hidden = info.options.get("hidden", list(hidden_default))
    if isinstance(hidden, int):
        hidden = [hidden]
    if info.ctor == "Linear":
        return nn.Linear(info.in_width, info.out_width)
    return MLP(info.in_width, info.out_width, [int(h) for h in hidden], option_name(info.options, "act", "relu"),
               option_name(info.options, "init", "default"))


def one_hot_input(value: torch.Tensor, var: VarInfo | None) -> torch.Tensor:
    """Flatten the event dims; cat/ordinal variables become one-hot (width K per element)."""
    if var is None:
        return value
    ndim = len(var.type.shape)
    if var.type.base in ("cat", "ordinal") and var.type.k:
        value = F.one_hot(value.long().clamp_min(0), var.type.k).to(torch.get_default_dtype())
        ndim += 1
    else:
        value = value.to(torch.get_default_dtype())
    return value.reshape(*value.shape[:value.dim() - ndim], -1) if ndim else value.unsqueeze(-1)


class ExprCompiler:
    """Compiles the expressions of one model; owns the learnable pieces it creates."""

    def __init__(self, model: CheckedModel, params: nn.ParameterDict, nets: nn.ModuleDict,
                 pieces: nn.ModuleDict) -> None:
        self.model = model
        self.params = params
        self.nets = nets
        self.pieces = pieces  # tables and linear maps, keyed by the statement's target

    def compile(self, expr, target_shape: tuple[int, ...], key: str, k: int | None = None) -> Closure:
        """`target_shape` (and `k` for per-value outputs) fixes shapeless values: nets, tables, linear."""
        if isinstance(expr, A.Num):
            return self._constant(torch.tensor(float(expr.value)), key)
        if isinstance(expr, A.Name):
            return self._name(expr.id)
        if isinstance(expr, A.Neg):
            inner = self.compile(expr.operand, target_shape, key, k)
            return lambda env: -inner(env)
        if isinstance(expr, A.BinOp):
            return self._binop(expr, target_shape, key, k)
        if isinstance(expr, A.Bracket):
            return self._bracket(expr, target_shape, key)
        if isinstance(expr, A.Index):
            return self._index(expr, key)
        if isinstance(expr, A.Call):
            return self._call(expr, target_shape, key, k)
        raise NotImplementedError(type(expr).__name__)

    def _name(self, name: str) -> Closure:
        if name in self.params:
            return lambda env: env.get(name, self.params[name])
        return lambda env: env[name]

    def _binop(self, expr: A.BinOp, shape, key, k) -> Closure:
        left = self.compile(expr.left, shape, key + "L", k)
        right = self.compile(expr.right, shape, key + "R", k)
        op = {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div, "^": torch.pow}[expr.op]
        return lambda env: op(left(env), right(env))

    def _bracket(self, expr: A.Bracket, shape, key) -> Closure:
        if all(_is_const(e) for e in expr.items):
            return self._constant(torch.tensor(_const_value(expr), dtype=torch.get_default_dtype()), key)
        parts = [(self.compile(e, shape, f"{key}_{i}"), self._var_of(e)) for i, e in enumerate(expr.items)]
        return lambda env: torch.cat([one_hot_input(fn(env), var) if var is not None else _flat_last(fn(env), None)
                                      for fn, var in parts], dim=-1)

    def _constant(self, value: torch.Tensor, key: str) -> Closure:
        """A constant held as a buffer, so it moves with the model to its device."""
        name = f"{key}_const"
        while name in self.pieces:
            name += "_"
        self.pieces[name] = _Buffer(value)
        holder = self.pieces[name]
        return lambda env: holder.value

    def _var_of(self, expr) -> VarInfo | None:
        return self.model.vars.get(expr.id) if isinstance(expr, A.Name) else None

    def _index(self, expr: A.Index, key) -> Closure:
        base = self.compile(expr.base, (), key + "B")
        items = []
        for i, item in enumerate(expr.items):
            if isinstance(item, A.Slice):
                items.append(None)
            elif isinstance(item, A.Num):
                items.append(int(item.value))
            else:
                items.append(self.compile(item, (), f"{key}I{i}"))
        return lambda env: _gather(base(env), [it if it is None or isinstance(it, int) else it(env).long()
                                              for it in items])

    def _call(self, expr: A.Call, shape, key, k) -> Closure:
        name = expr.func.id
        if name in _ELEMENTWISE:
            inner = self.compile(expr.args[0].value, shape, key, k)
            fn = _ELEMENTWISE[name]
            return lambda env: fn(inner(env))
        if name == "sum":
            inner = self.compile(expr.args[0].value, shape, key)
            var_dims = self._event_dims(expr.args[0].value)
            return lambda env: _sum_event(inner(env), var_dims)
        if name == "table":
            return self._table(expr, shape, key, k)
        if name == "linear":
            return self._linear(expr, shape, key, k)
        if name in self.nets:
            return self._net_call(expr, shape, k)
        raise NotImplementedError(name)

    def _event_dims(self, expr) -> int:
        dims = [len(v.type.shape) for n in A.names_in(expr) for v in [self.model.vars.get(n.id)] if v]
        return max(dims, default=0)

    def _net_call(self, expr: A.Call, shape, k) -> Closure:
        net = self.nets[expr.func.id]
        args = [(self.compile(a.value, (), f"arg{i}"), self._var_of(a.value)) for i, a in enumerate(expr.args)]
        out_shape = tuple(shape) + ((k,) if k else ())

        def call(env):
            xs = [one_hot_input(fn(env), var) if var is not None else _flat_last(fn(env), None)
                  for fn, var in args]
            xs = torch.broadcast_tensors(*[x for x in xs]) if len(xs) > 1 and _needs_bcast(xs) else xs
            out = net(torch.cat(list(xs), dim=-1) if len(xs) > 1 else xs[0])
            return out.reshape(*out.shape[:-1], *out_shape) if out_shape else out.squeeze(-1)
        return call

    def _parents(self, expr: A.Call) -> list[VarInfo]:
        return [self.model.vars[a.value.id] for a in expr.args]

    def _table(self, expr: A.Call, shape, key, k) -> Closure:
        parents = self._parents(expr)
        sizes = [p.type.k for p in parents]
        entry = tuple(shape) + ((k,) if k else ())
        logits = nn.Parameter(torch.zeros((*sizes, *entry)))
        self.pieces[f"{key}_table"] = _Holder(logits)
        holder = self.pieces[f"{key}_table"]
        names = [p.name for p in parents]
        normalize = (lambda t: torch.softmax(t, -1)) if k else torch.sigmoid

        def table(env):
            index = [env[n].long() for n in names]
            return normalize(_gather(holder.value, index) if index else holder.value)
        return table

    def _linear(self, expr: A.Call, shape, key, k) -> Closure:
        parents = self._parents(expr)
        width = sum(p.type.width for p in parents)
        out = prod(shape) * (k or 1)
        self.pieces[f"{key}_linear"] = nn.Linear(width, out)
        lin = self.pieces[f"{key}_linear"]
        out_shape = tuple(shape) + ((k,) if k else ())

        def linear(env):
            xs = [one_hot_input(env[p.name], p) for p in parents]
            y = lin(torch.cat(torch.broadcast_tensors(*xs), -1) if len(xs) > 1 else xs[0])
            return y.reshape(*y.shape[:-1], *out_shape) if out_shape else y.squeeze(-1)
        return linear


class _Holder(nn.Module):
    def __init__(self, value: nn.Parameter) -> None:
        super().__init__()
        self.value = value


class _Buffer(nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("value", value)


def _is_const(e) -> bool:
    if isinstance(e, A.Num) or (isinstance(e, A.Neg) and isinstance(e.operand, A.Num)):
        return True
    return isinstance(e, A.Bracket) and all(_is_const(i) for i in e.items)


def _const_value(e):
    if isinstance(e, A.Num):
        return float(e.value)
    if isinstance(e, A.Neg):
        return -float(e.operand.value)
    return [_const_value(i) for i in e.items]


def _gather(base: torch.Tensor, index: list) -> torch.Tensor:
    """Index leading axes of `base` by (batched) index tensors; batch dims come first."""
    tensors = [i for i in index if isinstance(i, torch.Tensor)]
    if not tensors:
        return base[tuple(slice(None) if i is None else i for i in index)]
    batch = torch.broadcast_shapes(*[t.shape for t in tensors])
    picks = tuple(t.expand(batch) if isinstance(t, torch.Tensor) else (slice(None) if t is None else t)
                  for t in index)
    return base[picks]


def _flat_last(value: torch.Tensor, var) -> torch.Tensor:
    return value.unsqueeze(-1) if value.dim() == 0 or var is None and value.dim() == 1 else value


def _sum_event(value: torch.Tensor, dims: int) -> torch.Tensor:
    return value.sum(dim=tuple(range(-dims, 0))) if dims else value


def _needs_bcast(xs) -> bool:
    return len({x.shape[:-1] for x in xs}) > 1
