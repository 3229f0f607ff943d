"""Chain-rule models (LANGUAGE.md §5.2): each `x ~ Autoregressive(Family, conditioner = ...,
order = ..., context = ...)` statement becomes an exact `AutoregressiveDensity`
(`dgmdsl.nn.autoregressive`): FVSBN, Markov chains, NADE/RNADE, MADE ensembles, PixelCNN.

The spec is read here into plain arguments of `build_autoregressive`; whatever the
library rejects is reported as a located error at the statement. A MADE ensemble
(`masks = k > 1`) moves to its next connectivity after every training-mode `log_prob`
(one per optimizer step under `exact_nll`), and averages the k models in eval mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..frontend import ast as A
from ..frontend.checked import CheckedModel, NetInfo, VarInfo
from ..frontend.diagnostics import DgmError, Diagnostic
from ..frontend.spans import Span
from ..frontend.values import Sym, to_value
from ..ir import ModelIR
from ..nn.autoregressive import AutoregressiveDensity, build_autoregressive
from ..nn.autoregressive.base import resolve_activation
from ..nn.mlp import make_activation
from .base import CompiledModel

__all__ = ["AutoregressiveModel", "DensityArguments", "read_statement"]

DEFAULT_CONDITIONER = "NADE"     # the spec names none: the canonical neural chain-rule model
DEFAULT_MIXTURE_COMPONENTS = 10  # MixtureOfGaussians without K (as in rnade.dgm)
MLP_HIDDEN_DEFAULT = [64, 64]    # an MLP net without `hidden`, as families.expressions.build_net builds it
_LEVELLED = ("Categorical", "DiscretizedLogistic")  # families whose K is the number of values


@dataclass(frozen=True)
class DensityArguments:
    """The arguments of `build_autoregressive` read off one statement."""

    family: str
    family_options: dict[str, Any]
    conditioner: str
    conditioner_options: dict[str, Any]
    event_shape: tuple[int, ...]
    order: Any
    context: int | None

    def build(self) -> AutoregressiveDensity:
        return build_autoregressive(self.family, self.family_options, self.conditioner, self.conditioner_options,
                                    self.event_shape, self.order, self.context)


# ---- reading the statement ------------------------------------------------------------
def _located(model: CheckedModel, span: Span, message: str, hint: str | None = None) -> DgmError:
    diagnostic = Diagnostic(span, message, hint, filename=model.source.filename)
    return DgmError([diagnostic], model.source)


def read_statement(model: CheckedModel, var: VarInfo) -> DensityArguments:
    """`var ~ Autoregressive(...)` -> the library's arguments; DgmError for a family that misfits the variable."""
    expr = var.stmt.expr
    keywords = expr.keywords
    family, family_options = _family(model, var, expr.positional[0])
    conditioner, conditioner_options = _conditioner(model, keywords.get("conditioner"))
    context = keywords.get("context")
    return DensityArguments(family, family_options, conditioner, conditioner_options, var.type.shape or (1,),
                            _order(model, keywords.get("order")), None if context is None else int(context.value))


def _plain(value: Any) -> Any:
    if isinstance(value, Sym):
        return value.name
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _call_options(expr: A.Expr) -> dict[str, Any]:
    """Named options of `Name(key = value, ...)` as plain values ({} for a bare name)."""
    if not isinstance(expr, A.Call):
        return {}
    return {key: _plain(to_value(value)) for key, value in expr.keywords.items()}


def _family(model: CheckedModel, var: VarInfo, expr: A.Expr) -> tuple[str, dict[str, Any]]:
    name = A.call_name(expr)
    options = _call_options(expr)
    if isinstance(expr, A.Call) and len(expr.positional) == 1 and "K" not in options:
        options["K"] = _plain(to_value(expr.positional[0]))  # Categorical(4) reads as K = 4
    levels = var.type.k if var.type.base in ("binary", "cat", "ordinal") else None
    if name == "Bernoulli" and levels != 2:
        raise _located(model, expr.span, f"Bernoulli gives the values 0 and 1, but {var.name} is {var.type}",
                       "use Categorical or DiscretizedLogistic for more than two values")
    if name in _LEVELLED:
        options.setdefault("K", levels)
        if options["K"] is None:
            raise _located(model, expr.span, f"{name} needs the number of values K for {var.name} ({var.type})",
                           f"write {name}(K = ...) or declare {var.name} as cat(K) or ordinal(K)")
        if levels is not None and options["K"] != levels:
            raise _located(model, expr.span, f"{name}(K = {options['K']}) does not match {var.name} : {var.type}",
                           f"use K = {levels}")
    if name == "MixtureOfGaussians":
        options.setdefault("K", DEFAULT_MIXTURE_COMPONENTS)
    return name, options


