"""Score-based families (LANGUAGE.md §5.6): what NCSN, SDE diffusion and DDPM share, and
NCSN itself, `x ~ ScoreModel(s, sigmas = geometric(max, min, L))`.

All three put one real variable through one net called with a time or noise level in
[0, 1] (`s(x, t)`): an MLP on the flattened variable with the level as one more input (or
its sinusoidal embedding, `time_embedding = k`), or a UNet on [C, H, W]. With
`fit { ema = decay }` an exponential moving average of the net's weights is kept in the
model (so checkpoints hold it) and used for sampling and evaluation.

NCSN's net output is divided by sigma (NCSNv2's noise conditioning) and its input by
sqrt(1 + sigma^2), the scale of noisy unit-variance data, so the net works on O(1)
numbers at every level.
"""
from __future__ import annotations

import copy
import math
from math import prod

import torch
from torch import nn

from ..frontend import ast as A
from ..frontend.checked import NetInfo, VarInfo
from ..frontend.options_schema import SAMPLE_METHODS, Ctor
from ..frontend.values import CallValue, Sym, to_value
from ..ir import ModelIR
from ..nn.mlp import TimeConditionedMLP
from ..numerics.ncsn import annealed_langevin, geometric_sigmas, ncsn_dsm_loss, sigma_from_level
from ..numerics.sample_metrics import mmd_report
from ..runtime.errors import RuntimeUserError
from .base import CompiledModel, seeded
from .expressions import option_name

__all__ = ["ScoreBasedModel", "ScoreModel", "build_time_net", "construct_arguments", "schedule_of", "per_example",
           "EVAL_SEED", "MMD_SAMPLES", "IMAGE_DIMS"]

EVAL_SEED = 0
MMD_SAMPLES = 1000          # sampler draws for MMD (at most half the evaluated examples)
IMAGE_DIMS = 100            # above this many dimensions, costly evaluation defaults shrink
EMA_WARMUP = 10             # effective decay min(decay, (1 + n) / (EMA_WARMUP + n)) after n updates
NCSN_DEFAULT_SIGMAS = (1.0, 0.01, 10)   # Song & Ermon (2019)


# ---- the spec: nets, construct arguments, schedules, sample methods --------------------------
def build_time_net(info: NetInfo, shape: tuple[int, ...]) -> nn.Module:
    """The declared net as net(x, t) with t [B] in [0, 1]: a UNet on [C, H, W] images, else an
    MLP on the flattened variable (`Linear` is an MLP without hidden layers)."""
    options = info.options
    embedding = options.get("time_embedding")
    if info.ctor == "UNet":
        if len(shape) != 3:
            raise RuntimeUserError(f"net {info.name} is a UNet but the variable it models has shape "
                                   f"{list(shape)}, not [C, H, W]", hint="use an MLP for vector data")
        from ..nn.unet import UNet
        return UNet(shape[0], shape[0], [int(c) for c in options.get("channels", [32, 64])],
                    int(embedding or 64), shape[1:])
    if info.ctor not in ("MLP", "Linear"):
        raise RuntimeUserError(f"net {info.name} = {info.ctor}(...) cannot be called with a time or noise level",
                               hint="use MLP (any data) or UNet (images [C, H, W])")
    hidden = [] if info.ctor == "Linear" else options.get("hidden", [128, 128])
    hidden = [int(h) for h in ([hidden] if isinstance(hidden, int) else hidden)]
    width = prod(shape)
    return TimeConditionedMLP(info.in_width or width, info.out_width or width, hidden,
                              option_name(options, "act", "relu"), int(embedding) if embedding else None,
                              option_name(options, "init", "default"))


def construct_arguments(var: VarInfo, positional_names: tuple[str, ...]) -> dict[str, A.Expr]:
    """The family construct's arguments by name, positional ones named in order."""
    call = var.stmt.expr
    return {**dict(zip(positional_names, call.positional)), **call.keywords}


def schedule_of(args: dict, key: str, default: tuple) -> tuple[str, tuple[float, ...]]:
    """`linear(a, b)`, `cosine(s)` or `geometric(first, last, n)` as (name, numbers)."""
    if key not in args:
        return default[0], tuple(default[1:])
    value = to_value(args[key])
    return value.name, tuple(float(v) for v in value.args)


def _named(value, schema: Ctor | None):
    """A sample-method value as plain Python with positional arguments named by the schema."""
    if isinstance(value, Sym):
        return {"name": value.name}
    if not isinstance(value, CallValue):
        return value
    positional = schema.positional if schema is not None else ()
    named = {**dict(zip(positional, value.args)), **dict(value.kwargs)}
    inner = schema.options if schema is not None else {}
    return {"name": value.name, **{k: _named(v, inner.get(k) if isinstance(inner.get(k), Ctor) else None)
                                   for k, v in named.items()}}


