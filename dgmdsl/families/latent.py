"""Latent-variable models (LANGUAGE.md §4.3, §5.3): VAEs, hierarchical VAEs, mixed
discrete/continuous latents, trained by SVI.

The model and the guide are compiled from their statements with the shared expression
compiler. A continuous latent with no guide statement gets an amortized mean-field Normal
guide whose net reads the latent's observed Markov blanket; a discrete latent with finite
support and no guide is summed out (enumerated). The same closures serve three programs:
`log_weights` (plain torch: importance weights for the reparameterized ELBO fast path
and for IWAE evaluation), and `pyro_model` / `pyro_guide` (Pyro, for TraceEnum_ELBO and
non-reparameterizable guides). Flows as priors (`u ~ Normal(0, 1)`, `z = prior(u)`: the guide
is written for z) and inside guides (`e ~ Normal(enc(x))`, `z = post(e)`) are handled by
`latent_flows`.
"""
from __future__ import annotations

import itertools
import math
from graphlib import TopologicalSorter

import torch
import torch.distributions as D
import torch.nn.functional as F
from torch import nn

from ..frontend import ast as A
from ..frontend.checked import CheckedModel, VarInfo
from ..ir import ModelIR
from ..nn.mlp import MLP
from .base import CompiledModel, seeded
from .bayesnet import as_pyro
from .distributions import compile_distribution
from .expressions import ExprCompiler, build_net, one_hot_input
from .flow import spec_error
from .latent_flows import LatentFlows

__all__ = ["LatentVariableModel", "ConstExprCompiler", "observed_blanket", "REPARAMETERIZED", "DEFAULT_EVAL_K"]

DEFAULT_EVAL_K = 100
# distributions whose torch sampler is differentiable in its parameters
REPARAMETERIZED = frozenset({"Normal", "LogNormal", "Laplace", "StudentT", "Beta", "Gamma", "Exponential"})
# elements of the widest intermediate tensor per evaluation pass (particles x examples x width)
_EVAL_ELEMENTS = 1 << 25
_MAX_ENUMERATION = 1 << 12
_MIN_SCALE = 1e-5