def _conditioner(model: CheckedModel, expr: A.Expr | None) -> tuple[str, dict[str, Any]]:
    if expr is None:
        return DEFAULT_CONDITIONER, {}
    name = A.call_name(expr)
    if name in model.nets:
        return _net_conditioner(model, model.nets[name])
    return name, _with_activation(_call_options(expr))


def _net_conditioner(model: CheckedModel, net: NetInfo) -> tuple[str, dict[str, Any]]:
    """A declared net as a conditioner: an MLP is masked as MADE (one connectivity)."""
    options = {key: _plain(value) for key, value in net.options.items()}
    if "time_embedding" in options:
        raise _located(model, net.span, f"net '{net.name}' takes a time embedding, which a chain-rule "
                                        "conditioner has no use for", "drop time_embedding")
    if net.ctor == "MLP":
        options.setdefault("hidden", list(MLP_HIDDEN_DEFAULT))
        return "MLP", _with_activation(options)
    return net.ctor, _with_activation(options)


def _with_activation(options: dict[str, Any]) -> dict[str, Any]:
    """The library knows a few activations by name; the language's others travel as modules."""
    act = options.get("act")
    if isinstance(act, str):
        try:
            resolve_activation(act)
        except ValueError:
            options["act"] = make_activation(act)
    return options


def _order(model: CheckedModel, expr: A.Expr | None):
    if expr is None:
        return "raster"
    if isinstance(expr, A.Bracket):
        return [int(item.value) for item in expr.items]  # the checker made sure it is a permutation
    if A.call_name(expr) != "random":
        return A.call_name(expr)
    seed = 0
    if isinstance(expr, A.Call):
        given = expr.keywords.get("seed", expr.positional[0] if expr.positional else None)
        seed = to_value(given) if given is not None else 0
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise _located(model, expr.span, "random(seed = s) needs an integer seed")
    return ("random", seed)


# ---- the backend --------------------------------------------------------------------------
class AutoregressiveModel(CompiledModel):
    """One exact chain-rule density per `Autoregressive` statement; log p sums over them."""

    family = "autoregressive"
    # Adam with the minibatch of 100 of the NADE/MADE papers; epochs where the spec says none
    default_settings = {"lr": 1e-3, "batch_size": 100, "epochs": 20}

    def __init__(self, ir: ModelIR) -> None:
        super().__init__(ir)
        self.densities = nn.ModuleDict()
        for var in self.spec.vars.values():
            if var.stmt is not None:
                self.densities[var.name] = self._build(var)
        self._ensembles = [d for d in self.densities.values() if d.conditioner.num_masks > 1]

    def _build(self, var: VarInfo) -> AutoregressiveDensity:
        stmt = var.stmt
        if not (isinstance(stmt, A.SampleStmt) and var.construct == "Autoregressive"):
            raise _located(self.spec, stmt.span, f"a chain-rule model defines its variables with Autoregressive; "
                                                 f"'{var.name}' is defined otherwise", "model it in a separate model")
        if var.kind != "data":
            raise _located(self.spec, stmt.span, f"Autoregressive models observed data, but '{var.name}' is a "
                                                 f"{var.kind}; its likelihood would need an integral",
                           f"declare it as data {var.name} : {var.type}")
        try:
            return read_statement(self.spec, var).build()
        except ValueError as error:
            raise _located(self.spec, stmt.expr.span, str(error)) from None

    # ---- density ---------------------------------------------------------------------------
    def log_prob(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Exact log p(x) per example; in training mode a MADE ensemble then moves to its next mask."""
        total = 0.0
        for name, density in self.densities.items():
            values = batch[name]
            total = total + density.log_prob(values.reshape(len(values), *density.event_shape))
        if self.training:
            for density in self._ensembles:
                density.next_mask()
        return total

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, covariates: dict | None = None) -> dict[str, torch.Tensor]:
        """Exact ancestral samples, reproducible for a given seed (a private generator: the
        global RNG is left alone)."""
        generator = None if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        out = {}
        for name, density in self.densities.items():
            var = self.spec.vars[name]
            values = density.sample(n, generator).reshape(n, *var.type.shape)
            out[name] = values.long() if var.type.discrete else values
        return out

    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, **options) -> dict:
        """Exact NLL (nats per example, bits per dimension); a MADE ensemble averages its k models."""
        was_training = self.training
        self.eval()
        try:
            return super().evaluate(batch, batch_size, draws, **options)
        finally:
            self.train(was_training)

    # ---- checkpoint: where each MADE ensemble is in its mask cycle ---------------------------
    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor([d.conditioner.mask_index for d in self._ensembles], dtype=torch.long)

    def set_extra_state(self, state: torch.Tensor) -> None:
        for density, index in zip(self._ensembles, state.tolist()):
            density.conditioner.mask_index = int(index)