def _merge(defaults: dict, given: dict) -> dict:
    return {k: _merge(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict) else v
            for k, v in {**defaults, **given}.items()}


# ---- the shared base ---------------------------------------------------------------------------
class ScoreBasedModel(CompiledModel):
    """One real variable `var`, one time-conditioned net `net` (and its EMA), one sampler.

    Subclasses set `construct`, `samplers` (name -> default options; the first is the
    default) and implement `draw(n, net)` and `dsm_loss(batch, options)`.
    """

    has_density = False
    construct = ""
    samplers: dict[str, dict] = {}

    def __init__(self, ir: ModelIR, net_name: str) -> None:
        super().__init__(ir)
        self.var = next(v for v in self.spec.vars.values() if v.construct == self.construct)
        self.shape = tuple(self.var.type.shape)
        info = self.spec.nets[net_name]
        self.net = build_time_net(info, self.shape)
        # the shape the net and the numerics work on: images for a UNet, else flat vectors [D]
        self.event_shape = self.shape if info.ctor == "UNet" else (prod(self.shape),)
        ema = self.spec.fit.get("ema")
        self.ema_decay = float(ema) if ema is not None else None
        self.ema_net = None
        if ema is not None:
            self.ema_net = copy.deepcopy(self.net).requires_grad_(False)
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.sampler = self._sampler()

    # ---- spec ----------------------------------------------------------------------------------
    def _sampler(self) -> dict:
        value = self.spec.sample.get("method")
        default = next(iter(self.samplers))
        chosen = _named(value, SAMPLE_METHODS.get(getattr(value, "name", None))) if value is not None \
            else {"name": default}
        if chosen["name"] not in self.samplers:
            raise RuntimeUserError(f"{self.spec.name}: a {self.construct} model cannot be sampled by "
                                   f"'{chosen['name']}'",
                                   hint=f"use sample {{ method = {' | '.join(self.samplers)} }}")
        return _merge({"name": chosen["name"], **self.samplers[chosen["name"]]}, chosen)

    def reject_method_options(self, allowed: set[str], why: str) -> None:
        """A user error at compile time for dsm options this family does not use."""
        method = self.spec.method
        extra = set(method.options) - allowed if method is not None else set()
        if extra:
            raise RuntimeUserError(f"{self.spec.name}: dsm({', '.join(sorted(extra))} = ...) does not apply to "
                                   f"{self.construct}", hint=why)

    # ---- data and the net ----------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.get_default_dtype()

    def x(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The variable from a batch as [B, *event_shape], in the parameters' dtype."""
        value = batch[self.var.name]
        if value.shape[1:] != self.event_shape:
            value = value.reshape(len(value), *self.event_shape)
        return value.to(self.dtype)

    def binary_values(self, x: torch.Tensor | None = None) -> tuple[float, float] | None:
        """(low, high) when the data are binarized MNIST pixels mapped to {low, high} by
        `scale = [low, high]` ({0, 1} without it), and `x`, if given, holds only those values."""
        data = self.spec.fit.get("data")
        if not (isinstance(data, CallValue) and data.name == "binarized_mnist"):
            return None
        low, high = (float(v) for v in data.options.get("scale", [0.0, 1.0]))
        if x is not None and not bool(((x == low) | (x == high)).all()):
            return None
        return low, high

    def net_output(self, x: torch.Tensor, t: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        return (self.net if net is None else net)(x, t)

    @property
    def sampling_net(self) -> nn.Module:
        """The EMA weights where `fit { ema }` keeps them, else the trained ones."""
        return self.ema_net if self.ema_net is not None else self.net

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step after an optimizer step; the decay warms up as (1 + n) / (10 + n)."""
        if self.ema_net is None:
            return
        self.ema_updates += 1
        decay = ((1 + self.ema_updates) / (EMA_WARMUP + self.ema_updates)).clamp(max=self.ema_decay)
        weight = (1 - decay).to(self.dtype)  # a tensor: no host sync per step on a GPU
        for average, current in zip(self.ema_net.parameters(), self.net.parameters()):
            average.lerp_(current, weight)

    # ---- sampling ------------------------------------------------------------------------------
    def draw(self, n: int, net: nn.Module) -> torch.Tensor:
        """n draws [n, *event_shape] from the spec's sampler with `net`."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, covariates: dict | None = None) -> dict[str, torch.Tensor]:
        with seeded(seed):
            return {self.var.name: self.draw(n, self.sampling_net).reshape(n, *self.shape)}

    def describe_sampler(self) -> str:
        def show(v):
            return describe(v) if isinstance(v, dict) else f"{v:g}" if isinstance(v, float) else str(v)

        def describe(options: dict) -> str:
            args = ", ".join(f"{k} = {show(v)}" for k, v in options.items() if k != "name")
            return f"{options['name']}({args})" if args else options["name"]
        return describe(self.sampler)

    # ---- evaluation ----------------------------------------------------------------------------
    def default_mmd_samples(self) -> int:
        """Sampling is cheap for small data; for images it is opt-in (`mmd_samples = N`)."""
        return MMD_SAMPLES if prod(self.event_shape) <= IMAGE_DIMS else 0

    @torch.no_grad()
    def mmd_metrics(self, x: torch.Tensor, batch_size: int, samples: int | None = None) -> dict:
        """MMD of the sampler's draws against one half of `x`, next to the MMD between the two
        halves at the same sizes (the noise floor: what a perfect model would score)."""
        requested = self.default_mmd_samples() if samples is None else int(samples)
        if requested == 0:
            why = (f"skipped by default for {x[0].numel()}-dimensional data, whose sampling is slow on a CPU; "
                   if samples is None else "")
            return {"mmd_note": f"no sample MMD ({why}evaluate(mmd_samples = N) draws N samples)"}
        count = min(len(x) // 2, requested)
        if count < 2:
            return {"mmd_note": "no sample MMD: it needs at least 4 held-out examples and 2 samples"}
        first, second = x[: len(x) // 2], x[len(x) // 2:][:count]
        with seeded(EVAL_SEED):
            draws = torch.cat([self.draw(min(batch_size, count - start), self.sampling_net)
                               for start in range(0, count, batch_size)])
        report = mmd_report(draws.flatten(1), first.flatten(1), second.flatten(1))
        return {"mmd": math.sqrt(max(report["mmd2"], 0.0)),
                "mmd_noise_floor": math.sqrt(max(report["noise_floor_mmd2"], 0.0)),
                "mmd2": report["mmd2"], "mmd2_noise_floor": report["noise_floor_mmd2"],
                "mmd2_floor_ratio": report["floor_ratio"], "mmd_bandwidth": report["bandwidth"], "mmd_samples": count,
                "sampler": self.describe_sampler() + (" (EMA weights)" if self.ema_net is not None else "")}


def per_example(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[B] values as [B, 1, ..., 1] against x [B, ...]."""
    return values.reshape(-1, *([1] * (x.dim() - 1)))


# ---- NCSN --------------------------------------------------------------------------------------
class ScoreModel(ScoreBasedModel):
    """NCSN: s(x, sigma) = net(x / sqrt(1 + sigma^2), level(sigma)) / sigma, trained by DSM
    summed over the levels with weight sigma^2, sampled by annealed Langevin dynamics."""

    family = "score"
    construct = "ScoreModel"
    samplers = {"annealed_langevin": {"steps_per_level": 100, "eps": 2e-5}}

    def __init__(self, ir: ModelIR) -> None:
        var = next(v for v in ir.model.vars.values() if v.construct == self.construct)
        args = construct_arguments(var, ("score",))
        super().__init__(ir, args["score"].id)
        _, (first, last, levels) = schedule_of(args, "sigmas", ("geometric", *NCSN_DEFAULT_SIGMAS))
        self.register_buffer("sigmas", geometric_sigmas(first, last, int(levels)), persistent=False)
        self.reject_method_options(set(), "NCSN's noise levels come from sigmas = geometric(max, min, L)")

    def score(self, x: torch.Tensor, level: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        sigma = per_example(sigma_from_level(level, self.sigmas).to(x.dtype), x)
        return self.net_output(x / (1 + sigma**2).sqrt(), level, net) / sigma

    def dsm_loss(self, batch: dict[str, torch.Tensor], options: dict | None = None) -> torch.Tensor:
        return ncsn_dsm_loss(self.score, self.x(batch), self.sigmas)

    def draw(self, n: int, net: nn.Module) -> torch.Tensor:
        s = self.sampler
        return annealed_langevin(lambda x, level: self.score(x, level, net), self.sigmas, (n, *self.event_shape),
                                 int(s["steps_per_level"]), float(s["eps"]), device=self.device, dtype=self.dtype)

    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, mmd_samples: int | None = None,
                 **options) -> dict:
        """Sample MMD next to its noise floor; NCSN has no density to report an NLL for."""
        metrics = self.mmd_metrics(self.x(batch), batch_size, mmd_samples)
        metrics["kind"] = ("sample-based: NCSN has no tractable density (its noise-conditional scores "
                           "are not the gradient of one normalized model), so no NLL; "
                           "noise floor = MMD between two held-out halves")
        return metrics
