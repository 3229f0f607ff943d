"""Bayes nets and mixtures (LANGUAGE.md §5.1): named variables with table, constant,
linear, net or parametric conditionals; discrete latents and missing discrete values
summed out exactly; params with priors for MCMC.

Exact summation enumerates the joint values of the summed variables (all latents, and
scalar discrete data columns that have missing rows) in one batched pass and takes a
log-sum-exp. Missing entries of a discrete variable with no children drop out of the
product (their conditional sums to one), so they need no enumeration.
"""
from __future__ import annotations

import itertools
from math import prod

import torch
from torch import nn

from ..frontend import ast as A
from ..frontend.checked import VarInfo
from ..ir import ModelIR
from .base import CompiledModel, seeded, var_spec
from .distributions import compile_distribution
from .expressions import ExprCompiler, build_net

__all__ = ["BayesNetModel", "MAX_ENUMERATION", "as_pyro"]

MAX_ENUMERATION = 1 << 16


class BayesNetModel(CompiledModel):
    family = "bayesnet"
    # tables and small conditionals learn fast with a larger step
    default_settings = {"lr": 1e-2, "epochs": 20, "batch_size": 256}

    def __init__(self, ir: ModelIR) -> None:
        super().__init__(ir)
        spec = self.spec
        self.params = nn.ParameterDict({p.name: nn.Parameter(0.5 * torch.randn(p.type.shape))
                                        for p in spec.params})
        self.nets = nn.ModuleDict({n.name: build_net(n) for n in spec.nets.values() if n.kind == "net"})
        self.pieces = nn.ModuleDict()
        comp = ExprCompiler(spec, self.params, self.nets, self.pieces)
        self.order = ir.topological_vars()
        self.dists, self.values = {}, {}
        for name in self.order:
            var = spec.vars[name]
            if isinstance(var.stmt, A.SampleStmt):
                self.dists[name] = compile_distribution(comp, var, var.stmt.expr, name)
            elif isinstance(var.stmt, A.AssignStmt):
                self.values[name] = comp.compile(var.stmt.expr, var.type.shape, name)
        self.child_map = {name: [c for c in spec.vars if name in spec.vars[c].parents] for name in spec.vars}
        self.prior_params = [p.name for p in spec.params if p.stmt is not None]

    # ---- structure ---------------------------------------------------------------
    def data_vars(self) -> list[VarInfo]:
        return [v for v in self.spec.vars.values() if v.kind == "data"]

    def var_specs(self):
        return [var_spec(v, missing_ok=v.type.discrete and (not v.type.shape or not self.child_map[v.name]))
                for v in self.data_vars()]

    def discrete_latents(self) -> list[VarInfo]:
        return [v for v in self.spec.latents if v.type.discrete and v.stmt is not None]

    def initialize(self, data: dict[str, torch.Tensor]) -> None:
        """Seed a param indexed by a latent and used as the loc of a data variable's Normal
        (a mixture's means) from distinct data rows, as k-means++ seeding does: gradient
        ascent from symmetric starts can leave components stuck together."""
        for var in self.spec.vars.values():
            if var.kind != "data" or var.name not in data or not isinstance(var.stmt, A.SampleStmt):
                continue
            loc = var.stmt.expr.args[0].value if var.stmt.expr.args else None
            if isinstance(loc, A.Index) and isinstance(loc.base, A.Name) and loc.base.id in self.params:
                table = self.params[loc.base.id]
                rows = data[var.name].reshape(len(data[var.name]), -1)
                if table.dim() >= 1 and rows.shape[1] == prod(table.shape[1:]):
                    pick = _spread_rows(rows.float(), table.shape[0])
                    with torch.no_grad():
                        table.copy_(pick.reshape(table.shape).to(table))

    # ---- density -------------------------------------------------------------------
    def log_joint(self, env: dict, include_priors: bool = False) -> torch.Tensor:
        total = 0.0
        for name in self.order:
            var = self.spec.vars[name]
            if name in self.values:
                env[name] = self.values[name](env)
                continue
            if name not in self.dists or (var.kind == "param" and not include_priors):
                continue
            if var.kind == "data" and name not in env:
                continue  # an unobserved leaf column sums to one
            total = total + _log_prob(self.dists[name](env), env[name], var)
        return total

    def summed_vars(self, batch: dict) -> list[VarInfo]:
        out = list(self.discrete_latents())
        for v in self.data_vars():
            if v.type.discrete and not v.type.shape and self.child_map[v.name] and v.name in batch \
                    and bool((batch[v.name] < 0).any()):
                out.append(v)
        return out

    def _enumerated_env(self, batch: dict, params: dict | None, summed: list[VarInfo]) -> tuple[dict, torch.Tensor]:
        """The environment with a leading axis over the joint values of `summed` ([J, B])."""
        n = len(next(iter(batch.values())))
        combos = _combinations(summed, next(iter(batch.values())).device)
        env = {k: v.unsqueeze(0) for k, v in batch.items()} | dict(params or {})
        for i, var in enumerate(summed):
            values = combos[:, i].view(-1, 1)  # summed variables are scalar
            if var.name in batch:
                env[var.name] = torch.where(env[var.name] >= 0, env[var.name], values)
            else:
                env[var.name] = values.expand(-1, n)
        return env, combos

    def log_prob(self, batch: dict, params: dict | None = None) -> torch.Tensor:
        """log p(observed | covariates), every summed variable marginalised exactly."""
        summed = self.summed_vars(batch)
        if not summed:
            return self.log_joint({**batch, **(params or {})})
        env, _ = self._enumerated_env(batch, params, summed)
        return torch.logsumexp(self.log_joint(env), dim=0)

    def posterior(self, batch: dict, name: str) -> torch.Tensor:
        """p(name = j | observed) per row, for a summed discrete variable (responsibilities)."""
        summed = self.summed_vars(batch)
        names = [v.name for v in summed]
        if name not in names:
            raise KeyError(name)
        env, combos = self._enumerated_env(batch, None, summed)
        log_post = torch.log_softmax(self.log_joint(env), dim=0)  # [J, B]
        idx = combos[:, names.index(name)]
        k = summed[names.index(name)].type.k
        return torch.stack([torch.logsumexp(log_post[idx == j], 0) for j in range(k)], -1).exp()

    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, **options) -> dict:
        metrics = super().evaluate(batch, batch_size, draws, **options)
        for var in self.label_like():
            others = {k: v for k, v in batch.items() if k != var.name}
            if not others:
                continue
            with torch.no_grad():
                post = self.posterior({**others, var.name: torch.full_like(batch[var.name], -1)}, var.name)
            metrics[f"accuracy_{var.name}"] = float((post.argmax(-1) == batch[var.name]).double().mean())
        return metrics

    def label_like(self) -> list[VarInfo]:
        """Scalar discrete roots with children: what a classifier-shaped query predicts."""
        return [v for v in self.data_vars() if v.type.discrete and not v.type.shape and not v.parents
                and self.child_map[v.name] and v.type.k <= 64]

    # ---- sampling ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, covariates: dict | None = None,
               params: dict | None = None) -> dict[str, torch.Tensor]:
        env = dict(covariates or {}) | dict(params or {})
        with seeded(seed):
            for name in self.order:
                var = self.spec.vars[name]
                if name in env:
                    continue
                if name in self.values:
                    env[name] = self.values[name](env)
                elif name in self.dists and var.kind != "param":
                    dist = self.dists[name](env)
                    value = dist.sample((n,)) if _batch_dims(dist, var) == 0 else dist.sample()
                    env[name] = value.long() if var.type.discrete else value
        return {k: v for k, v in env.items() if k in self.spec.vars and self.spec.vars[k].kind != "param"}

    # ---- Pyro ---------------------------------------------------------------------------
    def pyro_model(self, batch: dict | None = None, size: int | None = None):
        """The same model as a Pyro program: priors global, everything else in a data plate;
        discrete latents marked for parallel enumeration (use TraceEnum_ELBO)."""
        import pyro
        import pyro.distributions as dist

        batch = batch or {}
        env = {}
        for name in self.prior_params:
            prior = self.dists[name](env)
            env[name] = pyro.sample(name, as_pyro(prior))
        pyro.module("dgm_" + self.spec.name, self)
        n = size or (len(next(iter(batch.values()))) if batch else 1)
        covariates = {k: v for k, v in batch.items() if self.spec.vars[k].is_covariate}
        env.update(covariates)
        with pyro.plate("data", n):
            for name in self.order:
                var = self.spec.vars[name]
                if name in env or var.kind == "param":
                    continue  # priors were sampled above; point estimates live in the module
                if name in self.values:
                    env[name] = self.values[name](env)
                    continue
                d = as_pyro(self.dists[name](env))
                infer = {"enumerate": "parallel"} if var.kind == "latent" and var.type.discrete else {}
                obs = batch.get(name)
                env[name] = pyro.sample(name, d, obs=None if obs is None else (obs.float() if not var.type.discrete
                                                                                  or var.type.base == "binary"
                                                                                  else obs), infer=infer)
        return env


