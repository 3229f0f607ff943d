"""Flows inside latent-variable models (LANGUAGE.md §5.4, §4.3).

A flow prior, `u ~ Dist(...)`, `z = prior(u)` (or a chain `z1 = f(u)`, `z = g(z1)`): the
guide proposes z, the chain's end; u and the intermediate latents are recovered by running
the flows backwards, and log p(z) = log p(u) + log|det du/dz| (change of variables).

A flow in the guide, `e ~ q_e(...)`, `z = post(e)` with e a latent of the guide alone (a
normalizing-flow posterior, Rezende & Mohamed 2015): z is drawn forwards and
log q(z) = log q_e(e) - log|det dz/de|.

Both serve the plain torch ELBO (`LatentVariableModel.log_weights`) and the Pyro programs,
where a chain is one `TransformedDistribution` over `FlowTransform`s; the two compute the
same numbers from the same draws (tested).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch
from torch import Tensor, nn
from torch.distributions import Transform, constraints

from ..frontend import ast as A
from ..frontend.checked import CheckedModel
from .bayesnet import as_pyro
from .flow import _NetFactory, compile_flow, spec_error

__all__ = ["FlowChain", "FlowTransform", "LatentFlows", "model_chains", "guide_chains", "run_flow"]


@dataclass(frozen=True)
class FlowChain:
    """`outputs[i] = flows[i](inputs[i])`, from `base` (defined by '~') to `end`."""

    base: str
    flows: tuple[str, ...]      # flow names in the base -> end direction
    outputs: tuple[str, ...]    # the latent each flow defines; the last is the chain's end
    shape: tuple[int, ...]      # every variable on a chain has this shape (checked)

    @property
    def end(self) -> str:
        return self.outputs[-1]

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.base, *self.outputs[:-1])


def _chains(spec: CheckedModel, statement_of) -> list[FlowChain]:
    """The chains of flow applications `v = f(w)` among the statements `statement_of(var)`
    gives (model or guide) that end at a latent."""
    applied = {}  # output -> (flow, input)
    for var in spec.vars.values():
        stmt = statement_of(var)
        if isinstance(stmt, A.AssignStmt) and A.call_name(stmt.expr) in spec.flows:
            applied[var.name] = (A.call_name(stmt.expr), stmt.expr.args[0].value.id)
    inputs = {w for _, w in applied.values()}
    chains = []
    for end in applied:
        if end in inputs or spec.vars[end].kind != "latent":
            continue
        flows, outputs, current = [], [], end
        while current in applied:
            flow, current_input = applied[current]
            flows.insert(0, flow)
            outputs.insert(0, current)
            current = current_input
        chains.append(FlowChain(current, tuple(flows), tuple(outputs), spec.vars[end].type.shape))
    return chains


def model_chains(spec: CheckedModel) -> list[FlowChain]:
    """Flow priors: chains of model statements ending at a latent."""
    return _chains(spec, lambda var: var.stmt)


def guide_chains(spec: CheckedModel) -> list[FlowChain]:
    """Flow posteriors: chains of guide statements (their bases are latents of the guide alone)."""
    return _chains(spec, lambda var: var.guide_stmt)


def run_flow(stack: nn.Module, shape: tuple[int, ...], value: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
    """A flow stack (or its inverse) on values of `shape` after any leading axes, and the
    log|det| of the map taken, one per leading index."""
    lead = value.shape[:value.dim() - len(shape)]
    out, log_det = (stack.inverse if inverse else stack)(value.reshape(*lead, prod(shape)))
    return out.reshape(value.shape), log_det


class FlowTransform(Transform):
    """A flow stack as a torch `Transform` on values of `shape` (flattened for the stack).

    The log-det of the last map in either direction is kept, so the log-density
    `TransformedDistribution` asks for right after `inv` (or after sampling) costs no
    second pass. One instance per program run: never stored on a module."""

    bijective = True

    def __init__(self, stack: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__(cache_size=1)
        self.stack, self.shape = stack, tuple(shape)
        self._last: tuple | None = None  # (x, y, log|det dy/dx|)

    @property
    def domain(self):
        return constraints.independent(constraints.real, len(self.shape)) if self.shape else constraints.real

    codomain = domain

    def _run(self, value: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        return run_flow(self.stack, self.shape, value, inverse)

    def _call(self, x: Tensor) -> Tensor:
        y, log_det = self._run(x, inverse=False)
        self._last = (x, y, log_det)
        return y

    def _inverse(self, y: Tensor) -> Tensor:
        x, log_det = self._run(y, inverse=True)
        self._last = (x, y, -log_det)
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        if self._last is not None and self._last[0] is x and self._last[1] is y:
            return self._last[2]
        return self._run(x, inverse=False)[1]


class _LayerNets(_NetFactory):
    """The flow backend's net factory, refusing a declared net that a statement also calls:
    the latent model builds that one separately, so the weights would silently not be shared."""

    def __init__(self, model: CheckedModel, statement_nets: set[str]) -> None:
        super().__init__(model)
        self.statement_nets = statement_nets

    def _shared_or_new(self, choice, use, build):
        if choice.shared in self.statement_nets:
            raise self._error(choice, f"net {choice.shared} is called in a statement and named by a flow layer; "
                                      "a flow layer cannot share a statement's net",
                              "write the layer's net inline, e.g. net = MLP(hidden = [64])")
        return super()._shared_or_new(choice, use, build)


class LatentFlows(nn.Module):
    """The flow stacks of a latent-variable model and the chains that use them."""

    def __init__(self, spec: CheckedModel, statement_nets: set[str]) -> None:
        super().__init__()
        self.priors = {c.base: c for c in model_chains(spec)}        # keyed by the base u
        self.posteriors = {c.base: c for c in guide_chains(spec)}    # keyed by the guide-only base e
        dims: dict[str, int] = {}
        for chain in [*self.priors.values(), *self.posteriors.values()]:
            for name in chain.flows:
                if dims.setdefault(name, prod(chain.shape)) != prod(chain.shape):
                    raise spec_error(spec, spec.flows[name].decl.span, f"flow '{name}' is applied to {dims[name]} "
                                     f"and to {prod(chain.shape)} dimensions; a flow has one dimension")
        nets = _LayerNets(spec, statement_nets)
        self.stacks = nn.ModuleDict({name: compile_flow(spec, name, dim, nets) for name, dim in dims.items()})
        # which latents the flows define (sets, looked up in every step's loops)
        self.prior_ends = frozenset(c.end for c in self.priors.values())  # the guide proposes these
        self.prior_outputs = frozenset(n for c in self.priors.values() for n in c.outputs)
        # computed by running a flow prior backwards: its base and intermediates
        self.recovered = frozenset(n for c in self.priors.values() for n in c.inputs)
        # defined in the guide by a flow (outputs of guide chains)
        self.pushed = frozenset(n for c in self.posteriors.values() for n in c.outputs)

    # ---- plain torch ------------------------------------------------------------------
    def invert(self, chain: FlowChain, env: dict) -> Tensor:
        """Run a chain backwards from env[end], writing its inputs into env; log|det d base / d end|."""
        value, total = env[chain.end], 0.0
        for flow, name in zip(reversed(chain.flows), reversed(chain.inputs)):
            value, log_det = run_flow(self.stacks[flow], chain.shape, value, inverse=True)
            env[name] = value
            total = total + log_det
        return total

    def push(self, chain: FlowChain, env: dict) -> Tensor:
        """Run a chain forwards from env[base], writing its outputs into env; log|det d end / d base|."""
        value, total = env[chain.base], 0.0
        for flow, name in zip(chain.flows, chain.outputs):
            value, log_det = run_flow(self.stacks[flow], chain.shape, value, inverse=False)
            env[name] = value
            total = total + log_det
        return total

    # ---- Pyro ---------------------------------------------------------------------------
    def distribution(self, chain: FlowChain, base_dist):
        """The chain's end as a Pyro `TransformedDistribution` of the base's distribution."""
        import pyro.distributions as dist

        return dist.TransformedDistribution(as_pyro(base_dist),
                                            [FlowTransform(self.stacks[f], chain.shape) for f in chain.flows])

    @staticmethod
    def recover(chain: FlowChain, transformed, end_value: Tensor, env: dict) -> None:
        """Write the chain's inputs into env from its end's value, through the transforms'
        caches (a value they just produced or inverted costs nothing)."""
        value = end_value
        for transform, name in zip(reversed(transformed.transforms), reversed(chain.inputs)):
            value = transform.inv(value)
            env[name] = value
