"""Stochastic variational inference: `svi(elbo = trace | trace_enum | iwae(k), particles)`.

Where every guided latent is reparameterizable the loss is a plain torch program (the
compiled model's `log_weights`): the single- or multi-sample ELBO, or the IWAE bound,
with no Pyro tracing per step. Pyro runs the rest: TraceEnum_ELBO where discrete latents
are summed out (`trace` is upgraded to it there: Trace_ELBO cannot score a latent that
the guide does not sample) and Trace_ELBO for score-function guides. `iwae(k)` always
uses the torch objective, which sums finite discrete latents exactly (Pyro's RenyiELBO
supports neither enumeration nor score-function guides).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from ..frontend.values import CallValue, Sym
from ..runtime.errors import RuntimeUserError
from .base import GradientEngine

__all__ = ["SVI", "method_option", "parse_elbo", "distribution_validation", "DEFAULT_IWAE_K"]

DEFAULT_IWAE_K = 5


def method_option(model, settings, key: str, positional: tuple[str, ...] = ()):
    """A method option as a plain value; a call becomes {"name": ..., **options}.

    Read from the spec's raw option where there is one, so positional arguments
    (`iwae(5)`) keep their names; else from the resolved settings."""
    method = getattr(getattr(model, "spec", None), "method", None)
    value = method.options.get(key) if method is not None else None
    if value is None:
        return settings.method_options.get(key)
    if isinstance(value, CallValue):
        return {"name": value.name, **dict(zip(positional, value.args)), **dict(value.kwargs)}
    return value.name if isinstance(value, Sym) else value


@contextmanager
def distribution_validation(enabled: bool):
    """torch.distributions argument checks on or off for a block (restored after).

    Training turns them off: each check is a host sync per distribution per step, and
    the compiled heads are valid by construction (softplus scales); a bad value still
    surfaces as a non-finite loss, which the loop reports."""
    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(enabled)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(previous)


def parse_elbo(value) -> tuple[str, int | None]:
    """("trace" | "trace_enum" | "iwae", k) from the `elbo` option."""
    if isinstance(value, dict):
        return value["name"], int(value.get("k", DEFAULT_IWAE_K))
    name = str(value or "trace")
    return name, DEFAULT_IWAE_K if name == "iwae" else None


class SVI(GradientEngine):
    name = "svi"

    def __init__(self, model, settings) -> None:
        super().__init__(model, settings)
        self.objective, k = parse_elbo(method_option(model, settings, "elbo", ("k",)))
        particles = settings.method_options.get("particles")
        self.particles = int(k if self.objective == "iwae" else particles or 1)
        enumerated = bool(getattr(model, "enumerated", None)) or _has_discrete_latent(model)
        reparameterized = getattr(model, "reparameterized", False)
        self.fast = reparameterized and (not enumerated or self.objective == "iwae")
        if self.objective == "iwae" and not self.fast:
            raise RuntimeUserError("svi(elbo = iwae(k)) needs every guided latent to be reparameterizable",
                                   hint="use elbo = trace or trace_enum")
        self._pyro_elbo = None if self.fast else self._make_pyro_elbo(enumerated)
        self.validation_needs_grad = not self.fast  # Pyro's differentiable_loss refuses to run without a graph

    def fit(self, data, run_dir, resume_state, device) -> dict:
        with distribution_validation(False):
            return super().fit(data, run_dir, resume_state, device)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The negative bound per example (nats)."""
        if self.fast:
            log_w, _ = self.model.log_weights(batch, self.particles)
            if self.objective == "iwae":
                return -(torch.logsumexp(log_w, 0) - math.log(self.particles)).mean()
            return -log_w.mean()
        guide = getattr(self.model, "pyro_guide", None) or _empty_guide
        n = len(next(iter(batch.values())))
        return self._pyro_elbo.differentiable_loss(self.model.pyro_model, guide, batch) / n

    def _make_pyro_elbo(self, enumerated: bool):
        import pyro
        from pyro.infer import Trace_ELBO, TraceEnum_ELBO

        pyro.clear_param_store()  # names are per model; stale entries from another model must not linger
        vectorize = self.particles > 1
        if enumerated or self.objective == "trace_enum":
            return TraceEnum_ELBO(max_plate_nesting=1, num_particles=self.particles,
                                  vectorize_particles=vectorize)
        return Trace_ELBO(max_plate_nesting=1, num_particles=self.particles, vectorize_particles=vectorize)


def _has_discrete_latent(model) -> bool:
    """A Bayes net fitted by SVI: its discrete latents are enumerated by its Pyro model."""
    spec = getattr(model, "spec", None)
    return model.family != "latent" and spec is not None and any(v.type.discrete for v in spec.latents)


def _empty_guide(*args, **kwargs) -> None:
    """The guide of a model whose latents are all summed out."""