def as_pyro(d):
    """The same distribution as a Pyro distribution (Pyro's classes wrap torch's one to one)."""
    import pyro.distributions as dist

    if isinstance(d, dist.torch_distribution.TorchDistributionMixin):
        return d
    if isinstance(d, torch.distributions.Independent):
        return as_pyro(d.base_dist).to_event(d.reinterpreted_batch_ndims)
    if isinstance(d, torch.distributions.MixtureSameFamily):
        return dist.MixtureSameFamily(as_pyro(d.mixture_distribution), as_pyro(d.component_distribution))
    if isinstance(d, (torch.distributions.Bernoulli, torch.distributions.Categorical)):
        return getattr(dist, type(d).__name__)(logits=d.logits)
    params = {k: getattr(d, k) for k in d.arg_constraints if k in d.__dict__}
    return getattr(dist, type(d).__name__)(**params)


def _log_prob(dist, value: torch.Tensor, var: VarInfo) -> torch.Tensor:
    if not var.type.discrete:
        return dist.log_prob(value)
    missing = value < 0
    safe = value.clamp_min(0).to(torch.get_default_dtype() if var.type.base == "binary" else value.dtype)
    if isinstance(dist, torch.distributions.Independent):
        base = dist.base_dist.log_prob(safe)
        base = torch.where(missing, torch.zeros_like(base), base)
        return base.sum(dim=tuple(range(-dist.reinterpreted_batch_ndims, 0)))
    lp = dist.log_prob(safe)
    return torch.where(missing, torch.zeros_like(lp), lp)


def _combinations(summed: list[VarInfo], device) -> torch.Tensor:
    sizes = [v.type.k for v in summed]
    total = prod(sizes)
    if total > MAX_ENUMERATION:
        raise ValueError(f"summing out {', '.join(v.name for v in summed)} needs {total} joint values "
                         f"(more than {MAX_ENUMERATION}); use svi(elbo = trace_enum) instead")
    grid = list(itertools.product(*[range(k) for k in sizes]))
    return torch.tensor(grid, dtype=torch.long, device=device)


def _batch_dims(dist, var: VarInfo) -> int:
    return len(dist.batch_shape)


def _spread_rows(rows: torch.Tensor, k: int) -> torch.Tensor:
    """k rows far apart (farthest-point seeding from a random start, deterministic under the seed)."""
    sample = rows[torch.randperm(len(rows))[: min(len(rows), 4096)]]
    picks = [sample[0]]
    dist = ((sample - picks[0]) ** 2).sum(-1)
    for _ in range(1, k):
        idx = int(torch.argmax(dist))
        picks.append(sample[idx])
        dist = torch.minimum(dist, ((sample - sample[idx]) ** 2).sum(-1))
    return torch.stack(picks)
