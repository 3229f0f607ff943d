"""What every family backend builds: a `CompiledModel` (an nn.Module) with a small,
uniform surface the runtime and the engines use."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..data.validate import VarSpec
from ..frontend.checked import VarInfo
from ..ir import ModelIR

__all__ = ["CompiledModel", "var_spec", "seeded"]


def var_spec(var: VarInfo, missing_ok: bool = False) -> VarSpec:
    kind = var.type.base if var.type.base != "count" else "ordinal"
    return VarSpec(var.name, kind, var.type.k if var.type.base in ("cat", "ordinal") else None,
                   var.type.shape, missing_ok)


class seeded:
    """Run a block under a fixed torch seed without disturbing the caller's RNG: the
    CPU's and, once CUDA is in use (a model there draws from its device's), every CUDA
    device's, each forked and seeded."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._fork = None

    def __enter__(self):
        if self.seed is None:
            return self
        # Not torch.manual_seed: before CUDA starts, it would queue a seed that CUDA
        # applies when it does start, after the fork has ended.
        cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        self._fork = torch.random.fork_rng(devices=cuda_devices, device_type="cuda")
        self._fork.__enter__()
        torch.default_generator.manual_seed(self.seed)
        if cuda_devices:
            torch.cuda.manual_seed_all(self.seed)
        return self

    def __exit__(self, *exc):
        if self._fork is not None:
            self._fork.__exit__(*exc)
        return False


class CompiledModel(nn.Module):
    """Base of every backend's model. Subclasses set `family` and override what they support."""

    family = "base"
    has_density = True
    pyro_guide = None  # backends with a guide override this
    # overrides of runtime.api.DEFAULTS (lr, epochs, batch_size) where the spec says nothing
    default_settings: dict = {}

    def __init__(self, ir: ModelIR) -> None:
        super().__init__()
        self.ir = ir
        self.spec = ir.model

    # ---- data ----------------------------------------------------------------
    def data_vars(self) -> list[VarInfo]:
        """Variables read from a data set (observed and covariates)."""
        return [v for v in self.spec.vars.values() if v.kind == "data"]

    def var_specs(self) -> list[VarSpec]:
        return [var_spec(v) for v in self.data_vars()]

    def initialize(self, data: dict[str, torch.Tensor]) -> None:
        """Data-dependent initialisation before training (default: none)."""

    # ---- density and sampling ---------------------------------------------------
    def log_prob(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(f"{self.family} models have no exact density")

    def sample(self, n: int, seed: int | None = None, covariates: dict | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ---- evaluation -----------------------------------------------------------------
    def observed_dims(self) -> int:
        """Dimensions the NLL is over (for bits per dimension): observed, non-covariate data."""
        return sum(v.type.size for v in self.data_vars() if not v.is_covariate)

    @torch.no_grad()
    def log_prob_in_chunks(self, batch: dict, batch_size: int, draws=None) -> torch.Tensor:
        """Per-example log-density; with posterior draws, the posterior predictive."""
        n = len(next(iter(batch.values())))
        out = []
        for start in range(0, n, batch_size):
            chunk = {k: v[start:start + batch_size] for k, v in batch.items()}
            if draws:
                lps = torch.stack([self.log_prob(chunk, params=d) for d in draws])
                out.append(torch.logsumexp(lps, 0) - math.log(len(draws)))
            else:
                out.append(self.log_prob(chunk))
        return torch.cat(out)

    def evaluate(self, batch: dict, batch_size: int = 1000, draws=None, **options) -> dict:
        """Exact held-out NLL in nats per example, its standard error, and bits per dimension."""
        lp = self.log_prob_in_chunks(batch, batch_size, draws).double()
        nll = float(-lp.mean())
        dims = self.observed_dims()
        return {"nll_nats": nll, "nll_stderr": float(lp.std() / math.sqrt(len(lp))) if len(lp) > 1 else 0.0,
                "bits_per_dim": nll / (dims * math.log(2)) if dims else float("nan"),
                "kind": "posterior predictive NLL" if draws else "exact NLL"}

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")
