"""Implicit generators (LANGUAGE.md §5.7): `z ~ Normal(0, 1)`, `x = G(z)`, judged by a critic.

The generator has no density, so it is trained adversarially (inference/adversarial.py)
and scored from samples: the kernel MMD of its samples against held-out data next to
the MMD of a second held-out sample (the noise floor), mode coverage on the mixture toy
sets and, for BiGAN, the reconstruction error of G(E(x)).

`critic D = ...` reads the observed data variables; `critic D(x, z)` reads exactly the
variables it names. A latent named by the critic is taken, on the data side, from its
deterministic guide statement `z = E(x)` (the BiGAN encoder), and on the generator side
from the prior, so the critic scores (x, E(x)) against (G(z), z).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..data import TOY_SETS, toy_modes
from ..frontend import ast as A
from ..frontend.checked import VarInfo
from ..frontend.values import CallValue, Sym
from ..ir import ModelIR
from ..numerics.sample_metrics import mmd_report, mode_coverage, reconstruction_error
from .base import CompiledModel, seeded
from .distributions import compile_distribution
from .expressions import ExprCompiler, build_net, one_hot_input

__all__ = ["ImplicitModel", "EVAL_SEED", "MODE_FIT_FRACTION"]

EVAL_SEED = 0
# Mode coverage is reported only where the held-out data itself puts this fraction of its
# rows within 3 std of the named set's modes (about 0.99 for a 2-D Gaussian mode), so a
# run trained on other data than its spec names is not scored against the wrong modes.
MODE_FIT_FRACTION = 0.9

# (env, n, share) -> n draws; share = (rank, world size), see ImplicitModel.generate
Draw = Callable[[dict, int, tuple[int, int]], torch.Tensor]
ONE_PROCESS = (0, 1)


class ImplicitModel(CompiledModel):
    """Generator (model statements), optional encoder (guide statements) and one critic."""

    family = "implicit"
    has_density = False
    # lr None: each loss's default optimizer and step (inference/adversarial.py) unless
    # --lr or the fit block sets one; GANs train for many more passes than the default
    default_settings = {"lr": None, "batch_size": 256, "epochs": 50}

    def __init__(self, ir: ModelIR) -> None:
        super().__init__(ir)
        spec = self.spec
        self.params = nn.ParameterDict({p.name: nn.Parameter(0.5 * torch.randn(p.type.shape))
                                        for p in spec.params})
        self.nets = nn.ModuleDict({n.name: build_net(n) for n in spec.nets.values() if n.kind == "net"})
        critic = _the_critic(spec)
        self.critic = build_net(critic)
        self.pieces = nn.ModuleDict()
        comp = ExprCompiler(spec, self.params, self.nets, self.pieces)
        self.order = [n for n in ir.topological_vars() if spec.vars[n].kind != "param"]
        self.draws: dict[str, Draw] = {}  # latents: drawn from their priors
        self.values: dict[str, Callable[[dict], torch.Tensor]] = {}  # x = G(z) and other assignments
        for name in self.order:
            var = spec.vars[name]
            if isinstance(var.stmt, A.SampleStmt):
                self.draws[name] = _compile_draw(comp, var)
            elif isinstance(var.stmt, A.AssignStmt):
                self.values[name] = comp.compile(var.stmt.expr, var.type.shape, name)
        self.encoder_order = _guide_order(spec)
        self.encoders = {name: comp.compile(spec.vars[name].guide_stmt.expr, spec.vars[name].type.shape,
                                            f"guide_{name}") for name in self.encoder_order}
        self.critic_vars = _critic_vars(spec, critic, self.encoder_order)
        self.bidirectional = any(v.kind == "latent" for v in self.critic_vars)

    # ---- parameter groups (the engine's two optimizers) ----------------------------
    def critic_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.critic.parameters() if p.requires_grad]

    def generator_parameters(self) -> list[nn.Parameter]:
        """Everything but the critic: generator nets, the encoder, params, tables."""
        critic = {id(p) for p in self.critic.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in critic]

    # ---- the two sides the critic compares -------------------------------------------
    def covariates(self, batch: dict) -> dict[str, torch.Tensor]:
        return {v.name: batch[v.name] for v in self.data_vars() if v.is_covariate}

    def generate(self, n: int, covariates: dict | None = None, given: dict | None = None,
                 share: tuple[int, int] = ONE_PROCESS) -> dict:
        """One pass through the model statements: latents from their priors (unless
        `given`), then every deterministic statement (x = G(z)).

        `share` = (rank, world size) under torch.distributed: the process draws the
        latents of the global batch of n × world size rows and keeps rows rank,
        rank + world size, ... (how the loop shards the data), so the processes together
        draw what one process would, and their random streams stay in step."""
        env = {**(covariates or {}), **(given or {})}
        for name in self.order:
            if name in env:
                continue
            if name in self.draws:
                env[name] = self.draws[name](env, n, share)
            elif name in self.values:
                env[name] = self.values[name](env)
            else:
                raise ValueError(f"{self.spec.name} needs the covariate {name} to generate")
        return env

    def encode(self, batch: dict) -> dict[str, torch.Tensor]:
        """Latents from the deterministic guide (BiGAN's encoder E(x))."""
        env = dict(batch)
        for name in self.encoder_order:
            env[name] = self.encoders[name](env)
        return {name: env[name] for name in self.encoder_order}

    def critic_inputs(self, env: dict) -> tuple[torch.Tensor, ...]:
        """The critic's inputs, flattened (one-hot where discrete), in declaration order."""
        return tuple(one_hot_input(env[v.name], v) for v in self.critic_vars)

    def data_side(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """Critic inputs from data: (x) or, for BiGAN, (x, E(x))."""
        env = {**batch, **self.encode(batch)} if self.bidirectional else batch
        return self.critic_inputs(env)

    def generator_side(self, n: int, covariates: dict | None = None,
                       share: tuple[int, int] = ONE_PROCESS) -> tuple[torch.Tensor, ...]:
        """Critic inputs from the generator: (G(z)) or, for BiGAN, (G(z), z)."""
        return self.critic_inputs(self.generate(n, covariates, share=share))

    def score(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The critic's raw output per example, [B]."""
        joined = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1)
        return self.critic(joined).squeeze(-1)

    # ---- sampling ------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, covariates: dict | None = None) -> dict[str, torch.Tensor]:
        """One pass through G; returns the data variables."""
        if covariates:
            n = len(next(iter(covariates.values())))
        with seeded(seed):
            env = self.generate(n, covariates)
        return {v.name: env[v.name] for v in self.data_vars()}

    # ---- evaluation -----------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, dataset: str | None = None,
                 **options) -> dict:
        """MMD of samples against one half of `batch` next to the MMD between the two
        halves (the noise floor at the same sample sizes); mode coverage on mixture toy
        sets (`dataset`, else the spec's data set); BiGAN's reconstruction error."""
        n = len(next(iter(batch.values())))
        half = n // 2
        if half < 2:
            return {"note": "MMD needs at least 4 held-out examples", "kind": "sample-based"}
        reference = {k: v[:half] for k, v in batch.items()}
        second = {k: v[half:2 * half] for k, v in batch.items()}
        with seeded(EVAL_SEED):
            samples = self._generate_in_chunks(half, batch_size, self.covariates(second))
        report = mmd_report(self._features(samples), self._features(reference), self._features(second))
        metrics = {"mmd": math.sqrt(max(report["mmd2"], 0.0)),
                   "mmd_noise_floor": math.sqrt(max(report["noise_floor_mmd2"], 0.0)),
                   "mmd2": report["mmd2"], "mmd2_noise_floor": report["noise_floor_mmd2"],
                   "mmd2_floor_ratio": report["floor_ratio"], "mmd_bandwidth": report["bandwidth"], "samples": half}
        metrics.update(self._mode_metrics(samples, batch, dataset or self._spec_dataset()))
        if self.bidirectional:
            metrics.update(self._reconstruction(batch, batch_size))
        metrics["kind"] = "sample-based (no density); noise floor = MMD between two held-out halves"
        return metrics

    def _generate_in_chunks(self, n: int, batch_size: int, covariates: dict) -> dict[str, torch.Tensor]:
        parts = []
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            cov = {k: v[start:start + count] for k, v in covariates.items()}
            env = self.generate(count, cov)
            parts.append({v.name: env[v.name] for v in self.data_vars()})
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _features(self, values: dict) -> torch.Tensor:
        """Data rows as flat vectors (observed variables and covariates) for the kernel."""
        return torch.cat([one_hot_input(values[v.name], v) for v in self.data_vars()], dim=-1)

    def _spec_dataset(self) -> str | None:
        data = self.spec.fit.get("data")
        name = data.name if isinstance(data, (CallValue, Sym)) else None
        return name if name in TOY_SETS else None

    def _mode_metrics(self, samples: dict, batch: dict, dataset: str | None) -> dict:
        known = toy_modes(dataset) if dataset in TOY_SETS else None
        data = self.data_vars()
        if known is None or len(data) != 1 or data[0].type.size != known[0].shape[1]:
            return {}  # the mixture sets are one unconditional variable
        modes, std = known
        name = data[0].name
        centers = torch.as_tensor(modes, dtype=torch.float64)
        on_data = mode_coverage(batch[name].double(), centers, std)
        if on_data["high_quality_fraction"] < MODE_FIT_FRACTION:
            return {}
        found = mode_coverage(samples[name].double(), centers, std)
        return {"modes_covered": found["modes_covered"], "n_modes": found["n_modes"],
                "high_quality_fraction": found["high_quality_fraction"],
                "data_high_quality_fraction": on_data["high_quality_fraction"],
                "per_mode_counts": found["per_mode_counts"]}

    def _reconstruction(self, batch: dict, batch_size: int) -> dict:
        """Mean squared error of G(E(x)) over the data variables, next to that of the
        data's mean (what a constant reconstruction scores)."""
        n = len(next(iter(batch.values())))
        rebuilt = []
        for start in range(0, n, batch_size):
            chunk = {k: v[start:start + batch_size] for k, v in batch.items()}
            env = self.generate(len(next(iter(chunk.values()))), self.covariates(chunk), self.encode(chunk))
            rebuilt.append(self._observed_features(env))
        x = self._observed_features(batch)
        return {"reconstruction_error": reconstruction_error(x, torch.cat(rebuilt)),
                "reconstruction_baseline": reconstruction_error(x, x.mean(0, keepdim=True).expand_as(x))}

    def _observed_features(self, values: dict) -> torch.Tensor:
        return torch.cat([one_hot_input(values[v.name], v) for v in self.data_vars() if not v.is_covariate],
                         dim=-1)


def _the_critic(spec):
    critics = [n for n in spec.nets.values() if n.kind == "critic"]
    if len(critics) != 1:
        raise NotImplementedError(f"{spec.name} declares {len(critics)} critics; an implicit model "
                                  "is trained against exactly one")
    return critics[0]


def _critic_vars(spec, critic, encoded: list[str]) -> list[VarInfo]:
    """The variables the critic reads; each must be available on the data side."""
    if critic.inputs is None:
        seen = [v for v in spec.vars.values() if v.kind == "data" and not v.is_covariate]
    else:
        seen = [spec.vars[name] for name in critic.inputs]
    for var in seen:
        if var.kind != "data" and var.name not in encoded:
            raise NotImplementedError(f"critic {critic.name} reads {var.name}, which the data side cannot "
                                      f"provide: give it a deterministic guide statement "
                                      f"`guide {{ {var.name} = E(x) }}`")
    unread = [name for name in encoded if name not in {v.name for v in seen}]
    if unread:
        raise NotImplementedError(f"the encoder of {', '.join(unread)} gets no training signal: name "
                                  f"it in the critic, e.g. `critic {critic.name}(x, {unread[0]}) = ...`")
    return seen


def _guide_order(spec) -> list[str]:
    """Latents with a guide statement, each after the guide latents it reads."""
    pending = [v for v in spec.latents if v.guide_stmt is not None]
    for var in pending:
        if not isinstance(var.guide_stmt, A.AssignStmt):
            raise NotImplementedError(f"the guide of {var.name} samples; an implicit model's encoder "
                                      f"is deterministic: write `{var.name} = E(x)`")
    names = {v.name for v in pending}
    order: list[str] = []
    while pending:
        ready = [v for v in pending if all(p not in names or p in order for p in v.guide_parents)]
        if not ready:
            raise NotImplementedError(f"the guide statements of {', '.join(v.name for v in pending)} "
                                      "read each other in a cycle")
        order += [v.name for v in ready]
        pending = [v for v in pending if v not in ready]
    return order


def _compile_draw(comp: ExprCompiler, var: VarInfo) -> Draw:
    """A reparameterised draw of a latent given the environment and the batch size."""
    shape = var.type.shape
    normal = _constant_normal(var.stmt.expr)
    if normal is not None:  # the usual prior: skip building a distribution every step
        loc, scale = normal

        def standard(env: dict, n: int, share: tuple[int, int]) -> torch.Tensor:
            rank, world_size = share
            z = torch.randn(n * world_size, *shape, device=_env_device(env, comp))
            z = z if world_size == 1 else z[rank::world_size]
            return z if (loc, scale) == (0.0, 1.0) else loc + scale * z
        return standard
    dist_of = compile_distribution(comp, var, var.stmt.expr, var.name)

    def general(env: dict, n: int, share: tuple[int, int]) -> torch.Tensor:
        dist = dist_of(env)
        draw = dist.rsample if dist.has_rsample else dist.sample
        rank, world_size = share
        if world_size == 1:
            return draw((n,) if len(dist.batch_shape) == 0 else ())
        if len(dist.batch_shape) == 0:
            return draw((n * world_size,))[rank::world_size]
        # shaped by this process's covariate rows: no global batch to draw from, so one
        # draw per process, each keeping its own (independent, and the streams in step)
        return draw((world_size,))[rank]
    return general


def _constant_normal(expr) -> tuple[float, float] | None:
    """(loc, scale) of `Normal(a, b)` with number arguments, else None."""
    if A.call_name(expr) != "Normal" or not isinstance(expr, A.Call):
        return None
    bound = dict(zip(("loc", "scale"), (a.value for a in expr.args if a.name is None)))
    bound.update({a.name: a.value for a in expr.args if a.name is not None})
    numbers = {k: _number(v) for k, v in bound.items()}
    if set(numbers) != {"loc", "scale"} or None in numbers.values():
        return None
    return numbers["loc"], numbers["scale"]


def _number(expr) -> float | None:
    if isinstance(expr, A.Num):
        return float(expr.value)
    if isinstance(expr, A.Neg) and isinstance(expr.operand, A.Num):
        return -float(expr.operand.value)
    return None


def _env_device(env: dict, comp: ExprCompiler) -> torch.device:
    for value in env.values():
        if isinstance(value, torch.Tensor):
            return value.device
    for net in comp.nets.values():
        for p in net.parameters():
            return p.device
    return torch.device("cpu")
