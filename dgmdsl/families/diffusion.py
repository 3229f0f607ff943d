"""SDE diffusion (LANGUAGE.md §5.6): `x ~ Diffusion(sde, score = s)` with the SDE written in
the spec (`sde vp { beta(t) = ...; dx = f dt + g dw }`).

The front end proved the drift affine, f = a(t) x + b(t). The perturbation kernel
q(x_t | x_0) = N(m(t) x_0 + c(t), v(t) I) is derived from a, b, g once, when the model is
built: in closed form where sympy integrates it, else by solving its ODEs with torchdiffeq.

The score is s(x, t) = net(x_in, t) / std(t): the net predicts minus the added noise, as in
Song et al.'s reference models, so its output stays O(1) at every t. Its input
x_in = (x - c(t)) / sqrt(m(t)^2 + v(t)) has unit scale for unit-variance data (this matters
for VE SDEs; for VP SDEs it is the identity and is skipped).
"""
from __future__ import annotations

import math

import sympy
import torch
from torch import nn

from ..frontend.checked import SdeInfo
from ..ir import ModelIR
from ..numerics.prob_flow import EXACT_DIVERGENCE_MAX_DIM, probability_flow_nll, probability_flow_sample
from ..numerics.score_samplers import euler_maruyama, predictor_corrector
from ..numerics.sde_kernel import GaussianKernel, derive_kernel, dsm_loss
from ..runtime.errors import RuntimeUserError
from .score import EVAL_SEED, IMAGE_DIMS, ScoreBasedModel, construct_arguments, per_example

__all__ = ["DiffusionModel", "derive_sde_kernel", "DSM_EPS", "SAMPLE_EPS", "NLL_EPS", "EVAL_TOL",
           "HUTCHINSON_PROBES", "IMAGE_NLL_EXAMPLES"]

DSM_EPS = 1e-5       # training draws t on [DSM_EPS, 1] (LANGUAGE.md §5.6)
SAMPLE_EPS = 1e-3    # samplers stop at t = SAMPLE_EPS, where the score is still well resolved
NLL_EPS = 1e-5       # the NLL is that of p_eps at this t
EVAL_TOL = 1e-5      # default rtol = atol of the probability-flow ODE at evaluation
HUTCHINSON_PROBES = 1    # Rademacher probes above EXACT_DIVERGENCE_MAX_DIM dimensions
IMAGE_NLL_EXAMPLES = 16  # default examples for the ODE NLL of data above IMAGE_DIMS dimensions


def derive_sde_kernel(sde: SdeInfo) -> GaussianKernel:
    """The perturbation kernel of the spec's SDE, from the front end's a(t), b(t), g(t)."""
    t = sympy.Symbol("t")
    try:
        a, b, g = (sympy.sympify(text, locals={"t": t}) for text in (sde.a, sde.b, sde.g))
        return derive_kernel(a, b, g, t)
    except (ValueError, NotImplementedError, TypeError, sympy.SympifyError) as exc:
        raise RuntimeUserError(f"sde {sde.name}: cannot derive its perturbation kernel ({exc})",
                               hint="write the drift and diffusion with +, -, *, /, ^, sqrt, exp and log of t")


def _is_variance_preserving(kernel: GaussianKernel) -> bool:
    """m(t)^2 + v(t) = 1 and c(t) = 0 on [0, 1]: x_t has unit scale for unit-variance data."""
    grid = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    scale = kernel.mean_coef(grid) ** 2 + kernel.var(grid)
    return bool((scale - 1).abs().max() < 1e-6) and bool(kernel.mean_shift(grid).abs().max() < 1e-9)


