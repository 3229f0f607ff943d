"""Exact posterior marginals by variable elimination, in log space.

`dgm query "a, b | e1 = v1, e2 = v2"`: each stochastic variable relevant to the query
(an ancestor of a query or evidence variable) gives one factor over its hidden discrete
scalar variables, evaluated on a grid of their values by the backend's own conditional;
variables are then summed out in min-size order. Variables that are not ancestors of
the query or the evidence are barren and never touched, so a large network answers a
local query cheaply.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import torch

__all__ = ["Query", "parse_query", "answer_query", "QueryError", "Factor", "eliminate"]


class QueryError(ValueError):
    """A malformed query or one that cannot be answered exactly: a user error."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Query:
    targets: tuple[str, ...]
    evidence: dict


def parse_query(text: str) -> Query:
    head, _, tail = text.partition("|")
    targets = tuple(t.strip() for t in head.split(",") if t.strip())
    if not targets:
        raise QueryError(f"no query variable in {text!r}", 'write e.g. "rain | wet = 1"')
    evidence = {}
    for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\[[^\]]*\]|[^,\s]+)", tail):
        try:
            evidence[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise QueryError(f"evidence {name} = {value} is not a number or a list of numbers") from None
    if tail.strip() and not evidence:
        raise QueryError(f"cannot read the evidence {tail.strip()!r}", 'write e.g. "a | b = 1, c = [0.5, 1.0]"')
    return Query(targets, evidence)


@dataclass
class Factor:
    scope: tuple[str, ...]
    log: torch.Tensor  # one axis per scope variable

    def aligned(self, scope: tuple[str, ...]) -> torch.Tensor:
        perm = [self.scope.index(v) for v in scope if v in self.scope]
        t = self.log.permute(*perm) if perm else self.log
        shape, it = [], iter(t.shape)
        for v in scope:
            shape.append(next(it) if v in self.scope else 1)
        return t.reshape(shape)


def _product(factors: list[Factor]) -> Factor:
    scope = tuple(dict.fromkeys(v for f in factors for v in f.scope))
    total = sum(f.aligned(scope) for f in factors)
    return Factor(scope, total if isinstance(total, torch.Tensor) else torch.tensor(float(total)))


def eliminate(factors: list[Factor], keep: set[str]) -> Factor:
    """Sum out every variable not in `keep`, smallest resulting factor first."""
    factors = list(factors)
    hidden = {v for f in factors for v in f.scope} - keep
    while hidden:
        def cost(v):
            return len({u for f in factors if v in f.scope for u in f.scope})
        var = min(sorted(hidden), key=cost)
        touching = [f for f in factors if var in f.scope]
        rest = [f for f in factors if var not in f.scope]
        prod = _product(touching)
        axis = prod.scope.index(var)
        factors = rest + [Factor(prod.scope[:axis] + prod.scope[axis + 1:], torch.logsumexp(prod.log, axis))]
        hidden.discard(var)
    return _product(factors)


def _relevant(compiled, names: set[str]) -> set[str]:
    spec = compiled.spec
    out, stack = set(), list(names)
    while stack:
        v = stack.pop()
        if v in out:
            continue
        out.add(v)
        stack += spec.vars[v].parents
    return {v for v in out if spec.vars[v].kind != "param"}


def _check_vars(compiled, query: Query) -> None:
    spec = compiled.spec
    for name in (*query.targets, *query.evidence):
        if name not in spec.vars:
            from ..frontend.errors import did_you_mean
            hint = did_you_mean(name, spec.vars)
            raise QueryError(f"unknown variable '{name}' in the query", hint)
    for name in query.targets:
        t = spec.vars[name].type
        if not t.discrete or t.shape or t.base == "count":
            raise QueryError(f"query variable '{name}' is {t}; exact marginals need a scalar discrete variable")
        if name in query.evidence:
            raise QueryError(f"'{name}' is both queried and given as evidence")


def _evidence_tensor(compiled, name: str, value) -> torch.Tensor:
    var = compiled.spec.vars[name]
    dtype = torch.long if var.type.discrete else torch.get_default_dtype()
    t = torch.as_tensor(value, dtype=dtype, device=compiled.device)
    if tuple(t.shape) != var.type.shape:
        raise QueryError(f"evidence for '{name}' has shape {list(t.shape)}, but {name} is {var.type}")
    if var.type.discrete and ((t < 0) | (t >= var.type.k)).any():
        raise QueryError(f"evidence {name} = {value} is outside {var.type}")
    return t


def _factors(compiled, query: Query, evidence: dict, params: dict) -> list[Factor]:
    spec = compiled.spec
    relevant = _relevant(compiled, set(query.targets) | set(evidence))
    hidden = [v for v in relevant if v not in evidence]
    for v in hidden:
        t = spec.vars[v].type
        if not t.discrete or t.shape or v in compiled.values:
            raise QueryError(f"cannot sum out '{v}' ({t}) exactly", "give it as evidence")
    factors = []
    for v in sorted(relevant):
        if v not in compiled.dists:
            continue
        scope = tuple(sorted({p for p in spec.vars[v].parents if p in hidden} | ({v} if v in hidden else set())))
        m = len(scope)
        env = dict(params)
        for i, h in enumerate(scope):
            shape = [1] * m
            shape[i] = spec.vars[h].type.k
            env[h] = torch.arange(spec.vars[h].type.k, device=compiled.device).reshape(shape)
        for name, value in evidence.items():
            env[name] = value.reshape(*([1] * m), *value.shape) if m else value
        dist = compiled.dists[v](env)
        value = env[v]
        lp = dist.log_prob(value.to(torch.get_default_dtype()) if spec.vars[v].type.base == "binary" else value)
        factors.append(Factor(scope, lp.reshape([spec.vars[h].type.k for h in scope]) if m else lp.reshape(())))
    return factors


@torch.no_grad()
def answer_query(compiled, text: str, draws=None, **_) -> dict[str, list[float]]:
    """Posterior marginals {name: [p0, p1, ...]} for each query variable."""
    if not hasattr(compiled, "dists"):
        raise QueryError("exact queries need a Bayes net or mixture model")
    query = parse_query(text)
    _check_vars(compiled, query)
    evidence = {k: _evidence_tensor(compiled, k, v) for k, v in query.evidence.items()}
    joint_logs = []
    for params in (draws or [{}]):
        joint = eliminate(_factors(compiled, query, evidence, params), set(query.targets))
        joint_logs.append(joint.aligned(query.targets))
    log_joint = torch.logsumexp(torch.stack(joint_logs), 0)
    if not torch.isfinite(torch.logsumexp(log_joint.flatten(), 0)):
        raise QueryError("the evidence has probability zero under the model")
    out = {}
    for i, name in enumerate(query.targets):
        other = tuple(j for j in range(len(query.targets)) if j != i)
        marg = torch.logsumexp(log_joint, other) if other else log_joint
        out[name] = torch.softmax(marg.double(), 0).tolist()
    return out
