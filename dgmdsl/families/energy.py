"""Energy-based models (LANGUAGE.md §5.5): `x ~ Energy(E)` means p(x) = exp(-E(x)) / Z.

Training never needs Z: the engines (exact_sm, ssm, dsm, cd, nce, fce) call `energy`,
`dsm_loss`, `log_z` and `noise_flow`. Evaluation is honest about Z: quadrature on a grid
over a box covering the training data in 1-2 dimensions, annealed importance sampling
above, each with its error; then NLL in nats and the MMD of the spec's sampler's draws
against held-out data next to the noise floor.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..frontend.catalog import DISTRIBUTIONS
from ..frontend.options_schema import METHODS, SAMPLE_METHODS
from ..frontend.values import CallValue, Sym
from ..ir import ModelIR
from ..nn.flows import FlowDensity
from ..numerics.mcmc_samplers import langevin, mala, random_walk_mh
from ..numerics.partition import annealed_importance_sampling, log_z_quadrature
from ..numerics.sample_metrics import mmd_report
from ..numerics.score_matching import denoising_score_matching_loss, standard_normal
from ..runtime.errors import RuntimeUserError
from .base import CompiledModel
from .expressions import build_net
from .flow import compile_flow

__all__ = ["EnergyModel", "plain_option", "engine_options", "SAMPLER_DEFAULTS", "DEFAULT_DSM_SIGMA",
           "QUADRATURE_POINTS", "QUADRATURE_MARGIN", "AIS_CHAINS", "AIS_TEMPS", "EVAL_SAMPLES"]

# Without a `sample` block: 500 steps of 2e-3 (time 1.0) equilibrate within a mode of std 0.1
# (eight_gaussians) with unadjusted Langevin's stationary std ~5% too wide; mh proposals alike.
SAMPLER_DEFAULTS = {
    "langevin": {"steps": 500, "step_size": 2e-3},
    "mala": {"steps": 500, "step_size": 2e-3},
    "mh": {"steps": 500, "proposal_scale": 0.1},
}
DEFAULT_SAMPLER = "langevin"
DEFAULT_DSM_SIGMA = 0.1
QUADRATURE_POINTS = {1: 4096, 2: 512}     # midpoint-rule cells per dimension
QUADRATURE_MARGIN = 3.0                    # the box: data range widened by this many stds per side
AIS_CHAINS, AIS_TEMPS = 256, 1000
EVAL_SAMPLES = 500                         # sampler draws for MMD (at most half the eval batch)
EVAL_SEED = 0


# ---- options: spec values with positional arguments named ---------------------------------
def _positional_names(name: str) -> tuple[str, ...]:
    for table in (METHODS, SAMPLE_METHODS):
        if name in table:
            return table[name].positional
    return DISTRIBUTIONS[name].params if name in DISTRIBUTIONS else ()


def plain_option(value):
    """A spec value as plain Python: Sym -> str, CallValue -> {"name": ..., option: value}
    with positional arguments named by the method, sampler or distribution they belong to."""
    if isinstance(value, Sym):
        return value.name
    if isinstance(value, CallValue):
        named = dict(zip(_positional_names(value.name), value.args))
        named.update(value.kwargs)
        return {"name": value.name, **{k: plain_option(v) for k, v in named.items()}}
    if isinstance(value, list):
        return [plain_option(v) for v in value]
    return value


def engine_options(model: "EnergyModel", overrides: dict | None = None) -> dict:
    """The method's options from the spec, with `overrides` (TrainSettings.method_options) on top.

    The spec is read directly because the settings drop positional arguments of nested calls
    (`noise = Normal(0, 3)` arrives as {"name": "Normal"}); an override naming the same call
    only adds to the spec's options, one naming another call replaces them.
    """
    options = dict(model.method_options())
    for key, value in (overrides or {}).items():
        spec_value = options.get(key)
        if isinstance(value, dict) and isinstance(spec_value, dict) and value.get("name") == spec_value.get("name"):
            value = {**spec_value, **value}
        options[key] = value
    return options


def _describe_call(options: dict) -> str:
    args = ", ".join(f"{k} = {v}" for k, v in options.items() if k != "name")
    return f"{options['name']}({args})"


# ---- the model -------------------------------------------------------------------------------
class EnergyModel(CompiledModel):
    """E is the declared net on the flattened variable; Z is never needed to train."""

    family = "energy"
    has_density = False  # log Z is an estimate made at evaluation, not part of the model

    def __init__(self, ir: ModelIR) -> None:
        super().__init__(ir)
        spec = self.spec
        self.var = next(v for v in spec.vars.values() if v.construct == "Energy")
        self.energy_net = build_net(spec.nets[self.var.stmt.expr.args[0].value.id])
        self.dim = self.var.type.size
        # Training-data summary (set by `initialize`, saved with the weights): where samplers
        # start, what box quadrature covers, what base AIS starts from.
        self.register_buffer("data_loc", torch.zeros(self.dim))
        self.register_buffer("data_scale", torch.ones(self.dim))
        self.register_buffer("data_low", torch.full((self.dim,), -3.0))
        self.register_buffer("data_high", torch.full((self.dim,), 3.0))
        method = spec.method.name if spec.method else None
        if method in ("nce", "fce"):
            self.log_z = nn.Parameter(torch.zeros(()))
        if method == "fce":
            self.noise_flow = self._build_noise_flow(self.method_options()["noise"])
        self.sampler = self._sampler_settings()

    # ---- spec --------------------------------------------------------------------------
    def method_options(self) -> dict:
        method = self.spec.fit.get("method")
        options = plain_option(method) if isinstance(method, CallValue) else {}
        return {k: v for k, v in options.items() if k != "name"}

    def _sampler_settings(self) -> dict:
        value = self.spec.sample.get("method")
        chosen = plain_option(value) if value is not None else DEFAULT_SAMPLER
        name = chosen["name"] if isinstance(chosen, dict) else chosen
        if name not in SAMPLER_DEFAULTS:
            raise RuntimeUserError(f"{self.spec.name}: an energy model cannot be sampled by '{name}'",
                                   hint="use sample { method = langevin | mala | mh }")
        given = chosen if isinstance(chosen, dict) else {}
        return {"name": name, **SAMPLER_DEFAULTS[name], **{k: v for k, v in given.items() if k != "name"}}

    def _build_noise_flow(self, name: str) -> FlowDensity:
        return FlowDensity(compile_flow(self.spec, name, self.dim))

    # ---- energy ------------------------------------------------------------------------------
    def x(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The energy's variable from a batch, flattened to [B, D] in the parameters' dtype."""
        value = batch[self.var.name]
        return value.reshape(value.shape[0], -1).to(self.data_loc.dtype)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) per example [B] for x [B, D]."""
        return self.energy_net(x).squeeze(-1)

    @torch.no_grad()
    def initialize(self, data: dict[str, torch.Tensor]) -> None:
        x = self.x(data)
        self.data_loc.copy_(x.mean(0))
        self.data_scale.copy_(x.std(0).clamp_min(1e-3) if len(x) > 1 else torch.ones_like(self.data_loc))
        self.data_low.copy_(x.min(0).values)
        self.data_high.copy_(x.max(0).values)
        if hasattr(self, "noise_flow"):
            self.noise_flow.flow.initialize(x[torch.randperm(len(x), device=x.device)[:1024]])

    def dsm_loss(self, batch: dict[str, torch.Tensor], options: dict | None = None) -> torch.Tensor:
        """Denoising score matching at one noise level `sigma` (default DEFAULT_DSM_SIGMA).

        With a single sigma both `weighting`s scale the loss by a constant, so it is ignored.
        """
        sigma = float(engine_options(self, options).get("sigma", DEFAULT_DSM_SIGMA))
        return denoising_score_matching_loss(self.energy, self.x(batch), sigma)

    # ---- sampling ----------------------------------------------------------------------------
    def draw(self, n: int, seed: int | None = None) -> tuple[torch.Tensor, dict]:
        """n draws [n, D] by the spec's sampler from N(data mean, data std^2), and a summary
        (the sampler and, for mala/mh, the acceptance rate)."""
        s = self.sampler
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        x0 = self.data_loc + self.data_scale * standard_normal((n, self.dim), self.data_loc, generator)
        info = {"sampler": _describe_call(s)}
        if s["name"] == "langevin":
            x = langevin(self.energy, x0, int(s["steps"]), float(s["step_size"]), generator)
        elif s["name"] == "mala":
            x, info["acceptance_rate"] = mala(self.energy, x0, int(s["steps"]), float(s["step_size"]), generator)
        else:
            x, info["acceptance_rate"] = random_walk_mh(self.energy, x0, int(s["steps"]),
                                                        float(s["proposal_scale"]), generator)
        return x, info

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, covariates: dict | None = None) -> dict[str, torch.Tensor]:
        x, _ = self.draw(n, seed)
        return {self.var.name: x.reshape(n, *self.var.type.shape)}

    # ---- evaluation --------------------------------------------------------------------------
    def quadrature_box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training data's range widened by QUADRATURE_MARGIN stds per side."""
        spread = QUADRATURE_MARGIN * self.data_scale
        return self.data_low - spread, self.data_high + spread

    def log_partition(self, points: int | None = None, chains: int = AIS_CHAINS, temps: int = AIS_TEMPS,
                      seed: int = EVAL_SEED) -> dict:
        """log Z with its error: quadrature in 1-2 dims, AIS from a Normal base above."""
        if self.dim <= 2:
            return self._log_z_by_quadrature(points or QUADRATURE_POINTS[self.dim])
        return self._log_z_by_ais(chains, temps, seed)

    def _log_z_by_quadrature(self, points: int) -> dict:
        low, high = self.quadrature_box()
        q = log_z_quadrature(self.energy, low, high, points_per_dim=points)
        box = " x ".join(f"[{a:.3g}, {b:.3g}]" for a, b in zip(low.tolist(), high.tolist()))
        cell = ((high - low) / points).tolist()
        return {"log_z": q["log_z"], "log_z_truncation": q["truncation_estimate"],
                "log_z_method": (f"quadrature (midpoint rule), {'x'.join([str(points)] * self.dim)} cells on {box} "
                                 f"(training data range +- {QUADRATURE_MARGIN:g} std; cell "
                                 f"{', '.join(f'{c:.3g}' for c in cell)}); truncation estimate "
                                 f"{q['truncation_estimate']:.2e} nats (mass gained on a box 1.5x as wide)")}

    def _log_z_by_ais(self, chains: int, temps: int, seed: int) -> dict:
        # AIS starts from N(0, s^2 I); translate the energy so that base sits on the data mean,
        # with s the largest per-dimension data std (a base wider than the target).
        loc, base_std = self.data_loc, float(self.data_scale.max())
        shifted = lambda u: self.energy(u + loc)  # noqa: E731 - Z is translation invariant
        generator = torch.Generator().manual_seed(seed)
        r = annealed_importance_sampling(shifted, self.dim, n_chains=chains, n_temps=temps, base_std=base_std,
                                         step_size=0.1 * base_std ** 2, generator=generator,
                                         device=loc.device, dtype=loc.dtype)
        return {"log_z": r["log_z"], "log_z_stderr": r["stderr"], "ais_ess": r["ess"],
                "log_z_method": (f"annealed importance sampling, {chains} chains, {temps} intermediate "
                                 f"distributions (geometric path, one MALA step each, acceptance "
                                 f"{r['acceptance_rate']:.2f}) from N(data mean, {base_std:.3g}^2 I); "
                                 f"stderr {r['stderr']:.3g} nats, ESS {r['ess']:.1f}")}

    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, **options) -> dict:
        """NLL in nats with log Z estimated (and its error), learned log Z for NCE/FCE, sample MMD.

        Options: `points` (quadrature cells per dim), `chains`, `temps` (AIS), `samples` (MMD draws).
        """
        x = self.x(batch)
        with torch.no_grad():
            energies = torch.cat([self.energy(part) for part in x.split(batch_size)]).double()
        partition = self.log_partition(options.get("points"), options.get("chains", AIS_CHAINS),
                                       options.get("temps", AIS_TEMPS))
        log_p = -energies - partition["log_z"]
        nll = float(-log_p.mean())
        how = "quadrature" if self.dim <= 2 else "AIS"
        metrics = {"nll_nats": nll, "nll_stderr": float(log_p.std() / math.sqrt(len(log_p))) if len(x) > 1 else 0.0,
                   "bits_per_dim": nll / (self.dim * math.log(2)), "kind": f"NLL with log Z by {how}",
                   **partition}
        if hasattr(self, "log_z"):
            learned = float(self.log_z.detach())
            metrics["log_z_learned"] = learned
            metrics["nll_nats_learned_log_z"] = float(energies.mean()) + learned
        metrics.update(self._sample_mmd(x, options.get("samples", EVAL_SAMPLES)))
        return metrics

    def _sample_mmd(self, x: torch.Tensor, samples: int) -> dict:
        """MMD^2 of sampler draws vs half the held-out batch, next to the other half's (the floor)."""
        half = len(x) // 2
        n = min(samples, half)
        if n < 2:  # samples = 0 turns the sampling off
            return {}
        drawn, info = self.draw(n, seed=EVAL_SEED)
        # The floor compares n held-out points with the same reference, so sizes match.
        report = mmd_report(drawn, x[:half], x[half:half + n])
        return {"mmd2": report["mmd2"], "mmd2_noise_floor": report["noise_floor_mmd2"],
                "mmd2_floor_ratio": report["floor_ratio"], "mmd_bandwidth": report["bandwidth"], "mmd_samples": n, **info}