class DiffusionModel(ScoreBasedModel):
    family = "diffusion"
    construct = "Diffusion"
    has_density = True  # the probability-flow ODE's, by the instantaneous change of variables
    samplers = {
        "euler_maruyama": {"steps": 1000},
        "pc": {"steps": 1000, "corrector": {"name": "langevin", "snr": 0.16, "steps": 1}},
        "ode": {"rtol": 1e-5, "atol": 1e-5},
    }

    def __init__(self, ir: ModelIR) -> None:
        var = next(v for v in ir.model.vars.values() if v.construct == self.construct)
        args = construct_arguments(var, ("sde",))
        super().__init__(ir, args["score"].id)
        self.sde = self.spec.sdes[args["sde"].id]
        self.kernel = derive_sde_kernel(self.sde)
        self.standardize = not _is_variance_preserving(self.kernel)
        self.reject_method_options({"weighting"}, "Diffusion's noise comes from its sde; "
                                                  "dsm(weighting = variance | likelihood) is its only option")
        weighting = self.spec.method.options.get("weighting") if self.spec.method else None
        self.weighting = getattr(weighting, "name", weighting) or "variance"

    # ---- score and training -----------------------------------------------------------------
    def score(self, x: torch.Tensor, t: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """s(x, t) for x [B, *shape] and t [B] in (0, 1]."""
        kernel = self.kernel
        if self.standardize:
            spread = (kernel.mean_coef(t) ** 2 + kernel.var(t)).sqrt()
            x = (x - per_example(kernel.mean_shift(t), x)) / per_example(spread, x)
        return self.net_output(x, t, net) / per_example(kernel.std(t), x)

    def dsm_loss(self, batch: dict[str, torch.Tensor], options: dict | None = None) -> torch.Tensor:
        """Continuous-time DSM, t ~ U[1e-5, 1], with the variance (default) or likelihood weighting."""
        weighting = (options or {}).get("weighting", self.weighting)
        return dsm_loss(self.score, self.x(batch), self.kernel, weighting, eps=DSM_EPS)

    def sampling_score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.score(x, t, self.sampling_net)

    # ---- sampling ---------------------------------------------------------------------------
    def draw(self, n: int, net: nn.Module) -> torch.Tensor:
        s, shape = self.sampler, (n, *self.event_shape)
        where = {"device": self.device, "dtype": self.dtype, "eps": SAMPLE_EPS}

        def score(x, t):
            return self.score(x, t, net)
        if s["name"] == "euler_maruyama":
            return euler_maruyama(score, self.kernel, shape, int(s["steps"]), **where)
        if s["name"] == "pc":
            corrector = s["corrector"]
            return predictor_corrector(score, self.kernel, shape, int(s["steps"]), snr=float(corrector["snr"]),
                                       corrector_steps=int(corrector["steps"]), **where)
        return probability_flow_sample(score, self.kernel, shape, rtol=float(s["rtol"]), atol=float(s["atol"]),
                                       **where)

    # ---- density and evaluation ---------------------------------------------------------------
    def nll(self, x: torch.Tensor, rtol: float = EVAL_TOL, atol: float = EVAL_TOL, probes: int = HUTCHINSON_PROBES,
            exact_divergence: bool | None = None, generator: torch.Generator | None = None) -> dict:
        """Per-example NLL of p_eps at x by the probability-flow ODE (see `probability_flow_nll`)."""
        return probability_flow_nll(self.sampling_score, self.kernel, x, rtol=rtol, atol=atol,
                                    exact_divergence=exact_divergence, probes=probes, generator=generator,
                                    eps=NLL_EPS)

    def log_prob(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """log p_eps(x); above EXACT_DIVERGENCE_MAX_DIM dimensions a Hutchinson estimate (fixed probes)."""
        x = self.x(batch)
        generator = torch.Generator(device=x.device).manual_seed(EVAL_SEED)
        return -self.nll(x, generator=generator)["nll"]

    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, rtol: float = EVAL_TOL,
                 atol: float = EVAL_TOL, probes: int = HUTCHINSON_PROBES, exact_divergence: bool | None = None,
                 nll_examples: int | None = None, mmd_samples: int | None = None, dequantize: bool = True,
                 **options) -> dict:
        """Probability-flow NLL in nats and bits/dim (binarized data uniformly dequantized, an
        upper bound on the discrete NLL), then sample MMD next to its noise floor."""
        x = self.x(batch)
        if nll_examples is None:
            nll_examples = len(x) if x[0].numel() <= IMAGE_DIMS else IMAGE_NLL_EXAMPLES
        targets = x[: max(1, min(len(x), int(nll_examples)))]
        grid = self.binary_values(targets) if dequantize else None
        width = abs(grid[1] - grid[0]) if grid else None
        generator = torch.Generator(device=x.device).manual_seed(EVAL_SEED)
        nll, evaluations, divergence = [], 0, ""
        for start in range(0, len(targets), batch_size):
            chunk = targets[start:start + batch_size]
            if width:  # uniform noise over each value's cell of the grid
                chunk = chunk + width * (torch.rand(chunk.shape, generator=generator, device=x.device,
                                                    dtype=x.dtype) - 0.5)
            out = self.nll(chunk, rtol, atol, probes, exact_divergence, generator)
            nll.append(out["nll"].double())
            evaluations, divergence = evaluations + out["evaluations"], out["divergence"]
        values = torch.cat(nll) - (targets[0].numel() * math.log(width) if width else 0.0)
        metrics = self._nll_summary(values, targets[0].numel())
        metrics.update({"ode_evaluations": evaluations, "sde_kernel": self.kernel.source,
                        "kind": self._describe_nll(rtol, atol, divergence, width)})
        metrics.update(self.mmd_metrics(x, batch_size, mmd_samples))
        return metrics

    @staticmethod
    def _nll_summary(values: torch.Tensor, dims: int) -> dict:
        mean = float(values.mean())
        stderr = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0
        return {"nll_nats": mean, "nll_stderr": stderr, "bits_per_dim": mean / (dims * math.log(2)),
                "nll_examples": len(values)}

    @staticmethod
    def _describe_nll(rtol: float, atol: float, divergence: str, width: float | None) -> str:
        divergence = divergence if divergence == "exact" else \
            f"{divergence} (exact up to {EXACT_DIVERGENCE_MAX_DIM} dimensions)"
        text = (f"probability-flow ODE NLL of p_eps (eps = {NLL_EPS:g}) by the instantaneous change of "
                f"variables, dopri5 rtol {rtol:g} atol {atol:g}, {divergence} divergence")
        if width:
            text += (f"; binary data uniformly dequantized over cells of width {width:g} "
                     f"(an upper bound on the discrete NLL)")
        return text + "; noise floor = MMD between two held-out halves"
