"""Invertible layer stacks (LANGUAGE.md §5.4): `x = f(z)`, `z ~ Normal(loc, scale)`, `f` a
`flow` block; x gets an exact density by change of variables. Flows may be chained
(`z = f(u)`, `x = g(z)`), and a flow named twice is one set of layers.

Nets. A layer's `net` is a constructor written inline (`MLP(hidden = [64, 64])`, `Linear`,
`MADE(hidden = [...])`: a fresh net per unrolled layer) or a declared net's name: one
module wherever it is named, `repeat` copies included, as every use of a declared net
shares its weights (§3). Couplings take `MLP`/`Linear`; `maf`/`iaf` take `MADE`.

Discrete data. A flow over `data x : binary[...]` or `ordinal(K)[...]`, written
`x = f(z)` as for real data, models the uniformly dequantized y = (x + u) / K,
u ~ U[0, 1) per value, on [0, 1)^D (end the flow with `logit(alpha)` or `sigmoid` to keep
it there; K = 2 for binary). Training maximises log p(y) - D log K, an unbiased estimate
of a lower bound on log P(x); samples are floor(K y) clipped to {0, ..., K-1}; `evaluate`
states the correction. (The checker must accept a binary/ordinal target of `x = f(z)` for
specs to declare this; the backend side is in place.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..frontend import ast as A
from ..frontend.catalog import FLOW_LAYERS
from ..frontend.checked import CheckedModel, VarInfo
from ..frontend.diagnostics import DgmError, Diagnostic
from ..frontend.spans import Span
from ..frontend.values import CallValue, Sym, to_value
from ..ir import ModelIR
from ..nn.flows import ActNorm, FlowDensity, FlowStack, LayerSpec, RepeatSpec, build_flow, dequantize
from ..nn.flows.spec import FlowItem
from ..nn.mlp import MLP, make_activation
from .base import CompiledModel, seeded

__all__ = ["FlowModel", "NetChoice", "flow_layer_specs", "compile_flow", "kl_estimate", "spec_error", "INIT_ROWS",
           "KL_SAMPLES"]

INIT_ROWS = 4096      # rows of training data for actnorm's data-dependent initialisation
KL_SAMPLES = 4096     # student samples for the evaluated KL(student || teacher)
_DEFAULT_HIDDEN = [64, 64]


def spec_error(model: CheckedModel, span: Span, message: str, hint: str | None = None) -> DgmError:
    """A located user error in `model`'s spec (`file:line:col: error: ...`)."""
    return DgmError([Diagnostic(span, message, hint, filename=model.source.filename)], model.source)


# ---- flow blocks -> layer specs ----------------------------------------------------
@dataclass(frozen=True)
class NetChoice:
    """A layer's `net` option: a constructor and its options; `shared` names a declared net."""

    ctor: str
    options: dict = field(default_factory=dict)
    shared: str | None = None
    span: Span | None = None


def flow_layer_specs(model: CheckedModel, items) -> list[FlowItem]:
    """The AST layers of a `flow` block as `LayerSpec`/`RepeatSpec` (nets as `NetChoice`)."""
    out: list[FlowItem] = []
    for item in items:
        if isinstance(item, A.Repeat):
            out.append(RepeatSpec(int(item.count.value), flow_layer_specs(model, item.body)))
        else:
            out.append(LayerSpec(item.name, _layer_options(model, item)))
    return out


def _layer_options(model: CheckedModel, layer: A.Layer) -> dict:
    schema = FLOW_LAYERS[layer.name]
    options: dict = {}
    for arg in layer.args:
        key = arg.name or next(iter(schema))  # a positional argument is the first option (checker's rule)
        value = to_value(arg.value)
        if key == "net":
            options["net"] = _net_choice(model, value, arg.value.span)
        elif key == "order":
            options.update(_order(value))
        else:
            options[key] = value.name if isinstance(value, Sym) else value
    return options


