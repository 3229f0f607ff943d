"""DDPM (LANGUAGE.md §5.6): `x ~ DDPM(T, beta = linear(a, b) | cosine(s), eps = net)`.

The net predicts the added noise from (x_t, (t + 1) / T) and trains on Ho et al.'s simple
loss; sampling is ancestral or DDIM (`sample { method = ddim(steps, eta) }`); evaluation
reports the variational bound on the NLL. For binarized MNIST scaled to [-1, 1] the bound's
decoder is the discretized Gaussian over the 2 pixel values (a probability, so the bound is
on the discrete NLL) and samplers clip their x_0 predictions to [-1, 1].
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ir import ModelIR
from ..numerics.ddpm import (DDPMSchedule, ancestral_sample, cosine_betas, ddim_sample, linear_betas,
                             simple_loss, variational_bound)
from ..runtime.errors import RuntimeUserError
from .score import IMAGE_DIMS, ScoreBasedModel, construct_arguments, schedule_of

__all__ = ["DDPMModel", "DEFAULT_T", "DEFAULT_BETA", "IMAGE_BOUND_EXAMPLES", "BOUND_CALL_ELEMENTS"]

DEFAULT_T = 1000
DEFAULT_BETA = ("linear", 1e-4, 0.02)   # Ho et al. (2020)
IMAGE_BOUND_EXAMPLES = 8                # default examples for the bound above IMAGE_DIMS dimensions
BOUND_CALL_ELEMENTS = 1 << 16           # numbers per net call while summing the bound (steps x examples x dims)


class DDPMModel(ScoreBasedModel):
    family = "ddpm"
    construct = "DDPM"
    samplers = {"ancestral": {}, "ddim": {"steps": 50, "eta": 0.0}}

    def __init__(self, ir: ModelIR) -> None:
        var = next(v for v in ir.model.vars.values() if v.construct == self.construct)
        args = construct_arguments(var, ())
        super().__init__(ir, args["eps"].id)
        steps = int(args["T"].value) if "T" in args else DEFAULT_T
        name, numbers = schedule_of(args, "beta", DEFAULT_BETA)
        betas = linear_betas(steps, *numbers) if name == "linear" else cosine_betas(steps, *numbers)
        try:
            self.schedule = DDPMSchedule(betas)
        except ValueError as exc:
            raise RuntimeUserError(f"{self.spec.name}: beta = {name}{numbers}: {exc}",
                                   hint="betas must lie in (0, 1), e.g. linear(1e-4, 0.02)") from None
        self.reject_method_options(set(), "DDPM trains on the simple noise-prediction loss")
        # binarized MNIST in [-1, 1]: x_0 predictions are clipped to the data range when sampling
        self.clip_x0 = self.binary_values() == (-1.0, 1.0)

    def eps(self, x: torch.Tensor, t: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """The predicted noise for x_t [B, *shape] at net time t [B] = (step + 1) / T."""
        return self.net_output(x, t, net)

    def dsm_loss(self, batch: dict[str, torch.Tensor], options: dict | None = None) -> torch.Tensor:
        """Ho et al.'s L_simple (denoising score matching with the noise-prediction weighting)."""
        return simple_loss(self.eps, self.x(batch), self.schedule)

    def sampling_eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.eps(x, t, self.sampling_net)

    # ---- sampling ---------------------------------------------------------------------------
    def draw(self, n: int, net: nn.Module) -> torch.Tensor:
        s, shape = self.sampler, (n, *self.event_shape)

        def eps(x, t):
            return self.eps(x, t, net)
        where = {"clip_x0": self.clip_x0, "device": self.device, "dtype": self.dtype}
        if s["name"] == "ddim":
            return ddim_sample(eps, self.schedule, shape, int(s["steps"]), float(s["eta"]), **where)
        return ancestral_sample(eps, self.schedule, shape, **where)

    # ---- evaluation ---------------------------------------------------------------------------
    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, bound_examples: int | None = None,
                 mmd_samples: int | None = None, **options) -> dict:
        """The variational bound on the NLL (nats, bits/dim) with one x_t draw per step, then
        sample MMD next to its noise floor where sampling is cheap."""
        x = self.x(batch)
        if bound_examples is None:
            bound_examples = len(x) if x[0].numel() <= IMAGE_DIMS else IMAGE_BOUND_EXAMPLES
        targets = x[: max(1, min(len(x), int(bound_examples)))]
        discrete = self.binary_values(targets) == (-1.0, 1.0)
        generator = torch.Generator(device=x.device).manual_seed(0)
        # a net call sees chunk_steps x examples rows: many steps at once for small data
        chunk_steps = max(1, BOUND_CALL_ELEMENTS // (min(batch_size, len(targets)) * targets[0].numel()))
        parts = [variational_bound(self.sampling_eps, self.schedule, targets[i:i + batch_size],
                                   data_kind="discrete" if discrete else "continuous", bins=2,
                                   generator=generator, chunk=chunk_steps)
                 for i in range(0, len(targets), batch_size)]
        bound = {k: torch.cat([p[k] for p in parts]).double() for k in ("nll_bound", "prior", "diffusion", "decoder")}
        values, dims = bound["nll_bound"], targets[0].numel()
        mean = float(values.mean())
        metrics = {"nll_bound_nats": mean,
                   "nll_bound_stderr": float(values.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0,
                   "bits_per_dim": mean / (dims * math.log(2)), "bound_examples": len(values),
                   "bound_prior": float(bound["prior"].mean()), "bound_diffusion": float(bound["diffusion"].mean()),
                   "bound_decoder": float(bound["decoder"].mean()), "kind": self._describe_bound(discrete)}
        metrics.update(self.mmd_metrics(x, batch_size, mmd_samples))
        return metrics

    def _describe_bound(self, discrete: bool) -> str:
        decoder = ("discretized Gaussian decoder over the 2 values {-1, 1} (bound on the discrete NLL)"
                   if discrete else "Gaussian decoder (bound on the continuous NLL)")
        return (f"variational bound on the NLL (L_T + sum of L_t + L_0 over T = {self.schedule.T} steps, one x_t "
                f"draw per step), {decoder}; noise floor = MMD between two held-out halves")