class _Constant(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.register_buffer("value", torch.tensor(value))


class ConstExprCompiler(ExprCompiler):
    """Numbers become buffers, so constant parameters (`Normal(0, 1)`) follow the model
    to its device instead of being created on the CPU at every call."""

    def compile(self, expr, target_shape, key, k=None):
        if isinstance(expr, A.Num):
            slot = f"{key}_num{len(self.pieces)}"
            self.pieces[slot] = _Constant(float(expr.value))
            holder = self.pieces[slot]
            return lambda env: holder.value
        return super().compile(expr, target_shape, key, k)


class LatentVariableModel(CompiledModel):
    family = "latent"
    has_density = False  # log p(x) is only bounded (ELBO) or estimated (IWAE)

    def __init__(self, ir: ModelIR) -> None:
        super().__init__(ir)
        spec = self.spec
        _reject_unsupported(spec)
        self.params = nn.ParameterDict({p.name: nn.Parameter(0.5 * torch.randn(p.type.shape))
                                        for p in spec.params})
        # nets named only by flow layers (`net = s`) are built with the flows
        statement_nets = [n.name for n in spec.nets.values() if n.kind == "net" and n.in_width is not None]
        self.nets = nn.ModuleDict({name: build_net(spec.nets[name]) for name in statement_nets})
        self.flows = LatentFlows(spec, set(statement_nets))
        self.pieces = nn.ModuleDict()
        self.auto_nets = nn.ModuleDict()
        comp = ConstExprCompiler(spec, self.params, self.nets, self.pieces)
        self.order = ir.topological_vars()
        self.conditionals, self.values = {}, {}
        for name in self.order:
            var = spec.vars[name]
            if isinstance(var.stmt, A.SampleStmt):
                self.conditionals[name] = compile_distribution(comp, var, var.stmt.expr, name)
            elif isinstance(var.stmt, A.AssignStmt) and name not in self.flows.prior_outputs:
                self.values[name] = comp.compile(var.stmt.expr, var.type.shape, name)
        self.enumerated = [v.name for v in spec.latents if v.type.discrete and v.guide_stmt is None]
        if math.prod(spec.vars[n].type.k for n in self.enumerated) > _MAX_ENUMERATION:
            raise NotImplementedError(f"summing out {', '.join(self.enumerated)} needs more than "
                                      f"{_MAX_ENUMERATION} joint values; write a guide for some of them")
        self.guide_order = _guide_order(spec, self.enumerated, self.flows)
        self.guide = {name: self._guide_dist(comp, spec.vars[name]) for name in self.guide_order
                      if name not in self.flows.pushed}
        self.reparameterized = all(_dist_name(spec.vars[n]) in REPARAMETERIZED for n in self.guide_order)
        self._width = _widest(spec)

    # ---- construction ---------------------------------------------------------------
    def _guide_dist(self, comp: ExprCompiler, var: VarInfo):
        if isinstance(var.guide_stmt, A.SampleStmt):
            return compile_distribution(comp, var, var.guide_stmt.expr, f"guide_{var.name}")
        return self._auto_guide(var)

    def _auto_guide(self, var: VarInfo):
        """Amortized mean-field Normal q(var | observed Markov blanket)."""
        inputs = observed_blanket(self.spec, var.name)
        net = MLP(sum(v.type.width for v in inputs), 2 * var.type.size, _mirrored_hidden(self.spec, var.name))
        self.auto_nets[var.name] = net
        shape, ndims = var.type.shape, len(var.type.shape)

        def dist(env):
            xs = [one_hot_input(env[v.name], v) for v in inputs]
            h = net(torch.cat(torch.broadcast_tensors(*xs), -1) if len(xs) > 1 else xs[0])
            loc, raw = h.reshape(*h.shape[:-1], 2, *shape).unbind(h.dim() - 1)
            normal = D.Normal(loc, F.softplus(raw) + _MIN_SCALE, validate_args=False)  # valid by construction
            return D.Independent(normal, ndims) if ndims else normal
        return dist

    # ---- plain torch: importance weights ------------------------------------------------
    def inputs(self, batch: dict) -> dict:
        """Data columns as the conditionals expect them: class indices long, the rest float."""
        dtype = torch.get_default_dtype()
        return {k: v.long() if self.spec.vars[k].type.base in ("cat", "ordinal") else v.to(dtype)
                for k, v in batch.items()}

    def log_weights(self, batch: dict, particles: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log p(x, z) - log q(z | x) at z ~ q, shape [particles, B], with enumerated latents
        summed out; and log p(data | latents) (None where latents are enumerated).
        Reparameterized guides are sampled with rsample, so this is differentiable."""
        env = self.inputs(batch)
        n = len(next(iter(batch.values())))
        # one particle needs no particle axis: the nets then see plain [B, width] inputs
        lead = (particles, n) if particles > 1 else (n,)
        log_q = 0.0
        for name in self.guide_order:
            if name in self.flows.pushed:
                continue  # written when its guide flow's base was drawn
            q = self.guide[name](env)
            shape = lead[: len(lead) - len(q.batch_shape)]
            z = q.rsample(shape) if q.has_rsample else q.sample(shape)
            log_q = log_q + q.log_prob(z)
            env[name] = z
            if name in self.flows.posteriors:  # log q(z) = log q(e) - log|det dz/de|
                log_q = log_q - self.flows.push(self.flows.posteriors[name], env)
        log_p, log_lik = self._log_joint(env, len(lead))
        log_w = torch.broadcast_to(log_p - log_q, (particles, n))
        return log_w, None if log_lik is None else torch.broadcast_to(log_lik, (particles, n))

    def _log_joint(self, env: dict, lead_dims: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.enumerated:
            env = {**env, **self._enumeration_grid(next(iter(env.values())).device, lead_dims)}
        log_lik, log_prior = 0.0, 0.0
        for name in self.order:
            if name in self.flows.priors:  # log p(z) = log p(u) + log|det du/dz|, u = prior^-1(z)
                log_prior = log_prior + self.flows.invert(self.flows.priors[name], env)
            if name in self.values:
                env[name] = self.values[name](env)
            elif name in self.conditionals:
                lp = self.conditionals[name](env).log_prob(env[name])
                if self.spec.vars[name].kind == "data":
                    log_lik = log_lik + lp
                else:
                    log_prior = log_prior + lp
        total = log_lik + log_prior
        if self.enumerated:
            return torch.logsumexp(total, 0), None
        return total, log_lik

    def _enumeration_grid(self, device, lead_dims: int) -> dict[str, torch.Tensor]:
        """Every joint value of the enumerated latents, on an axis before the `lead_dims`
        axes ([particles,] B) of the other values."""
        sizes = [self.spec.vars[n].type.k for n in self.enumerated]
        grid = torch.tensor(list(itertools.product(*map(range, sizes))), device=device)
        return {name: grid[:, i].view(-1, *[1] * lead_dims) for i, name in enumerate(self.enumerated)}

    # ---- Pyro programs ---------------------------------------------------------------------
    def pyro_model(self, batch: dict):
        """p(latents, data) as a Pyro program: one plate over the batch; latents without a
        guide marked for parallel enumeration (use TraceEnum_ELBO)."""
        import pyro

        pyro.module("dgm_" + self.spec.name, self)
        env = self.inputs(batch)
        with pyro.plate("data", len(next(iter(batch.values())))):
            for name in self.order:
                if name in self.flows.priors:  # the site is the chain's end; its base is recovered
                    chain = self.flows.priors[name]
                    z = self.flows.distribution(chain, self.conditionals[name](env))
                    env[chain.end] = pyro.sample(chain.end, z)
                    self.flows.recover(chain, z, env[chain.end], env)
                elif name in self.values:
                    env[name] = self.values[name](env)
                elif name in self.conditionals:
                    observed = self.spec.vars[name].kind == "data"
                    infer = {"enumerate": "parallel"} if name in self.enumerated else {}
                    env[name] = pyro.sample(name, as_pyro(self.conditionals[name](env)),
                                            obs=env[name] if observed else None, infer=infer)
        return env

    def pyro_guide(self, batch: dict):
        """q(latents | data) as a Pyro program (enumerated latents are not sampled here)."""
        import pyro

        pyro.module("dgm_" + self.spec.name, self)
        env = self.inputs(batch)
        with pyro.plate("data", len(next(iter(batch.values())))):
            for name in self.guide_order:
                if name in self.flows.posteriors:  # the site is the chain's end, as in the model
                    chain = self.flows.posteriors[name]
                    z = self.flows.distribution(chain, self.guide[name](env))
                    env[chain.end] = pyro.sample(chain.end, z)
                    self.flows.recover(chain, z, env[chain.end], env)
                elif name not in self.flows.pushed:
                    env[name] = pyro.sample(name, as_pyro(self.guide[name](env)))
        return env

    # ---- evaluation and sampling -----------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, k: int = DEFAULT_EVAL_K,
                 seed: int = 0, **options) -> dict:
        """IWAE-k bound on the NLL, the ELBO and its reconstruction/KL split, in nats per example."""
        k = int(k)
        iwae, elbo, lik = [], [], []
        n = len(next(iter(batch.values())))
        with seeded(seed):
            for start in range(0, n, batch_size):
                chunk = {name: v[start:start + batch_size] for name, v in batch.items()}
                log_w, log_lik = self._weights_in_passes(chunk, k)
                iwae.append(torch.logsumexp(log_w, 0) - math.log(k))
                elbo.append(log_w.mean(0))
                lik.append(None if log_lik is None else log_lik.mean(0))
        iw = torch.cat(iwae)
        nll = float(-iw.mean())
        dims = self.observed_dims()
        metrics = {"nll_nats": nll, "nll_stderr": float(iw.std() / math.sqrt(len(iw))) if len(iw) > 1 else 0.0,
                   "bits_per_dim": nll / (dims * math.log(2)) if dims else float("nan"),
                   "elbo_nats": float(torch.cat(elbo).mean()), "k": k, "kind": f"IWAE-{k} bound"}
        if all(x is not None for x in lik):
            recon = float(-torch.cat(lik).mean())
            metrics.update(reconstruction_nats=recon, kl_nats=-metrics["elbo_nats"] - recon)
        return metrics

    def _weights_in_passes(self, chunk: dict, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[k, b] importance weights in float64, drawn a few particles at a time to bound memory."""
        b = len(next(iter(chunk.values())))
        per_pass = max(1, _EVAL_ELEMENTS // (b * self._width))
        weights, liks = [], []
        for done in range(0, k, per_pass):
            log_w, log_lik = self.log_weights(chunk, min(per_pass, k - done))
            weights.append(log_w.double())
            liks.append(None if log_lik is None else log_lik.double())
        return torch.cat(weights), None if liks[0] is None else torch.cat(liks)

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, covariates: dict | None = None) -> dict[str, torch.Tensor]:
        """Ancestral samples: latents from the prior, then the data given them."""
        env = self.inputs(covariates) if covariates else {}
        with seeded(seed):
            for name in self.order:
                if name in self.values:
                    env[name] = self.values[name](env)
                elif name in self.conditionals:
                    dist = self.conditionals[name](env)
                    value = dist.sample((n,) if len(dist.batch_shape) == 0 else ())
                    env[name] = value.long() if self.spec.vars[name].type.discrete else value
                    if name in self.flows.priors:
                        self.flows.push(self.flows.priors[name], env)
        return {k: v for k, v in env.items() if self.spec.vars[k].kind != "param"}


# ---- structure helpers ---------------------------------------------------------------------
def _reject_unsupported(spec: CheckedModel) -> None:
    for p in spec.params:
        if p.stmt is not None:
            raise NotImplementedError(f"param {p.name} has a prior: SVI here point-estimates params; "
                                      "drop the prior or fit a model without continuous latents by NUTS")
    for v in spec.data_vars:
        if isinstance(v.stmt, A.AssignStmt) and A.call_name(v.stmt.expr) in spec.flows:
            raise spec_error(spec, v.stmt.span, f"{v.name} = {A.call_name(v.stmt.expr)}(...): data defined by a "
                             "flow in a model with continuous latents to infer is not supported",
                             "a flow may be a latent's prior (z = prior(u)) or part of the guide")
    for v in spec.latents:
        if isinstance(v.guide_stmt, A.AssignStmt) and A.call_name(v.guide_stmt.expr) not in spec.flows:
            raise NotImplementedError(f"the guide defines {v.name} deterministically; SVI needs a distribution")
        if v.type.discrete and v.guide_stmt is None and (v.type.base == "count" or v.type.shape):
            raise NotImplementedError(f"{v.name} : {v.type} has no guide and cannot be enumerated here "
                                      "(only scalar finite discrete latents are summed out); write a guide for it")


def _guide_order(spec: CheckedModel, enumerated: list[str], flows: LatentFlows) -> list[str]:
    """Guided latents (written or automatic), each after the latents its guide reads: the
    stochastic ones, the ends of flow priors (not their bases, which are recovered), and
    the latents of the guide alone (bases of guide flows)."""
    guided = [v.name for v in spec.latents if v.name not in enumerated and v.name not in flows.recovered
              and (v.name in flows.prior_ends or not isinstance(v.stmt, A.AssignStmt))]
    deps = {n: [p for p in spec.vars[n].guide_parents if p in guided] for n in guided}
    return list(TopologicalSorter(deps).static_order())


def observed_blanket(spec: CheckedModel, name: str) -> list[VarInfo]:
    """The data variables in `name`'s Markov blanket (deterministic nodes are looked
    through); all data variables where the blanket holds none, so the guide is amortized."""
    children = {v: [c for c in spec.vars if v in spec.vars[c].parents] for v in spec.vars}
    blanket, frontier = set(spec.vars[name].parents), list(children[name])
    while frontier:
        child = frontier.pop()
        if spec.vars[child].role == "deterministic":
            frontier.extend(children[child])
        blanket.add(child)
        blanket.update(spec.vars[child].parents)
    observed = [v for v in spec.data_vars if v.name in blanket]
    return observed or list(spec.data_vars)


def _mirrored_hidden(spec: CheckedModel, name: str) -> list[int]:
    """Hidden widths of the net that decodes `name`, reversed (an encoder mirrors its decoder)."""
    for var in spec.vars.values():
        for node in A.walk(var.stmt.expr) if var.stmt is not None else ():
            if isinstance(node, A.Call) and A.call_name(node) in spec.nets \
                    and any(n.id == name for n in A.names_in(node)):
                hidden = spec.nets[A.call_name(node)].options.get("hidden", [64, 64])
                return [int(h) for h in reversed(hidden if isinstance(hidden, list) else [hidden])]
    return [64, 64]


def _dist_name(var: VarInfo) -> str:
    return A.call_name(var.guide_stmt.expr) if isinstance(var.guide_stmt, A.SampleStmt) else "Normal"


def _widest(spec: CheckedModel) -> int:
    """A bound on the width of any per-example tensor (for sizing evaluation passes)."""
    widths = [v.type.width for v in spec.vars.values()]
    for net in spec.nets.values():
        hidden = net.options.get("hidden", [64, 64])
        widths += [net.in_width or 1, net.out_width or 1, *(hidden if isinstance(hidden, list) else [hidden])]
    return max(int(w) for w in widths)