def _order(value) -> dict:
    """`reverse`, `random`, `random(s)` or `random(seed = s)` as build options."""
    name = value.name if isinstance(value, (Sym, CallValue)) else value
    if name != "random":
        return {"order": name}
    seed = 0
    if isinstance(value, CallValue):
        seed = value.options.get("seed", value.args[0] if value.args else 0)
    return {"order": "random", "seed": int(seed)}


def _net_choice(model: CheckedModel, value, span: Span) -> NetChoice:
    if isinstance(value, Sym) and value.name in model.nets:
        info = model.nets[value.name]
        return NetChoice(info.ctor, _plain_options(info.options), value.name, span)
    if isinstance(value, Sym):
        return NetChoice(value.name, {}, None, span)
    if isinstance(value, CallValue) and value.name not in model.nets:
        return NetChoice(value.name, _plain_options(value.options), None, span)
    raise spec_error(model, span, "a layer's net is a constructor such as MLP(hidden = [64, 64]) "
                     "or a declared net's name", "write `net = s` for a declared net s, without arguments")


def _plain_options(options: dict) -> dict:
    return {k: (v.name if isinstance(v, Sym) else v) for k, v in options.items()}


class _NetFactory:
    """Builds the nets the layers name; a declared net is built once and shared."""

    def __init__(self, model: CheckedModel) -> None:
        self.model = model
        self.shared: dict[str, tuple[tuple, nn.Module]] = {}

    def coupling_net(self, choice: NetChoice | None, n_in: int, n_out: int) -> nn.Module:
        choice = choice or NetChoice("MLP")
        if choice.ctor not in ("MLP", "Linear"):
            raise self._error(choice, f"a coupling layer's net is an MLP or Linear, not {choice.ctor}")
        return self._shared_or_new(choice, ("coupling", n_in, n_out), lambda: self._mlp(choice, n_in, n_out))

    def made(self, choice: NetChoice | None, features: int, param_dims) -> nn.Module:
        choice = choice or NetChoice("MADE", {"hidden": [max(h, features) for h in _DEFAULT_HIDDEN]})
        if choice.ctor != "MADE":
            raise self._error(choice, f"maf and iaf need an autoregressive net, MADE(hidden = [...]), "
                                      f"not {choice.ctor}")
        return self._shared_or_new(choice, ("made", features, tuple(param_dims)),
                                   lambda: self._made(choice, features, param_dims))

    def _shared_or_new(self, choice: NetChoice, use: tuple, build) -> nn.Module:
        if choice.shared is None:
            return build()
        if choice.shared not in self.shared:
            self.shared[choice.shared] = (use, build())
        first_use, module = self.shared[choice.shared]
        if first_use != use:
            raise self._error(choice, f"net {choice.shared} is shared by every layer naming it, but it is "
                                      f"used here as {use[0]} {use[1:]} and elsewhere as {first_use[0]} "
                                      f"{first_use[1:]}", "write the constructor inline for one net per layer")
        return module

    def _hidden(self, choice: NetChoice) -> list[int]:
        hidden = choice.options.get("hidden", _DEFAULT_HIDDEN)
        return [int(h) for h in (hidden if isinstance(hidden, list) else [hidden])]

    def _mlp(self, choice: NetChoice, n_in: int, n_out: int) -> nn.Module:
        if "time_embedding" in choice.options:
            raise self._error(choice, "a flow layer's net takes no time input (time_embedding)")
        if choice.ctor == "Linear":
            return nn.Linear(n_in, n_out)
        return MLP(n_in, n_out, self._hidden(choice), choice.options.get("act", "relu"),
                   choice.options.get("init", "default"))  # options are plain (_plain_options)

    def _made(self, choice: NetChoice, features: int, param_dims) -> nn.Module:
        from pyro.nn import AutoRegressiveNN

        hidden = self._hidden(choice)
        if int(choice.options.get("masks", 1)) != 1:
            raise self._error(choice, "MADE(masks = k) with k > 1 is not supported in flow layers",
                              "permute(random(seed = s)) between layers varies the order instead")
        if min(hidden) < features:
            raise self._error(choice, f"MADE's hidden widths {hidden} must be at least the flow's "
                                      f"dimension {features}")
        # The natural order: permute layers between maf/iaf layers supply the others.
        return AutoRegressiveNN(features, hidden, param_dims=list(param_dims), permutation=torch.arange(features),
                                nonlinearity=make_activation(choice.options.get("act", "relu")))

    def _error(self, choice: NetChoice, message: str, hint: str | None = None) -> DgmError:
        return spec_error(self.model, choice.span, message, hint)


def compile_flow(model: CheckedModel, name: str, dim: int, nets: _NetFactory | None = None) -> FlowStack:
    """The `FlowStack` of the model's flow `name` on `dim`-vectors (for any backend using a flow)."""
    nets = nets or _NetFactory(model)
    decl = model.flows[name].decl
    try:
        return build_flow(flow_layer_specs(model, decl.layers), dim, make_net=nets.coupling_net,
                          make_made=nets.made)
    except ValueError as exc:  # the layer library's own checks (dimensions, option values)
        raise spec_error(model, decl.span, f"flow '{name}': {exc}") from None


# ---- x = f(z) chains ----------------------------------------------------------------
@dataclass
class _Chain:
    """`x = f_k(... f_1(z))`: a data variable, its flows in z -> x order, the latents along it."""

    target: VarInfo
    flows: list[str]
    latents: list[str]   # the base first, then each intermediate output
    loc: float
    scale: float
    levels: int | None   # dequantization levels of a discrete target

    @property
    def dim(self) -> int:
        return self.target.type.size


def _find_chains(model: CheckedModel) -> list[_Chain]:
    chains = [_chain(model, v) for v in model.data_vars if v.construct == "flow"]
    covered = {name for c in chains for name in (c.target.name, *c.latents)}
    for var in model.vars.values():
        if var.name not in covered:
            raise spec_error(model, var.span, f"{var.name} is not part of a flow: the flow family compiles "
                             "data defined by x = f(z), z ~ Normal(loc, scale)",
                             "other variables need another model family")
    return chains


def _chain(model: CheckedModel, target: VarInfo) -> _Chain:
    flows, produced, current = [], [], target
    while current.construct == "flow":
        call = current.stmt.expr
        flows.insert(0, call.func.id)
        if current is not target:
            produced.insert(0, current.name)
        current = model.vars[call.args[0].value.id]
    loc, scale = _normal_base(model, current)
    base = target.type.base
    levels = 2 if base == "binary" else target.type.k if base == "ordinal" else None
    if target.type.discrete and levels is None:
        raise spec_error(model, target.span, f"{target.name} is {target.type}: a flow dequantizes only "
                         "binary and ordinal(K) data")
    return _Chain(target, flows, [current.name, *produced], loc, scale, levels)


def _normal_base(model: CheckedModel, var: VarInfo) -> tuple[float, float]:
    stmt = var.stmt
    if var.kind == "latent" and isinstance(stmt, A.SampleStmt) and A.call_name(stmt.expr) == "Normal":
        args = {a.name or ("loc", "scale")[i]: to_value(a.value) for i, a in enumerate(stmt.expr.args)}
        loc, scale = args.get("loc", 0.0), args.get("scale", 1.0)
        if all(isinstance(v, (int, float)) for v in (loc, scale)) and scale > 0:
            return float(loc), float(scale)
    raise spec_error(model, stmt.span if stmt is not None else var.span,
                     f"the base of a flow must be {var.name} ~ Normal(loc, scale) with constant loc and scale")


# ---- the backend ---------------------------------------------------------------------
class FlowModel(CompiledModel):
    """One `FlowDensity` per flow-defined data variable; log p is their sum."""

    family = "flow"

    def __init__(self, ir: ModelIR) -> None:
        super().__init__(ir)
        model = self.spec
        self.chains = {c.target.name: c for c in _find_chains(model)}
        nets, stacks = _NetFactory(model), {}
        for chain in self.chains.values():
            for name in chain.flows:
                if name not in stacks:
                    stacks[name] = compile_flow(model, name, chain.dim, nets)
                elif stacks[name].dim != chain.dim:
                    raise spec_error(model, chain.target.span, f"flow '{name}' is applied to {stacks[name].dim} "
                                     f"and to {chain.dim} dimensions; a flow has one dimension")
        self.densities = nn.ModuleDict({x: FlowDensity(_compose([stacks[n] for n in c.flows], c.dim))
                                        for x, c in self.chains.items()})
        for x, chain in self.chains.items():
            self.densities[x].base_loc.fill_(chain.loc)
            self.densities[x].base_scale.fill_(chain.scale)
        self._teacher: tuple = ()  # (FlowModel, label) attached by the distill engine, never a submodule

    # ---- data ----------------------------------------------------------------------
    def _continuous(self, name: str, values: Tensor, generator=None) -> tuple[Tensor, Tensor | None]:
        """Flattened [B, D] values on the flow's side and the log-density correction (None: none)."""
        density, levels = self.densities[name], self.chains[name].levels
        flat = values.reshape(len(values), -1).to(density.base_loc.dtype)
        if levels is None:
            return flat, None
        return dequantize(flat, levels, generator)

    @torch.no_grad()
    def initialize(self, data: dict[str, Tensor]) -> None:
        """Actnorm's data-dependent initialisation from up to INIT_ROWS random training rows."""
        for name, density in self.densities.items():
            if name not in data or not any(isinstance(m, ActNorm) for m in density.modules()):
                continue
            rows = data[name][torch.randperm(len(data[name]))[:INIT_ROWS]].to(self.device)
            density.flow.initialize(self._continuous(name, rows)[0])

    # ---- density and sampling ------------------------------------------------------
    def log_prob(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """log p(x) per example (with dequantization: the noisy lower-bound estimate)."""
        total = None
        for name, density in self.densities.items():
            values, correction = self._continuous(name, batch[name], generator)
            log_p = density.log_prob(values)
            log_p = log_p if correction is None else log_p + correction
            total = log_p if total is None else total + log_p
        return total

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, covariates: dict | None = None) -> dict[str, Tensor]:
        out, latents = {}, {}
        with seeded(seed):
            for name, density in self.densities.items():
                chain = self.chains[name]
                value = density.base_loc + density.base_scale * torch.randn(n, chain.dim, device=self.device,
                                                                                      dtype=density.base_loc.dtype)
                latents[chain.latents[0]] = value
                for i, stack in enumerate(_stacks(density.flow, len(chain.flows))):
                    value, _ = stack(value)
                    if i + 1 < len(chain.flows):
                        latents[chain.latents[i + 1]] = value
                out[name] = self._observed(name, value)
        shapes = {v.name: v.type.shape for v in self.spec.vars.values()}
        return {k: v.reshape(n, *shapes[k]) for k, v in {**out, **latents}.items()}

    def _observed(self, name: str, values: Tensor) -> Tensor:
        levels = self.chains[name].levels
        if levels is None:
            return values
        return torch.floor(values * levels).clamp(0, levels - 1).long()

    # ---- single-variable helpers (distillation) ---------------------------------------
    @property
    def single_chain(self) -> _Chain:
        """The chain of the single flow-defined data variable; ValueError if there are several."""
        if len(self.chains) != 1:
            raise ValueError(f"model {self.spec.name} has {len(self.chains)} flow-defined data variables")
        return next(iter(self.chains.values()))

    def sample_with_log_prob(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Flattened continuous draws [n, D] and their log-density, from one z -> x pass."""
        return self.densities[self.single_chain.target.name].sample_with_log_prob(n, generator)

    def continuous_log_prob(self, values: Tensor) -> Tensor:
        """log-density of flattened continuous values [n, D] (before any dequantization correction)."""
        return self.densities[self.single_chain.target.name].log_prob(values)

    def set_teacher(self, teacher: "FlowModel", label: str) -> None:
        """Attach a distillation teacher: `evaluate` then also reports its NLL and the KL."""
        teacher.eval()
        self._teacher = (teacher, label)

    # ---- evaluation ------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, **options) -> dict:
        """Exact held-out NLL (a dequantization bound for discrete data); KL to a teacher if attached."""
        log_p = self._log_prob_chunks(self, batch, batch_size)
        metrics = _nll_metrics(log_p, self.observed_dims())
        correction = sum(c.dim * math.log(c.levels) for c in self.chains.values() if c.levels)
        if correction:
            metrics.update(kind="dequantized NLL bound", dequantization_correction_nats=correction,
                           continuous_nll_nats=metrics["nll_nats"] - correction,
                           dequantization="uniform noise u ~ U[0, 1) per value: nll_nats = "
                                          "-E log p((x + u) / K) + D log K, an upper bound on the discrete NLL")
        if self._teacher:
            metrics.update(self._distillation_metrics(batch, batch_size, int(options.get("kl_samples", KL_SAMPLES))))
        return metrics

    def _log_prob_chunks(self, model: "FlowModel", batch: dict, batch_size: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(0)  # same dequantization noise each time
        n = len(next(iter(batch.values())))
        return torch.cat([model.log_prob({k: v[i:i + batch_size].to(model.device) for k, v in batch.items()},
                                         generator) for i in range(0, n, batch_size)])

    def _distillation_metrics(self, batch: dict, batch_size: int, n_samples: int) -> dict:
        teacher, label = self._teacher
        teacher.to(self.device)
        renamed = {teacher.single_chain.target.name: batch[self.single_chain.target.name]}
        teacher_nll = _nll_metrics(self._log_prob_chunks(teacher, renamed, batch_size), self.observed_dims())
        generator = torch.Generator(device=self.device).manual_seed(1)
        kl, kl_stderr = kl_estimate(self, teacher, n_samples, generator)
        return {"teacher": label, "teacher_nll_nats": teacher_nll["nll_nats"],
                "teacher_nll_stderr": teacher_nll["nll_stderr"], "kl_student_teacher_nats": kl,
                "kl_stderr": kl_stderr, "kl_samples": n_samples}


def kl_estimate(student: FlowModel, teacher: FlowModel, n: int, generator: torch.Generator | None = None,
                batch_size: int = 4096) -> tuple[float, float]:
    """Monte Carlo KL(student || teacher) = E_student[log q(x) - log p(x)] and its standard error."""
    diffs = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            values, log_q = student.sample_with_log_prob(min(batch_size, n - start), generator)
            diffs.append((log_q - teacher.continuous_log_prob(values)).double())
    diff = torch.cat(diffs)
    return float(diff.mean()), float(diff.std() / math.sqrt(n)) if n > 1 else 0.0


def _nll_metrics(log_p: Tensor, dims: int) -> dict:
    log_p = log_p.double()
    nll = float(-log_p.mean())
    return {"nll_nats": nll, "nll_stderr": float(log_p.std() / math.sqrt(len(log_p))) if len(log_p) > 1 else 0.0,
            "bits_per_dim": nll / (dims * math.log(2)) if dims else float("nan"), "kind": "exact NLL"}


def _compose(stacks: list[FlowStack], dim: int) -> FlowStack:
    return stacks[0] if len(stacks) == 1 else FlowStack(stacks, dim)


def _stacks(flow: FlowStack, count: int) -> list[FlowStack]:
    """The per-flow stacks of a (possibly composed) chain, in z -> x order."""
    return [flow] if count == 1 else list(flow.layers)
